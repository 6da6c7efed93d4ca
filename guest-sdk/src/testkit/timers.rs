//! The timers a kit keeps for its entity, as the host would, and what a
//! timer's firing answered.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{ForwardCall, Outcome, cron, decode};
use crate::{Cron, Failure, MAX_TIMER_NAME, TimerCall, TimerChange, TimerDue};

/// The most timers one `advance` fires: past it, a timer keeps setting
/// itself at once, and the kit panics rather than loop.
pub(super) const MAX_FIRINGS: usize = 10_000;

/// The furthest ahead the host sets a timer: ten years of 366 days, in ms.
const MAX_DELAY_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

/// A [`TimerCall`] with its payload decoded as JSON (`null` for an empty
/// one): the same shape as a forward's.
pub type ScheduledCall = ForwardCall;

impl From<&TimerCall> for ScheduledCall {
    /// Decodes the call's payload.
    ///
    /// # Panics
    ///
    /// If the payload is neither empty nor JSON.
    fn from(call: &TimerCall) -> Self {
        let payload = decode(&call.payload, "timer payload");
        Self::new(call.service.clone(), call.entity_id.clone(), call.command.clone(), payload)
    }
}

/// A [`TimerChange`] with its call's payload decoded as JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum TimerChangeCall {
    /// Sets timer `name`, replacing one of the same name.
    Set {
        /// Its name among the entity's timers.
        name: String,
        /// When it fires, as the command said.
        due: TimerDue,
        /// What it runs.
        call: ScheduledCall,
    },
    /// Cancels the timer of this name, if there is one.
    Cancel(String),
}

impl From<&TimerChange> for TimerChangeCall {
    /// Decodes the change's payload.
    ///
    /// # Panics
    ///
    /// If the payload is neither empty nor JSON.
    fn from(change: &TimerChange) -> Self {
        match change {
            TimerChange::Set { name, due, call } => {
                Self::Set { name: name.clone(), due: due.clone(), call: call.into() }
            }
            TimerChange::Cancel(name) => Self::Cancel(name.clone()),
        }
    }
}

/// A timer a kit keeps for its entity, as the host would.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTimer {
    /// Its name among the entity's timers.
    pub name: String,
    /// When it is next due, in milliseconds since the Unix epoch (for a
    /// cron timer, its next slot).
    pub due_ms: u64,
    /// Its schedule, for a repeating timer.
    pub cron: Option<Cron>,
    /// What it runs.
    pub call: ScheduledCall,
}

/// One firing of a timer during an `advance` of a kit.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The timer's name.
    pub name: String,
    /// When it was due: the one-shot timer's time, or the cron slot.
    pub due_ms: u64,
    /// The idempotency key the host runs the firing under,
    /// `timer <id> <due_ms>`: `<id>` names this setting of the timer in 16
    /// hexadecimal digits (the host's is random, the kit's counts the
    /// settings from 1).
    pub key: String,
    /// What it runs.
    pub call: ScheduledCall,
    /// What its command answered, when the kit ran it (the call targets
    /// the kit's entity); `None` when it targets another entity, which the
    /// kit does not run.
    pub answer: Option<Result<Outcome, Failure>>,
}

/// A timer as the kit keeps it.
#[derive(Debug, Clone)]
struct Kept {
    name: String,
    /// Its setting: later settings have greater ids, so it also orders
    /// timers due at the same time.
    id: u64,
    due_ms: u64,
    cron: Option<Cron>,
    call: TimerCall,
}

/// The timers of an entity and the changes of the last command.
#[derive(Debug, Default)]
struct Book {
    kept: Vec<Kept>,
    changes: Vec<TimerChangeCall>,
    settings: u64,
}

/// The timers a kit keeps, behind a lock so a kit whose commands take
/// `&self` (the action kit) keeps them too, and the service the kit's
/// entity is deployed under, if the test said it.
#[derive(Debug, Default)]
pub(super) struct KitTimers {
    book: Mutex<Book>,
    pub(super) service: Option<String>,
}

impl KitTimers {
    /// `metadata`, addressed to the kit's service when the test named it.
    pub(super) fn addressed<'a>(&'a self, metadata: crate::Metadata<'a>) -> crate::Metadata<'a> {
        match &self.service {
            Some(service) => metadata.with_service(service),
            None => metadata,
        }
    }
}

/// A timer that came due, taken off the book (or moved to its next slot).
pub(super) struct Due {
    pub(super) name: String,
    pub(super) due_ms: u64,
    pub(super) key: String,
    pub(super) call: TimerCall,
    /// Whether its call targets the kit's own entity, so the kit runs it.
    pub(super) own: bool,
}

