//! Reads and writes beside the event log: value states, idempotency
//! records, the per-service log, subscription offsets and dead letters.
//!
//! Outbox deliveries and subscription offsets are written once per delivered
//! batch, durably: a crash can only make the host deliver the last batch
//! again, which at-least-once delivery allows (and every delivery carries an
//! idempotency key, so a repeat changes nothing).

use redb::{Durability, ReadableDatabase, ReadableTableMetadata};

use super::records::{self, EventRecord, KeyRecord, LogEntryRecord, ValueRecord};
use super::tables::{DEAD_LETTERS, EVENTS, IDEMPOTENCY, OFFSETS, SERVICE_LOG, VALUES, idempotency_live};
use super::{Bookkeeping, DeadLetter, IdempotencyRecord, JournalError, Lease, RedbJournal, ServiceLogEntry};
use crate::domain::{Event, FollowUp, IdempotencyKey};

impl Bookkeeping for RedbJournal {
    /// A value entity's stored state.
    fn value(&self, service: &str, entity: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let txn = self.db()?.begin_read()?;
        match txn.open_table(VALUES)?.get((service, entity))? {
            Some(row) => Ok(Some(ValueRecord::read(service, entity, row.value())?.state.to_vec())),
            None => Ok(None),
        }
    }

    /// The record a command left under an idempotency key on this entity,
    /// if the record has not expired at `now_ms`.
    fn idempotency_record(
        &self,
        service: &str,
        entity: &str,
        key: &IdempotencyKey,
        now_ms: u64,
    ) -> Result<Option<IdempotencyRecord>, JournalError> {
        let txn = self.db()?.begin_read()?;
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
    fn sweep_idempotency(&self, now_ms: u64) -> Result<usize, JournalError> {
        let mut txn = self.db()?.begin_write()?;
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

    /// Up to `limit` events of `service` after log position `after`, in commit order.
    fn service_log(&self, service: &str, after: u64, limit: usize) -> Result<Vec<ServiceLogEntry>, JournalError> {
        let txn = self.db()?.begin_read()?;
        let log = txn.open_table(SERVICE_LOG)?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for row in log.range((service, after + 1)..=(service, u64::MAX))?.take(limit) {
            let (key, value) = row?;
            let LogEntryRecord { entity, seq } = records::decode_borrowed(value.value(), "service log entry")?;
            let Some(row) = events.get((service, entity, seq))? else {
                // Compaction (`retain=snapshots:K`) deletes only events every
                // subscriber was given; a subscriber deployed later does
                // not see them.
                if super::first_seq(&events, service, entity)? > seq {
                    continue;
                }
                return Err(JournalError::Corrupt(format!("the service log names a missing event {entity}/{seq}")));
            };
            let record = EventRecord::read(service, entity, seq, row.value())?;
            let event = Event { seq, version: record.version, payload: record.payload.to_vec() };
            let trace = records::trace_after::<EventRecord<'_>>(row.value());
            out.push(ServiceLogEntry { position: key.value().1, entity: entity.to_string(), event, trace });
        }
        Ok(out)
    }

    /// The last service-log position delivered to `subscriber` from `source`.
    fn offset(&self, subscriber: &str, source: &str) -> Result<u64, JournalError> {
        let txn = self.db()?.begin_read()?;
        Ok(txn.open_table(OFFSETS)?.get((subscriber, source))?.map_or(0, |v| v.value()))
    }

    /// Moves `subscriber`'s offset in `source` to `position`. This host
    /// holds every lease.
    fn set_offset(&self, subscriber: &str, source: &str, position: u64, _: &Lease) -> Result<(), JournalError> {
        self.bookkeeping_write(|txn| {
            txn.open_table(OFFSETS)?.insert((subscriber, source), position)?;
            Ok(())
        })
    }

    /// Records that `subscriber` gave up on the event at `position` of
    /// `source`'s log.
    fn add_dead_letter(
        &self,
        subscriber: &str,
        source: &str,
        position: u64,
        letter: &DeadLetter,
        _: &Lease,
    ) -> Result<(), JournalError> {
        let encoded = records::encode(letter)?;
        self.bookkeeping_write(|txn| {
            txn.open_table(DEAD_LETTERS)?.insert((subscriber, source, position), encoded.as_slice())?;
            Ok(())
        })
    }

    /// The events `subscriber` gave up on, as (source, position, letter),
    /// by source and position.
    fn dead_letters(&self, subscriber: &str) -> Result<Vec<(String, u64, DeadLetter)>, JournalError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(DEAD_LETTERS)?;
        let mut out = Vec::new();
        for row in table.range((subscriber, "", 0)..)? {
            let (key, value) = row?;
            let (sub, source, position) = key.value();
            if sub != subscriber {
                break;
            }
            out.push((source.to_string(), position, records::decode(value.value(), "dead letter")?));
        }
        Ok(out)
    }

    /// The last position of `service`'s log (0 when it has no events).
    fn service_log_head(&self, service: &str) -> Result<u64, JournalError> {
        let txn = self.db()?.begin_read()?;
        super::log_head(&txn.open_table(SERVICE_LOG)?, service)
    }
}

impl RedbJournal {
    /// Runs `write` in a write transaction of its own and commits it.
    pub(super) fn bookkeeping_write(
        &self,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        let txn = self.db()?.begin_write()?;
        write(&txn)?;
        txn.commit()?;
        Ok(())
    }
}
