//! Entity mailboxes: one task per active entity runs its commands one at a
//! time, in arrival order, while different entities run in parallel.
//!
//! The task keeps the entity's latest state in memory, so a warm command
//! reads nothing from the journal. An entity idle longer than the
//! passivation timeout drops its task and state; the next command rebuilds it
//! from the latest snapshot and the events after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::journal::{Append, Journal, JournalError, StoredSnapshot};
use crate::metrics::{Metrics, Outcome};
use crate::runtime::{Command, Effects, Event, Failure, GuestError, Runtime, Snapshot};
use crate::services::Services;

/// Settings of entity execution.
#[derive(Debug, Clone, Copy)]
pub struct EntityConfig {
    /// Store a snapshot whenever a command's events cross a multiple of this.
    pub snapshot_every: u64,
    /// Drop an entity's in-memory state after this long without a command.
    pub passivate_after: Duration,
    /// The most commands that may wait for one entity.
    pub mailbox_capacity: usize,
    /// The most commands in flight across all entities.
    pub max_in_flight: usize,
    /// The most events one command may emit.
    pub max_events_per_command: usize,
    /// The largest reply one command may produce, in bytes.
    pub max_reply_bytes: usize,
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No service of that name is deployed.
    #[error("no service named {0:?} is deployed")]
    UnknownService(String),
    /// The entity's mailbox is full, or the host has too many commands in flight.
    #[error("{0}; retry later")]
    Overloaded(String),
    /// The guest produced more output than allowed; nothing was persisted.
    #[error("{0}")]
    OutputLimit(String),
    /// The guest refused the command.
    #[error("{}", .0.message)]
    Failed(Failure),
    /// The guest trapped, timed out or hit a limit.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// The events could not be committed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The host could not run the command.
    #[error("{0}")]
    Internal(String),
}

type Reply = Result<Vec<u8>, InvokeError>;

struct Invocation {
    command: String,
    payload: Vec<u8>,
    reply: oneshot::Sender<Reply>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct EntityKey {
    service: Arc<str>,
    entity: Arc<str>,
}

/// The last committed state of a warm entity.
struct CachedState {
    seq: u64,
    state: Vec<u8>,
}

/// Routes commands to entity tasks, starting them on demand.
#[derive(Clone)]
pub struct Entities {
    shared: Arc<Shared>,
}

struct Shared {
    services: Arc<Services>,
    journal: Arc<Journal>,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    config: EntityConfig,
    mailboxes: Mutex<HashMap<EntityKey, mpsc::Sender<Invocation>>>,
    in_flight: Arc<Semaphore>,
}

impl Entities {
    /// Creates the router.
    pub fn new(
        services: Arc<Services>,
        journal: Arc<Journal>,
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        config: EntityConfig,
    ) -> Self {
        let mailboxes = Mutex::new(HashMap::new());
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        Self { shared: Arc::new(Shared { services, journal, runtime, metrics, config, mailboxes, in_flight }) }
    }

    /// Runs `command` on entity `entity` of `service` and answers its reply
    /// once the command's events are durable.
    pub async fn invoke(&self, service: &str, entity: &str, command: String, payload: Vec<u8>) -> Reply {
        let metrics = &self.shared.metrics;
        if self.shared.services.get(service).is_none() {
            metrics.record_invocation(Outcome::Refused);
            return Err(InvokeError::UnknownService(service.to_string()));
        }
        let Ok(_permit) = self.shared.in_flight.clone().try_acquire_owned() else {
            metrics.record_invocation(Outcome::Refused);
            return Err(InvokeError::Overloaded("the host has too many commands in flight".into()));
        };
        let key = EntityKey { service: service.into(), entity: entity.into() };
        let (reply, answer) = oneshot::channel();
        self.enqueue(key, Invocation { command, payload, reply })?;
        let result = answer.await.unwrap_or_else(|_| Err(InvokeError::Internal("the entity task stopped".into())));
        metrics.record_invocation(match &result {
            Ok(_) => Outcome::Ok,
            Err(InvokeError::Failed(_)) => Outcome::Failed,
            Err(InvokeError::Guest(GuestError::Timeout(_))) => Outcome::TimedOut,
            Err(InvokeError::Guest(_)) => Outcome::Trapped,
            Err(_) => Outcome::Refused,
        });
        result
    }

    /// Puts the invocation in the entity's mailbox, starting its task if it
    /// has none. Done under the mailbox lock, so a task retiring at the same
    /// moment can never strand a message (see [`Shared::try_retire`]).
    fn enqueue(&self, key: EntityKey, invocation: Invocation) -> Result<(), InvokeError> {
        let mut mailboxes = self.shared.mailboxes.lock().unwrap();
        let sender = mailboxes.entry(key.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.shared.config.mailbox_capacity);
            tokio::spawn(run_entity(self.shared.clone(), key.clone(), rx));
            tx
        });
        sender.try_send(invocation).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.shared.metrics.record_invocation(Outcome::Refused);
                InvokeError::Overloaded(format!("entity {:?} has too many commands waiting", key.entity))
            }
            mpsc::error::TrySendError::Closed(_) => InvokeError::Internal("the entity task stopped".into()),
        })
    }
}

