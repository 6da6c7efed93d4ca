//! What one command writes to the journal, and how its commit ended: the
//! same for every journal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{CommitWatch, IdempotencyRecord, StoredSnapshot, TimerChange, TimerGuard};
use crate::domain::AsyncEffect;
use crate::metrics::Metrics;
use crate::trace_context::TraceContext;

/// What a command writes to its entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityWrite {
    /// Events of an event-sourced entity, and maybe a snapshot. With no
    /// events, the commit's other writes still require the entity to be at
    /// `expected_last_seq`.
    Events {
        /// The last seq the command ran against; the events get the seqs after it.
        expected_last_seq: u64,
        /// The emitted events, in order.
        events: Vec<Vec<u8>>,
        /// A snapshot to store with the events, replacing the previous one.
        snapshot: Option<StoredSnapshot>,
    },
    /// A value entity's new state (`None` deletes it), written only if the
    /// entity is still at `expected_revision`: how many commits wrote it.
    Value {
        /// The revision the command ran on; the write makes the next one.
        expected_revision: u64,
        /// The new state; `None` deletes it.
        state: Option<Vec<u8>>,
    },
    /// A CRDT entity's row for one replica (this host): its state after
    /// the command, or a tombstone, written only if the row is still at
    /// `expected_revision`. Other replicas' rows are never touched, so
    /// hosts writing the same entity do not conflict.
    Crdt {
        /// The replica writing.
        replica: wasmstate_crdt::ReplicaId,
        /// The revision of its row the command ran on; the write makes the
        /// next one.
        expected_revision: u64,
        /// The replica's state after the command; `None` deletes the entity.
        state: Option<wasmstate_crdt::Crdt>,
        /// What the command changed, for the other hosts to join without
        /// reading the row (`None`: they read it).
        delta: Option<wasmstate_crdt::Crdt>,
    },
    /// Nothing on the entity itself (an action's outbox entries, say).
    Nothing,
}

/// Everything one command writes, committed atomically: all or none.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The service of the entity.
    pub service: Arc<str>,
    /// The entity id (an action's routing key).
    pub entity: Arc<str>,
    /// The version of the service the command ran on, recorded with its
    /// events or value.
    pub version: u32,
    /// How many forwards and side effects deep the command ran: its outbox
    /// entries are delivered one deeper.
    pub hops: u32,
    /// The entity's own change.
    pub write: EntityWrite,
    /// Asynchronous side effects, delivered from the outbox after the commit.
    pub outbox: Vec<AsyncEffect>,
    /// What the command left to do, recorded under its idempotency key.
    pub idempotency: Option<IdempotencyRecord>,
    /// Timers the command sets or cancels.
    pub timers: Vec<TimerChange>,
    /// The timer setting the command fires, if it is a timer's firing: the
    /// commit lands only while that setting is stored.
    pub fires: Option<TimerGuard>,
    /// The span of the command, kept beside its events and outbox entries
    /// so what they start later (an event delivery, an outbox delivery)
    /// joins its trace; `None` when the trace is not sampled.
    pub trace: Option<TraceContext>,
}

impl Commit {
    /// A commit of events only.
    pub fn events(service: &str, entity: &str, expected_last_seq: u64, events: Vec<Vec<u8>>) -> Self {
        Self {
            service: service.into(),
            entity: entity.into(),
            version: 0,
            hops: 0,
            write: EntityWrite::Events { expected_last_seq, events, snapshot: None },
            outbox: Vec::new(),
            idempotency: None,
            timers: Vec::new(),
            fires: None,
            trace: None,
        }
    }

    /// Whether the commit writes nothing at all.
    pub fn is_empty(&self) -> bool {
        let writes_entity = match &self.write {
            EntityWrite::Nothing => false,
            EntityWrite::Events { events, snapshot, .. } => !events.is_empty() || snapshot.is_some(),
            EntityWrite::Value { .. } | EntityWrite::Crdt { .. } => true,
        };
        !writes_entity && self.outbox.is_empty() && self.idempotency.is_none() && self.timers.is_empty()
    }

    /// Whether the commit sets a timer, which the timer worker should hear
    /// of once it is durable.
    pub fn sets_timer(&self) -> bool {
        self.timers.iter().any(|change| matches!(change, TimerChange::Set(_)))
    }
}

/// How one commit ended. Only `Durable` wrote anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitStatus {
    /// Everything is durable; the entity's log ends at `last_seq` (0 for a
    /// commit that is not about events).
    Durable {
        /// The seq of the entity's last event.
        last_seq: u64,
    },
    /// Refused: the entity's log does not end where the command expected
    /// (a value entity is not at the revision it expected), so the state
    /// it ran on was not the committed one.
    Conflict {
        /// The last seq (or revision) the command ran on.
        expected: u64,
        /// The last seq (or revision) in the journal.
        found: u64,
    },
    /// Refused: a live record already holds the commit's idempotency key;
    /// a command with the same key committed first.
    KeyRecorded,
    /// Refused: the commit's outbox entries would pass the quota of
    /// entries waiting for this target service.
    OutboxFull {
        /// The target service.
        service: String,
    },
    /// Refused undecided: it follows a commit of its run that did not land,
    /// so the state it ran on was never committed.
    AfterRefused,
    /// Refused: the commit is a timer's firing, and that timer was
    /// cancelled or set again (its setting is no longer stored).
    TimerGone,
}

impl CommitStatus {
    /// Whether the commit is durable (rather than refused).
    pub fn is_durable(&self) -> bool {
        matches!(self, CommitStatus::Durable { .. })
    }
}

/// Tells the host what a written batch did, before its commits are
/// acknowledged: wakes the watchers of each entity that got events (or a
/// CRDT change), counts
/// the batch and the `elapsed` time its transaction took in the metrics,
/// wakes the outbox when a durable commit added entries to it and the
/// timers when one set a timer.
pub(super) fn announce<'a>(
    batch: impl Iterator<Item = (&'a Commit, &'a CommitStatus)>,
    committed: &CommitWatch,
    wake: &Wakeups,
    metrics: &Metrics,
    elapsed: Duration,
) {
    let (mut commits, mut events, mut added, mut timers) = (0, 0, false, false);
    for (commit, status) in batch {
        commits += 1;
        if let CommitStatus::Durable { last_seq } = status {
            added |= !commit.outbox.is_empty();
            timers |= commit.sets_timer();
            match &commit.write {
                EntityWrite::Events { events: written, .. } if !written.is_empty() => {
                    events += written.len();
                    committed.committed(&commit.service, &commit.entity, *last_seq);
                }
                // A CRDT's watchers read its value again, whatever the number.
                EntityWrite::Crdt { expected_revision, .. } => {
                    committed.committed(&commit.service, &commit.entity, expected_revision + 1);
                }
                _ => {}
            }
        }
    }
    metrics.record_commit(commits, events, elapsed);
    if added {
        wake.outbox.notify_one();
    }
    if timers {
        wake.timers.notify_one();
    }
}

/// What the journal wakes after durable commits, on this host's and (on
/// PostgreSQL) on other hosts': the outbox's deliveries and the timers.
#[derive(Debug, Clone, Default)]
pub struct Wakeups {
    /// Woken after a commit that added outbox entries.
    pub outbox: Arc<Notify>,
    /// Woken after a commit that set a timer.
    pub timers: Arc<Notify>,
}
