//! The journal's answers about the past: states as of an event, forks,
//! what a service keeps of its history, its log. The same for every journal.

use std::fmt;

use serde::Serialize;

use super::StoredSnapshot;
use crate::domain::Event;
use crate::trace_context::TraceContext;

/// What folds to an entity's state right after one event: the latest
/// snapshot as of it, and the events after that snapshot up to it.
#[derive(Debug, Default)]
pub struct AsOf {
    /// The snapshot, if one as of the event or earlier is kept.
    pub snapshot: Option<StoredSnapshot>,
    /// The events after the snapshot (from 1 without one), up to the event.
    pub events: Vec<Event>,
}

impl AsOf {
    /// The seq of the last event folded in.
    pub fn seq(&self) -> u64 {
        folded_seq(self.snapshot.as_ref(), &self.events)
    }
}

/// The seq of the last event a fold of `snapshot` and then `events` takes
/// in (0 for neither).
pub(super) fn folded_seq(snapshot: Option<&StoredSnapshot>, events: &[Event]) -> u64 {
    events.last().map(|e| e.seq).or(snapshot.map(|s| s.seq)).unwrap_or(0)
}

/// Why a state of the past cannot be folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotKept {
    /// The log has no such event: it ends at `last_seq`.
    Beyond {
        /// The last seq of the log.
        last_seq: u64,
    },
    /// Compaction dropped the events it needs: the oldest state kept is as
    /// of `oldest`.
    Compacted {
        /// The seq of the oldest state that can be folded.
        oldest: u64,
    },
}

impl NotKept {
    /// What to tell someone who asked for `entity` right after event `at`.
    pub fn message(&self, entity: &str, at: u64) -> String {
        match self {
            NotKept::Beyond { last_seq } => format!("entity {entity:?} has {last_seq} events: there is no event {at}"),
            NotKept::Compacted { oldest } => format!(
                "the history of {entity:?} before event {oldest} was compacted (the service keeps retain=snapshots:K)"
            ),
        }
    }
}

/// What a fork did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The new entity holds the source's log up to `last_seq`, from event 1
    /// or, for a long log, from the source's snapshot as of `from_snapshot`.
    Done {
        /// The last seq copied.
        last_seq: u64,
        /// The snapshot the copy starts from, when it does not start at the
        /// oldest kept event.
        from_snapshot: Option<u64>,
    },
    /// The new entity already has events (or a snapshot): nothing was written.
    TargetExists,
    /// The source's history does not hold the state asked for: nothing
    /// was written.
    NotKept(NotKept),
}

/// How much of its entities' history a service keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Retention {
    /// Every event (the default).
    #[default]
    All,
    /// The events after each entity's K-th latest snapshot, and those K
    /// snapshots.
    Snapshots(u32),
}

impl Retention {
    /// Parses `all` or `snapshots:K` (K ≥ 1).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "all" => Ok(Retention::All),
            Some(("snapshots", k)) => match k.parse::<u32>() {
                Ok(k) if k >= 1 => Ok(Retention::Snapshots(k)),
                _ => Err(format!("snapshots:K takes a whole number K of at least 1, not {k:?}")),
            },
            _ => Err(format!("retain takes `all` or `snapshots:K`, not {text:?}")),
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retention::All => f.write_str("all"),
            Retention::Snapshots(k) => write!(f, "snapshots:{k}"),
        }
    }
}

impl Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What one round of compaction of a service did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Events deleted.
    pub events: u64,
    /// Snapshots deleted from the history.
    pub snapshots: u64,
    /// Bytes of records deleted.
    pub bytes: u64,
    /// Whether the round waited for a subscriber that has not been given
    /// every event yet, and deleted nothing.
    pub waiting_for_subscribers: bool,
}

/// One event of a service's log, as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLogEntry {
    /// Its position in the service's log, from 1.
    pub position: u64,
    /// The entity that emitted it.
    pub entity: String,
    /// The event.
    pub event: Event,
    /// The span of the command that emitted it, when its trace is sampled.
    pub trace: Option<TraceContext>,
}