impl Shared {
    /// Removes the entity's mailbox if nothing is waiting in it. Returns
    /// whether the task may stop.
    fn try_retire(&self, key: &EntityKey, rx: &mpsc::Receiver<Invocation>) -> bool {
        let mut mailboxes = self.mailboxes.lock().unwrap();
        if rx.is_empty() {
            mailboxes.remove(key);
            true
        } else {
            false
        }
    }
}

async fn run_entity(shared: Arc<Shared>, key: EntityKey, mut rx: mpsc::Receiver<Invocation>) {
    shared.metrics.add_active_entities(1);
    let mut cached = None;
    loop {
        let invocation = match tokio::time::timeout(shared.config.passivate_after, rx.recv()).await {
            Ok(Some(invocation)) => invocation,
            Ok(None) => break,
            Err(_idle) if shared.try_retire(&key, &rx) => break,
            Err(_idle) => continue,
        };
        let result = run_command(&shared, &key, &mut cached, invocation.command, invocation.payload).await;
        let _ = invocation.reply.send(result);
    }
    shared.metrics.add_active_entities(-1);
}

/// Runs one command: rebuild the state if cold, call the guest, commit the
/// events, then update the cached state.
async fn run_command(
    shared: &Arc<Shared>,
    key: &EntityKey,
    cached: &mut Option<CachedState>,
    name: String,
    payload: Vec<u8>,
) -> Reply {
    let service = shared
        .services
        .get(&key.service)
        .ok_or_else(|| InvokeError::UnknownService(key.service.to_string()))?;
    let (snapshot, events, last_seq) = match cached {
        Some(c) => (Some(Snapshot { seq: c.seq, state: c.state.clone() }), Vec::new(), c.seq),
        None => load(shared, key).await?,
    };
    let command = Command { name, payload, entity_id: key.entity.to_string() };
    let runtime = shared.runtime.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        runtime.handle(&service.entity, snapshot.as_ref(), &events, &command)
    })
    .await
    .map_err(|e| InvokeError::Internal(format!("the guest call panicked: {e}")))?;
    let effects = outcome?.map_err(InvokeError::Failed)?;
    check_output(&shared.config, &effects)?;

    let mut seq = last_seq;
    if !effects.events.is_empty() {
        let new_last = last_seq + effects.events.len() as u64;
        let every = shared.config.snapshot_every;
        let snapshot = ((last_seq + 1)..=new_last)
            .any(|s| s % every == 0)
            .then(|| StoredSnapshot { seq: new_last, state: effects.state.clone() });
        let append = Append {
            service: key.service.clone(),
            entity: key.entity.clone(),
            expected_last_seq: last_seq,
            events: effects.events,
            snapshot,
        };
        if let Err(error) = shared.journal.append(append).await {
            // The journal is the truth: forget what we hold and reload next time.
            *cached = None;
            return Err(error.into());
        }
        seq = new_last;
    }
    *cached = Some(CachedState { seq, state: effects.state });
    Ok(effects.reply)
}

/// Loads a cold entity's latest snapshot and the events after it.
async fn load(shared: &Arc<Shared>, key: &EntityKey) -> Result<(Option<Snapshot>, Vec<Event>, u64), InvokeError> {
    let journal = shared.journal.clone();
    let (service, entity) = (key.service.clone(), key.entity.clone());
    let history = tokio::task::spawn_blocking(move || journal.load_entity(&service, &entity))
        .await
        .map_err(|e| InvokeError::Internal(e.to_string()))??;
    shared.metrics.record_cold_load();
    let snapshot = history.snapshot.map(|s| Snapshot { seq: s.seq, state: s.state });
    let events = history.events.into_iter().map(|e| Event { seq: e.seq, payload: e.payload }).collect();
    Ok((snapshot, events, history.last_seq))
}

/// Refuses output past the configured limits, so a runaway guest fails its
/// command instead of the host.
fn check_output(config: &EntityConfig, effects: &Effects) -> Result<(), InvokeError> {
    if effects.events.len() > config.max_events_per_command {
        return Err(InvokeError::OutputLimit(format!(
            "the command emitted {} events; at most {} are allowed",
            effects.events.len(),
            config.max_events_per_command
        )));
    }
    if effects.reply.len() > config.max_reply_bytes {
        return Err(InvokeError::OutputLimit(format!(
            "the reply has {} bytes; at most {} are allowed",
            effects.reply.len(),
            config.max_reply_bytes
        )));
    }
    Ok(())
}
