//! Fires durable timers when they come due.
//!
//! One host of the journal fires at a time, under the `timers` lease
//! ([`crate::leases`]). It holds in memory only the timers due now (a few
//! hundred at a time, earliest first) and sleeps until the next one is
//! due, a commit of this host sets one, or a second passes (timers set on
//! other hosts). Each firing is an invocation like any other, under the
//! key of the timer's setting and first due time
//! ([`IdempotencyKey::timer`]), so a firing repeated after a crash changes
//! nothing on its entity. A firing that fails in a way that may pass is
//! tried again with exponential backoff, its attempts and error visible in
//! the timer's listing; one that fails for good (its command refused, or
//! its service deleted) is logged, counted and removed.
//!
//! A firing's commit names the timer setting it fires
//! ([`crate::journal::TimerGuard`]) and lands only while that setting is
//! stored: a timer cancelled or set again before its firing committed does
//! not run, however the two race, on one host or many.
//!
//! A timer with a cron schedule ([`cron`]) fires at each of its slots,
//! each under its own key (`timer {id} {slot}`), and stays, moved to its
//! next slot, once a slot has fired (or failed for good). A slot that came
//! up late past its grace counts as missed, and the timer's policy says
//! which of its missed slots fire: none (`skip`), the latest (`once`), or
//! each in turn (`all`). The slot a policy picks is recorded before it
//! fires, so a firing repeated after a crash names the same slot.

mod cron;

pub use cron::CronSpec;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::domain::IdempotencyKey;
use crate::invoke::{Cause, Invocation, InvokeError, Invoker};
use crate::journal::{Journal, JournalError, Lease, Timer, TimerGuard, now_ms};
use crate::leases::LeaseKeeper;
use crate::metrics::{Firing, Metrics};

/// How many timers fire at once.
const CONCURRENCY: usize = 64;
/// How many due timers one read takes.
const SCAN: usize = 4 * CONCURRENCY;
/// The longest the worker sleeps without looking at the timers.
const POLL: Duration = Duration::from_secs(1);
/// The first retry's delay; each further one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Fired timers are removed once this many are done, or [`FLUSH_AFTER`] passed.
const FLUSH_EVERY: usize = 64;
// A read must reach past the timers firing and those fired but not yet
// removed, which it passes over, or firing would stall until a poll.
const _: () = assert!(SCAN > CONCURRENCY + FLUSH_EVERY);
/// Above this many waiting timers, they are counted (for the metrics) once
/// every [`COUNT_LARGE_EVERY`] rather than every poll: a count reads them all.
const COUNT_LARGE: u64 = 100_000;
/// How often a large number of waiting timers is counted.
const COUNT_LARGE_EVERY: Duration = Duration::from_secs(30);
/// The longest a fired timer waits to be removed.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// Starts the timer worker, which fires while this host holds the lease.
pub fn spawn(leases: LeaseKeeper, invoker: Invoker, journal: Arc<dyn Journal>, metrics: Arc<Metrics>) {
    let work = move |lease| {
        let worker = Worker {
            invoker: invoker.clone(),
            journal: journal.clone(),
            metrics: metrics.clone(),
            lease,
            firing: JoinSet::new(),
            running: HashMap::new(),
            known: HashSet::new(),
            queue: VecDeque::new(),
            counted: None,
            done: Vec::new(),
            oldest_done: None,
        };
        worker.run()
    };
    tokio::spawn(leases.run("timers".into(), work));
}

/// How a firing went: the invocation's answer.
type Fired = Result<Vec<u8>, InvokeError>;

/// A timer's setting: its owner, name and id.
type Setting = (String, String, String, u64);

fn setting(timer: &Timer) -> Setting {
    (timer.service.clone(), timer.entity.clone(), timer.name.clone(), timer.id)
}

