//! Reads across a service's entities and along one entity's whole history:
//! what verified deploys and time travel need. None of them is on the
//! command path.

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable};

use super::tables::{EVENTS, SNAPSHOT_HISTORY, SNAPSHOTS, VALUES};
use super::{Journal, JournalError, StoredSnapshot, read_events, records};
use crate::domain::{Event, ServiceKind};

/// An entity's snapshots and every event of its log that are kept.
#[derive(Debug, Default)]
pub struct FullHistory {
    /// The latest snapshot, if one was taken.
    pub snapshot: Option<StoredSnapshot>,
    /// Every snapshot kept, oldest first (the latest among them): under
    /// `retain=snapshots:K`, the K latest; otherwise only the latest.
    pub snapshots: Vec<StoredSnapshot>,
    /// Every event kept, in order: from seq 1, unless compaction dropped
    /// those up to the oldest snapshot kept.
    pub events: Vec<Event>,
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

impl FullHistory {
    /// The events after the snapshot (all of them without one): what a
    /// cold load folds onto the snapshot.
    pub fn after_snapshot(&self) -> &[Event] {
        let from = self.snapshot.as_ref().map_or(0, |s| s.seq);
        let start = self.events.partition_point(|e| e.seq <= from);
        &self.events[start..]
    }

    /// The seq of the last event (0 for none).
    pub fn last_seq(&self) -> u64 {
        self.events.last().map_or(0, |e| e.seq)
    }

    /// The oldest state kept and the events after it: from event 1 (no
    /// snapshot) when the whole log is kept, else from the oldest snapshot
    /// compaction kept.
    pub fn oldest(&self) -> (Option<&StoredSnapshot>, &[Event]) {
        let first = self.events.first().map_or(1, |e| e.seq);
        if first <= 1 {
            return (None, &self.events);
        }
        let base = self.snapshots.iter().find(|s| s.seq + 1 >= first);
        let from = base.map_or(0, |s| s.seq);
        (base, &self.events[self.events.partition_point(|e| e.seq <= from)..])
    }

    /// What folds to the state right after event `at` (`None`: the last):
    /// the latest snapshot as of `at` or earlier, and the events after it
    /// up to `at`.
    pub fn as_of(&self, at: Option<u64>) -> Result<(Option<&StoredSnapshot>, &[Event]), NotKept> {
        let last_seq = self.last_seq().max(self.snapshot.as_ref().map_or(0, |s| s.seq));
        let at = at.unwrap_or(last_seq);
        if at > last_seq {
            return Err(NotKept::Beyond { last_seq });
        }
        let snapshot = self.snapshots.iter().rev().find(|s| s.seq <= at);
        let from = snapshot.map_or(0, |s| s.seq);
        let start = self.events.partition_point(|e| e.seq <= from);
        let end = self.events.partition_point(|e| e.seq <= at);
        // The events after the snapshot must all be there.
        if from < at && self.events.get(start).is_none_or(|e| e.seq != from + 1) {
            let (oldest, _) = self.oldest();
            return Err(NotKept::Compacted { oldest: oldest.map_or(0, |s| s.seq) });
        }
        Ok((snapshot, &self.events[start..end]))
    }
}

impl Journal {
    /// The ids of every stored entity of `service`, in order: those with
    /// events for an event-sourced service, those with a stored state for a
    /// value entity, none for an action.
    pub fn entity_ids(&self, service: &str, kind: ServiceKind) -> Result<Vec<String>, JournalError> {
        let txn = self.db()?.begin_read()?;
        let mut ids = Vec::new();
        match kind {
            ServiceKind::EventSourced => {
                let events = txn.open_table(EVENTS)?;
                // One seek per entity: past the last possible seq of the
                // one found, to the first event of the next.
                let mut from: Bound<(&str, &str, u64)> = Bound::Included((service, "", 0));
                while let Some(row) = events.range::<(&str, &str, u64)>((from, Bound::Unbounded))?.next() {
                    let (key, _) = row?;
                    let (found, entity, _) = key.value();
                    if found != service {
                        break;
                    }
                    ids.push(entity.to_string());
                    from = Bound::Excluded((service, ids.last().expect("just pushed"), u64::MAX));
                }
            }
            ServiceKind::Value => {
                let values = txn.open_table(VALUES)?;
                for row in values.range::<(&str, &str)>((service, "")..)? {
                    let (key, _) = row?;
                    let (found, entity) = key.value();
                    if found != service {
                        break;
                    }
                    ids.push(entity.to_string());
                }
            }
            ServiceKind::Action => {}
        }
        Ok(ids)
    }

