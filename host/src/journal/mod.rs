//! The journal: every entity's events and snapshots, and every deployed
//! component, in one embedded redb database.
//!
//! Reads go straight to redb (MVCC read transactions never block the writer).
//! Every command's writes (events, value state, outbox entries, idempotency
//! record) go through the [`GroupCommitter`], which batches the commits of
//! many entities into one durable write transaction. Bookkeeping that may be
//! replayed after a crash (outbox deliveries, subscription offsets) is
//! written directly.

mod bookkeeping;
#[cfg(any(test, feature = "fault-injection"))]
mod failing_storage;
mod records;
mod tables;
mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
pub use bookkeeping::ServiceLogEntry;
#[cfg(any(test, feature = "fault-injection"))]
pub use failing_storage::FailingStorage;
pub use records::{IdempotencyRecord, Invocation, OutboxEntry, RecordedOutcome, RecordedReply};
use tables::{COMPONENTS, COUNTERS, EVENTS, IDEMPOTENCY, OFFSETS, OUTBOX, SERVICE_LOG, SNAPSHOTS, VALUES, VERSIONS};
use tokio::sync::{Notify, broadcast};
use writer::Signals;
pub use writer::{Commit, Committed, EntityWrite, GroupCommitter};

/// The wall-clock time the journal's records speak in (when an idempotency
/// record expires, when an outbox entry is due): ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The storage engine failed (I/O error, corruption, ...).
    #[error("storage error: {0}")]
    Storage(#[from] redb::Error),
    /// An append expected a different last sequence number: another writer
    /// got there first. Nothing of the append was written.
    #[error("append conflict on {service}/{entity}: expected seq {expected}, found {found}")]
    Conflict {
        /// The service of the entity.
        service: String,
        /// The entity id.
        entity: String,
        /// The last seq the append was computed against.
        expected: u64,
        /// The last seq in the journal.
        found: u64,
    },
    /// A live idempotency record already holds the commit's key: a command
    /// with the same key committed first. Nothing of the commit was written.
    #[error("idempotency key {key:?} on {service}/{entity} is already recorded")]
    KeyRecorded {
        /// The service of the entity.
        service: String,
        /// The entity id (or an action's routing key).
        entity: String,
        /// The idempotency key.
        key: String,
    },
    /// Stored metadata could not be decoded.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The transaction holding the append failed to commit; nothing of it
    /// (nor of the other appends in the same batch) was written.
    #[error("commit failed: {0}")]
    CommitFailed(String),
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

/// One committed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the entity's log, from 1.
    pub seq: u64,
    /// The event as the guest encoded it.
    pub payload: Vec<u8>,
}

/// A persisted snapshot of an entity's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The seq of the last event folded into `state`.
    pub seq: u64,
    /// The state as the guest encoded it.
    pub state: Vec<u8>,
}

/// What a cold entity is rebuilt from: its latest snapshot and the events after it.
#[derive(Debug, Default)]
pub struct EntityHistory {
    /// The latest snapshot, if one was taken.
    pub snapshot: Option<StoredSnapshot>,
    /// The events after the snapshot (or all of them), in seq order.
    pub events: Vec<StoredEvent>,
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

/// The metadata of one deployed version of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// The service name.
    pub service: String,
    /// The version number, from 1.
    pub version: u32,
    /// SHA-256 of the component bytes, lowercase hex.
    pub digest: String,
    /// The entity kind the component implements, e.g. `event-sourced`.
    pub kind: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// When it was deployed, in milliseconds since the Unix epoch.
    pub deployed_at_ms: u64,
    /// The services whose events this version (an action) subscribes to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<String>,
}

/// The embedded journal.
pub struct Journal {
    db: Arc<Database>,
    committer: GroupCommitter,
    signals: Signals,
}

