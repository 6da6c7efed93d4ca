//! Reads the whole journal, one table at a time, in one read transaction:
//! what `journal copy` moves to PostgreSQL.

use redb::{ReadableDatabase, ReadableTable};

use super::tables::{
    COMPONENTS, COUNTERS, DEAD_LETTERS, EVENTS, IDEMPOTENCY, KEYS, OFFSETS, OUTBOX, OUTBOX_COUNTER, RETENTION,
    SERVICE_LOG, SNAPSHOT_HISTORY, SNAPSHOTS, TIMERS, VALUES, VERSION_HEADS, VERSIONS,
};
use super::{JournalError, RedbJournal, records};
use crate::domain::AsyncEffect;
use crate::journal::copy::{CHUNK, Copied, Rows};

/// Hands rows to `send` a chunk of one table at a time; collects the
/// chunks of one table and counts them.
struct Sender<'a> {
    send: &'a mut dyn FnMut(Rows) -> bool,
    counted: Copied,
}

impl Sender<'_> {
    /// Sends one chunk; false when the receiver is gone.
    fn send(&mut self, rows: Rows) -> bool {
        *self.counted.entry(rows.table()).or_default() += rows.len() as u64;
        (self.send)(rows)
    }

    /// Sends `rows` in chunks, made by `wrap`.
    fn send_all<T>(&mut self, rows: Vec<T>, wrap: fn(Vec<T>) -> Rows) -> Result<(), JournalError> {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<T> = rows.by_ref().take(CHUNK).collect();
            if !self.send(wrap(chunk)) {
                return Err(JournalError::Database("the copy's target stopped taking rows".into()));
            }
        }
        Ok(())
    }
}

