//! The one path every invocation takes, whoever starts it — an HTTP
//! request, a forward, a side effect, an outbox delivery, an event delivered
//! to a subscriber — with the same in-flight limit, output limits, metrics,
//! tracing span and idempotency rules:
//!
//! ```text
//! Invoker::invoke ─► in-flight permit ─► span ─► the service, looked up once
//!   ├─ an action: action::run, fully in parallel
//!   └─ an entity: mailbox::enqueue ─► its task ─► entity_command::run
//!        ─► replay a recorded key, or call the guest ─► output limits ─► commit
//!   ─► follow: the synchronous side effects, then the reply or the forward,
//!      each an invocation one hop deeper, under a key derived from this one's
//! ```
//!
//! Event-sourced and value entities get one task per active entity
//! ([`mailbox`]), which runs their commands one at a time in arrival order
//! and keeps their latest state in memory ([`entity_command`]). What follows
//! a commit runs outside the entity's task, so an entity can call itself
//! without deadlock, and is bounded in depth ([`MAX_HOPS`]).

mod action;
mod command_run;
mod crdt_command;
mod entity_command;
mod error;
mod eviction;
mod guest_timers;
mod idempotency;
mod mailbox;
mod output_limits;
mod schedule;
mod time_travel;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tracing::Instrument;
use tracing::field::Empty;

use crate::domain::{Call, FollowUp, IdempotencyKey, Reply, ServiceKind, Step, SubscribedEvent};
use crate::finish_on_drop::FinishOnDrop;
use crate::journal::{Journal, TimerGuard};
use crate::metrics::{InvocationOutcome, Metrics};
use crate::runtime::Runtime;
use crate::services::{Service, Services};
use crate::trace_context::{Hex, TraceContext};
pub use error::InvokeError;
use mailbox::Mailboxes;
pub use schedule::Scheduled;
pub use time_travel::DryRun;

/// How deep forwards and synchronous side effects may nest.
pub const MAX_HOPS: u32 = 16;

/// Settings of the invocation path.
#[derive(Debug, Clone, Copy)]
pub struct InvokerConfig {
    /// Store a snapshot whenever a command's events cross a multiple of this.
    pub snapshot_every: u64,
    /// Drop an entity's in-memory state after this long without a command.
    pub passivate_after: Duration,
    /// The most commands that may wait for one entity.
    pub mailbox_capacity: usize,
    /// How many entities may hold their state in memory before idle ones
    /// are passivated early (a soft cap: busy entities are never evicted).
    pub max_active_entities: usize,
    /// The most invocations in flight across all entities and paths.
    pub max_in_flight: usize,
    /// The most events, the most side effects and the most timer changes
    /// one invocation may produce.
    pub max_events_per_command: usize,
    /// The largest reply one command may produce, in bytes.
    pub max_reply_bytes: usize,
    /// The largest state a command may leave, in bytes.
    pub max_state_bytes: usize,
    /// The most bytes of events one command may emit.
    pub max_event_bytes_per_command: usize,
    /// Store a snapshot too whenever the events after the latest one pass
    /// this many bytes.
    pub snapshot_every_bytes: usize,
    /// The most bytes a cold load may hand a guest: an event-sourced
    /// entity's stored snapshot and the events after it, a value entity's
    /// state. A command that would leave more takes a snapshot, and one
    /// whose state alone is more is refused, so no commit makes its entity
    /// unloadable.
    pub max_loadable_bytes: usize,
    /// How many bytes of state the entities may hold in memory before idle
    /// ones are passivated early.
    pub max_cached_state_bytes: usize,
    /// How long an idempotency record answers repeats of its key.
    pub idempotency_ttl: Duration,
}

#[cfg(test)]
impl InvokerConfig {
    /// Limits as a host with 16 MiB guests and a generous state cap has
    /// them, for unit tests.
    pub(crate) fn for_tests() -> Self {
        Self {
            snapshot_every: 100,
            passivate_after: Duration::from_secs(60),
            mailbox_capacity: 16,
            max_active_entities: 100,
            max_in_flight: 100,
            max_events_per_command: 10,
            max_reply_bytes: 1 << 20,
            max_state_bytes: 64 << 20,
            max_event_bytes_per_command: 4 << 20,
            snapshot_every_bytes: 4 << 20,
            max_loadable_bytes: 8 << 20,
            max_cached_state_bytes: 64 << 20,
            idempotency_ttl: Duration::from_secs(60),
        }
    }
}

