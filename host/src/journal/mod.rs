//! The journal: every entity's events, snapshots and values, every deployed
//! component, and the host's bookkeeping, in one embedded redb database
//! with a schema version (`schema.rs`).
//!
//! Reads go straight to redb (MVCC read transactions never block the
//! writer). Every command's writes (events or value state, snapshot, outbox
//! entries, idempotency record) go through [`Journal::commit`] to the
//! group-committing writer (`writer.rs`), which batches the commits of many
//! entities into one durable transaction. Bookkeeping that may be replayed
//! after a crash (outbox deliveries, subscription offsets) and deploys are
//! written directly.

mod bookkeeping;
mod commit_watch;
mod entities;
#[cfg(any(test, feature = "fault-injection"))]
mod failing_storage;
mod migrate_v1;
mod outbox;
mod records;
mod retention;
mod schema;
mod storage;
mod tables;
mod versions;
mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};
use serde::Serialize;
use tokio::sync::Notify;

use crate::domain::{Event, ServiceKind};
use crate::metrics::Metrics;
pub use bookkeeping::ServiceLogEntry;
pub use commit_watch::{CommitWatch, Watching};
pub use entities::{AsOf, Forked, NotKept};
#[cfg(any(test, feature = "fault-injection"))]
pub use failing_storage::FailingStorage;
pub use records::{DeadLetter, IdempotencyRecord, OutboxEntry};
pub use retention::Retention;
use retention::RetentionBook;
pub use schema::{SCHEMA_VERSION, SchemaStatus};
pub use storage::Reopen;
use storage::Storage;
use tables::{EVENTS, SNAPSHOTS};
pub use writer::panic_message;
pub use writer::{Commit, CommitStatus, EntityWrite};
use writer::{GroupCommitter, Signals};

/// The wall-clock time the journal's records speak in (when an idempotency
/// record expires, when an outbox entry is due): ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Why a journal operation failed. A commit refused for a normal reason (a
/// stale seq, a key already recorded) is not an error: see [`CommitStatus`].
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The storage engine failed (I/O error, corruption, ...).
    #[error("storage error: {0}")]
    Storage(#[from] redb::Error),
    /// A transaction's durability could not be set.
    #[error("cannot set a transaction's durability: {0}")]
    Durability(#[from] redb::SetDurabilityError),
    /// Stored data could not be decoded.
    #[error("unreadable stored data: {0}")]
    Corrupt(String),
    /// A stored event, snapshot or value does not match its checksum: it
    /// was changed or damaged on disk. It is never served or folded.
    #[error("{0} does not match its checksum: it was changed or damaged on disk")]
    CorruptRecord(String),
    /// A record could not be encoded.
    #[error("cannot encode a record: {0}")]
    Encode(String),
    /// The journal was written by a newer wasmstate than this one.
    #[error(
        "the journal has schema version {found}, newer than the {supported} this wasmstate reads; \
         run the wasmstate that wrote it (or a newer one)"
    )]
    SchemaTooNew {
        /// The version stored in the journal.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },
    /// A deployed version's number is taken (the journal gives numbers out
    /// itself, so this means the journal was changed behind its back).
    #[error("version {version} of {service} already exists")]
    VersionExists {
        /// The service.
        service: String,
        /// The version number.
        version: u32,
    },
    /// The transaction holding the commit failed; nothing of it (nor of the
    /// other commits in the same batch) was written.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// The journal's storage failed and is being opened again; retry.
    #[error("the journal's storage is being reopened after a failure")]
    Reopening,
    /// The journal writer has stopped.
    #[error("the journal writer has stopped")]
    WriterStopped,
}

macro_rules! storage_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for JournalError {
            fn from(e: $t) -> Self {
                JournalError::Storage(e.into())
            }
        }
    )*};
}
storage_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A persisted snapshot of an entity's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The seq of the last event folded into `state`.
    pub seq: u64,
    /// The version of the service that folded it (0: not recorded).
    pub version: u32,
    /// The state as the guest encoded it.
    pub state: Vec<u8>,
}

/// What a cold entity is rebuilt from: its latest snapshot and the events after it.
#[derive(Debug, Default)]
pub struct EntityHistory {
    /// The latest snapshot, if one was taken.
    pub snapshot: Option<StoredSnapshot>,
    /// The events after the snapshot (or all of them), in seq order.
    pub events: Vec<Event>,
    /// The seq of the entity's last committed event (0 for a new entity).
    pub last_seq: u64,
}

/// Where an entity's log stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EntityPosition {
    /// The seq of the last committed event (0 when there is none).
    pub last_seq: u64,
    /// The seq of the latest snapshot (0 when there is none).
    pub snapshot_seq: u64,
}

