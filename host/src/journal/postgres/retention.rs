//! How much history each service keeps on PostgreSQL, and the compaction
//! that drops the rest (see the embedded journal's `compaction.rs` for the
//! rules). Each round deletes in one transaction per service, which never
//! touches an entity's last event nor an event a subscriber has not been given.

use super::{Compacted, HistoryStore, JournalError, PgJournal, Retention, RetentionStore};
use crate::domain::ServiceKind;

impl RetentionStore for PgJournal {
    fn retention(&self, service: &str) -> Retention {
        self.retention.get(service)
    }

    fn compacted_services(&self) -> Vec<(String, u32)> {
        self.retention.compacted()
    }

    fn set_retention(&self, service: &str, retention: Retention) -> Result<(), JournalError> {
        self.run(async |conn| {
            match retention {
                Retention::All => conn.client.execute("DELETE FROM retention WHERE service = $1", &[&service]).await?,
                Retention::Snapshots(k) => {
                    conn.client
                        .execute(
                            "INSERT INTO retention (service, k) VALUES ($1, $2) \
                             ON CONFLICT (service) DO UPDATE SET k = EXCLUDED.k",
                            &[&service, &(k as i32)],
                        )
                        .await?
                }
            };
            Ok(())
        })?;
        self.retention.set(service, retention);
        Ok(())
    }

    fn compact(&self, service: &str, k: u32, subscribers: &[String]) -> Result<Compacted, JournalError> {
        let entities = self.entity_ids(service, ServiceKind::EventSourced)?;
        self.run(async |conn| {
            conn.client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await?;
            let result = compact_in_transaction(conn, service, k, subscribers, &entities).await;
            match result {
                Ok(compacted) => {
                    conn.client.batch_execute("COMMIT").await?;
                    Ok(compacted)
                }
                Err(error) => {
                    let _ = conn.client.batch_execute("ROLLBACK").await;
                    Err(error)
                }
            }
        })
    }
}

async fn compact_in_transaction(
    conn: &mut super::pool::Conn,
    service: &str,
    k: u32,
    subscribers: &[String],
    entities: &[String],
) -> Result<Compacted, JournalError> {
    if !subscribers.is_empty() {
        let head: i64 = conn
            .client
            .query_opt("SELECT head FROM log_heads WHERE service = $1", &[&service])
            .await?
            .map_or(0, |row| row.get(0));
        for subscriber in subscribers {
            let offset: i64 = conn
                .client
                .query_opt(
                    "SELECT position FROM offsets WHERE subscriber = $1 AND source = $2",
                    &[subscriber, &service],
                )
                .await?
                .map_or(0, |row| row.get(0));
            if offset < head {
                return Ok(Compacted { waiting_for_subscribers: true, ..Compacted::default() });
            }
        }
    }
    let mut compacted = Compacted::default();
    for entity in entities {
        // The seqs of the kept snapshots, oldest first, and the latest.
        let mut seqs: Vec<i64> = conn
            .client
            .query(
                "SELECT seq FROM snapshot_history WHERE service = $1 AND entity = $2 ORDER BY seq",
                &[&service, entity],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let latest = conn
            .client
            .query_opt("SELECT seq FROM snapshots WHERE service = $1 AND entity = $2", &[&service, entity])
            .await?;
        if let Some(latest) = latest.map(|row| row.get::<_, i64>(0))
            && seqs.last() != Some(&latest)
        {
            seqs.push(latest);
        }
        let Some(&oldest_kept) = seqs.len().checked_sub(k as usize).and_then(|i| seqs.get(i)) else { continue };
        let last: Option<i64> = conn
            .client
            .query_one("SELECT max(seq) FROM events WHERE service = $1 AND entity = $2", &[&service, entity])
            .await?
            .get(0);
        // The last event stays: it says where the log stands.
        let upto = oldest_kept.min(last.unwrap_or(0) - 1);
        let events = conn
            .client
            .query_one(
                "WITH gone AS (DELETE FROM events WHERE service = $1 AND entity = $2 AND seq <= $3 RETURNING record) \
                 SELECT count(*), coalesce(sum(length(record)), 0)::int8 FROM gone",
                &[&service, entity, &upto],
            )
            .await?;
        let snapshots = conn
            .client
            .query_one(
                "WITH gone AS (DELETE FROM snapshot_history WHERE service = $1 AND entity = $2 AND seq < $3 \
                   RETURNING record) \
                 SELECT count(*), coalesce(sum(length(record)), 0)::int8 FROM gone",
                &[&service, entity, &oldest_kept],
            )
            .await?;
        compacted.events += events.get::<_, i64>(0) as u64;
        compacted.snapshots += snapshots.get::<_, i64>(0) as u64;
        compacted.bytes += (events.get::<_, i64>(1) + snapshots.get::<_, i64>(1)) as u64;
    }
    Ok(compacted)
}
