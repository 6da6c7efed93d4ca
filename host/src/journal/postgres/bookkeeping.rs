//! Reads and writes beside the event log on PostgreSQL: value states,
//! idempotency records, the per-service log, subscription offsets and dead
//! letters. Each write is one autocommitted statement, durable when it
//! returns; those of lease-bound work are a transaction that holds the lease.

use super::leases::hold;
use super::{
    Bookkeeping, DeadLetter, HostRecord, IdempotencyRecord, JournalError, Lease, PgJournal, ServiceLogEntry, db_int,
    event_of,
};
use crate::domain::{FollowUp, IdempotencyKey};
use crate::journal::records::{self, KeyRecord, ValueRecord};

impl Bookkeeping for PgJournal {
    fn heartbeat(&self, host: &HostRecord) -> Result<(), JournalError> {
        self.run(async |conn| {
            let statement = conn
                .statement(
                    "INSERT INTO hosts (id, url, last_seen_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, last_seen_ms = EXCLUDED.last_seen_ms",
                )
                .await?;
            conn.client.execute(&statement, &[&host.id, &host.url, &db_int(host.last_seen_ms)]).await?;
            Ok(())
        })
    }

    fn hosts(&self, since_ms: u64) -> Result<Vec<HostRecord>, JournalError> {
        self.run(async |conn| {
            let statement =
                conn.statement("SELECT id, url, last_seen_ms FROM hosts WHERE last_seen_ms >= $1 ORDER BY id").await?;
            let rows = conn.client.query(&statement, &[&db_int(since_ms)]).await?;
            Ok(rows
                .iter()
                .map(|row| HostRecord { id: row.get(0), url: row.get(1), last_seen_ms: row.get::<_, i64>(2) as u64 })
                .collect())
        })
    }

    fn leave(&self, id: &str) -> Result<(), JournalError> {
        self.run(async |conn| {
            conn.client.execute("DELETE FROM hosts WHERE id = $1", &[&id]).await?;
            Ok(())
        })
    }

    fn value(&self, service: &str, entity: &str) -> Result<Option<Vec<u8>>, JournalError> {
        self.run(async |conn| {
            let statement =
                conn.statement("SELECT record FROM entity_values WHERE service = $1 AND entity = $2").await?;
            match conn.client.query_opt(&statement, &[&service, &entity]).await? {
                Some(row) => Ok(Some(ValueRecord::read(service, entity, row.get(0))?.state.to_vec())),
                None => Ok(None),
            }
        })
    }

    fn idempotency_record(
        &self,
        service: &str,
        entity: &str,
        key: &IdempotencyKey,
        now_ms: u64,
    ) -> Result<Option<IdempotencyRecord>, JournalError> {
        self.run(async |conn| {
            let statement = conn
                .statement(
                    "SELECT record FROM idempotency \
                     WHERE service = $1 AND entity = $2 AND key = $3 AND expires_at_ms > $4",
                )
                .await?;
            let row = conn.client.query_opt(&statement, &[&service, &entity, &key.as_str(), &db_int(now_ms)]).await?;
            let Some(row) = row else { return Ok(None) };
            let stored: KeyRecord<FollowUp> = records::decode(row.get(0), "idempotency record")?;
            Ok(Some(IdempotencyRecord {
                key: key.clone(),
                expires_at_ms: stored.expires_at_ms,
                fingerprint: stored.fingerprint,
                follow_up: stored.follow_up,
            }))
        })
    }

    fn sweep_idempotency(&self, now_ms: u64) -> Result<usize, JournalError> {
        self.run(async |conn| {
            let removed =
                conn.client.execute("DELETE FROM idempotency WHERE expires_at_ms <= $1", &[&db_int(now_ms)]).await?;
            Ok(removed as usize)
        })
    }

