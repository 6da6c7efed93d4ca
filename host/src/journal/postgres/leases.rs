//! Leases on PostgreSQL: one row per lease in `leases`, with its holder,
//! epoch and expiry, by the database's clock (so the hosts' clocks need not
//! agree).
//!
//! Taking a free or expired lease bumps its epoch. Each write of
//! lease-bound work runs in a transaction that first locks its lease's row
//! `FOR SHARE` and checks the epoch ([`hold`]): a takeover, which updates
//! the row, waits for such a write to commit, and a write after a takeover
//! finds the epoch gone and writes nothing.

use tokio_postgres::Transaction;

use super::{JournalError, PgJournal, db_int};
use crate::journal::contract::LeaseStore;
use crate::journal::{Lease, LeaseRecord};

/// The database's clock, in ms since the Unix epoch, as SQL.
macro_rules! now_ms {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}

impl LeaseStore for PgJournal {
    fn take_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>, JournalError> {
        self.run(async |conn| {
            let sql = concat!(
                "INSERT INTO leases AS l (name, holder, epoch, expires_at_ms) VALUES ($1, $2, 1, ",
                now_ms!(),
                " + $3) ON CONFLICT (name) DO UPDATE \
                 SET holder = EXCLUDED.holder, epoch = l.epoch + 1, expires_at_ms = EXCLUDED.expires_at_ms \
                 WHERE l.expires_at_ms < ",
                now_ms!(),
                " RETURNING epoch"
            );
            let statement = conn.statement(sql).await?;
            let row = conn.client.query_opt(&statement, &[&name, &holder, &db_int(ttl_ms)]).await?;
            Ok(row.map(|row| Lease {
                name: name.to_string(),
                holder: holder.to_string(),
                epoch: row.get::<_, i64>(0) as u64,
            }))
        })
    }

    fn renew_lease(&self, lease: &Lease, ttl_ms: u64) -> Result<bool, JournalError> {
        self.run(async |conn| {
            let sql = concat!(
                "UPDATE leases SET expires_at_ms = ",
                now_ms!(),
                " + $4 WHERE name = $1 AND holder = $2 AND epoch = $3"
            );
            let statement = conn.statement(sql).await?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&lease.name, &lease.holder, &db_int(lease.epoch), &db_int(ttl_ms)];
            Ok(conn.client.execute(&statement, &params).await? == 1)
        })
    }

    fn release_lease(&self, lease: &Lease) -> Result<(), JournalError> {
        self.run(async |conn| {
            conn.client
                .execute(
                    "UPDATE leases SET expires_at_ms = 0 WHERE name = $1 AND holder = $2 AND epoch = $3",
                    &[&lease.name, &lease.holder, &db_int(lease.epoch)],
                )
                .await?;
            Ok(())
        })
    }

    fn leases(&self) -> Result<Vec<LeaseRecord>, JournalError> {
        self.run(async |conn| {
            let rows =
                conn.client.query("SELECT name, holder, epoch, expires_at_ms FROM leases ORDER BY name", &[]).await?;
            Ok(rows
                .iter()
                .map(|row| LeaseRecord {
                    name: row.get(0),
                    holder: row.get(1),
                    epoch: row.get::<_, i64>(2) as u64,
                    expires_at_ms: row.get::<_, i64>(3).max(0) as u64,
                })
                .collect())
        })
    }
}

/// Locks `lease`'s row for the rest of `txn`, or answers
/// [`JournalError::LeaseLost`] when its epoch was taken over.
pub(super) async fn hold(txn: &Transaction<'_>, lease: &Lease) -> Result<(), JournalError> {
    let held = txn
        .query_opt(
            "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3 FOR SHARE",
            &[&lease.name, &lease.holder, &db_int(lease.epoch)],
        )
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(JournalError::LeaseLost(lease.name.clone())),
    }
}