/// One invocation: what to hand the guest, and its idempotency key.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// What the guest gets.
    pub input: Input,
    /// The idempotency key: the client's, or one the host made for a side
    /// effect, forward, outbox delivery or event delivery.
    pub key: Option<IdempotencyKey>,
    /// How many forwards and side effects deep it runs: 0 for a request
    /// or an event delivery, one more than its asker for a side effect or
    /// forward — synchronous or from the outbox — up to [`MAX_HOPS`].
    pub hops: u32,
    /// Its own span in its trace: a child of the request's `traceparent`,
    /// of the invocation that asked for it, or of the commit whose outbox
    /// entry or event it delivers; else the root of a new trace.
    pub trace: TraceContext,
    /// What started it.
    pub cause: Cause,
    /// The timer setting it fires, if it is a timer's firing: its commit
    /// lands only while that setting is stored.
    pub fires: Option<Box<TimerGuard>>,
}

/// What started an invocation, as its span names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// An HTTP request.
    Request,
    /// A forward: the reply of the invocation before.
    Forward,
    /// A synchronous side effect of the invocation before.
    SideEffect,
    /// An asynchronous side effect, delivered from the outbox.
    Outbox,
    /// An event delivered to a subscriber.
    Event,
    /// A durable timer that came due.
    Timer,
}

impl Cause {
    /// Its name in spans and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Request => "request",
            Cause::Forward => "forward",
            Cause::SideEffect => "side-effect",
            Cause::Outbox => "outbox",
            Cause::Event => "event",
            Cause::Timer => "timer",
        }
    }
}

/// What an invocation hands the guest.
#[derive(Debug, Clone)]
pub enum Input {
    /// A command, for `handle`.
    Command(Call),
    /// A committed event of another service, for a subscriber's `on-event`.
    Event {
        /// The subscribed action.
        subscriber: String,
        /// The event.
        event: SubscribedEvent,
    },
}

impl Invocation {
    /// A command requested over HTTP, with the client's key, as the root
    /// of a new trace (see [`Invocation::child_of`]).
    pub fn command(call: Call, key: Option<IdempotencyKey>) -> Self {
        let trace = TraceContext::child_or_root(None);
        Self { input: Input::Command(call), key, hops: 0, trace, cause: Cause::Request, fires: None }
    }

    /// The same invocation as the firing of the timer setting `guard`.
    pub fn firing(self, guard: TimerGuard) -> Self {
        Self { fires: Some(Box::new(guard)), cause: Cause::Timer, ..self }
    }

    /// The same invocation, `hops` forwards or side effects deep.
    pub fn at_hops(self, hops: u32) -> Self {
        Self { hops, ..self }
    }

    /// The same invocation as a child of `parent`'s span (or as the root of
    /// a new trace when there is no parent), started by `cause`.
    pub fn child_of(self, parent: Option<&TraceContext>, cause: Cause) -> Self {
        let trace = parent.map_or(self.trace, TraceContext::child);
        Self { trace, cause, ..self }
    }

    /// The delivery of `event` to `subscriber`, keyed by the event, so a
    /// delivery repeated after a crash changes nothing; a child of the
    /// commit that stored the event, when its trace was kept.
    pub fn event(subscriber: String, event: SubscribedEvent, trace: Option<&TraceContext>) -> Self {
        let key = IdempotencyKey::event(&event.source, event.seq);
        let trace = TraceContext::child_or_root(trace);
        let input = Input::Event { subscriber, event };
        Self { input, key: Some(key), hops: 0, trace, cause: Cause::Event, fires: None }
    }

    /// The service invoked.
    pub fn service(&self) -> &str {
        match &self.input {
            Input::Command(call) => &call.service,
            Input::Event { subscriber, .. } => subscriber,
        }
    }

    /// The entity invoked (for an action, its routing key; for an event,
    /// the entity that emitted it).
    pub fn entity(&self) -> &str {
        match &self.input {
            Input::Command(call) => &call.entity,
            Input::Event { event, .. } => &event.entity,
        }
    }

