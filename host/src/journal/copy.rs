//! `wasmstate journal copy`: moves a whole redb journal into a PostgreSQL
//! one, so a user who outgrows one machine keeps their data.
//!
//! The redb journal reads every table in one read transaction and hands
//! its rows over a chunk at a time ([`Rows`]); the PostgreSQL journal
//! writes them all in one transaction, refusing a target that holds
//! anything, then counts what it holds and compares. The records move as
//! they are stored, checksums and all.

use std::collections::BTreeMap;
use std::sync::mpsc;

use super::{JournalError, PgJournal, RedbJournal};

/// How many rows one chunk holds at most.
pub(super) const CHUNK: usize = 1_000;

/// A chunk of one table's rows, as both journals store them.
#[derive(Debug)]
pub(super) enum Rows {
    /// digest, component bytes.
    Components(Vec<(String, Vec<u8>)>),
    /// service, version, `VersionRecord`.
    Versions(Vec<(String, u32, Vec<u8>)>),
    /// service, last version number given.
    VersionHeads(Vec<(String, u32)>),
    /// service, entity, seq, `EventRecord`.
    Events(Vec<(String, String, u64, Vec<u8>)>),
    /// service, entity, seq, `SnapshotRecord` (the latest per entity).
    Snapshots(Vec<(String, String, u64, Vec<u8>)>),
    /// service, entity, seq, `SnapshotRecord` (the kept history).
    SnapshotHistory(Vec<(String, String, u64, Vec<u8>)>),
    /// service, entity, `ValueRecord`.
    Values(Vec<(String, String, Vec<u8>)>),
    /// service, entity, replica, revision, `CrdtRecord`.
    CrdtReplicas(Vec<CrdtRow>),
    /// id, target (a service, or a service's webhooks to one origin), `OutboxRecord`.
    Outbox(Vec<(u64, String, Vec<u8>)>),
    /// The last outbox id given.
    OutboxCounter(u64),
    /// service, entity, key, expiry, `KeyRecord`.
    Idempotency(Vec<(String, String, String, u64, Vec<u8>)>),
    /// service, position, entity, seq.
    ServiceLog(Vec<(String, u64, String, u64)>),
    /// subscriber, source, position.
    Offsets(Vec<(String, String, u64)>),
    /// subscriber, source, position, `DeadLetter`.
    DeadLetters(Vec<(String, String, u64, Vec<u8>)>),
    /// service, K of `retain=snapshots:K`.
    Retention(Vec<(String, u32)>),
    /// name, key.
    Keys(Vec<(String, Vec<u8>)>),
    /// A timer: its owner's service and entity, name, id, due time, `Timer` row.
    Timers(Vec<TimerRow>),
}

/// A CRDT entity's row of one replica as both journals store it: service,
/// entity, replica, revision, record.
pub(super) type CrdtRow = (String, String, String, u64, Vec<u8>);

/// A timer as both journals store it: service, entity, name, id, due ms, record.
pub(super) type TimerRow = (String, String, String, u64, u64, Vec<u8>);

impl Rows {
    /// The table the rows belong to, as `journal copy` reports it.
    pub fn table(&self) -> &'static str {
        match self {
            Rows::Components(_) => "components",
            Rows::Versions(_) => "versions",
            Rows::VersionHeads(_) => "version_heads",
            Rows::Events(_) => "events",
            Rows::Snapshots(_) => "snapshots",
            Rows::SnapshotHistory(_) => "snapshot_history",
            Rows::Values(_) => "values",
            Rows::CrdtReplicas(_) => "crdt_replicas",
            Rows::Outbox(_) => "outbox",
            Rows::OutboxCounter(_) => "outbox_counter",
            Rows::Idempotency(_) => "idempotency",
            Rows::ServiceLog(_) => "service_log",
            Rows::Offsets(_) => "offsets",
            Rows::DeadLetters(_) => "dead_letters",
            Rows::Retention(_) => "retention",
            Rows::Keys(_) => "keys",
            Rows::Timers(_) => "timers",
        }
    }

    /// How many rows the chunk holds (the outbox counter is no row).
    pub fn len(&self) -> usize {
        match self {
            Rows::Components(r) | Rows::Keys(r) => r.len(),
            Rows::Versions(r) => r.len(),
            Rows::VersionHeads(r) | Rows::Retention(r) => r.len(),
            Rows::Events(r) | Rows::Snapshots(r) | Rows::SnapshotHistory(r) | Rows::DeadLetters(r) => r.len(),
            Rows::Values(r) => r.len(),
            Rows::CrdtReplicas(r) => r.len(),
            Rows::Outbox(r) => r.len(),
            Rows::OutboxCounter(_) => 0,
            Rows::Idempotency(r) => r.len(),
            Rows::ServiceLog(r) => r.len(),
            Rows::Offsets(r) => r.len(),
            Rows::Timers(r) => r.len(),
        }
    }
}

/// Rows per table: what a copy read from the source, or what the target
/// holds afterwards.
pub type Copied = BTreeMap<&'static str, u64>;

/// Why a copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target already holds data: nothing was written.
    #[error("the target journal is not empty (it holds {0}); copy only into an empty database")]
    TargetNotEmpty(String),
    /// After the copy, the target does not hold what the source held.
    #[error("the copy does not match the source: {table} has {source_rows} rows in the source, {target} in the target")]
    CountMismatch {
        /// The table.
        table: &'static str,
        /// Its rows in the source.
        source_rows: u64,
        /// Its rows in the target.
        target: u64,
    },
    /// Either journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Copies every record of `from` into the empty `to`, in one transaction
/// of `to`, and checks the counts.
pub fn copy(from: &RedbJournal, to: &PgJournal) -> Result<Copied, CopyError> {
    // `None` after the last chunk: the source was read whole, so the
    // target may commit.
    let (send, receive) = mpsc::sync_channel::<Option<Rows>>(4);
    let (counted, imported) = std::thread::scope(|scope| {
        let export = scope.spawn(move || {
            let counted = from.export(&mut |rows| send.send(Some(rows)).is_ok())?;
            let _ = send.send(None);
            Ok(counted)
        });
        let imported = to.import(receive);
        (export.join().unwrap_or_else(|_| Err(JournalError::Database("the export panicked".into()))), imported)
    });
    // The target's refusal says more than the export's "stopped taking rows".
    let imported = imported?;
    let counted = counted?;
    for (table, source_rows) in &counted {
        let target = imported.get(table).copied().unwrap_or(0);
        if target != *source_rows {
            return Err(CopyError::CountMismatch { table, source_rows: *source_rows, target });
        }
    }
    Ok(imported)
}
