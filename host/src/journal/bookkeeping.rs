//! Reads and writes beside the event log: value states, idempotency
//! records, the outbox, the per-service log and subscription offsets.
//!
//! Outbox deliveries and subscription offsets are written once per delivered
//! batch, durably: a crash can only make the host deliver the last batch
//! again, which at-least-once delivery allows (and every delivery carries an
//! idempotency key, so a repeat changes nothing).

use redb::{Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::records::{self, IdempotencyRecord, KeyRecord, LogEntryRecord, OutboxEntry, OutboxRecord};
use super::tables::{EVENTS, IDEMPOTENCY, OFFSETS, OUTBOX, SERVICE_LOG, VALUES, idempotency_live};
use super::{Journal, JournalError};
use crate::domain::{Call, Event, FollowUp, IdempotencyKey};

/// One event of a service's log, as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLogEntry {
    /// Its position in the service's log, from 1.
    pub position: u64,
    /// The entity that emitted it.
    pub entity: String,
    /// The event.
    pub event: Event,
}

impl Journal {
    /// A value entity's stored state.
    pub fn value(&self, service: &str, entity: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(VALUES)?.get((service, entity))?.map(|v| v.value().to_vec()))
    }

    /// The record a command left under an idempotency key on this entity,
    /// if the record has not expired at `now_ms`.
    pub fn idempotency_record(
        &self,
        service: &str,
        entity: &str,
        key: &IdempotencyKey,
        now_ms: u64,
    ) -> Result<Option<IdempotencyRecord>, JournalError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IDEMPOTENCY)?;
        let Some(row) = table.get((service, entity, key.as_str()))? else { return Ok(None) };
        let stored: KeyRecord<FollowUp> = records::decode(row.value(), "idempotency record")?;
        if !idempotency_live(stored.expires_at_ms, now_ms) {
            return Ok(None);
        }
        Ok(Some(IdempotencyRecord {
            key: key.clone(),
            expires_at_ms: stored.expires_at_ms,
            fingerprint: stored.fingerprint,
            follow_up: stored.follow_up,
        }))
    }

    /// Deletes idempotency records that expired before `now_ms`; answers how many.
    pub fn sweep_idempotency(&self, now_ms: u64) -> Result<usize, JournalError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        let removed = {
            let mut table = txn.open_table(IDEMPOTENCY)?;
            let before = table.len()?;
            // A record that cannot be read is kept: the sweep never loses
            // what it cannot judge.
            table.retain(|_, record| match records::expiry(record) {
                Ok(expires_at_ms) => idempotency_live(expires_at_ms, now_ms),
                Err(_) => true,
            })?;
            (before - table.len()?) as usize
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Up to `limit` outbox entries due at `now_ms`, oldest first, and the
    /// number of entries waiting in all.
    pub fn outbox_due(&self, now_ms: u64, limit: usize) -> Result<(Vec<OutboxEntry>, u64), JournalError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OUTBOX)?;
        let mut due = Vec::new();
        for row in table.iter()? {
            let (id, value) = row?;
            let record: OutboxRecord<Call> = records::decode(value.value(), "outbox entry")?;
            if record.next_attempt_ms <= now_ms {
                let entry = OutboxEntry {
                    id: id.value(),
                    call: record.call,
                    attempts: record.attempts,
                    next_attempt_ms: record.next_attempt_ms,
                };
                due.push(entry);
                if due.len() >= limit {
                    break;
                }
            }
        }
        Ok((due, table.len()?))
    }

    /// Removes delivered (or abandoned) outbox entries.
    pub fn outbox_remove(&self, ids: &[u64]) -> Result<(), JournalError> {
        self.bookkeeping_write(|txn| {
            let mut table = txn.open_table(OUTBOX)?;
            for id in ids {
                table.remove(id)?;
            }
            Ok(())
        })
    }

    /// Records a failed attempt: the entry is retried at `next_attempt_ms`.
    pub fn outbox_retry(&self, entry: &OutboxEntry) -> Result<(), JournalError> {
        let record =
            OutboxRecord { call: &entry.call, attempts: entry.attempts, next_attempt_ms: entry.next_attempt_ms };
        let encoded = records::encode(&record)?;
        self.bookkeeping_write(|txn| {
            txn.open_table(OUTBOX)?.insert(entry.id, encoded.as_slice())?;
            Ok(())
        })
    }

    /// Up to `limit` events of `service` after log position `after`, in commit order.
    pub fn service_log(&self, service: &str, after: u64, limit: usize) -> Result<Vec<ServiceLogEntry>, JournalError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(SERVICE_LOG)?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for row in log.range((service, after + 1)..=(service, u64::MAX))?.take(limit) {
            let (key, value) = row?;
            let LogEntryRecord { entity, seq } = records::decode_borrowed(value.value(), "service log entry")?;
            let payload = events.get((service, entity, seq))?.ok_or_else(|| {
                JournalError::Corrupt(format!("the service log names a missing event {entity}/{seq}"))
            })?;
            out.push(ServiceLogEntry {
                position: key.value().1,
                entity: entity.to_string(),
                event: Event { seq, payload: payload.value().to_vec() },
            });
        }
        Ok(out)
    }

    /// The last service-log position delivered to `subscriber` from `source`.
    pub fn offset(&self, subscriber: &str, source: &str) -> Result<u64, JournalError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(OFFSETS)?.get((subscriber, source))?.map_or(0, |v| v.value()))
    }

    /// Moves `subscriber`'s offset in `source` to `position`.
    pub fn set_offset(&self, subscriber: &str, source: &str, position: u64) -> Result<(), JournalError> {
        self.bookkeeping_write(|txn| {
            txn.open_table(OFFSETS)?.insert((subscriber, source), position)?;
            Ok(())
        })
    }

    fn bookkeeping_write(
        &self,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        let txn = self.db.begin_write()?;
        write(&txn)?;
        txn.commit()?;
        Ok(())
    }
}
