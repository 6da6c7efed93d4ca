//! Running commands: entity mailboxes (one writer per entity), stateless
//! actions, and what follows a command once its writes are durable —
//! synchronous side effects, then the reply or a forward.
//!
//! Event-sourced and value entities get one task per active entity
//! ([`mailbox`]), which runs its commands one at a time in arrival order and
//! keeps its latest state in memory ([`stateful`]). Actions run fully in
//! parallel. Side effects and forwards run outside the entity's task, so an
//! entity can call itself without deadlock, and are bounded in depth.

mod action;
mod finish_on_drop;
mod mailbox;
mod stateful;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::journal::{IdempotencyRecord, Invocation, Journal, JournalError, RecordedOutcome, RecordedReply, now_ms};
use crate::metrics::{Metrics, Outcome};
use crate::names::{validate_entity_id, validate_service_name};
use crate::runtime::{EntityKind, Failure, GuestError, Reply, Runtime, SideEffect};
use crate::services::Services;
use mailbox::Mailboxes;

/// How deep forwards and synchronous side effects may nest.
pub const MAX_HOPS: u32 = 16;

/// Settings of command execution.
#[derive(Debug, Clone, Copy)]
pub struct EntityConfig {
    /// Store a snapshot whenever a command's events cross a multiple of this.
    pub snapshot_every: u64,
    /// Drop an entity's in-memory state after this long without a command.
    pub passivate_after: Duration,
    /// The most commands that may wait for one entity.
    pub mailbox_capacity: usize,
    /// How many entities may hold their state in memory before idle ones
    /// are passivated early (a soft cap: busy entities are never evicted).
    pub max_active_entities: usize,
    /// The most commands in flight across all entities.
    pub max_in_flight: usize,
    /// The most events (or side effects) one command may produce.
    pub max_events_per_command: usize,
    /// The largest reply one command may produce, in bytes.
    pub max_reply_bytes: usize,
    /// How long an idempotency record answers repeats of its key.
    pub idempotency_ttl: Duration,
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No service of that name is deployed.
    #[error("no service named {0:?} is deployed")]
    UnknownService(String),
    /// A forward or side effect named an invalid target.
    #[error("{0}")]
    InvalidTarget(String),
    /// The entity's mailbox is full, or the host has too many commands in flight.
    #[error("{0}; retry later")]
    Overloaded(String),
    /// The guest refused the command.
    #[error("{}", .0.message)]
    Failed(Failure),
    /// The guest trapped, timed out or hit a limit.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// The guest produced more output than allowed; nothing was persisted.
    #[error("{0}")]
    OutputLimit(String),
    /// Forwards and synchronous side effects nested deeper than [`MAX_HOPS`].
    #[error("forwards and synchronous side effects nested more than {MAX_HOPS} deep; is there a loop?")]
    TooManyHops,
    /// A synchronous side effect failed. The command itself was committed.
    #[error("the command was committed, but its synchronous side effect {target} failed: {source}")]
    SideEffectFailed {
        /// `service/entity/command` of the side effect.
        target: String,
        /// Why it failed.
        source: Box<InvokeError>,
    },
    /// The writes could not be committed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The host could not run the command.
    #[error("{0}")]
    Internal(String),
}

