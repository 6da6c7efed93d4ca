//! Reads across a service's entities and along one entity's whole history:
//! what verified deploys and time travel need. None of them is on the
//! command path.

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable};

use super::tables::{self, EVENTS, SNAPSHOT_HISTORY, SNAPSHOTS, VALUE_REVISIONS, VALUES};
use super::{
    AsOf, Forked, HistoryStore, JournalError, NotKept, RedbJournal, StoredSnapshot, last_seq, read_events, records,
};
use crate::domain::{Event, ServiceKind};
use crate::journal::EntityHead;

/// The events in `range` of one entity, from the past.
type EventRange = (u64, u64);

impl HistoryStore for RedbJournal {
    fn entity_page(
        &self,
        service: &str,
        kind: ServiceKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntityHead>, JournalError> {
        let txn = self.db()?.begin_read()?;
        let mut page = Vec::new();
        match kind {
            ServiceKind::EventSourced => {
                let events = txn.open_table(EVENTS)?;
                // One seek per entity: past the last possible seq of the
                // one found, to the first event of the next.
                let mut from: Bound<(&str, &str, u64)> = match after {
                    Some(after) => Bound::Excluded((service, after, u64::MAX)),
                    None => Bound::Included((service, "", 0)),
                };
                while page.len() < limit {
                    let Some(row) = events.range::<(&str, &str, u64)>((from, Bound::Unbounded))?.next() else { break };
                    let (key, _) = row?;
                    let (found, entity, _) = key.value();
                    if found != service {
                        break;
                    }
                    let last_seq = last_seq(&events, service, entity)?;
                    page.push(EntityHead { entity: entity.to_string(), last_seq });
                    from = Bound::Excluded((service, &page.last().expect("just pushed").entity, u64::MAX));
                }
            }
            ServiceKind::Value => {
                let (values, revisions) = (txn.open_table(VALUES)?, txn.open_table(VALUE_REVISIONS)?);
                let from: Bound<(&str, &str)> = match after {
                    Some(after) => Bound::Excluded((service, after)),
                    None => Bound::Included((service, "")),
                };
                for row in values.range::<(&str, &str)>((from, Bound::Unbounded))?.take(limit) {
                    let (key, _) = row?;
                    let (found, entity) = key.value();
                    if found != service {
                        break;
                    }
                    let last_seq = revisions.get((service, entity))?.map_or(0, |v| v.value());
                    page.push(EntityHead { entity: entity.to_string(), last_seq });
                }
            }
            ServiceKind::Crdt => {
                // Rows by entity, then replica: an entity's head is how
                // many commits all its replicas made.
                let replicas = txn.open_table(tables::CRDT_REPLICAS)?;
                let from: Bound<(&str, &str, &str)> = match after {
                    Some(after) => Bound::Excluded((service, after, "\u{10ffff}")),
                    None => Bound::Included((service, "", "")),
                };
                for row in replicas.range::<(&str, &str, &str)>((from, Bound::Unbounded))? {
                    let (key, value) = row?;
                    let (found, entity, _) = key.value();
                    if found != service {
                        break;
                    }
                    let revision = value.value().0;
                    if let Some(head) = page.last_mut().filter(|head| head.entity == entity) {
                        head.last_seq += revision;
                    } else if page.len() == limit {
                        break;
                    } else {
                        page.push(EntityHead { entity: entity.to_string(), last_seq: revision });
                    }
                }
            }
            ServiceKind::Action => {}
        }
        Ok(page)
    }

    /// Whether `service` has any stored entity of `kind`.
    fn has_entities(&self, service: &str, kind: ServiceKind) -> Result<bool, JournalError> {
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
            ServiceKind::Crdt => {
                let replicas = txn.open_table(tables::CRDT_REPLICAS)?;
                let first = replicas.range::<(&str, &str, &str)>((service, "", "")..)?.next().transpose()?;
                first.is_some_and(|(key, _)| key.value().0 == service)
            }
            ServiceKind::Action => false,
        })
    }

    /// What folds to `entity`'s state right after event `at` (`None`: its
    /// last), read at one point in time: no more than a cold load reads
    /// when `at` is the last event.
    fn as_of(&self, service: &str, entity: &str, at: Option<u64>) -> Result<Result<AsOf, NotKept>, JournalError> {
        let txn = self.db()?.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let latest = super::latest_snapshot(&txn, service, entity)?;
        let last_seq = super::last_seq(&events, service, entity)?.max(latest.as_ref().map_or(0, |s| s.seq));
        let at = at.unwrap_or(last_seq);
        if at > last_seq {
            return Ok(Err(NotKept::Beyond { last_seq }));
        }
        let snapshot = match latest.filter(|s| s.seq <= at) {
            Some(latest) => Some(latest),
            None => {
                let history = txn.open_table(SNAPSHOT_HISTORY)?;
                let older = history.range((service, entity, 0)..=(service, entity, at))?.next_back().transpose()?;
                match older {
                    Some((key, value)) => Some(stored(service, entity, key.value().2, value.value())?),
                    None => None,
                }
            }
        };
        let from = snapshot.as_ref().map_or(0, |s| s.seq);
        let folded = read_range(&events, service, entity, (from + 1, at))?;
        if from < at && folded.first().is_none_or(|e| e.seq != from + 1) {
            drop((events, txn));
            let oldest = self.oldest_state(service, entity)?.0.map_or(0, |s| s.seq);
            return Ok(Err(NotKept::Compacted { oldest }));
        }
        Ok(Ok(AsOf { snapshot, events: folded }))
    }

    /// The oldest state of `entity` that is kept, and the seq of its first
    /// kept event (0 for none): no snapshot (the initial state) when the
    /// log is kept from event 1, else the oldest snapshot that compaction
    /// kept, which covers the events it dropped.
    fn oldest_state(&self, service: &str, entity: &str) -> Result<(Option<StoredSnapshot>, u64), JournalError> {
        let txn = self.db()?.begin_read()?;
        let first = super::first_seq(&txn.open_table(EVENTS)?, service, entity)?;
        if first <= 1 {
            return Ok((None, first));
        }
        let history = txn.open_table(SNAPSHOT_HISTORY)?;
        let covering = history.range((service, entity, first - 1)..=(service, entity, u64::MAX))?.next().transpose()?;
        let snapshot = match covering {
            Some((key, value)) => Some(stored(service, entity, key.value().2, value.value())?),
            None => super::latest_snapshot(&txn, service, entity)?.filter(|s| s.seq + 1 >= first),
        };
        Ok((snapshot, first))
    }

    /// Makes `to` a new entity of `service` whose log is `from`'s up to
    /// event `at` (default: all) — every kept event, with the versions that
    /// wrote them, or, past [`MAX_FORK_BYTES`], those after the latest
    /// snapshot as of `at`, and that snapshot — durably, in one
    /// transaction. The copies are not new facts: they do not enter the
    /// service's log, so subscribers do not see them again. The caller
    /// makes sure no command runs on `to` meanwhile (it forks from `to`'s
    /// entity task).
    fn fork(&self, service: &str, from: &str, to: &str, at: Option<u64>) -> Result<Forked, JournalError> {
        let base = match self.as_of(service, from, at)? {
            Ok(base) => base,
            Err(not_kept) => return Ok(Forked::NotKept(not_kept)),
        };
        let at = base.seq();
        if at == 0 {
            return Ok(Forked::NotKept(NotKept::Beyond { last_seq: 0 }));
        }
        // Every kept event up to `at`, unless that is too much.
        let (oldest, first) = self.oldest_state(service, from)?;
        let (snapshot, events, from_snapshot) = {
            let txn = self.db()?.begin_read()?;
            let all = read_events(&txn.open_table(EVENTS)?, service, from, first.max(1), usize::MAX, MAX_FORK_BYTES)?;
            let complete = all.last().is_some_and(|e| e.seq >= at) || base.events.is_empty() && all.is_empty();
            if complete && all.iter().map(|e| e.payload.len()).sum::<usize>() <= MAX_FORK_BYTES {
                let events: Vec<Event> = all.into_iter().filter(|e| e.seq <= at).collect();
                // The snapshots the events need: the oldest kept (when the
                // log was compacted) and the latest as of `at`.
                (base.snapshot.or(oldest), events, None)
            } else {
                let from_snapshot = base.snapshot.as_ref().map(|s| s.seq);
                (base.snapshot, base.events, from_snapshot)
            }
        };
        let keeps_history = self.retention.keeps_snapshot_history(service);
        let txn = self.db()?.begin_write()?;
        {
            let mut table = txn.open_table(EVENTS)?;
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            if super::last_seq(&table, service, to)? > 0 || snapshots.get((service, to))?.is_some() {
                return Ok(Forked::TargetExists);
            }
            for event in &events {
                let record = records::EventRecord::new(service, to, event.seq, event.version, &event.payload);
                table.insert((service, to, event.seq), records::encode(&record)?.as_slice())?;
            }
            if let Some(snapshot) = &snapshot {
                let record = records::SnapshotRecord::new(service, to, snapshot.seq, snapshot.version, &snapshot.state);
                let record = records::encode(&record)?;
                snapshots.insert((service, to), record.as_slice())?;
                if keeps_history {
                    txn.open_table(SNAPSHOT_HISTORY)?.insert((service, to, snapshot.seq), record.as_slice())?;
                }
            }
        }
        txn.commit()?;
        self.signals.committed.committed(&service.into(), &to.into(), at);
        Ok(Forked::Done { last_seq: at, from_snapshot })
    }
}

/// Decodes a snapshot record stored for `entity` as of `seq`.
fn stored(service: &str, entity: &str, seq: u64, bytes: &[u8]) -> Result<StoredSnapshot, JournalError> {
    let record = records::SnapshotRecord::read(service, entity, bytes)?;
    if record.seq != seq {
        return Err(JournalError::CorruptRecord(format!("the snapshot of {service}/{entity} as of {seq}")));
    }
    Ok(StoredSnapshot { seq, version: record.version, state: record.state.to_vec() })
}

/// The kept events of `entity` with seqs in `range` (both ends included).
fn read_range(
    events: &impl ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
    service: &str,
    entity: &str,
    (from, to): EventRange,
) -> Result<Vec<Event>, JournalError> {
    if from > to {
        return Ok(Vec::new());
    }
    read_events(events, service, entity, from, (to - from + 1) as usize, usize::MAX).map(|mut read| {
        read.retain(|e| e.seq <= to);
        read
    })
}

/// The most bytes of events a fork copies from the oldest kept event; past
/// them, it copies from the latest snapshot as of the fork's event.
const MAX_FORK_BYTES: usize = 16 << 20;
