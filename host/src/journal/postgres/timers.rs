//! Durable timers on PostgreSQL: the `timers` table (schema version 4),
//! keyed by owner and name and indexed by due time. The writer sets and
//! cancels timers in the transaction of the commit that asked; firings and
//! failed attempts are transactions that hold the `timers` lease, and
//! change a timer only while it is still the setting that was fired.

use super::leases::hold;
use super::{JournalError, Lease, PgJournal, db_int};
use crate::journal::contract::TimerStore;
use crate::journal::timers::Timer;

/// A timer from a `service, entity, name, record` row.
fn timer_of(row: &tokio_postgres::Row) -> Result<Timer, JournalError> {
    Timer::read(row.get(0), row.get(1), row.get(2), row.get(3))
}

/// The readable timers of `rows`; one that cannot be read is logged and
/// passed over, so it does not stop the others.
fn readable(rows: &[tokio_postgres::Row]) -> Vec<Timer> {
    let read = |row| match timer_of(row) {
        Ok(timer) => Some(timer),
        Err(error) => {
            let (service, entity): (&str, &str) = (row.get(0), row.get(1));
            tracing::error!(%error, %service, %entity, "a stored timer cannot be read; passed over");
            None
        }
    };
    rows.iter().filter_map(read).collect()
}

impl TimerStore for PgJournal {
    fn timers_due(&self, until_ms: u64, limit: usize) -> Result<Vec<Timer>, JournalError> {
        self.run(async |conn| {
            let statement = conn
                .statement(
                    "SELECT service, entity, name, record FROM timers WHERE due_ms <= $1 \
                     ORDER BY due_ms, id LIMIT $2",
                )
                .await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = conn.client.query(&statement, &[&db_int(until_ms), &limit]).await?;
            Ok(readable(&rows))
        })
    }

    fn next_timer_due(&self) -> Result<Option<u64>, JournalError> {
        self.run(async |conn| {
            let statement = conn.statement("SELECT min(due_ms) FROM timers").await?;
            let row = conn.client.query_one(&statement, &[]).await?;
            Ok(row.get::<_, Option<i64>>(0).map(|due| due as u64))
        })
    }

    fn timers_of(&self, service: &str, entity: &str) -> Result<Vec<Timer>, JournalError> {
        self.run(async |conn| {
            let statement = conn
                .statement(
                    "SELECT service, entity, name, record FROM timers WHERE service = $1 AND entity = $2 ORDER BY name",
                )
                .await?;
            let rows = conn.client.query(&statement, &[&service, &entity]).await?;
            rows.iter().map(timer_of).collect()
        })
    }

    fn timers_pending(&self) -> Result<u64, JournalError> {
        self.run(async |conn| {
            let count: i64 = conn.client.query_one("SELECT count(*) FROM timers", &[]).await?.get(0);
            Ok(count as u64)
        })
    }

    fn timers_fired(&self, timers: &[Timer], lease: &Lease) -> Result<(), JournalError> {
        let (repeating, once): (Vec<&Timer>, Vec<&Timer>) = timers.iter().partition(|t| t.schedule.is_some());
        let keys = |timers: &[&Timer]| {
            let services: Vec<String> = timers.iter().map(|t| t.service.clone()).collect();
            let entities: Vec<String> = timers.iter().map(|t| t.entity.clone()).collect();
            let names: Vec<String> = timers.iter().map(|t| t.name.clone()).collect();
            let ids: Vec<i64> = timers.iter().map(|t| t.id as i64).collect();
            (services, entities, names, ids)
        };
        let (services, entities, names, ids) = keys(&once);
        let moved = keys(&repeating);
        let dues: Vec<i64> = repeating.iter().map(|t| db_int(t.due_ms)).collect();
        let records = repeating.iter().map(|t| t.encode()).collect::<Result<Vec<_>, _>>()?;
        self.run(async |conn| {
            let txn = conn.client.transaction().await?;
            hold(&txn, lease).await?;
            if !ids.is_empty() {
                txn.execute(
                    "DELETE FROM timers t USING unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS d(s, e, n, i) \
                     WHERE t.service = d.s AND t.entity = d.e AND t.name = d.n AND t.id = d.i",
                    &[&services, &entities, &names, &ids],
                )
                .await?;
            }
            if !dues.is_empty() {
                txn.execute(
                    "UPDATE timers t SET due_ms = u.due, record = u.record \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::bytea[]) \
                     AS u(s, e, n, i, due, record) \
                     WHERE t.service = u.s AND t.entity = u.e AND t.name = u.n AND t.id = u.i",
                    &[&moved.0, &moved.1, &moved.2, &moved.3, &dues, &records],
                )
                .await?;
            }
            txn.commit().await?;
            Ok(())
        })
    }

    fn timer_update(&self, timer: &Timer, lease: &Lease) -> Result<(), JournalError> {
        let record = timer.encode()?;
        self.run(async |conn| {
            let txn = conn.client.transaction().await?;
            hold(&txn, lease).await?;
            txn.execute(
                "UPDATE timers SET due_ms = $5, record = $6 \
                 WHERE service = $1 AND entity = $2 AND name = $3 AND id = $4",
                &[
                    &timer.service,
                    &timer.entity,
                    &timer.name,
                    &(timer.id as i64),
                    &db_int(timer.due_ms),
                    &record.as_slice(),
                ],
            )
            .await?;
            txn.commit().await?;
            Ok(())
        })
    }
}
