//! One mailbox and task per active entity: commands to one entity run one at
//! a time, in arrival order; different entities run in parallel. A task idle
//! longer than the passivation timeout stops and drops the entity's state.
//! When the active entities reach their cap, or the state they hold its
//! budget, the least recently used idle ones stop first ([`eviction`]), so
//! memory stays bounded by the entities actually in use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::command_run;
use super::crdt_command;
use super::entity_command::CachedState;
use super::eviction::{self, Activity};
use super::{Invocation, InvokeError, Shared};
use crate::domain::{FollowUp, ServiceKind};
use crate::journal::Watching;
use crate::services::Service;

/// Identifies one entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct EntityKey {
    pub service: Arc<str>,
    pub entity: Arc<str>,
}

/// One job in an entity's mailbox.
pub(super) struct Job {
    /// The version the command runs on: the newest when it arrived.
    pub service: Arc<Service>,
    /// What to do.
    pub work: Work,
    /// Told the outcome.
    pub done: oneshot::Sender<Result<FollowUp, InvokeError>>,
    /// The span of the invocation that sent it: the entity's task runs the
    /// command in it, so what is logged meanwhile (the guest's own lines
    /// too) names the invocation.
    pub span: tracing::Span,
}

/// What a job does.
pub(super) enum Work {
    /// Run a command.
    Command(Invocation),
    /// Write to the entity's log outside any command (a fork into it),
    /// between its commands, then drop its cached state.
    Outside(Box<dyn FnOnce() + Send>),
    /// Merge what other hosts committed to a CRDT entity, between its
    /// commands.
    Merge,
}

impl Work {
    /// Whether it may run in a batch after an unkeyed command.
    fn pipelines(&self) -> bool {
        matches!(self, Work::Command(invocation) if invocation.key.is_none())
    }
}

/// A job as it waits in a mailbox. Boxed because a tokio channel allocates
/// its slots 32 at a time: a pointer per slot keeps an idle entity's
/// mailbox at a few hundred bytes instead of four kilobytes.
pub(super) type Mail = Box<Job>;

/// The most queued commands an entity runs before their commits are awaited.
const MAX_PIPELINE: usize = 64;

/// An active entity: where its jobs go, and what eviction knows of its task.
struct Slot {
    sender: mpsc::Sender<Mail>,
    activity: Arc<Activity>,
}

/// The mailboxes of the active entities.
pub(crate) struct Mailboxes {
    slots: Mutex<HashMap<EntityKey, Slot>>,
    /// Woken when an eviction round has marked tasks to retire.
    pub(super) pressure: Notify,
    /// The bytes of state the active entities hold.
    cached_bytes: AtomicUsize,
    /// Whether an eviction round is running.
    pub(super) evicting: AtomicBool,
    /// What [`Activity`] times count from.
    pub(super) epoch: Instant,
}

impl Default for Mailboxes {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
            pressure: Notify::new(),
            cached_bytes: AtomicUsize::new(0),
            evicting: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }
}

impl Mailboxes {
    /// How many entities are active.
    pub(super) fn active(&self) -> usize {
        self.slots.lock().unwrap().len()
    }

    /// The bytes of state the active entities hold.
    pub(super) fn cached_bytes(&self) -> usize {
        self.cached_bytes.load(Ordering::Relaxed)
    }

    /// What `pick` answers of each active entity's task.
    pub(super) fn activities<T>(&self, mut pick: impl FnMut(&Arc<Activity>) -> Option<T>) -> Vec<T> {
        self.slots.lock().unwrap().values().filter_map(|slot| pick(&slot.activity)).collect()
    }
}

/// Puts the command in its entity's mailbox, starting the entity's task if
/// it has none, and waits until it is durable: answers what follows it.
pub(super) async fn enqueue(
    shared: &Arc<Shared>,
    service: Arc<Service>,
    invocation: Invocation,
) -> Result<FollowUp, InvokeError> {
    let key = EntityKey { service: invocation.service().into(), entity: invocation.entity().into() };
    post(shared, service, key, Work::Command(invocation)).await
}

