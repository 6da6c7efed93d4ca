//! How much history each service keeps, and the compaction that drops the
//! rest: under `retain=snapshots:K`, the events up to an entity's K-th
//! latest snapshot (and the snapshots before it) go. Compaction runs in
//! small transactions that never wait for their own durability, so it
//! delays commands by little; it never deletes an entity's last event
//! (where its log stands), nor an event a subscriber has not been given.

use std::collections::HashMap;

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable};

use super::tables::{EVENTS, OFFSETS, RETENTION, SERVICE_LOG, SNAPSHOT_HISTORY, SNAPSHOTS};
use super::{Compacted, HistoryStore, JournalError, RedbJournal, Retention, RetentionBook, RetentionStore, records};

/// Reads the policies stored in `db`.
pub(super) fn read_book(db: &Database) -> Result<RetentionBook, JournalError> {
    let txn = db.begin_read()?;
    let mut policies = HashMap::new();
    for row in txn.open_table(RETENTION)?.iter()? {
        let (service, k) = row?;
        policies.insert(service.value().to_string(), k.value());
    }
    Ok(RetentionBook::new(policies))
}

/// The most event rows one compaction transaction deletes.
const MAX_DELETES_PER_TXN: usize = 2_000;

impl RetentionStore for RedbJournal {
    /// How much history `service` keeps.
    fn retention(&self, service: &str) -> Retention {
        self.retention.get(service)
    }

    /// Every service that keeps only some history, with its K.
    fn compacted_services(&self) -> Vec<(String, u32)> {
        self.retention.compacted()
    }

    /// Sets how much history `service` keeps, durably.
    fn set_retention(&self, service: &str, retention: Retention) -> Result<(), JournalError> {
        let txn = self.db()?.begin_write()?;
        {
            let mut table = txn.open_table(RETENTION)?;
            match retention {
                Retention::All => table.remove(service)?,
                Retention::Snapshots(k) => table.insert(service, k)?,
            };
        }
        txn.commit()?;
        self.retention.set(service, retention);
        Ok(())
    }

    /// Drops what `service`'s entities no longer keep under `retain=
    /// snapshots:k`: each entity's events up to its k-th latest snapshot
    /// (but never its last event), and the snapshots before that one. Waits
    /// (deletes nothing) while one of `subscribers` has not been given every
    /// event of the service.
    fn compact(&self, service: &str, k: u32, subscribers: &[String]) -> Result<Compacted, JournalError> {
        let db = self.db()?;
        // One read transaction decides what goes: every event it sees up
        // to a snapshot it sees was given to every subscriber.
        let read = db.begin_read()?;
        if !subscribers_caught_up(&read, service, subscribers)? {
            return Ok(Compacted { waiting_for_subscribers: true, ..Compacted::default() });
        }
        let mut plan: Vec<(String, u64, u64)> = Vec::new();
        let mut compacted = Compacted::default();
        let mut planned = 0;
        for entity in self.entity_ids(service, crate::domain::ServiceKind::EventSourced)? {
            if let Some((first, upto, oldest_kept)) = cut(&read, service, &entity, k)? {
                planned += upto.saturating_sub(first) as usize + 1;
                plan.push((entity, upto, oldest_kept));
            }
            if planned >= MAX_DELETES_PER_TXN {
                self.delete_planned(service, &mut plan, &mut compacted)?;
                planned = 0;
            }
        }
        self.delete_planned(service, &mut plan, &mut compacted)?;
        Ok(compacted)
    }
}

impl RedbJournal {
    /// Deletes, in one transaction, each planned entity's events up to
    /// `upto` and its snapshots before `oldest_kept`.
    fn delete_planned(
        &self,
        service: &str,
        plan: &mut Vec<(String, u64, u64)>,
        compacted: &mut Compacted,
    ) -> Result<(), JournalError> {
        if plan.is_empty() {
            return Ok(());
        }
        let mut txn = self.db()?.begin_write()?;
        // Losing a compaction in a crash loses nothing: the next round
        // deletes the same again.
        txn.set_durability(Durability::None)?;
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut history = txn.open_table(SNAPSHOT_HISTORY)?;
            for (entity, upto, oldest_kept) in plan.drain(..) {
                let entity = entity.as_str();
                let removed = events.extract_from_if((service, entity, 1)..=(service, entity, upto), |_, _| true)?;
                for row in removed {
                    let (_, value) = row?;
                    compacted.events += 1;
                    compacted.bytes += value.value().len() as u64;
                }
                let range = (service, entity, 0)..(service, entity, oldest_kept);
                for row in history.extract_from_if(range, |_, _| true)? {
                    let (_, value) = row?;
                    compacted.snapshots += 1;
                    compacted.bytes += value.value().len() as u64;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// Whether every subscriber of `service` has been given its whole log.
fn subscribers_caught_up(txn: &ReadTransaction, service: &str, subscribers: &[String]) -> Result<bool, JournalError> {
    if subscribers.is_empty() {
        return Ok(true);
    }
    let head = super::log_head(&txn.open_table(SERVICE_LOG)?, service)?;
    let offsets = txn.open_table(OFFSETS)?;
    for subscriber in subscribers {
        let offset = offsets.get((subscriber.as_str(), service))?.map_or(0, |v| v.value());
        if offset < head {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Where `entity`'s history is cut under `retain=snapshots:k`: its first
/// kept event, the last event to delete and the seq of the oldest snapshot
/// kept, or `None` when nothing goes.
fn cut(txn: &ReadTransaction, service: &str, entity: &str, k: u32) -> Result<Option<(u64, u64, u64)>, JournalError> {
    let mut seqs: Vec<u64> = Vec::new();
    for row in txn.open_table(SNAPSHOT_HISTORY)?.range((service, entity, 0)..=(service, entity, u64::MAX))? {
        seqs.push(row?.0.value().2);
    }
    if let Some(row) = txn.open_table(SNAPSHOTS)?.get((service, entity))? {
        let latest = records::SnapshotRecord::read(service, entity, row.value())?.seq;
        if seqs.last() != Some(&latest) {
            seqs.push(latest);
        }
    }
    let Some(&oldest_kept) = seqs.len().checked_sub(k as usize).and_then(|i| seqs.get(i)) else { return Ok(None) };
    let events = txn.open_table(EVENTS)?;
    let last = super::last_seq(&events, service, entity)?;
    // The last event stays: it says where the log stands.
    let upto = oldest_kept.min(last.saturating_sub(1));
    let first = super::first_seq(&events, service, entity)?;
    Ok((first > 0 && upto >= first).then_some((first, upto, oldest_kept)))
}