impl InvokeError {
    /// Whether trying the same invocation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            InvokeError::Overloaded(_)
            | InvokeError::Journal(_)
            | InvokeError::Internal(_)
            | InvokeError::UnknownService(_)
            | InvokeError::Guest(GuestError::Timeout(_) | GuestError::Busy) => true,
            InvokeError::SideEffectFailed { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The target.
    pub invocation: Invocation,
    /// The idempotency key, if any: the client's, or one the host derived
    /// for a side effect, forward or outbox delivery.
    pub idempotency_key: Option<String>,
}

/// What a command produced once its writes are durable: the synchronous
/// side effects still to run, then the reply (or a forward).
#[derive(Debug)]
pub(crate) struct Produced {
    outcome: RecordedOutcome,
    /// For a keyed command, what each side effect's and the forward's keys
    /// are derived from, so a repeat of the command runs none of them twice.
    derive_keys_from: Option<String>,
}

impl Produced {
    /// What `service/entity`'s command, keyed `key` (if at all), left to do.
    fn new(outcome: RecordedOutcome, service: &str, entity: &str, key: Option<&String>) -> Self {
        Self { outcome, derive_keys_from: key.map(|key| key_seed(service, entity, key)) }
    }
}

/// The seed of the keys derived from `key` on `service/entity`: a hash, so
/// the same client key on two entities (keys are per entity) derives
/// different keys, and keys stay short however deep forwards nest. A
/// derived key is the seed, a space and the step; client keys have no
/// spaces, so none collides with one (nor with the outbox's, see
/// [`crate::outbox`]).
fn key_seed(service: &str, entity: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [service, entity, key] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of one step of what a keyed command left to do (none for an
/// unkeyed command, which formats nothing).
fn derived_key(seed: Option<&String>, step: std::fmt::Arguments<'_>) -> Option<String> {
    seed.map(|seed| format!("{seed} {step}"))
}

type Answer = Result<Vec<u8>, InvokeError>;

/// Runs commands on deployed services.
#[derive(Clone)]
pub struct Entities {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    services: Arc<Services>,
    journal: Arc<Journal>,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    config: EntityConfig,
    mailboxes: Mailboxes,
    in_flight: Arc<Semaphore>,
}

impl Entities {
    /// Creates the command runner.
    pub fn new(
        services: Arc<Services>,
        journal: Arc<Journal>,
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        config: EntityConfig,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        let mailboxes = Mailboxes::default();
        Self { shared: Arc::new(Shared { services, journal, runtime, metrics, config, mailboxes, in_flight }) }
    }

    /// Runs a command and answers its reply once its writes are durable, its
    /// synchronous side effects have run and any forward has answered. A
    /// caller that goes away (a client that hangs up) stops waiting for the
    /// answer, not the work: a command that commits always runs what
    /// follows it.
    pub async fn invoke(&self, request: InvokeRequest) -> Answer {
        let Ok(permit) = self.shared.in_flight.clone().try_acquire_owned() else {
            self.shared.metrics.record_invocation(Outcome::Refused);
            return Err(InvokeError::Overloaded("the host has too many commands in flight".into()));
        };
        let this = self.clone();
        finish_on_drop::FinishOnDrop::new(async move {
            let _permit = permit;
            this.invoke_at(request, 0).await
        })
        .await
    }

    /// Runs a command `hops` forwards or side effects deep.
    fn invoke_at(&self, request: InvokeRequest, hops: u32) -> Pin<Box<dyn Future<Output = Answer> + Send + '_>> {
        Box::pin(async move {
            let result = self.run_and_follow(request, hops).await;
            self.shared.metrics.record_invocation(match &result {
                Ok(_) => Outcome::Ok,
                Err(InvokeError::Failed(_)) => Outcome::Failed,
                Err(InvokeError::Guest(GuestError::Timeout(_))) => Outcome::TimedOut,
                Err(InvokeError::Guest(GuestError::Busy)) => Outcome::Refused,
                Err(InvokeError::Guest(_) | InvokeError::OutputLimit(_)) => Outcome::Trapped,
                Err(_) => Outcome::Refused,
            });
            result
        })
    }

    async fn run_and_follow(&self, request: InvokeRequest, hops: u32) -> Answer {
        if hops > MAX_HOPS {
            return Err(InvokeError::TooManyHops);
        }
        let target = &request.invocation;
        if hops > 0 {
            // Checked before the commit too; an event subscriber's effects
            // and records written before that check only here.
            check_target(&target.service, &target.entity)?;
        }
        let service = self
            .shared
            .services
            .get(&target.service)
            .ok_or_else(|| InvokeError::UnknownService(target.service.clone()))?;
        let produced = match service.entity.kind() {
            EntityKind::Action => action::run(&self.shared, &service, request).await?,
            EntityKind::EventSourced | EntityKind::Value => mailbox::enqueue(&self.shared, request).await?,
        };
        self.follow(produced, hops).await
    }

    /// Runs the synchronous side effects in order, then answers the reply
    /// or follows the forward.
    async fn follow(&self, produced: Produced, hops: u32) -> Answer {
        let Produced { outcome, derive_keys_from } = produced;
        let seed = derive_keys_from.as_ref();
        for (step, effect) in outcome.synchronous.into_iter().enumerate() {
            let idempotency_key = derived_key(seed, format_args!("effect {step}"));
            self.run_side_effect(effect, idempotency_key, hops + 1).await?;
        }
        match outcome.reply {
            RecordedReply::Message(bytes) => Ok(bytes),
            RecordedReply::Forward(invocation) => {
                let idempotency_key = derived_key(seed, format_args!("forward"));
                self.invoke_at(InvokeRequest { invocation, idempotency_key }, hops + 1).await
            }
        }
    }

    async fn run_side_effect(
        &self,
        effect: Invocation,
        idempotency_key: Option<String>,
        hops: u32,
    ) -> Result<(), InvokeError> {
        let target = format!("{}/{}/{}", effect.service, effect.entity, effect.command);
        match self.invoke_at(InvokeRequest { invocation: effect, idempotency_key }, hops).await {
            Ok(_) => Ok(()),
            Err(source) => Err(InvokeError::SideEffectFailed { target, source: Box::new(source) }),
        }
    }

    /// Runs one side effect an event subscriber returned.
    pub async fn run_subscriber_effect(&self, effect: SideEffect) -> Result<(), InvokeError> {
        self.run_side_effect(invocation_of_effect(effect), None, 1).await
    }
}

impl Shared {
    /// The recorded outcome of an earlier command with the same idempotency
    /// key on the same entity, if the key is given and its record is live.
    async fn replay(&self, service: &str, entity: &str, key: Option<&String>) -> Result<Option<Produced>, InvokeError> {
        let Some(key) = key else { return Ok(None) };
        let journal = self.journal.clone();
        let (s, e, k) = (service.to_string(), entity.to_string(), key.clone());
        let recorded = blocking(move || journal.recorded_outcome(&s, &e, &k, now_ms())).await??;
        Ok(recorded.map(|outcome| Produced::new(outcome, service, entity, Some(key))))
    }

    /// The idempotency record to write with a command's effects.
    fn idempotency_record(&self, key: Option<&String>, outcome: &RecordedOutcome) -> Option<IdempotencyRecord> {
        key.map(|key| IdempotencyRecord {
            key: key.clone(),
            expires_at_ms: now_ms() + self.config.idempotency_ttl.as_millis() as u64,
            outcome: outcome.clone(),
        })
    }

    /// Refuses output past the configured limits (so a runaway guest fails
    /// its command instead of the host), and forwards or side effects that
    /// no request could address, before anything is committed.
    fn check_output(&self, events: usize, reply: &Reply, side_effects: &[SideEffect]) -> Result<(), InvokeError> {
        let max = self.config.max_events_per_command;
        if events > max {
            return Err(InvokeError::OutputLimit(format!(
                "the command emitted {events} events; at most {max} are allowed"
            )));
        }
        if side_effects.len() > max {
            return Err(InvokeError::OutputLimit(format!(
                "the command asked for {} side effects; at most {max} are allowed",
                side_effects.len()
            )));
        }
        let reply_bytes = match reply {
            Reply::Message(bytes) => bytes.len(),
            Reply::Forward(forward) => {
                check_target(&forward.service, &forward.entity_id)?;
                forward.payload.len()
            }
        };
        for effect in side_effects {
            check_target(&effect.service, &effect.entity_id)?;
        }
        if reply_bytes > self.config.max_reply_bytes {
            return Err(InvokeError::OutputLimit(format!(
                "the reply has {reply_bytes} bytes; at most {} are allowed",
                self.config.max_reply_bytes
            )));
        }
        Ok(())
    }
}

/// Checks that a forward or side effect names a service and entity a
/// request could name.
fn check_target(service: &str, entity: &str) -> Result<(), InvokeError> {
    validate_service_name(service)
        .map_err(|e| InvokeError::InvalidTarget(format!("a forward or side effect names an invalid service: {e}")))?;
    validate_entity_id(entity)
        .map_err(|e| InvokeError::InvalidTarget(format!("a forward or side effect names an invalid entity: {e}")))
}

/// Splits a guest's reply and side effects into what the host records and
/// runs once the command is durable, and the asynchronous side effects.
fn split_effects(reply: Reply, side_effects: Vec<SideEffect>) -> (RecordedOutcome, Vec<Invocation>) {
    let reply = match reply {
        Reply::Message(bytes) => RecordedReply::Message(bytes),
        Reply::Forward(f) => RecordedReply::Forward(Invocation {
            service: f.service,
            entity: f.entity_id,
            command: f.command,
            payload: f.payload,
        }),
    };
    let (synchronous, asynchronous): (Vec<_>, Vec<_>) = side_effects.into_iter().partition(|e| e.synchronous);
    let synchronous = synchronous.into_iter().map(invocation_of_effect).collect();
    (RecordedOutcome { synchronous, reply }, asynchronous.into_iter().map(invocation_of_effect).collect())
}

fn invocation_of_effect(effect: SideEffect) -> Invocation {
    Invocation { service: effect.service, entity: effect.entity_id, command: effect.command, payload: effect.payload }
}

/// Runs blocking work (a journal read) off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, InvokeError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| InvokeError::Internal(format!("a blocking task failed: {e}")))
}