impl KitTimers {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits the timer changes of a command that succeeded at `now_ms`,
    /// in order, as the host does.
    ///
    /// # Panics
    ///
    /// Where the host would fail the command (`invalid_timer`) instead,
    /// committing nothing: see [`due_ms`].
    pub(super) fn commit(&self, now_ms: u64, changes: Vec<TimerChange>) {
        let due: Vec<Option<u64>> = changes
            .iter()
            .map(|change| {
                due_ms(change, now_ms).unwrap_or_else(|reason| {
                    panic!("{reason}: the host would fail the command (invalid_timer) and commit nothing")
                })
            })
            .collect();
        let mut book = self.book();
        book.changes = changes.iter().map(Into::into).collect();
        for (change, due_ms) in changes.into_iter().zip(due) {
            match (change, due_ms) {
                (TimerChange::Set { name, due, call }, Some(due_ms)) => {
                    let cron = match due {
                        TimerDue::Cron(cron) => Some(cron),
                        TimerDue::AfterMs(_) | TimerDue::AtMs(_) => None,
                    };
                    book.kept.retain(|kept| kept.name != name);
                    book.settings += 1;
                    let id = book.settings;
                    book.kept.push(Kept { name, id, due_ms, cron, call });
                }
                (change, _) => book.kept.retain(|kept| kept.name != change.name()),
            }
        }
    }

    /// Records that a command failed: it changed no timers.
    pub(super) fn failed(&self) {
        self.book().changes.clear();
    }

    /// The timer changes of the last command.
    pub(super) fn changes(&self) -> Vec<TimerChangeCall> {
        self.book().changes.clone()
    }

    /// The pending timers, the next due first.
    pub(super) fn pending(&self) -> Vec<PendingTimer> {
        let mut kept = self.book().kept.clone();
        kept.sort_by_key(|kept| (kept.due_ms, kept.id));
        kept.into_iter()
            .map(|kept| PendingTimer {
                call: (&kept.call).into(),
                name: kept.name,
                due_ms: kept.due_ms,
                cron: kept.cron,
            })
            .collect()
    }

    /// Takes the timer due first at or before `until_ms`, if any: a
    /// one-shot timer leaves the book, a cron timer moves to its next
    /// slot. `entity_id` is the kit's entity.
    pub(super) fn take_due(&self, until_ms: u64, entity_id: &str) -> Option<Due> {
        let mut book = self.book();
        let (index, kept) = book
            .kept
            .iter()
            .enumerate()
            .filter(|(_, kept)| kept.due_ms <= until_ms)
            .min_by_key(|(_, kept)| (kept.due_ms, kept.id))?;
        let own = kept.call.entity_id == entity_id
            && self.service.as_ref().is_none_or(|service| *service == kept.call.service);
        let due = Due {
            name: kept.name.clone(),
            due_ms: kept.due_ms,
            key: format!("timer {:016x} {}", kept.id, kept.due_ms),
            call: kept.call.clone(),
            own,
        };
        match kept.cron.as_ref().and_then(|cron| cron::next_slot(cron, kept.due_ms)) {
            Some(next) => book.kept[index].due_ms = next,
            None => drop(book.kept.remove(index)),
        }
        Some(due)
    }
}

/// When the timer `change` sets in a command run at `now_ms` is first due
/// (`None` for a cancel), or why the host would refuse the change: a name
/// that is empty, longer than [`MAX_TIMER_NAME`] bytes or holds a control
/// character; a call naming no valid service, entity or command; a time
/// more than ten years ahead; a cron expression that does not read or never
/// fires. A time already past is due at once, at `now_ms`.
pub(super) fn due_ms(change: &TimerChange, now_ms: u64) -> Result<Option<u64>, String> {
    let name = change.name();
    if name.is_empty() || name.len() > MAX_TIMER_NAME {
        return Err(format!("a timer name must be 1 to {MAX_TIMER_NAME} bytes long, not {}", name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("the timer name {name:?} holds a control character"));
    }
    let TimerChange::Set { due, call, .. } = change else { return Ok(None) };
    let named = |problem: String| format!("timer {name:?} {problem}");
    let service_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if call.service.is_empty()
        || call.service.len() > 64
        || !call.service.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !call.service.chars().all(service_char)
    {
        return Err(named(format!("names an invalid service {:?}", call.service)));
    }
    if call.entity_id.is_empty()
        || call.entity_id.len() > 256
        || call.entity_id.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(named(format!("names an invalid entity {:?}", call.entity_id)));
    }
    if call.command.is_empty() {
        return Err(named("names no command".into()));
    }
    let due_ms = match due {
        TimerDue::AfterMs(after) if *after <= MAX_DELAY_MS => now_ms.saturating_add(*after),
        TimerDue::AtMs(at) if *at <= now_ms.saturating_add(MAX_DELAY_MS) => (*at).max(now_ms),
        TimerDue::AfterMs(_) | TimerDue::AtMs(_) => return Err(named("is due more than ten years ahead".into())),
        TimerDue::Cron(cron) => cron::first_slot(cron, now_ms).map_err(|reason| named(format!("has a {reason}")))?,
    };
    Ok(Some(due_ms))
}

