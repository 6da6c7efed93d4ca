//! The outbox table: asynchronous side effects waiting for delivery, and
//! the count of them per target service, which bounds how many one service
//! may have waiting (`--max-outbox-per-service`).
//!
//! Entries are added by the writer, in the transaction of the command that
//! asked for them; deliveries, retries and drops are bookkeeping writes.

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::records::{self, OutboxRecord};
use super::tables::OUTBOX;
use super::{JournalError, Lease, OutboxBook, OutboxEntry, OutboxStore, RedbJournal};
use crate::domain::AsyncEffect;

/// The counts of the entries in `db`'s outbox, with no quota.
pub(super) fn read_book(db: &redb::Database) -> Result<OutboxBook, JournalError> {
    let txn = db.begin_read()?;
    let mut waiting: HashMap<String, u64> = HashMap::new();
    for row in txn.open_table(OUTBOX)?.iter()? {
        let (_, value) = row?;
        let record: OutboxRecord<AsyncEffect> = records::decode(value.value(), "outbox entry")?;
        *waiting.entry(record.effect.target()).or_default() += 1;
    }
    Ok(OutboxBook::new(waiting))
}

impl OutboxStore for RedbJournal {
    /// Bounds how many entries may wait for one target service (or webhook
    /// origin): a commit
    /// that would pass it is refused ([`super::CommitStatus::OutboxFull`]).
    fn set_outbox_quota(&self, quota: u64) {
        self.outbox.set_quota(quota);
    }

    /// Up to `limit` outbox entries due at `now_ms` with an id past `after`,
    /// oldest first, and the number of entries waiting in all.
    fn outbox_due(&self, now_ms: u64, after: u64, limit: usize) -> Result<(Vec<OutboxEntry>, u64), JournalError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(OUTBOX)?;
        let mut due = Vec::new();
        for row in table.range(after.saturating_add(1)..)? {
            let (id, value) = row?;
            let entry = OutboxEntry::read(id.value(), value.value())?;
            if entry.next_attempt_ms <= now_ms {
                due.push(entry);
                if due.len() >= limit {
                    break;
                }
            }
        }
        Ok((due, table.len()?))
    }

    /// Removes delivered (or abandoned) outbox entries.
    fn outbox_remove(&self, ids: &[u64], _: &Lease) -> Result<(), JournalError> {
        let mut gone: Vec<String> = Vec::new();
        self.bookkeeping_write(|txn| {
            let mut table = txn.open_table(OUTBOX)?;
            for id in ids {
                if let Some(row) = table.remove(id)? {
                    let record: OutboxRecord<AsyncEffect> = records::decode(row.value(), "outbox entry")?;
                    gone.push(record.effect.target());
                }
            }
            Ok(())
        })?;
        for service in gone {
            self.outbox.adjust(&service, -1);
        }
        Ok(())
    }

    /// Records a failed attempt: the entry is retried at `next_attempt_ms`
    /// (unless it was dropped meanwhile, with its service).
    fn outbox_retry(&self, entry: &OutboxEntry, _: &Lease) -> Result<(), JournalError> {
        let encoded = entry.encode()?;
        self.bookkeeping_write(|txn| {
            let mut table = txn.open_table(OUTBOX)?;
            if table.get(entry.id)?.is_some() {
                table.insert(entry.id, encoded.as_slice())?;
            }
            Ok(())
        })
    }

    /// Removes every entry waiting for `service` (it was deleted); answers
    /// how many there were.
    fn outbox_drop_service(&self, service: &str) -> Result<usize, JournalError> {
        let mut dropped = 0;
        self.bookkeeping_write(|txn| {
            let mut table = txn.open_table(OUTBOX)?;
            let mut ids = Vec::new();
            for row in table.iter()? {
                let (id, value) = row?;
                let record: OutboxRecord<AsyncEffect> = records::decode(value.value(), "outbox entry")?;
                if record.effect.target() == service {
                    ids.push(id.value());
                }
            }
            for id in &ids {
                table.remove(id)?;
            }
            dropped = ids.len();
            Ok(())
        })?;
        self.outbox.adjust(service, -(dropped as i64));
        Ok(dropped)
    }
}