/// Runs `write` — a blocking write to `entity`'s log made outside any
/// command — in the entity's task, between its commands, and then drops
/// its cached state, so no command runs on what the entity was before.
pub(super) async fn write_outside_commands<T: Send + 'static>(
    shared: &Arc<Shared>,
    service: Arc<Service>,
    entity: &str,
    write: impl FnOnce() -> T + Send + 'static,
) -> Result<T, InvokeError> {
    let key = EntityKey { service: service.meta.service.as_str().into(), entity: entity.into() };
    let (written, result) = oneshot::channel();
    let work = Work::Outside(Box::new(move || {
        let _ = written.send(write());
    }));
    post(shared, service, key, work).await?;
    result.await.map_err(|_| InvokeError::Internal("the write outside commands did not finish".into()))
}

/// Merges what other hosts committed to the CRDT entity `service/entity`
/// into its state here, between its commands, and answers once merged: a
/// command that arrives afterwards sees what they committed. An entity
/// with no task here has no state to merge: its next command loads it.
pub(super) async fn merge_if_active(shared: &Arc<Shared>, service: Arc<Service>, entity: &str) {
    let key = EntityKey { service: service.meta.service.as_str().into(), entity: entity.into() };
    let Some(sender) = shared.mailboxes.slots.lock().unwrap().get(&key).map(|slot| slot.sender.clone()) else {
        return;
    };
    let (done, answer) = oneshot::channel();
    let job = Job { service, work: Work::Merge, done, span: tracing::Span::current() };
    // Behind the commands already waiting; a task that ended meanwhile
    // (passivated) holds nothing to merge.
    if sender.send(Box::new(job)).await.is_ok() {
        let _ = answer.await;
    }
}

/// Puts `work` in `key`'s mailbox and waits for its answer.
async fn post(
    shared: &Arc<Shared>,
    service: Arc<Service>,
    key: EntityKey,
    work: Work,
) -> Result<FollowUp, InvokeError> {
    let (done, answer) = oneshot::channel();
    {
        // Under the lock, so a task retiring at the same moment can never
        // strand a job (see `try_retire`).
        let mut slots = shared.mailboxes.slots.lock().unwrap();
        let crowded = slots.len() >= shared.config.max_active_entities && !slots.contains_key(&key);
        let start_task = || {
            let (sender, rx) = mpsc::channel(shared.config.mailbox_capacity);
            let activity = Activity::busy();
            tokio::spawn(run_entity(shared.clone(), key.clone(), rx, activity.clone()));
            Slot { sender, activity }
        };
        let slot = slots.entry(key.clone()).or_insert_with(start_task);
        let sent = match slot.sender.try_send(Box::new(Job { service, work, done, span: tracing::Span::current() })) {
            // The task ended without retiring: it panicked. A new one
            // starts from the journal, so the entity does not stay broken.
            Err(mpsc::error::TrySendError::Closed(mail)) => {
                *slot = start_task();
                slot.sender.try_send(mail)
            }
            sent => sent,
        };
        drop(slots);
        if crowded {
            eviction::relieve(shared);
        }
        sent.map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                InvokeError::Overloaded(format!("entity {:?} has too many commands waiting", key.entity))
            }
            mpsc::error::TrySendError::Closed(_) => InvokeError::Internal("the entity task stopped".into()),
        })?;
    }
    answer.await.unwrap_or_else(|_| Err(InvokeError::Internal("the entity task stopped".into())))
}

/// Removes the entity's mailbox if nothing waits in it; answers whether its
/// task may stop.
fn try_retire(shared: &Shared, key: &EntityKey, rx: &mpsc::Receiver<Mail>) -> bool {
    let mut slots = shared.mailboxes.slots.lock().unwrap();
    if rx.is_empty() {
        slots.remove(key);
        if slots.capacity() > 64 && slots.len() < slots.capacity() / 4 {
            slots.shrink_to_fit();
        }
        true
    } else {
        false
    }
}

