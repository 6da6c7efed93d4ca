//! Which entities give their memory back when the active entities reach
//! their cap (`--max-active-entities`) or the state they hold passes its
//! budget (`--max-cached-state-bytes`): the least recently used idle ones
//! first, until both are a tenth under their limit, so one entity more does
//! not start another round.
//!
//! Every entity task shares an [`Activity`] with the mailboxes: when it last
//! finished work and how much state it holds. One eviction round at a time
//! reads them all, marks the oldest idle tasks, and wakes every idle task;
//! a marked one retires if nothing waits in its mailbox. A task that takes
//! a job is used again and unmarks itself. While the limit is still passed
//! (every entity busy, or used too recently), the round looks again after
//! [`MIN_IDLE_UNDER_PRESSURE`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;

/// How long an entity must have been idle to be passivated before its
/// `--passivate-after`, to make room: the next command of a busy entity is
/// usually that close behind the last.
pub const MIN_IDLE_UNDER_PRESSURE: Duration = Duration::from_millis(100);

/// What an eviction round knows of one entity task.
#[derive(Debug)]
pub(super) struct Activity {
    /// Nanoseconds since the mailboxes' epoch at which the task last
    /// finished work, or [`BUSY`] while it runs some.
    last_active: AtomicU64,
    /// The bytes of state the task holds.
    held: AtomicUsize,
    /// Set by an eviction round: retire when next idle.
    evict: AtomicBool,
}

/// [`Activity::last_active`] of a task at work.
const BUSY: u64 = u64::MAX;

impl Activity {
    /// A new task's, busy with its first job.
    pub(super) fn busy() -> Arc<Self> {
        Arc::new(Self { last_active: AtomicU64::new(BUSY), held: AtomicUsize::new(0), evict: AtomicBool::new(false) })
    }

    /// The task took a job: it is used, so no longer a candidate.
    pub(super) fn start_work(&self) {
        self.last_active.store(BUSY, Ordering::Relaxed);
        self.evict.store(false, Ordering::Relaxed);
    }

    /// The task finished its work at `now`.
    pub(super) fn finish_work(&self, epoch: Instant, now: Instant) {
        self.last_active.store(nanos_since(epoch, now), Ordering::Relaxed);
    }

    /// Records the bytes of state the task holds.
    pub(super) fn hold(&self, bytes: usize) {
        self.held.store(bytes, Ordering::Relaxed);
    }

    /// Whether a round marked this task; clears the mark.
    pub(super) fn take_eviction(&self) -> bool {
        self.evict.swap(false, Ordering::Relaxed)
    }
}

fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(BUSY - 1)
}

/// Whether the active entities are at their cap or hold more than their
/// budget of state.
pub(super) fn under_pressure(shared: &Shared) -> bool {
    let mailboxes = &shared.mailboxes;
    mailboxes.active() >= shared.config.max_active_entities
        || mailboxes.cached_bytes() > shared.config.max_cached_state_bytes
}

/// Starts an eviction round unless one is running.
pub(super) fn relieve(shared: &Arc<Shared>) {
    if !shared.mailboxes.evicting.swap(true, Ordering::AcqRel) {
        tokio::spawn(evict_until_relieved(shared.clone()));
    }
}

async fn evict_until_relieved(shared: Arc<Shared>) {
    loop {
        while under_pressure(&shared) {
            if mark_least_recently_used(&shared) > 0 {
                shared.mailboxes.pressure.notify_waiters();
            }
            tokio::time::sleep(MIN_IDLE_UNDER_PRESSURE).await;
        }
        shared.mailboxes.evicting.store(false, Ordering::Release);
        // Pressure that arrived after the last look but before the flag
        // was down found a round running: look once more.
        if !under_pressure(&shared) || shared.mailboxes.evicting.swap(true, Ordering::AcqRel) {
            return;
        }
    }
}

/// Marks the oldest idle tasks until what they hold, and their number,
/// would bring the entities a tenth under their limits; answers how many.
fn mark_least_recently_used(shared: &Shared) -> usize {
    let config = &shared.config;
    let mailboxes = &shared.mailboxes;
    let now = nanos_since(mailboxes.epoch, Instant::now());
    let min_idle = u64::try_from(MIN_IDLE_UNDER_PRESSURE.as_nanos()).unwrap_or(u64::MAX);
    let mut idle: Vec<(u64, usize, Arc<Activity>)> = mailboxes.activities(|activity| {
        let last_active = activity.last_active.load(Ordering::Relaxed);
        let candidate = last_active != BUSY
            && now.saturating_sub(last_active) >= min_idle
            && !activity.evict.load(Ordering::Relaxed);
        candidate.then(|| (last_active, activity.held.load(Ordering::Relaxed), activity.clone()))
    });
    idle.sort_unstable_by_key(|(last_active, _, _)| *last_active);

    let mut excess_entities =
        mailboxes.active().saturating_sub(config.max_active_entities - config.max_active_entities / 10);
    let target_bytes = config.max_cached_state_bytes - config.max_cached_state_bytes / 10;
    let mut excess_bytes = mailboxes.cached_bytes().saturating_sub(target_bytes);
    let mut marked = 0;
    for (_, held, activity) in idle {
        if excess_entities == 0 && excess_bytes == 0 {
            break;
        }
        // Past the cap in bytes only, an entity that holds nothing frees
        // nothing.
        if excess_entities == 0 && held == 0 {
            continue;
        }
        activity.evict.store(true, Ordering::Relaxed);
        excess_entities = excess_entities.saturating_sub(1);
        excess_bytes = excess_bytes.saturating_sub(held);
        marked += 1;
    }
    marked
}
