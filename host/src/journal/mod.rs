//! The journal: every entity's events, snapshots and values, every deployed
//! component, and the host's bookkeeping, with a schema version.
//!
//! [`Journal`] (`contract.rs`) is what the host sees; two journals keep
//! it: [`RedbJournal`], one embedded redb file (the default), and the
//! PostgreSQL one, which many hosts can share. Both write every command's
//! effects in one atomic, durable commit, group-committed: one transaction
//! serves the commits of many entities.
//!
//! # Layout
//!
//! - `contract.rs`: the [`Journal`] traits.
//! - `commit.rs`: what one command writes, and how its commit ended.
//! - `history.rs`: states of the past, forks, retention, the service log.
//! - `records.rs`: the host's records as both journals store them.
//! - `timers.rs`: durable timers, by owner and by due time.
//! - `crdt.rs`: CRDT entities, a row per entity and replica.
//! - `books.rs`: what a journal keeps in memory beside its tables.
//! - `commit_watch.rs`: who waits for which entity's commits.
//! - `copy.rs`: `journal copy`, from a redb journal to a PostgreSQL one.
//! - `embedded/`: the embedded journal, on redb.
//! - `postgres/`: the journal on PostgreSQL, for one host or many.

mod books;
mod commit;
mod commit_queue;
mod commit_watch;
mod contract;
mod copy;
mod crdt;
mod embedded;
mod history;
mod postgres;
mod records;
mod timers;

use serde::Serialize;

use crate::domain::{Event, ServiceKind};
pub use commit::{Commit, CommitStatus, EntityWrite};
pub use commit_watch::{CommitWatch, Watching};
pub use contract::{EntityStore, Journal};
pub use copy::copy;
pub use crdt::{MergedCrdt, StoredCrdt};
#[cfg(any(test, feature = "fault-injection"))]
#[allow(unused_imports)]
pub use embedded::FailingStorage;
pub use embedded::{RedbJournal, Reopen};
pub use history::{AsOf, Compacted, Forked, NotKept, Retention, ServiceLogEntry};
pub use postgres::PgJournal;
pub use records::{DeadLetter, IdempotencyRecord, OutboxEntry};
pub use timers::{MAX_TIMER_DELAY, MAX_TIMER_NAME, Timer, TimerChange, TimerGuard};

/// What opening a journal found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaStatus {
    /// A new, empty journal, created at the current version.
    Created,
    /// A journal already at the current version.
    Current,
    /// A journal migrated from an older version.
    Migrated {
        /// The version it was at.
        from: u64,
        /// The version it is at now.
        to: u64,
    },
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".into()
    }
}

/// The wall-clock time the journal's records speak in (when an idempotency
/// record expires, when an outbox entry is due): ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A random number that tells this host from the others sharing its
/// journal (its id, its commit notifications' tag); the clock, on a system
/// without randomness.
pub fn host_tag() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return now_ms();
    }
    u64::from_le_bytes(bytes)
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
    /// The journal's storage failed (a full disk, say), and commits are
    /// refused until a probe write lands again; nothing was written.
    #[error("the journal refuses writes until its storage works again ({0})")]
    WritesRefused(String),
    /// The journal writer has stopped.
    #[error("the journal writer has stopped")]
    WriterStopped,
    /// The journal's database cannot be reached, or lost the connection
    /// mid-statement; retry. Nothing unacknowledged is assumed written.
    #[error("the journal's database is unavailable: {0}")]
    Unavailable(String),
    /// The journal's database refused a statement.
    #[error("database error: {0}")]
    Database(String),
    /// A write of lease-bound work named a lease its host no longer holds:
    /// another host took it over. Nothing was written.
    #[error("the lease {0} was taken over by another host")]
    LeaseLost(String),
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

impl EntityHistory {
    /// What folds to an entity: `snapshot`, and the `events` after it.
    pub fn new(snapshot: Option<StoredSnapshot>, events: Vec<Event>) -> Self {
        let last_seq = history::folded_seq(snapshot.as_ref(), &events);
        Self { snapshot, events, last_seq }
    }
}

/// One host's latest heartbeat in a journal hosts share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HostRecord {
    /// The host's id, made when it started.
    pub id: String,
    /// How other hosts reach it (`--advertise-url`).
    pub url: String,
    /// When it last said it was alive, in ms since the Unix epoch.
    pub last_seen_ms: u64,
}

/// A lease this host holds on work that runs on one host at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What the lease is for (`outbox`, `subscription/{subscriber}/{source}`).
    pub name: String,
    /// The id of the host holding it.
    pub holder: String,
    /// Which taking of the lease this is: every new holder gets a higher one.
    pub epoch: u64,
}

/// A lease as the journal has it, as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LeaseRecord {
    /// What the lease is for.
    pub name: String,
    /// The host that took it last.
    pub holder: String,
    /// Which taking of the lease this is.
    pub epoch: u64,
    /// When it expires unless renewed, in ms since the Unix epoch by the
    /// database's clock (0: let go).
    pub expires_at_ms: u64,
}

/// A value entity's stored state, and its revision: how many commits have
/// written it (0: never), which its next write must expect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredValue {
    /// The state; `None` when there is none (never written, or deleted).
    pub state: Option<Vec<u8>>,
    /// The revision.
    pub revision: u64,
}

/// Where an entity's log stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EntityPosition {
    /// The seq of the last committed event (0 when there is none).
    pub last_seq: u64,
    /// The seq of the latest snapshot (0 when there is none).
    pub snapshot_seq: u64,
}

/// A stored entity in a listing of its service's entities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EntityHead {
    /// Its id.
    pub entity: String,
    /// Its last event's seq (a value entity: its revision).
    pub last_seq: u64,
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
    /// The hosts its guests may send HTTP requests to, as allow-list
    /// entries (see [`crate::outbound::AllowList`]).
    pub allow_http: Vec<String>,
}

/// The metadata of one deployed version of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// The hosts its guests may send HTTP requests and webhooks to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_http: Vec<String>,
}