async fn run_entity(shared: Arc<Shared>, key: EntityKey, mut rx: mpsc::Receiver<Mail>, activity: Arc<Activity>) {
    shared.metrics.add_active_entities(1);
    let mut task = EntityTask { shared: &shared, activity: &activity, held: 0 };
    let mut cached: Option<CachedState> = None;
    let mut last_active = Instant::now();
    let mut carried: Option<Mail> = None;
    // A CRDT entity on a journal other hosts write to hears their changes,
    // and merges them before its next command.
    let mut elsewhere: Option<Watching<(Arc<str>, Arc<str>)>> = None;
    loop {
        let pressure = shared.mailboxes.pressure.notified();
        let job = if let Some(job) = carried.take() {
            job
        } else {
            tokio::select! {
                biased;
                () = changed_elsewhere(&mut elsewhere) => {
                    crdt_command::merge_elsewhere(&shared, &key, &mut cached).await;
                    task.hold(cached.as_ref().map_or(0, CachedState::bytes));
                    continue;
                }
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
                () = tokio::time::sleep_until(last_active + shared.config.passivate_after) => {
                    if try_retire(&shared, &key, &rx) {
                        break;
                    }
                    continue;
                }
                () = pressure => {
                    if activity.take_eviction() && try_retire(&shared, &key, &rx) {
                        break;
                    }
                    continue;
                }
            }
        };
        activity.start_work();
        if elsewhere.is_none() && job.service.kind() == ServiceKind::Crdt && shared.journal.has_other_writers() {
            // Before the entity's state is loaded, so no change is missed.
            elsewhere = Some(shared.journal.commits().crdt_elsewhere(&key.service, &key.entity));
        }
        if let Work::Merge = job.work {
            crdt_command::merge_stored(&shared, &key, &mut cached).await;
            task.hold(cached.as_ref().map_or(0, CachedState::bytes));
            let _ = job.done.send(Ok(FollowUp::nothing()));
            last_active = Instant::now();
            activity.finish_work(shared.mailboxes.epoch, last_active);
            continue;
        }
        if let Work::Outside(write) = job.work {
            let written = super::blocking(write).await;
            cached = None;
            task.hold(0);
            let _ = job.done.send(written.map(|()| FollowUp::nothing()));
            last_active = Instant::now();
            activity.finish_work(shared.mailboxes.epoch, last_active);
            continue;
        }
        let mut batch = vec![job];
        // Commands without an idempotency key run back to back; a keyed one
        // runs alone, so a repeat of its key sees its committed record. Only
        // event-sourced and CRDT entities pipeline: their commits carry the
        // seq (the replica's revision) they build on, so one after a failed
        // commit is refused by the journal.
        let pipelines = matches!(batch[0].service.kind(), ServiceKind::EventSourced | ServiceKind::Crdt);
        if pipelines && batch[0].work.pipelines() {
            while batch.len() < MAX_PIPELINE {
                match rx.try_recv() {
                    Ok(next) if !next.work.pipelines() => {
                        carried = Some(next);
                        break;
                    }
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        // Boxed: the batch's future is large, and inline it would be part
        // of every idle entity's task too.
        Box::pin(command_run::run_batch(&shared, &key, &mut cached, batch)).await;
        task.hold(cached.as_ref().map_or(0, CachedState::bytes));
        last_active = Instant::now();
        activity.finish_work(shared.mailboxes.epoch, last_active);
    }
}

/// Waits until another host changes the watched CRDT entity; never, when
/// none is watched.
async fn changed_elsewhere(watching: &mut Option<Watching<(Arc<str>, Arc<str>)>>) {
    match watching {
        Some(watching) => {
            watching.changed().await;
        }
        None => std::future::pending().await,
    }
}

/// An entity task's share of the gauges: one active entity, and the bytes
/// of state it holds. Counted out when the task ends, however it ends.
struct EntityTask<'a> {
    shared: &'a Arc<Shared>,
    activity: &'a Activity,
    held: usize,
}

impl EntityTask<'_> {
    /// The task now holds `bytes` of state; past the budget of all
    /// entities' state, the least recently used are passivated.
    fn hold(&mut self, bytes: usize) {
        let mailboxes = &self.shared.mailboxes;
        if bytes >= self.held {
            mailboxes.cached_bytes.fetch_add(bytes - self.held, Ordering::Relaxed);
        } else {
            mailboxes.cached_bytes.fetch_sub(self.held - bytes, Ordering::Relaxed);
        }
        self.shared.metrics.add_cached_state_bytes(bytes as i64 - self.held as i64);
        self.held = bytes;
        self.activity.hold(bytes);
        if bytes > 0 && mailboxes.cached_bytes() > self.shared.config.max_cached_state_bytes {
            eviction::relieve(self.shared);
        }
    }
}

impl Drop for EntityTask<'_> {
    fn drop(&mut self) {
        self.hold(0);
        self.shared.metrics.add_active_entities(-1);
    }
}