    /// The command's name; `on-event` for an event delivery.
    pub fn name(&self) -> &str {
        match &self.input {
            Input::Command(call) => &call.command,
            Input::Event { .. } => "on-event",
        }
    }
}

type Answer = Result<Vec<u8>, InvokeError>;

/// Runs invocations on deployed services.
#[derive(Clone)]
pub struct Invoker {
    shared: Arc<Shared>,
}

/// What every part of the invocation path reaches.
pub(crate) struct Shared {
    services: Arc<Services>,
    journal: Arc<dyn Journal>,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    config: InvokerConfig,
    mailboxes: Mailboxes,
    in_flight: Arc<Semaphore>,
    /// This host as a replica of CRDT entities.
    replica: wasmstate_crdt::ReplicaId,
}

impl Invoker {
    /// Creates the invocation path, on a host that is `replica` of CRDT
    /// entities.
    pub fn new(
        services: Arc<Services>,
        journal: Arc<dyn Journal>,
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        config: InvokerConfig,
        replica: wasmstate_crdt::ReplicaId,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        let mailboxes = Mailboxes::default();
        let shared = Shared { services, journal, runtime, metrics, config, mailboxes, in_flight, replica };
        Self { shared: Arc::new(shared) }
    }

    /// The CRDT entity `service/entity` as the journal holds it (the join of
    /// every replica's row), as this host sees it: its value (`None` while
    /// never changed) and how many replicas wrote it; `EntityDeleted` once
    /// deleted.
    pub async fn read_crdt(
        &self,
        service: &str,
        entity: &str,
    ) -> Result<(Option<wasmstate_crdt::Value>, usize), InvokeError> {
        let (stored, merged) = crdt_command::read_stored(&self.shared, service, entity).await?;
        if merged.deleted {
            return Err(InvokeError::EntityDeleted(format!("{service}/{entity}")));
        }
        Ok((merged.state.map(|state| state.value(&self.shared.replica)), stored.replicas.len()))
    }

    /// Merges into the CRDT entity `service/entity`, if it is active here,
    /// what other hosts committed to it, between its commands: a command
    /// this host runs afterwards sees it (`?consistency=all` on another
    /// host asks for this).
    pub async fn merge_crdt(&self, service: &str, entity: &str) -> Result<(), InvokeError> {
        let service = self.shared.service(service)?;
        if service.kind() == ServiceKind::Crdt {
            mailbox::merge_if_active(&self.shared, service, entity).await;
        }
        Ok(())
    }

    /// Runs an invocation and answers its reply once its writes are durable,
    /// its synchronous side effects have run and any forward has answered.
    /// A caller that goes away (a client that hangs up) stops waiting for
    /// the answer, not the work: an invocation that commits always runs
    /// what follows it.
    pub async fn invoke(&self, invocation: Invocation) -> Answer {
        let permit = self.shared.permit().inspect_err(|_| {
            let service = self.shared.services.get(invocation.service());
            let labels = service.as_ref().map(|service| (invocation.service(), service.kind()));
            self.shared.metrics.record_invocation(labels, InvocationOutcome::Refused, Duration::ZERO);
        })?;
        let this = self.clone();
        FinishOnDrop::new(async move {
            let _permit = permit;
            this.invoke_at(invocation).await
        })
        .await
    }