struct Worker {
    invoker: Invoker,
    journal: Arc<dyn Journal>,
    metrics: Arc<Metrics>,
    lease: Lease,
    /// The firings running: each answers its timer and how it went, or
    /// `None` when the timer was gone by the time it would have run.
    firing: JoinSet<(Timer, Option<Fired>)>,
    /// The setting each firing task fires.
    running: HashMap<tokio::task::Id, Setting>,
    /// The settings queued or firing.
    known: HashSet<Setting>,
    /// Due timers waiting for a free slot, earliest first.
    queue: VecDeque<Timer>,
    /// When the timers waiting were last counted, and how many there were.
    counted: Option<(Instant, u64)>,
    /// Timers fired and not yet removed.
    done: Vec<Timer>,
    /// When the oldest of them fired.
    oldest_done: Option<Instant>,
}

impl Worker {
    async fn run(mut self) {
        self.work().await;
        // Another host counts them now.
        self.metrics.timers.set_pending(0);
    }

    async fn work(&mut self) {
        let wake = self.invoker.timer_signal();
        loop {
            if self.queue.is_empty() && !self.read_due().await {
                return;
            }
            while self.firing.len() < CONCURRENCY
                && let Some(timer) = self.queue.pop_front()
            {
                self.fire(timer);
            }
            let idle = self.queue.is_empty() && self.firing.is_empty();
            if !self.flush(idle).await {
                return;
            }
            let mut sleep = self.until_next().await;
            if !self.done.is_empty() {
                sleep = sleep.min(FLUSH_AFTER);
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                Some(done) = self.firing.join_next_with_id() => {
                    match done {
                        Ok((id, (timer, result))) => {
                            self.running.remove(&id);
                            if !self.finished(timer, result).await {
                                return;
                            }
                        }
                        // A firing that panicked: its timer is read again.
                        Err(error) => {
                            tracing::error!(%error, "a timer's firing failed");
                            if let Some(setting) = self.running.remove(&error.id()) {
                                self.known.remove(&setting);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads the due timers not yet queued or firing; false when the
    /// journal says the lease is lost.
    async fn read_due(&mut self) -> bool {
        let journal = self.journal.clone();
        let now = now_ms();
        // The count is for the metrics: once a poll is enough, or less
        // often when there are many.
        let count = self
            .counted
            .is_none_or(|(at, pending)| at.elapsed() >= if pending > COUNT_LARGE { COUNT_LARGE_EVERY } else { POLL });
        let read = tokio::task::spawn_blocking(move || {
            let due = journal.timers_due(now, SCAN)?;
            let pending = if count { Some(journal.timers_pending()?) } else { None };
            Ok::<_, JournalError>((due, pending))
        })
        .await;
        match read {
            Ok(Ok((due, pending))) => {
                if let Some(pending) = pending {
                    self.metrics.timers.set_pending(pending);
                    self.counted = Some((Instant::now(), pending));
                }
                for timer in due {
                    if self.known.insert(setting(&timer)) {
                        self.queue.push_back(timer);
                    }
                }
            }
            Ok(Err(JournalError::LeaseLost(_))) => return false,
            Ok(Err(error)) => tracing::warn!(%error, "cannot read the due timers; trying again"),
            Err(error) => tracing::error!(%error, "reading the due timers failed"),
        }
        true
    }

    /// How long to sleep: until the next timer is due, at most [`POLL`];
    /// while timers are queued or firing, until one finishes.
    async fn until_next(&self) -> Duration {
        if !self.queue.is_empty() {
            return POLL;
        }
        let journal = self.journal.clone();
        let next = tokio::task::spawn_blocking(move || journal.next_timer_due()).await;
        let now = now_ms();
        match next {
            // A due timer still here is one firing now: its end wakes us.
            Ok(Ok(Some(due))) if due > now => Duration::from_millis(due - now).min(POLL),
            _ => POLL,
        }
    }

    /// Starts the firing of `timer`, unless it is no longer the setting read.
    fn fire(&mut self, timer: Timer) {
        let (invoker, journal, metrics) = (self.invoker.clone(), self.journal.clone(), self.metrics.clone());
        let lease = self.lease.clone();
        let running = setting(&timer);
        let task = self.firing.spawn(async move {
            let timer = match slot_to_fire(timer, journal, lease, &metrics).await {
                Ok(timer) => timer,
                Err(timer) => return (timer, None),
            };
            if timer.attempts == 0 {
                metrics.timers.record_late(Duration::from_millis(now_ms().saturating_sub(timer.scheduled_ms)));
            }
            let key = IdempotencyKey::timer(timer.id, timer.scheduled_ms);
            let invocation = Invocation::command(timer.call.clone(), Some(key))
                .at_hops(timer.hops)
                .child_of(timer.trace.as_ref(), Cause::Timer)
                .firing(TimerGuard::of(&timer));
            match invoker.invoke(invocation).await {
                // Cancelled or set again since it was read: nothing ran.
                Err(InvokeError::TimerGone) => (timer, None),
                result => (timer, Some(result)),
            }
        });
        self.running.insert(task.id(), running);
    }

    /// Records how a firing went: the timer to be removed (with the next
    /// batch), or kept for another attempt. False when the lease was found
    /// lost.
    async fn finished(&mut self, mut timer: Timer, result: Option<Fired>) -> bool {
        let Some(result) = result else {
            self.known.remove(&setting(&timer));
            return true;
        };
        let retry = match result {
            Ok(_) => {
                self.metrics.timers.record(Firing::Fired);
                false
            }
            Err(error) if error.is_transient() => {
                self.metrics.timers.record(Firing::Retried);
                let backoff = FIRST_BACKOFF.saturating_mul(1 << timer.attempts.min(12)).min(MAX_BACKOFF);
                timer.attempts += 1;
                tracing::debug!(timer = %timer.name, attempt = timer.attempts, %error, "a timer will fire again");
                timer.due_ms = now_ms() + backoff.as_millis() as u64;
                timer.last_error = Some(error.to_string());
                true
            }
            Err(error) => {
                self.metrics.timers.record(Firing::Failed);
                let then = if timer.schedule.is_some() { "its schedule goes on" } else { "the timer is removed" };
                tracing::warn!(
                    service = %timer.service, entity = %timer.entity, timer = %timer.name, target = %timer.call.target(),
                    %error, "a timer's command failed for good; {then}"
                );
                false
            }
        };
        if !retry {
            // A repeating timer moves on to its next slot; one that fired
            // once (or whose schedule has no slot left) is removed.
            match timer.schedule.as_ref().and_then(|schedule| next_slot(&schedule.expression, timer.scheduled_ms)) {
                Some(next) => {
                    (timer.scheduled_ms, timer.due_ms) = (next, next);
                    (timer.attempts, timer.last_error) = (0, None);
                }
                None => timer.schedule = None,
            }
            // Still known until written, so it is not read and fired again.
            self.oldest_done.get_or_insert_with(Instant::now);
            self.done.push(timer);
            return true;
        }
        self.known.remove(&setting(&timer));
        let (journal, lease) = (self.journal.clone(), self.lease.clone());
        match tokio::task::spawn_blocking(move || journal.timer_update(&timer, &lease)).await {
            Ok(Err(JournalError::LeaseLost(_))) => false,
            Ok(Err(error)) => {
                // The timer stays as it was and fires again. Not at once:
                // the journal is failing.
                tracing::error!(%error, "cannot record a timer's failed attempt");
                tokio::time::sleep(POLL).await;
                true
            }
            _ => true,
        }
    }

    /// Removes the fired timers in one write, once [`FLUSH_EVERY`] are done,
    /// the oldest waited [`FLUSH_AFTER`], or nothing else is to be done.
    /// False when the lease was found lost.
    async fn flush(&mut self, idle: bool) -> bool {
        let due = self.done.len() >= FLUSH_EVERY || self.oldest_done.is_some_and(|at| at.elapsed() >= FLUSH_AFTER);
        if self.done.is_empty() || !(due || idle) {
            return true;
        }
        let done = std::mem::take(&mut self.done);
        self.oldest_done = None;
        let (journal, lease) = (self.journal.clone(), self.lease.clone());
        let written = tokio::task::spawn_blocking(move || journal.timers_fired(&done, &lease).map(|()| done)).await;
        match written {
            Ok(Ok(done)) => {
                let now = now_ms();
                for timer in &done {
                    self.known.remove(&setting(timer));
                    // A repeating timer catching up on missed slots is due
                    // again at once: read it without waiting for a poll.
                    if timer.schedule.is_some() && timer.due_ms <= now {
                        self.invoker.timer_signal().notify_one();
                    }
                }
                true
            }
            // The timers stay known and stored: the next flush tries again.
            Ok(Err(error)) if !matches!(error, JournalError::LeaseLost(_)) => {
                tracing::error!(%error, "cannot remove fired timers");
                tokio::time::sleep(POLL).await;
                true
            }
            _ => false,
        }
    }
}

/// The slot of schedule `expression` after `slot`; `None` when it has no
/// slot left, or this host cannot read it (logged).
fn next_slot(expression: &str, slot: u64) -> Option<u64> {
    match CronSpec::parse(expression) {
        Ok(spec) => spec.next_after(slot),
        Err(error) => {
            tracing::error!(%error, "a stored timer's schedule cannot be read; it fires no more");
            None
        }
    }
}

/// For a repeating timer about to fire for the first time at its slot,
/// the slot its missed-firings policy fires: `Ok` with the timer to fire,
/// its slot recorded first when the policy picked another (so a firing
/// repeated after a crash names the same slot and runs once); `Err` when
/// nothing fires now — the policy passed every missed slot over and the
/// timer was moved to its next slot, or that could not be written.
async fn slot_to_fire(
    mut timer: Timer,
    journal: Arc<dyn Journal>,
    lease: Lease,
    metrics: &Metrics,
) -> Result<Timer, Timer> {
    let Some(schedule) = timer.schedule.clone() else {
        return Ok(timer);
    };
    if timer.attempts > 0 {
        return Ok(timer);
    }
    let spec = match CronSpec::parse(&schedule.expression) {
        Ok(spec) => spec,
        Err(_) => return Ok(timer),
    };
    let now = now_ms();
    let plan = spec.plan(timer.scheduled_ms, now, schedule.missed);
    let fires = match plan.fire {
        Some(slot) if slot == timer.scheduled_ms => return Ok(timer),
        Some(slot) => {
            (timer.scheduled_ms, timer.due_ms) = (slot, slot);
            true
        }
        None => match spec.next_after(now) {
            Some(next) => {
                (timer.scheduled_ms, timer.due_ms) = (next, next);
                false
            }
            None => return Ok(timer),
        },
    };
    let written = timer.clone();
    let stored = tokio::task::spawn_blocking(move || journal.timer_update(&written, &lease)).await;
    if matches!(stored, Ok(Ok(()))) && plan.passed_over > 0 {
        metrics.timers.record_passed_over(plan.passed_over);
        tracing::info!(
            service = %timer.service, entity = %timer.entity, timer = %timer.name,
            passed_over = plan.passed_over, missed = schedule.missed.as_str(),
            "missed slots of a cron schedule were passed over"
        );
    }
    match stored {
        Ok(Ok(())) if fires => Ok(timer),
        Ok(Ok(())) => Err(timer),
        Ok(Err(error)) => {
            tracing::warn!(%error, timer = %timer.name, "cannot record the slot a cron timer fires; it is read again");
            Err(timer)
        }
        Err(error) => {
            tracing::error!(%error, "recording a cron timer's slot failed");
            Err(timer)
        }
    }
}
