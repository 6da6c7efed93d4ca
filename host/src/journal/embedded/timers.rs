//! The timer tables: timers by owner and name, and the same timers by when
//! they are due. The writer sets and cancels them in the transaction of
//! the commit that asked; firings and failed attempts are bookkeeping
//! writes.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, Table};

use super::tables::{TIMERS, TIMERS_DUE};
use super::{JournalError, Lease, RedbJournal};
use crate::journal::contract::TimerStore;
use crate::journal::timers::{Timer, TimerChange, TimerGuard};

/// The timer tables, open in a write transaction.
pub(super) struct TimerTables<'txn> {
    /// Timers by owner and name.
    pub timers: Table<'txn, (&'static str, &'static str, &'static str), &'static [u8]>,
    /// The same timers' keys by due time and id.
    pub due: Table<'txn, (u64, u64), (&'static str, &'static str, &'static str)>,
}

impl<'txn> TimerTables<'txn> {
    /// Opens both tables in `txn`.
    pub fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, JournalError> {
        Ok(Self { timers: txn.open_table(TIMERS)?, due: txn.open_table(TIMERS_DUE)? })
    }

    /// Applies `changes` to the timers of `service/entity`.
    pub fn apply(&mut self, service: &str, entity: &str, changes: &[TimerChange]) -> Result<(), JournalError> {
        for change in changes {
            match change {
                TimerChange::Set(timer) => self.put(timer)?,
                TimerChange::Cancel(name) => {
                    self.remove(service, entity, name, None)?;
                }
            }
        }
        Ok(())
    }

    /// Stores `timer`, replacing the one of its owner and name.
    pub fn put(&mut self, timer: &Timer) -> Result<(), JournalError> {
        self.remove(&timer.service, &timer.entity, &timer.name, None)?;
        let key = (timer.service.as_str(), timer.entity.as_str(), timer.name.as_str());
        self.timers.insert(key, timer.encode()?.as_slice())?;
        self.due.insert((timer.due_ms, timer.id), key)?;
        Ok(())
    }

    /// Whether the timer setting `guard` names is stored (as this
    /// transaction has it).
    pub fn holds(&self, guard: &TimerGuard) -> Result<bool, JournalError> {
        let (service, entity, name) = (guard.service.as_str(), guard.entity.as_str(), guard.name.as_str());
        match self.timers.get((service, entity, name))? {
            Some(row) => Ok(Timer::read(service, entity, name, row.value()).is_ok_and(|t| t.id == guard.id)),
            None => Ok(false),
        }
    }

    /// Removes a timer (only the setting `id`, when given); whether one was.
    pub fn remove(&mut self, service: &str, entity: &str, name: &str, id: Option<u64>) -> Result<bool, JournalError> {
        let stored = match self.timers.get((service, entity, name))? {
            Some(row) => Timer::read(service, entity, name, row.value()),
            None => return Ok(false),
        };
        match stored {
            Ok(stored) if id.is_some_and(|id| id != stored.id) => return Ok(false),
            Ok(stored) => {
                self.due.remove((stored.due_ms, stored.id))?;
            }
            // An unreadable timer goes when set again or cancelled; its
            // index entry, which names it, is passed over from then on.
            Err(error) => tracing::error!(%error, %service, %entity, "a stored timer cannot be read; replaced"),
        }
        self.timers.remove((service, entity, name))?;
        Ok(true)
    }
}

impl TimerStore for RedbJournal {
    fn timers_due(&self, until_ms: u64, limit: usize) -> Result<Vec<Timer>, JournalError> {
        let txn = self.db()?.begin_read()?;
        let (timers, due) = (txn.open_table(TIMERS)?, txn.open_table(TIMERS_DUE)?);
        let mut out = Vec::new();
        for row in due.range(..=(until_ms, u64::MAX))?.take(limit) {
            let (_, owner) = row?;
            let (service, entity, name) = owner.value();
            // One unreadable timer must not stop the others.
            let read = match timers.get((service, entity, name))? {
                Some(stored) => Timer::read(service, entity, name, stored.value()),
                None => Err(JournalError::Corrupt(format!("the timer index names a missing timer {name:?}"))),
            };
            match read {
                Ok(timer) => out.push(timer),
                Err(error) => tracing::error!(%error, %service, %entity, "a stored timer cannot be read; passed over"),
            }
        }
        Ok(out)
    }

    fn next_timer_due(&self) -> Result<Option<u64>, JournalError> {
        let txn = self.db()?.begin_read()?;
        let due = txn.open_table(TIMERS_DUE)?;
        Ok(due.first()?.map(|(key, _)| key.value().0))
    }

    fn timers_of(&self, service: &str, entity: &str) -> Result<Vec<Timer>, JournalError> {
        let txn = self.db()?.begin_read()?;
        let timers = txn.open_table(TIMERS)?;
        let mut out = Vec::new();
        for row in timers.range((service, entity, "")..)? {
            let (key, value) = row?;
            let (s, e, name) = key.value();
            if (s, e) != (service, entity) {
                break;
            }
            out.push(Timer::read(s, e, name, value.value())?);
        }
        Ok(out)
    }

    fn timers_pending(&self) -> Result<u64, JournalError> {
        Ok(self.db()?.begin_read()?.open_table(TIMERS)?.len()?)
    }

    fn timers_fired(&self, timers: &[Timer], _: &Lease) -> Result<(), JournalError> {
        self.bookkeeping_write(|txn| {
            let mut tables = TimerTables::open(txn)?;
            for timer in timers {
                let current = tables.remove(&timer.service, &timer.entity, &timer.name, Some(timer.id))?;
                if current && timer.schedule.is_some() {
                    tables.put(timer)?;
                }
            }
            Ok(())
        })
    }

    fn timer_update(&self, timer: &Timer, _: &Lease) -> Result<(), JournalError> {
        self.bookkeeping_write(|txn| {
            let mut tables = TimerTables::open(txn)?;
            if tables.remove(&timer.service, &timer.entity, &timer.name, Some(timer.id))? {
                tables.put(timer)?;
            }
            Ok(())
        })
    }
}