    /// Runs an invocation in a span of its own that ends with its outcome.
    fn invoke_at(&self, invocation: Invocation) -> Pin<Box<dyn Future<Output = Answer> + Send + '_>> {
        // Numbers this host's invocations, so the lines of one (the
        // guest's own among them) can be told from another's.
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (trace, id) = (&invocation.trace, NEXT_ID.fetch_add(1, Ordering::Relaxed));
        // A sampled trace's span names its place in it (which the exporter
        // reads, and logs show); one nobody traces is spared the formatting.
        let span = if trace.sampled {
            tracing::info_span!(
                "invocation",
                id,
                service = invocation.service(),
                entity = invocation.entity(),
                command = invocation.name(),
                cause = invocation.cause.as_str(),
                trace_id = %Hex(&trace.trace_id),
                span_id = %Hex(&trace.span_id),
                parent_span_id = trace.parent_hex(),
                sampled = true,
                version = Empty,
                outcome = Empty,
            )
        } else {
            tracing::info_span!(
                "invocation",
                id,
                service = invocation.service(),
                entity = invocation.entity(),
                command = invocation.name(),
                cause = invocation.cause.as_str(),
                version = Empty,
                outcome = Empty,
            )
        };
        Box::pin(
            async move {
                let started = Instant::now();
                let mut service = None;
                let result = self.run_and_follow(invocation, &mut service).await;
                let outcome = match &result {
                    Ok(_) => InvocationOutcome::Ok,
                    Err(error) => error.outcome(),
                };
                let labels = service.as_ref().map(|service| (service.meta.service.as_str(), service.kind()));
                self.shared.metrics.record_invocation(labels, outcome, started.elapsed());
                tracing::Span::current().record("outcome", outcome.as_str());
                match &result {
                    Err(error) if error.is_host_failure() => tracing::error!(%error, "invocation failed"),
                    Err(error) => tracing::debug!(%error, "invocation failed"),
                    Ok(_) => {}
                }
                result
            }
            .instrument(span),
        )
    }

    /// Runs an invocation and what follows it; `resolved` is set to its
    /// service once it is found.
    async fn run_and_follow(&self, invocation: Invocation, resolved: &mut Option<Arc<Service>>) -> Answer {
        let (hops, trace) = (invocation.hops, invocation.trace);
        if hops > MAX_HOPS {
            return Err(InvokeError::TooManyHops);
        }
        if hops > 0 {
            // Checked before the commit that asked for it too; records
            // written before that check existed only here.
            output_limits::check_target(invocation.service(), invocation.entity())?;
        }
        let service = self.shared.service(invocation.service())?;
        *resolved = Some(service.clone());
        tracing::Span::current().record("version", service.meta.version);
        // What the keys of a keyed invocation's next steps derive from.
        let seed = invocation
            .key
            .as_ref()
            .map(|key| (key.clone(), invocation.service().to_string(), invocation.entity().to_string()));
        let follow_up = match service.kind() {
            ServiceKind::Action => action::run(&self.shared, &service, invocation).await?,
            ServiceKind::EventSourced | ServiceKind::Value | ServiceKind::Crdt => {
                mailbox::enqueue(&self.shared, service, invocation).await?
            }
        };
        let derive = |step| seed.as_ref().map(|(key, service, entity)| key.derived(service, entity, step));
        self.follow(follow_up, derive, hops, &trace).await
    }

    /// Runs the synchronous side effects in order, then answers the reply
    /// or follows the forward; `derive` gives each step's key, and each
    /// runs as a child of `trace`.
    async fn follow(
        &self,
        follow_up: FollowUp,
        derive: impl Fn(Step) -> Option<IdempotencyKey>,
        hops: u32,
        trace: &TraceContext,
    ) -> Answer {
        let next =
            |call, step, cause| Invocation::command(call, derive(step)).at_hops(hops + 1).child_of(Some(trace), cause);
        for (index, call) in follow_up.synchronous.into_iter().enumerate() {
            let target = call.target();
            if let Err(source) = self.invoke_at(next(call, Step::Effect(index), Cause::SideEffect)).await {
                return Err(InvokeError::SideEffectFailed { target, source: Box::new(source) });
            }
        }
        match follow_up.reply {
            Reply::Message(bytes) => Ok(bytes),
            Reply::Forward(call) => self.invoke_at(next(call, Step::Forward, Cause::Forward)).await,
        }
    }
}

impl Shared {
    /// The newest version of `name`, or why there is none.
    fn service(&self, name: &str) -> Result<Arc<Service>, InvokeError> {
        self.services.get(name).ok_or_else(|| {
            if self.services.was_deleted(name) {
                InvokeError::DeletedService(name.into())
            } else {
                InvokeError::UnknownService(name.into())
            }
        })
    }

    /// A place among the invocations in flight.
    fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, InvokeError> {
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| InvokeError::Overloaded("the host has too many invocations in flight".into()))
    }
}

/// Runs blocking work (a journal read) off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, InvokeError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| InvokeError::Internal(format!("a blocking task failed: {e}")))
}
