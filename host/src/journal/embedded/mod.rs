//! The embedded journal: every entity's events, snapshots and values, every
//! deployed component, and the host's bookkeeping, in one redb file with a
//! schema version (`schema.rs`).
//!
//! Reads go straight to redb (MVCC read transactions never block the
//! writer). Every command's writes (events or value state, snapshot, outbox
//! entries, idempotency record) go through [`Journal::commit`] to the
//! group-committing writer (`writer.rs`), which batches the commits of many
//! entities into one durable transaction. Bookkeeping that may be replayed
//! after a crash (outbox deliveries, subscription offsets) and deploys are
//! written directly.

mod bookkeeping;
mod compaction;
mod entities;
mod export;
#[cfg(any(test, feature = "fault-injection"))]
mod failing_storage;
mod migrate_v1;
mod outbox;
mod schema;
mod storage;
mod tables;
mod timers;
mod versions;
mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::Notify;

use super::books::{OutboxBook, RetentionBook};
use super::commit::{Wakeups, announce};
use super::contract::{
    Bookkeeping, EntityStore, HistoryStore, LeaseStore, OutboxStore, PendingCommit, RetentionStore, VersionStore,
};
use super::{
    AsOf, Commit, CommitStatus, CommitWatch, Compacted, DeadLetter, EntityHistory, EntityPosition, EntityWrite, Forked,
    IdempotencyRecord, JournalError, Lease, NewVersion, NotKept, OutboxEntry, Retention, SchemaStatus, ServiceLogEntry,
    StoredCrdt, StoredSnapshot, StoredValue, VersionMeta, records,
};
use super::{now_ms, panic_message};
use crate::domain::Event;
use crate::metrics::Metrics;
#[cfg(any(test, feature = "fault-injection"))]
pub use failing_storage::FailingStorage;

pub use storage::Reopen;
use storage::Storage;
use tables::{EVENTS, SNAPSHOTS};
use writer::{GroupCommitter, Signals};

/// The journal in one redb file.
pub struct RedbJournal {
    db: Arc<Storage>,
    committer: GroupCommitter,
    signals: Signals,
    outbox: Arc<OutboxBook>,
    retention: Arc<RetentionBook>,
    schema: SchemaStatus,
}

impl RedbJournal {
    /// Opens (or creates) the journal file at `path` and starts its writer.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<Self, JournalError> {
        let db = Database::create(path)?;
        Self::from_database(db, metrics)
    }

    /// Wraps an opened database (for example one on an injected storage
    /// backend): checks its schema version, migrating an older journal, and
    /// starts the writer.
    pub fn from_database(db: Database, metrics: Arc<Metrics>) -> Result<Self, JournalError> {
        Self::with_storage(db, None, metrics)
    }

    /// Like [`from_database`](Self::from_database), reopening the database
    /// with `reopen` after the storage fails, so the host recovers once the
    /// storage works again (a disk that had filled up, say).
    pub fn with_reopen(db: Database, reopen: Reopen, metrics: Arc<Metrics>) -> Result<Self, JournalError> {
        Self::with_storage(db, Some(reopen), metrics)
    }

    fn with_storage(db: Database, reopen: Option<Reopen>, metrics: Arc<Metrics>) -> Result<Self, JournalError> {
        let schema = schema::open(&db)?;
        let outbox = Arc::new(outbox::read_book(&db)?);
        let retention = Arc::new(compaction::read_book(&db)?);
        let db = Storage::new(db, reopen);
        let signals = Signals { committed: Arc::new(CommitWatch::default()), wake: Wakeups::default() };
        let committer = GroupCommitter::start(db.clone(), metrics, signals.clone(), outbox.clone(), retention.clone())?;
        Ok(Self { db, committer, signals, outbox, retention, schema })
    }

    /// The database under the journal.
    fn db(&self) -> Result<Arc<Database>, JournalError> {
        self.db.get()
    }
}

/// One host opens a redb file: it holds every lease.
impl LeaseStore for RedbJournal {}

impl EntityStore for RedbJournal {
    /// What opening found: a new journal, a current one, or one migrated.
    fn schema_status(&self) -> SchemaStatus {
        self.schema
    }

    /// Queues a run of commits at once; see [`EntityStore::commit_run`].
    fn commit_run(&self, commits: Vec<Commit>) -> Vec<PendingCommit> {
        self.committer.submit_run(commits)
    }

    /// The waiters of commits that append events: watch an entity or a
    /// service through it.
    fn commits(&self) -> &Arc<CommitWatch> {
        &self.signals.committed
    }

    /// Woken after each commit that adds outbox entries.
    fn outbox_signal(&self) -> Arc<Notify> {
        self.signals.wake.outbox.clone()
    }

    /// Woken after each commit that sets a timer.
    fn timer_signal(&self) -> Arc<Notify> {
        self.signals.wake.timers.clone()
    }

    /// False once the storage failed in a way that needs a restart to repair.
    fn is_healthy(&self) -> bool {
        !self.committer.has_failed()
    }

    /// Where an entity's log stands.
    fn position(&self, service: &str, entity: &str) -> Result<EntityPosition, JournalError> {
        let txn = self.db()?.begin_read()?;
        let last_seq = last_seq(&txn.open_table(EVENTS)?, service, entity)?;
        let snapshot_seq = match txn.open_table(SNAPSHOTS)?.get((service, entity))? {
            Some(row) => records::SnapshotRecord::read(service, entity, row.value())?.seq,
            None => 0,
        };
        Ok(EntityPosition { last_seq, snapshot_seq })
    }