impl Journal {
    /// Opens (or creates) the journal file at `path` and starts its writer.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<Self, JournalError> {
        let db = Database::create(path)?;
        Self::from_database(db, metrics)
    }

    /// Wraps an opened database (for example one on an injected storage backend).
    pub fn from_database(db: Database, metrics: Arc<Metrics>) -> Result<Self, JournalError> {
        let txn = db.begin_write()?;
        txn.open_table(EVENTS)?;
        txn.open_table(SNAPSHOTS)?;
        txn.open_table(COMPONENTS)?;
        txn.open_table(VERSIONS)?;
        txn.open_table(VALUES)?;
        txn.open_table(OUTBOX)?;
        txn.open_table(IDEMPOTENCY)?;
        txn.open_table(SERVICE_LOG)?;
        txn.open_table(COUNTERS)?;
        txn.open_table(OFFSETS)?;
        txn.commit()?;
        let db = Arc::new(db);
        let signals = Signals { committed: broadcast::channel(4096).0, outbox: Arc::new(Notify::new()) };
        let committer = GroupCommitter::start(db.clone(), metrics, signals.clone())?;
        Ok(Self { db, committer, signals })
    }

    /// Durably writes everything one command produced, atomically. Resolves
    /// once the write transaction holding it has committed.
    pub async fn commit(&self, commit: Commit) -> Result<(), JournalError> {
        self.committer.submit(commit).await
    }

    /// Queues a commit at once and answers a future that resolves when it
    /// is durable. Commits submitted one after the other are written in that
    /// order, possibly in one transaction.
    pub fn submit(&self, commit: Commit) -> impl Future<Output = Result<(), JournalError>> + use<> {
        self.committer.submit(commit)
    }

    /// A receiver of every commit that appends events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.signals.committed.subscribe()
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
        let txn = self.db.begin_read()?;
        let last_seq = last_seq(&txn.open_table(EVENTS)?, service, entity)?;
        let snapshot_seq = txn.open_table(SNAPSHOTS)?.get((service, entity))?.map_or(0, |v| v.value().0);
        Ok(EntityPosition { last_seq, snapshot_seq })
    }

    /// Loads what a cold entity needs: its latest snapshot and the events after it.
    pub fn load_entity(&self, service: &str, entity: &str) -> Result<EntityHistory, JournalError> {
        let txn = self.db.begin_read()?;
        let snapshots = txn.open_table(SNAPSHOTS)?;
        let snapshot = snapshots.get((service, entity))?.map(|v| {
            let (seq, state) = v.value();
            StoredSnapshot { seq, state: state.to_vec() }
        });
        let from = snapshot.as_ref().map_or(1, |s| s.seq + 1);
        let events = read_events(&txn.open_table(EVENTS)?, service, entity, from, usize::MAX)?;
        let last_seq = events.last().map(|e| e.seq).or(snapshot.as_ref().map(|s| s.seq)).unwrap_or(0);
        Ok(EntityHistory { snapshot, events, last_seq })
    }

    /// Reads up to `limit` committed events of an entity, from seq `from` on.
    pub fn events(
        &self,
        service: &str,
        entity: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let txn = self.db.begin_read()?;
        read_events(&txn.open_table(EVENTS)?, service, entity, from, limit)
    }

    /// Stores a new deployed version: its metadata and component bytes, durably.
    pub fn save_version(&self, meta: &VersionMeta, component: &[u8]) -> Result<(), JournalError> {
        let json = serde_json::to_string(meta).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        let txn = self.db.begin_write()?;
        {
            let mut versions = txn.open_table(VERSIONS)?;
            let key = (meta.service.as_str(), meta.version);
            if versions.get(key)?.is_some() {
                return Err(JournalError::Corrupt(format!(
                    "version {} of {} already exists",
                    meta.version, meta.service
                )));
            }
            versions.insert(key, json.as_str())?;
            txn.open_table(COMPONENTS)?.insert(key, component)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes every deployed version of `service` (metadata and component
    /// bytes), durably; answers how many there were. Its entities' data stays.
    pub fn delete_versions(&self, service: &str) -> Result<usize, JournalError> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut versions = txn.open_table(VERSIONS)?;
            let mut components = txn.open_table(COMPONENTS)?;
            let range = (service, 0)..=(service, u32::MAX);
            let keys: Vec<u32> =
                versions.range(range.clone())?.map(|row| row.map(|(k, _)| k.value().1)).collect::<Result<_, _>>()?;
            for version in &keys {
                versions.remove((service, *version))?;
                components.remove((service, *version))?;
            }
            keys.len()
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Every deployed version of every service, ordered by (service, version).
    pub fn versions(&self) -> Result<Vec<VersionMeta>, JournalError> {
        let txn = self.db.begin_read()?;
        let versions = txn.open_table(VERSIONS)?;
        let mut out = Vec::new();
        for row in versions.iter()? {
            let (_, json) = row?;
            let meta = serde_json::from_str(json.value()).map_err(|e| JournalError::Corrupt(e.to_string()))?;
            out.push(meta);
        }
        Ok(out)
    }

    /// The component bytes of one deployed version.
    pub fn component(&self, service: &str, version: u32) -> Result<Option<Vec<u8>>, JournalError> {
        let txn = self.db.begin_read()?;
        let components = txn.open_table(COMPONENTS)?;
        Ok(components.get((service, version))?.map(|v| v.value().to_vec()))
    }
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
) -> Result<Vec<StoredEvent>, JournalError> {
    let mut out = Vec::new();
    for row in events.range((service, entity, from.max(1))..=(service, entity, u64::MAX))?.take(limit) {
        let (key, payload) = row?;
        out.push(StoredEvent { seq: key.value().2, payload: payload.value().to_vec() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