    fn service_log(&self, service: &str, after: u64, limit: usize) -> Result<Vec<ServiceLogEntry>, JournalError> {
        self.run(async |conn| {
            // An event compaction deleted (every subscriber had it) is
            // skipped, as a subscriber deployed later does not see it.
            let statement = conn
                .statement(
                    "SELECT l.position, l.entity, l.seq, e.record, \
                       (SELECT min(seq) FROM events f WHERE f.service = l.service AND f.entity = l.entity) \
                     FROM service_log l \
                     LEFT JOIN events e ON e.service = l.service AND e.entity = l.entity AND e.seq = l.seq \
                     WHERE l.service = $1 AND l.position > $2 ORDER BY l.position LIMIT $3",
                )
                .await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut out = Vec::new();
            for row in conn.client.query(&statement, &[&service, &db_int(after), &limit]).await? {
                let (position, entity, seq): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
                let Some(record) = row.get::<_, Option<&[u8]>>(3) else {
                    if row.get::<_, Option<i64>>(4).is_some_and(|first| first > seq) {
                        continue;
                    }
                    return Err(JournalError::Corrupt(format!("the service log names a missing event {entity}/{seq}")));
                };
                let event = event_of(service, &entity, seq, record)?;
                let trace = records::trace_after::<records::EventRecord<'_>>(record);
                out.push(ServiceLogEntry { position: position as u64, entity, event, trace });
            }
            Ok(out)
        })
    }

    fn service_log_head(&self, service: &str) -> Result<u64, JournalError> {
        self.run(async |conn| {
            let statement = conn.statement("SELECT head FROM log_heads WHERE service = $1").await?;
            let row = conn.client.query_opt(&statement, &[&service]).await?;
            Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
        })
    }

    fn offset(&self, subscriber: &str, source: &str) -> Result<u64, JournalError> {
        self.run(async |conn| {
            let statement =
                conn.statement("SELECT position FROM offsets WHERE subscriber = $1 AND source = $2").await?;
            let row = conn.client.query_opt(&statement, &[&subscriber, &source]).await?;
            Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
        })
    }

    fn set_offset(&self, subscriber: &str, source: &str, position: u64, lease: &Lease) -> Result<(), JournalError> {
        self.run(async |conn| {
            let statement = conn
                .statement(
                    "INSERT INTO offsets (subscriber, source, position) VALUES ($1, $2, $3) \
                     ON CONFLICT (subscriber, source) DO UPDATE SET position = EXCLUDED.position",
                )
                .await?;
            let txn = conn.client.transaction().await?;
            hold(&txn, lease).await?;
            txn.execute(&statement, &[&subscriber, &source, &db_int(position)]).await?;
            txn.commit().await?;
            Ok(())
        })
    }

    fn add_dead_letter(
        &self,
        subscriber: &str,
        source: &str,
        position: u64,
        letter: &DeadLetter,
        lease: &Lease,
    ) -> Result<(), JournalError> {
        let encoded = records::encode(letter)?;
        self.run(async |conn| {
            let txn = conn.client.transaction().await?;
            hold(&txn, lease).await?;
            txn.execute(
                "INSERT INTO dead_letters (subscriber, source, position, record) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (subscriber, source, position) DO UPDATE SET record = EXCLUDED.record",
                &[&subscriber, &source, &db_int(position), &encoded.as_slice()],
            )
            .await?;
            txn.commit().await?;
            Ok(())
        })
    }

    fn dead_letters(&self, subscriber: &str) -> Result<Vec<(String, u64, DeadLetter)>, JournalError> {
        self.run(async |conn| {
            let rows = conn
                .client
                .query(
                    "SELECT source, position, record FROM dead_letters WHERE subscriber = $1 \
                     ORDER BY source, position",
                    &[&subscriber],
                )
                .await?;
            rows.iter()
                .map(|row| Ok((row.get(0), row.get::<_, i64>(1) as u64, records::decode(row.get(2), "dead letter")?)))
                .collect()
        })
    }
}