/// Defines a kit's timer methods (`now_ms`, `with_service`, `timers`,
/// `timer_changes`, `advance`) over its `metadata`, `timers` and
/// `entity_id` fields and its `run_keyed(name, payload, key)`, which runs a
/// command under an idempotency key as the kit runs every command.
macro_rules! kit_timer_methods {
    () => {
        /// The kit's clock, in milliseconds since the Unix epoch: the time
        /// its commands see in their [`Metadata`](crate::Metadata). It
        /// reads the real time until a test fixes it
        /// ([`set_time_ms`](Self::set_time_ms)) or moves it
        /// ([`advance`](Self::advance), which first fixes it at the real
        /// time); fix it first for due times a test can write down.
        pub fn now_ms(&self) -> u64 {
            self.metadata.now_ms()
        }

        /// Names the service the kit's entity is deployed under: its
        /// commands see it in their [`Metadata`](crate::Metadata), and from
        /// then on [`advance`](Self::advance) runs only the timers whose
        /// call targets this service as well as the kit's entity. Without
        /// it, a timer targeting the kit's entity id runs whatever its
        /// service.
        pub fn with_service(mut self, service: impl Into<String>) -> Self {
            self.timers.service = Some(service.into());
            self
        }

        /// The entity's pending timers, as the host would keep them, the
        /// next due first: every timer a successful command set (a setting
        /// replacing one of the same name) and none cancelled since. A
        /// failed command changes none.
        ///
        /// # Panics
        ///
        /// If a timer's payload is neither empty nor JSON.
        pub fn timers(&self) -> Vec<$crate::testkit::PendingTimer> {
            self.timers.pending()
        }

        /// The timer changes the last command made, in order, with their
        /// payloads decoded as JSON: none when it failed.
        pub fn timer_changes(&self) -> Vec<$crate::testkit::TimerChangeCall> {
            self.timers.changes()
        }

        /// Moves the clock `by` on (see [`now_ms`](Self::now_ms)) and fires,
        /// in due order, every pending timer that comes due meanwhile,
        /// returning each firing.
        ///
        /// A timer whose call targets the kit's entity (its id, and its
        /// service if [`with_service`](Self::with_service) named one) runs
        /// through the kit like [`handle`](Self::handle), at its due time
        /// and under the idempotency key the host would give it; timers
        /// targeting other entities come due and are returned, not run. A
        /// one-shot timer is removed once it fired, a cron timer moves to
        /// its next slot: the kit fires every slot, whatever its
        /// [`Missed`](crate::Missed) policy, as a host that never stops
        /// would. Timers the firings set fire too if they come due in time.
        ///
        /// # Panics
        ///
        /// If more than 10,000 timers fire in one call (a timer that keeps
        /// setting itself at once), or as [`handle_outcome`](Self::handle_outcome).
        pub fn advance(&mut self, by: ::std::time::Duration) -> Vec<$crate::testkit::Firing> {
            let start = self.now_ms();
            let until = start.saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
            self.metadata.now_ms = Some(start);
            let mut firings = Vec::new();
            while let Some(due) = self.timers.take_due(until, &self.entity_id) {
                assert!(
                    firings.len() < $crate::testkit::timers::MAX_FIRINGS,
                    "more than {} timers fired in one advance: timer {:?} keeps coming due",
                    $crate::testkit::timers::MAX_FIRINGS,
                    due.name
                );
                self.metadata.now_ms = Some(self.now_ms().max(due.due_ms));
                let answer = due.own.then(|| {
                    self.run_keyed(&due.call.command, &due.call.payload, Some(&due.key))
                        .map(|(reply, side_effects)| $crate::testkit::Outcome::new(reply, side_effects))
                });
                let call = (&due.call).into();
                firings.push($crate::testkit::Firing {
                    name: due.name,
                    due_ms: due.due_ms,
                    key: due.key,
                    call,
                    answer,
                });
            }
            self.metadata.now_ms = Some(until.max(self.now_ms()));
            firings
        }
    };
}
