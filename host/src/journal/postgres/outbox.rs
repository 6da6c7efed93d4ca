//! The outbox on PostgreSQL: asynchronous side effects waiting for
//! delivery. Entries are added by the writer, in the transaction of the
//! command that asked for them; deliveries and retries are transactions
//! that hold the outbox's lease, drops single statements.

use super::leases::hold;
use super::{JournalError, Lease, OutboxEntry, OutboxStore, PgJournal, db_int};

impl OutboxStore for PgJournal {
    fn set_outbox_quota(&self, quota: u64) {
        self.outbox.set_quota(quota);
    }

    fn outbox_due(&self, now_ms: u64, after: u64, limit: usize) -> Result<(Vec<OutboxEntry>, u64), JournalError> {
        self.run(async |conn| {
            let waiting: i64 = conn.client.query_one("SELECT count(*) FROM outbox", &[]).await?.get(0);
            let statement = conn
                .statement("SELECT id, record FROM outbox WHERE due_ms <= $1 AND id > $2 ORDER BY id LIMIT $3")
                .await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = conn.client.query(&statement, &[&db_int(now_ms), &db_int(after), &limit]).await?;
            let due = rows
                .iter()
                .map(|row| OutboxEntry::read(row.get::<_, i64>(0) as u64, row.get(1)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((due, waiting as u64))
        })
    }

    fn outbox_remove(&self, ids: &[u64], lease: &Lease) -> Result<(), JournalError> {
        let ids: Vec<i64> = ids.iter().map(|id| db_int(*id)).collect();
        let gone = self.run(async |conn| {
            let txn = conn.client.transaction().await?;
            hold(&txn, lease).await?;
            let rows = txn.query("DELETE FROM outbox WHERE id = ANY($1) RETURNING target", &[&ids]).await?;
            txn.commit().await?;
            Ok(rows.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>())
        })?;
        for service in gone {
            self.outbox.adjust(&service, -1);
        }
        Ok(())
    }

    fn outbox_retry(&self, entry: &OutboxEntry, lease: &Lease) -> Result<(), JournalError> {
        let encoded = entry.encode()?;
        self.run(async |conn| {
            let txn = conn.client.transaction().await?;
            hold(&txn, lease).await?;
            txn.execute(
                "UPDATE outbox SET record = $2, due_ms = $3 WHERE id = $1",
                &[&db_int(entry.id), &encoded.as_slice(), &db_int(entry.next_attempt_ms)],
            )
            .await?;
            txn.commit().await?;
            Ok(())
        })
    }

    fn outbox_drop_service(&self, service: &str) -> Result<usize, JournalError> {
        let dropped = self
            .run(async |conn| Ok(conn.client.execute("DELETE FROM outbox WHERE target = $1", &[&service]).await?))?;
        self.outbox.adjust(service, -(dropped as i64));
        Ok(dropped as usize)
    }
}