    /// Whether `service` has any stored entity of `kind`.
    pub fn has_entities(&self, service: &str, kind: ServiceKind) -> Result<bool, JournalError> {
        let txn = self.db()?.begin_read()?;
        Ok(match kind {
            ServiceKind::EventSourced => {
                let events = txn.open_table(EVENTS)?;
                let first = events.range::<(&str, &str, u64)>((service, "", 0)..)?.next().transpose()?;
                first.is_some_and(|(key, _)| key.value().0 == service)
            }
            ServiceKind::Value => {
                let values = txn.open_table(VALUES)?;
                let first = values.range::<(&str, &str)>((service, "")..)?.next().transpose()?;
                first.is_some_and(|(key, _)| key.value().0 == service)
            }
            ServiceKind::Action => false,
        })
    }

    /// An entity's kept snapshots and log, read at one point in time.
    pub fn full_history(&self, service: &str, entity: &str) -> Result<FullHistory, JournalError> {
        let txn = self.db()?.begin_read()?;
        let snapshot = match txn.open_table(SNAPSHOTS)?.get((service, entity))? {
            Some(row) => {
                let record = records::SnapshotRecord::read(service, entity, row.value())?;
                Some(StoredSnapshot { seq: record.seq, version: record.version, state: record.state.to_vec() })
            }
            None => None,
        };
        let mut snapshots = Vec::new();
        for row in txn.open_table(SNAPSHOT_HISTORY)?.range((service, entity, 0)..=(service, entity, u64::MAX))? {
            let (_, value) = row?;
            let record = records::SnapshotRecord::read(service, entity, value.value())?;
            snapshots.push(StoredSnapshot { seq: record.seq, version: record.version, state: record.state.to_vec() });
        }
        if let Some(latest) = &snapshot
            && snapshots.last().is_none_or(|s| s.seq < latest.seq)
        {
            snapshots.push(latest.clone());
        }
        let events = read_events(&txn.open_table(EVENTS)?, service, entity, 1, usize::MAX, usize::MAX)?;
        Ok(FullHistory { snapshot, snapshots, events })
    }
}

/// What a fork did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The new entity holds the source's log up to this seq.
    Done {
        /// The last seq copied.
        last_seq: u64,
    },
    /// The new entity already has events (or a snapshot): nothing was written.
    TargetExists,
    /// The source's history does not hold the state asked for: nothing
    /// was written.
    NotKept(NotKept),
}

impl Journal {
    /// Makes `to` a new entity of `service` whose log is `from`'s up to
    /// event `at` (default: all) — the events kept, with the versions that
    /// wrote them, and the latest snapshot as of `at` — durably, in one
    /// transaction. The copies are not new facts: they do not enter the
    /// service's log, so subscribers do not see them again.
    pub fn fork(&self, service: &str, from: &str, to: &str, at: Option<u64>) -> Result<Forked, JournalError> {
        let source = self.full_history(service, from)?;
        let at = at.unwrap_or(source.last_seq());
        if at == 0 {
            return Ok(Forked::NotKept(NotKept::Beyond { last_seq: source.last_seq() }));
        }
        let base = match source.as_of(Some(at)) {
            Ok((base, _)) => base,
            Err(not_kept) => return Ok(Forked::NotKept(not_kept)),
        };
        let keeps_history = self.retention.keeps_snapshot_history(service);
        let txn = self.db()?.begin_write()?;
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            if super::last_seq(&events, service, to)? > 0 || snapshots.get((service, to))?.is_some() {
                return Ok(Forked::TargetExists);
            }
            for event in source.events.iter().take_while(|e| e.seq <= at) {
                let record = records::EventRecord::new(service, to, event.seq, event.version, &event.payload);
                events.insert((service, to, event.seq), records::encode(&record)?.as_slice())?;
            }
            if let Some(base) = base {
                let record = records::SnapshotRecord::new(service, to, base.seq, base.version, &base.state);
                let record = records::encode(&record)?;
                snapshots.insert((service, to), record.as_slice())?;
                if keeps_history {
                    txn.open_table(SNAPSHOT_HISTORY)?.insert((service, to, base.seq), record.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(Forked::Done { last_seq: at })
    }
}