    /// Loads what a cold entity needs: its latest snapshot and the events after it.
    fn load_entity(&self, service: &str, entity: &str) -> Result<EntityHistory, JournalError> {
        let txn = self.db()?.begin_read()?;
        let snapshot = latest_snapshot(&txn, service, entity)?;
        let from = snapshot.as_ref().map_or(1, |s| s.seq + 1);
        let events = read_events(&txn.open_table(EVENTS)?, service, entity, from, usize::MAX, usize::MAX)?;
        Ok(EntityHistory::new(snapshot, events))
    }

    /// A value entity's state and revision, read together.
    fn load_value(&self, service: &str, entity: &str) -> Result<StoredValue, JournalError> {
        let txn = self.db()?.begin_read()?;
        let revision = txn.open_table(tables::VALUE_REVISIONS)?.get((service, entity))?.map_or(0, |v| v.value());
        let state = match txn.open_table(tables::VALUES)?.get((service, entity))? {
            Some(row) => Some(records::ValueRecord::read(service, entity, row.value())?.state.to_vec()),
            None => None,
        };
        Ok(StoredValue { state, revision })
    }

    fn load_crdt(&self, service: &str, entity: &str) -> Result<StoredCrdt, JournalError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(tables::CRDT_REPLICAS)?;
        let mut replicas = Vec::new();
        for row in table.range((service, entity, "")..)? {
            let (key, value) = row?;
            let (s, e, replica) = key.value();
            if (s, e) != (service, entity) {
                break;
            }
            let (revision, record) = value.value();
            replicas.push(crate::journal::crdt::decode_row(service, entity, replica, revision, record)?);
        }
        Ok(StoredCrdt { replicas })
    }

    /// The seq of the entity's last event, else its value's revision.
    fn head(&self, service: &str, entity: &str) -> Result<u64, JournalError> {
        let txn = self.db()?.begin_read()?;
        match last_seq(&txn.open_table(EVENTS)?, service, entity)? {
            0 => Ok(txn.open_table(tables::VALUE_REVISIONS)?.get((service, entity))?.map_or(0, |v| v.value())),
            seq => Ok(seq),
        }
    }

    /// Reads committed events of an entity from seq `from` on: up to
    /// `limit` of them, and no more once their payloads pass `max_bytes`
    /// (but always one, if there is one).
    fn events_page(
        &self,
        service: &str,
        entity: &str,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Event>, JournalError> {
        let txn = self.db()?.begin_read()?;
        read_events(&txn.open_table(EVENTS)?, service, entity, from, limit, max_bytes)
    }

    /// The key of the compiled-code cache's checksums: made once per
    /// journal, so a cache file made for another journal, or for another
    /// component, is never taken for this one's.
    fn compiled_cache_key(&self) -> Result<[u8; 32], JournalError> {
        let txn = self.db()?.begin_read()?;
        let row = txn.open_table(tables::KEYS)?.get(tables::COMPILED_CACHE_KEY)?;
        let key = row.as_ref().map(|v| v.value()).unwrap_or_default();
        key.try_into().map_err(|_| JournalError::Corrupt("the compiled-code cache's key".into()))
    }
}

/// The latest snapshot of `service/entity`, if one was taken.
fn latest_snapshot(
    txn: &redb::ReadTransaction,
    service: &str,
    entity: &str,
) -> Result<Option<StoredSnapshot>, JournalError> {
    match txn.open_table(SNAPSHOTS)?.get((service, entity))? {
        Some(row) => {
            let record = records::SnapshotRecord::read(service, entity, row.value())?;
            Ok(Some(StoredSnapshot { seq: record.seq, version: record.version, state: record.state.to_vec() }))
        }
        None => Ok(None),
    }
}

/// The seq of an entity's first kept event (0 when there is none): 1,
/// unless compaction dropped the first ones.
fn first_seq(
    events: &impl ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
    service: &str,
    entity: &str,
) -> Result<u64, JournalError> {
    let first = events.range((service, entity, 1)..=(service, entity, u64::MAX))?.next().transpose()?;
    Ok(first.map_or(0, |(key, _)| key.value().2))
}

/// The last position of `service`'s log (0 when it has no events).
fn log_head(log: &impl ReadableTable<(&'static str, u64), &'static [u8]>, service: &str) -> Result<u64, JournalError> {
    let last = log.range((service, 1)..=(service, u64::MAX))?.next_back().transpose()?;
    Ok(last.map_or(0, |(key, _)| key.value().1))
}

/// The seq of an entity's last committed event (0 when there is none).
fn last_seq(
    events: &impl ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
    service: &str,
    entity: &str,
) -> Result<u64, JournalError> {
    let last = events.range((service, entity, 1)..=(service, entity, u64::MAX))?.next_back().transpose()?;
    Ok(last.map_or(0, |(key, _)| key.value().2))
}

fn read_events(
    events: &impl ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
    service: &str,
    entity: &str,
    from: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<Event>, JournalError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for row in events.range((service, entity, from.max(1))..=(service, entity, u64::MAX))?.take(limit) {
        if bytes >= max_bytes {
            break;
        }
        let (key, row) = row?;
        let seq = key.value().2;
        let record = records::EventRecord::read(service, entity, seq, row.value())?;
        bytes += record.payload.len();
        out.push(Event { seq, version: record.version, payload: record.payload.to_vec() });
    }
    Ok(out)
}

#[cfg(test)]
mod migration_tests;
#[cfg(test)]
mod tests;