impl RedbJournal {
    /// Reads every table and hands its rows to `send`, a chunk at a time,
    /// all from one point in time; answers the rows per table. Tables are
    /// read whole before they are sent, one after the other.
    pub(in crate::journal) fn export(&self, send: &mut dyn FnMut(Rows) -> bool) -> Result<Copied, JournalError> {
        let txn = self.db()?.begin_read()?;
        let mut out = Sender { send, counted: Copied::new() };

        let mut rows = Vec::new();
        for row in txn.open_table(COMPONENTS)?.iter()? {
            let (digest, bytes) = row?;
            rows.push((digest.value().to_string(), bytes.value().to_vec()));
        }
        out.send_all(rows, Rows::Components)?;
        let mut rows = Vec::new();
        for row in txn.open_table(VERSIONS)?.iter()? {
            let (key, record) = row?;
            let (service, version) = key.value();
            rows.push((service.to_string(), version, record.value().to_vec()));
        }
        out.send_all(rows, Rows::Versions)?;
        let mut rows = Vec::new();
        for row in txn.open_table(VERSION_HEADS)?.iter()? {
            let (service, last) = row?;
            rows.push((service.value().to_string(), last.value()));
        }
        out.send_all(rows, Rows::VersionHeads)?;

        // Events can be many: sent as they are read.
        let mut chunk = Vec::with_capacity(CHUNK);
        for row in txn.open_table(EVENTS)?.iter()? {
            let (key, record) = row?;
            let (service, entity, seq) = key.value();
            chunk.push((service.to_string(), entity.to_string(), seq, record.value().to_vec()));
            if chunk.len() == CHUNK {
                out.send_all(std::mem::take(&mut chunk), Rows::Events)?;
            }
        }
        out.send_all(chunk, Rows::Events)?;

        let mut rows = Vec::new();
        for row in txn.open_table(SNAPSHOTS)?.iter()? {
            let (key, record) = row?;
            let (service, entity) = key.value();
            let seq = records::SnapshotRecord::read(service, entity, record.value())?.seq;
            rows.push((service.to_string(), entity.to_string(), seq, record.value().to_vec()));
        }
        out.send_all(rows, Rows::Snapshots)?;
        let mut rows = Vec::new();
        for row in txn.open_table(SNAPSHOT_HISTORY)?.iter()? {
            let (key, record) = row?;
            let (service, entity, seq) = key.value();
            rows.push((service.to_string(), entity.to_string(), seq, record.value().to_vec()));
        }
        out.send_all(rows, Rows::SnapshotHistory)?;
        let mut rows = Vec::new();
        for row in txn.open_table(VALUES)?.iter()? {
            let (key, record) = row?;
            let (service, entity) = key.value();
            rows.push((service.to_string(), entity.to_string(), record.value().to_vec()));
        }
        out.send_all(rows, Rows::Values)?;
        let mut rows = Vec::new();
        for row in txn.open_table(super::tables::CRDT_REPLICAS)?.iter()? {
            let (key, value) = row?;
            let (service, entity, replica) = key.value();
            let (revision, record) = value.value();
            rows.push((service.to_string(), entity.to_string(), replica.to_string(), revision, record.to_vec()));
        }
        out.send_all(rows, Rows::CrdtReplicas)?;

        let mut rows = Vec::new();
        for row in txn.open_table(OUTBOX)?.iter()? {
            let (id, record) = row?;
            let entry: records::OutboxRecord<AsyncEffect> = records::decode(record.value(), "outbox entry")?;
            rows.push((id.value(), entry.effect.target(), record.value().to_vec()));
        }
        out.send_all(rows, Rows::Outbox)?;
        let last_id = txn.open_table(COUNTERS)?.get(OUTBOX_COUNTER)?.map_or(0, |v| v.value());
        if !out.send(Rows::OutboxCounter(last_id)) {
            return Err(JournalError::Database("the copy's target stopped taking rows".into()));
        }
        let mut rows = Vec::new();
        for row in txn.open_table(IDEMPOTENCY)?.iter()? {
            let (key, record) = row?;
            let (service, entity, name) = key.value();
            let expires = records::expiry(record.value())?;
            rows.push((service.to_string(), entity.to_string(), name.to_string(), expires, record.value().to_vec()));
        }
        out.send_all(rows, Rows::Idempotency)?;

        let mut chunk = Vec::with_capacity(CHUNK);
        for row in txn.open_table(SERVICE_LOG)?.iter()? {
            let (key, record) = row?;
            let (service, position) = key.value();
            let entry: records::LogEntryRecord<'_> = records::decode_borrowed(record.value(), "service log entry")?;
            chunk.push((service.to_string(), position, entry.entity.to_string(), entry.seq));
            if chunk.len() == CHUNK {
                out.send_all(std::mem::take(&mut chunk), Rows::ServiceLog)?;
            }
        }
        out.send_all(chunk, Rows::ServiceLog)?;

        let mut rows = Vec::new();
        for row in txn.open_table(OFFSETS)?.iter()? {
            let (key, position) = row?;
            let (subscriber, source) = key.value();
            rows.push((subscriber.to_string(), source.to_string(), position.value()));
        }
        out.send_all(rows, Rows::Offsets)?;
        let mut rows = Vec::new();
        for row in txn.open_table(DEAD_LETTERS)?.iter()? {
            let (key, record) = row?;
            let (subscriber, source, position) = key.value();
            rows.push((subscriber.to_string(), source.to_string(), position, record.value().to_vec()));
        }
        out.send_all(rows, Rows::DeadLetters)?;
        let mut rows = Vec::new();
        for row in txn.open_table(RETENTION)?.iter()? {
            let (service, k) = row?;
            rows.push((service.value().to_string(), k.value()));
        }
        out.send_all(rows, Rows::Retention)?;
        let mut rows = Vec::new();
        for row in txn.open_table(KEYS)?.iter()? {
            let (name, key) = row?;
            rows.push((name.value().to_string(), key.value().to_vec()));
        }
        out.send_all(rows, Rows::Keys)?;
        let mut rows = Vec::new();
        for row in txn.open_table(TIMERS)?.iter()? {
            let (key, record) = row?;
            let (service, entity, name) = key.value();
            let timer = crate::journal::Timer::read(service, entity, name, record.value())?;
            let (id, due) = (timer.id, timer.due_ms);
            rows.push((service.to_string(), entity.to_string(), name.to_string(), id, due, record.value().to_vec()));
        }
        out.send_all(rows, Rows::Timers)?;
        Ok(out.counted)
    }
}