/// A version to deploy, before the journal gives it its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    /// The service name.
    pub service: String,
    /// SHA-256 of the component bytes, lowercase hex.
    pub digest: String,
    /// The kind of service the component implements.
    pub kind: ServiceKind,
    /// When it is deployed, in ms since the Unix epoch.
    pub deployed_at_ms: u64,
    /// The services whose events this version (an action) subscribes to.
    pub subscriptions: Vec<String>,
}

/// The metadata of one deployed version of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionMeta {
    /// The service name.
    pub service: String,
    /// The version number: from 1, never given twice for one service name,
    /// even after the service is deleted and deployed again.
    pub version: u32,
    /// SHA-256 of the component bytes, lowercase hex.
    pub digest: String,
    /// The kind of service the component implements.
    pub kind: ServiceKind,
    /// Size of the component in bytes.
    pub size: u64,
    /// When it was deployed, in milliseconds since the Unix epoch.
    pub deployed_at_ms: u64,
    /// The services whose events this version (an action) subscribes to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<String>,
}

/// The embedded journal.
pub struct Journal {
    db: Arc<Storage>,
    committer: GroupCommitter,
    signals: Signals,
    outbox: Arc<outbox::OutboxBook>,
    retention: Arc<RetentionBook>,
    schema: SchemaStatus,
}

impl Journal {
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
        let outbox = Arc::new(outbox::OutboxBook::read(&db)?);
        let retention = Arc::new(RetentionBook::read(&db)?);
        let db = Storage::new(db, reopen);
        let signals = Signals { committed: Arc::new(CommitWatch::default()), outbox: Arc::new(Notify::new()) };
        let committer = GroupCommitter::start(db.clone(), metrics, signals.clone(), outbox.clone(), retention.clone())?;
        Ok(Self { db, committer, signals, outbox, retention, schema })
    }

    /// The database under the journal.
    fn db(&self) -> Result<Arc<Database>, JournalError> {
        self.db.get()
    }

    /// What opening found: a new journal, a current one, or one migrated.
    pub fn schema_status(&self) -> SchemaStatus {
        self.schema
    }

    /// Durably writes everything one command produced, atomically: queues
    /// the commit at once (commits queued one after the other are written
    /// in that order, possibly in one transaction) and answers a future
    /// that resolves once it is durable or refused.
    pub fn commit(&self, commit: Commit) -> impl Future<Output = Result<CommitStatus, JournalError>> + use<> {
        self.committer.submit(commit)
    }

    /// The waiters of commits that append events: watch an entity or a
    /// service through it.
    pub fn commits(&self) -> &Arc<CommitWatch> {
        &self.signals.committed
    }

    /// Woken after each commit that adds outbox entries.
    pub fn outbox_signal(&self) -> Arc<Notify> {
        self.signals.outbox.clone()
    }

    /// False once the storage failed in a way that needs a restart to repair.
    pub fn is_healthy(&self) -> bool {
        !self.committer.has_failed()
    }

    /// Where an entity's log stands.
    pub fn position(&self, service: &str, entity: &str) -> Result<EntityPosition, JournalError> {
        let txn = self.db()?.begin_read()?;
        let last_seq = last_seq(&txn.open_table(EVENTS)?, service, entity)?;
        let snapshot_seq = match txn.open_table(SNAPSHOTS)?.get((service, entity))? {
            Some(row) => records::SnapshotRecord::read(service, entity, row.value())?.seq,
            None => 0,
        };
        Ok(EntityPosition { last_seq, snapshot_seq })
    }

    /// Loads what a cold entity needs: its latest snapshot and the events after it.
    pub fn load_entity(&self, service: &str, entity: &str) -> Result<EntityHistory, JournalError> {
        let txn = self.db()?.begin_read()?;
        let snapshot = latest_snapshot(&txn, service, entity)?;
        let from = snapshot.as_ref().map_or(1, |s| s.seq + 1);
        let events = read_events(&txn.open_table(EVENTS)?, service, entity, from, usize::MAX, usize::MAX)?;
        let last_seq = events.last().map(|e| e.seq).or(snapshot.as_ref().map(|s| s.seq)).unwrap_or(0);
        Ok(EntityHistory { snapshot, events, last_seq })
    }

    /// Reads up to `limit` committed events of an entity, from seq `from` on.
    pub fn events(&self, service: &str, entity: &str, from: u64, limit: usize) -> Result<Vec<Event>, JournalError> {
        self.events_page(service, entity, from, limit, usize::MAX)
    }

    /// Reads committed events of an entity from seq `from` on: up to
    /// `limit` of them, and no more once their payloads pass `max_bytes`
    /// (but always one, if there is one).
    pub fn events_page(
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
    pub fn compiled_cache_key(&self) -> Result<[u8; 32], JournalError> {
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
