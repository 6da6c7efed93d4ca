//! Reads across a service's entities and along one entity's whole history:
//! what verified deploys and time travel need. None of them is on the
//! command path.

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable};

use super::tables::{EVENTS, SNAPSHOTS, VALUES};
use super::{Journal, JournalError, StoredSnapshot, read_events, records};
use crate::domain::{Event, ServiceKind};

/// An entity's latest snapshot and every event of its log.
#[derive(Debug, Default)]
pub struct FullHistory {
    /// The latest snapshot, if one was taken.
    pub snapshot: Option<StoredSnapshot>,
    /// Every event, from seq 1, in order.
    pub events: Vec<Event>,
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

    /// What folds to the state right after event `at` (`None`: the last):
    /// the snapshot, when it is as of `at` or earlier, and the events after
    /// it up to `at`. `None` when the log has no event `at`.
    pub fn as_of(&self, at: Option<u64>) -> Option<(Option<&StoredSnapshot>, &[Event])> {
        let at = at.unwrap_or(self.last_seq());
        if at > self.last_seq() {
            return None;
        }
        let snapshot = self.snapshot.as_ref().filter(|s| s.seq <= at);
        let from = snapshot.map_or(0, |s| s.seq);
        let start = self.events.partition_point(|e| e.seq <= from);
        let end = self.events.partition_point(|e| e.seq <= at);
        Some((snapshot, &self.events[start..end]))
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

    /// An entity's latest snapshot and its whole log, read at one point in
    /// time.
    pub fn full_history(&self, service: &str, entity: &str) -> Result<FullHistory, JournalError> {
        let txn = self.db()?.begin_read()?;
        let snapshot = match txn.open_table(SNAPSHOTS)?.get((service, entity))? {
            Some(row) => {
                let record = records::SnapshotRecord::read(service, entity, row.value())?;
                Some(StoredSnapshot { seq: record.seq, version: record.version, state: record.state.to_vec() })
            }
            None => None,
        };
        let events = read_events(&txn.open_table(EVENTS)?, service, entity, 1, usize::MAX, usize::MAX)?;
        Ok(FullHistory { snapshot, events })
    }
}

/// What a fork did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The new entity holds events 1 to this seq of the source.
    Done {
        /// The last seq copied.
        last_seq: u64,
    },
    /// The new entity already has events (or a snapshot): nothing was written.
    TargetExists,
    /// The source has fewer events than asked for: nothing was written.
    TooShort {
        /// The source's last seq.
        last_seq: u64,
    },
}

impl Journal {
    /// Makes `to` a new entity of `service` whose log is events 1 to `at`
    /// (default: all) of `from`, with the versions that wrote them, and the
    /// source's snapshot when it is as of `at` or earlier; durably, in one
    /// transaction. The copies are not new facts: they do not enter the
    /// service's log, so subscribers do not see them again.
    pub fn fork(&self, service: &str, from: &str, to: &str, at: Option<u64>) -> Result<Forked, JournalError> {
        let txn = self.db()?.begin_write()?;
        let forked = {
            let mut events = txn.open_table(EVENTS)?;
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            if super::last_seq(&events, service, to)? > 0 || snapshots.get((service, to))?.is_some() {
                return Ok(Forked::TargetExists);
            }
            let source_last = super::last_seq(&events, service, from)?;
            let at = at.unwrap_or(source_last);
            if at > source_last || at == 0 {
                return Ok(Forked::TooShort { last_seq: source_last });
            }
            let copied = read_events(&events, service, from, 1, at as usize, usize::MAX)?;
            for event in &copied {
                let record = records::EventRecord::new(service, to, event.seq, event.version, &event.payload);
                events.insert((service, to, event.seq), records::encode(&record)?.as_slice())?;
            }
            let snapshot = match snapshots.get((service, from))? {
                Some(row) => {
                    let record = records::SnapshotRecord::read(service, from, row.value())?;
                    (record.seq <= at).then(|| (record.seq, record.version, record.state.to_vec()))
                }
                None => None,
            };
            if let Some((seq, version, state)) = snapshot {
                let record = records::SnapshotRecord::new(service, to, seq, version, &state);
                snapshots.insert((service, to), records::encode(&record)?.as_slice())?;
            }
            Forked::Done { last_seq: at }
        };
        txn.commit()?;
        Ok(forked)
    }
}
