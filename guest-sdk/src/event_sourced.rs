//! Event-sourced entities: state, events and the command context.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::timer::timer_methods;
use crate::{Command, Effect, Failure, Metadata, Reply, TimerChange};

/// An event-sourced entity: its state is the fold of its events.
///
/// The implementing type is the entity's state. The host keeps the entity's
/// event log; before every command the SDK rebuilds the state by applying
/// the logged events to the latest snapshot (or to [`Default::default`]).
///
/// State and events are encoded as JSON with serde.
pub trait EventSourcedEntity: Default + Clone + Serialize + DeserializeOwned {
    /// The events the entity emits and folds into its state.
    type Event: Serialize + DeserializeOwned;

    /// Folds one event into the state.
    ///
    /// Must be deterministic and must not fail: the event is already a fact.
    /// Validate commands in [`handle`](Self::handle) instead.
    fn apply(&mut self, event: &Self::Event);

    /// Reads one stored event into [`Self::Event`]. By default it decodes
    /// the event's JSON as `Self::Event`.
    ///
    /// Override it to read the shapes older versions of the entity wrote
    /// (an upcaster): a stored event is a fact, and a new version must read
    /// every one its service ever stored. [`StoredEvent::json`] decodes it
    /// as any type, say the old shape of the event; [`StoredEvent::version`]
    /// tells which deploy of the service wrote it. Prefer telling shapes
    /// apart by their content: a rollback deploys old code under a new
    /// version number, so the number alone does not name a shape. Test the
    /// upcaster against stored events with
    /// [`TestKit::with_events`](crate::testkit::TestKit::with_events), and
    /// deploy with `verify=replay` to check it against every stored entity.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use wasmstate_sdk::{Command, Context, EventSourcedEntity, Failure, Reply, StoredEvent};
    /// #[derive(Serialize, Deserialize)]
    /// #[serde(tag = "type")]
    /// enum Event {
    ///     /// Named `Added` before version 3, with a `count` instead of `quantity`.
    ///     ItemAdded { quantity: u32 },
    /// }
    ///
    /// #[derive(Deserialize)]
    /// #[serde(tag = "type")]
    /// enum OldEvent {
    ///     Added { count: u32 },
    /// }
    /// # #[derive(Default, Clone, Serialize, Deserialize)]
    /// # struct Cart { items: u32 }
    ///
    /// impl EventSourcedEntity for Cart {
    ///     type Event = Event;
    ///
    ///     fn upcast(event: StoredEvent<'_>) -> serde_json::Result<Event> {
    ///         event.json().or_else(|error| match event.json::<OldEvent>() {
    ///             Ok(OldEvent::Added { count }) => Ok(Event::ItemAdded { quantity: count }),
    ///             Err(_) => Err(error),
    ///         })
    ///     }
    /// #   fn apply(&mut self, Event::ItemAdded { quantity }: &Event) { self.items += quantity }
    /// #   fn handle(&self, c: Command<'_>, _: &mut Context<'_, Self>) -> Result<Reply, Failure> { Err(c.unknown()) }
    /// }
    ///
    /// use wasmstate_sdk::testkit::TestKit;
    /// let mut kit = TestKit::<Cart>::new("c-1").with_events([serde_json::json!({"type": "Added", "count": 2})]);
    /// assert_eq!(kit.state().items, 2);
    /// ```
    ///
    /// # Errors
    ///
    /// When the event is in no shape the entity reads: the host then
    /// reports the entity's state as unreadable, and refuses a deploy
    /// verified against it.
    fn upcast(event: StoredEvent<'_>) -> serde_json::Result<Self::Event> {
        event.json()
    }

    /// Handles one command against the current state, `self`.
    ///
    /// Emit events with [`Context::emit`]; read the state including them
    /// with [`Context::state`] (`self` stays the state before the command).
    /// Add side effects with [`Context::effect`], set and cancel timers with
    /// [`Context::schedule`] and [`Context::cancel`]; reply with a message
    /// or a [`Reply::forward`]. Returning `Err` discards every event
    /// emitted, every side effect added and every timer change.
    fn handle(&self, command: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure>;
}

/// An event-sourced entity whose commands are an enum: the typed way to
/// write one.
///
/// Like [`EventSourcedEntity`] (which every `EventSourced` type also is, so
/// [`export_event_sourced!`](crate::export_event_sourced) and
/// [`TestKit`](crate::testkit::TestKit) take it), but the SDK decodes each
/// command into [`Self::Command`] before [`handle`](Self::handle) runs: a
/// misspelt command name is a compile error in the match, and an unknown
/// command or a payload that does not decode is answered for you with
/// `unknown_command` or `invalid_payload` (see [`Command::decode`]).
///
/// `handle` gets no `self`: [`Context::state`] is the state, including the
/// events the command has emitted so far, so a reply built from it always
/// shows them.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use wasmstate_sdk::{Context, EventSourced, Failure, Reply};
///
/// /// A counter that only goes up.
/// #[derive(Default, Clone, Serialize, Deserialize)]
/// struct Counter {
///     value: i64,
/// }
///
/// #[derive(Deserialize)]
/// enum CounterCommand {
///     Increase { value: i64 },
///     Get,
/// }
///
/// #[derive(Serialize, Deserialize)]
/// #[serde(tag = "type")]
/// enum CounterEvent {
///     Increased { value: i64 },
/// }
///
/// impl EventSourced for Counter {
///     type Command = CounterCommand;
///     type Event = CounterEvent;
///
///     fn apply(&mut self, CounterEvent::Increased { value }: &CounterEvent) {
///         self.value += value;
///     }
///
///     fn handle(command: CounterCommand, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
///         match command {
///             CounterCommand::Increase { value } if value <= 0 => {
///                 Err(Failure::rejected("Increase takes a positive value"))
///             }
///             CounterCommand::Increase { value } => {
///                 ctx.emit(CounterEvent::Increased { value });
///                 Ok(Reply::json(ctx.state()))
///             }
///             CounterCommand::Get => Ok(Reply::json(ctx.state())),
///         }
///     }
/// }
///
/// wasmstate_sdk::export_event_sourced!(Counter);
///
/// use serde_json::json;
/// use wasmstate_sdk::{FailureCode, testkit::TestKit};
///
/// let mut kit = TestKit::<Counter>::new("c-1");
/// assert_eq!(kit.handle("Increase", json!({"value": 2})), Ok(json!({"value": 2})));
/// assert_eq!(kit.handle("Get", ()), Ok(json!({"value": 2})));
/// assert_eq!(kit.handle("Decrease", ()).unwrap_err().code(), FailureCode::UnknownCommand);
/// assert_eq!(kit.handle("Increase", json!({"value": "x"})).unwrap_err().code(), FailureCode::InvalidPayload);
/// ```
pub trait EventSourced: Default + Clone + Serialize + DeserializeOwned {
    /// The entity's commands: a serde enum whose variant names are the
    /// command names and whose fields are their JSON arguments.
    type Command: DeserializeOwned;

    /// The events the entity emits and folds into its state.
    type Event: Serialize + DeserializeOwned;

    /// Folds one event into the state; see [`EventSourcedEntity::apply`].
    fn apply(&mut self, event: &Self::Event);

    /// Reads one stored event; see [`EventSourcedEntity::upcast`].
    ///
    /// # Errors
    ///
    /// When the event is in no shape the entity reads.
    fn upcast(event: StoredEvent<'_>) -> serde_json::Result<Self::Event> {
        event.json()
    }

    /// Handles one decoded command against [`Context::state`].
    ///
    /// Emit events with [`Context::emit`], add side effects with
    /// [`Context::effect`], set and cancel timers with
    /// [`Context::schedule`] and [`Context::cancel`], read the seq, time
    /// and idempotency key with [`Context::metadata`]. Returning `Err`
    /// discards every event emitted, every side effect added and every
    /// timer change.
    fn handle(command: Self::Command, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure>;
}

impl<E: EventSourced> EventSourcedEntity for E {
    type Event = <E as EventSourced>::Event;

    fn apply(&mut self, event: &Self::Event) {
        <E as EventSourced>::apply(self, event);
    }

    fn upcast(event: StoredEvent<'_>) -> serde_json::Result<Self::Event> {
        <E as EventSourced>::upcast(event)
    }

    fn handle(&self, command: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        <E as EventSourced>::handle(command.decode()?, ctx)
    }
}

/// One event as the host stored it, for [`EventSourcedEntity::upcast`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredEvent<'a> {
    seq: u64,
    version: u32,
    payload: &'a [u8],
}

impl<'a> StoredEvent<'a> {
    /// Event `seq` of the log, written by version `version` of the service
    /// (0 when the host did not record it), encoded as `payload`.
    pub fn new(seq: u64, version: u32, payload: &'a [u8]) -> Self {
        Self { seq, version, payload }
    }

    /// Its position in the entity's log, from 1.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The version of the service that wrote it: the number the host gave
    /// that deploy, or 0 for an event stored before the host recorded it.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The event as it was encoded.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Decodes the event's JSON as `T`.
    ///
    /// # Errors
    ///
    /// When the payload is not `T` in JSON.
    pub fn json<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(self.payload)
    }
}

/// What a command handler can do besides replying: emit events, add side
/// effects, and set and cancel timers.
pub struct Context<'a, E: EventSourcedEntity> {
    entity_id: &'a str,
    metadata: Metadata<'a>,
    state: &'a E,
    working: Option<E>,
    events: Vec<E::Event>,
    side_effects: Vec<Effect>,
    timers: Vec<TimerChange>,
}

impl<'a, E: EventSourcedEntity> Context<'a, E> {
    /// A context for `command`, whose state before the command is `state`.
    pub(crate) fn new(command: &Command<'a>, state: &'a E) -> Self {
        let (entity_id, metadata) = (command.entity_id(), command.metadata());
        Self {
            entity_id,
            metadata,
            state,
            working: None,
            events: Vec::new(),
            side_effects: Vec::new(),
            timers: Vec::new(),
        }
    }

    /// The id of the entity handling the command.
    pub fn entity_id(&self) -> &'a str {
        self.entity_id
    }

    /// The seq the command runs at, the host's time and the idempotency key.
    pub fn metadata(&self) -> Metadata<'a> {
        self.metadata
    }

    /// The state including every event emitted so far by this command.
    pub fn state(&self) -> &E {
        self.working.as_ref().unwrap_or(self.state)
    }

    /// Emits `event`: applies it to the state right away and records it.
    ///
    /// The first emit clones the state into a working copy; the events are
    /// persisted only if the handler returns `Ok`.
    pub fn emit(&mut self, event: E::Event) {
        self.working.get_or_insert_with(|| self.state.clone()).apply(&event);
        self.events.push(event);
    }

    /// The events emitted so far by this command, in order.
    pub fn emitted(&self) -> &[E::Event] {
        &self.events
    }

    /// Adds a side effect, run once the events are durable: a command
    /// ([`SideEffect`](crate::SideEffect)) or a webhook
    /// ([`SideEffect::webhook`](crate::SideEffect::webhook)).
    pub fn effect(&mut self, effect: impl Into<Effect>) {
        self.side_effects.push(effect.into());
    }

    /// The side effects added so far by this command, commands and
    /// webhooks, in order.
    pub fn side_effects(&self) -> &[Effect] {
        &self.side_effects
    }

    timer_methods!("the command's events");

    /// Splits the context into the emitted events, the side effects, the
    /// timer changes and the working state, if any.
    pub(crate) fn into_parts(self) -> Parts<E> {
        Parts { events: self.events, side_effects: self.side_effects, timers: self.timers, working: self.working }
    }
}

/// What a command produced through its [`Context`].
pub(crate) struct Parts<E: EventSourcedEntity> {
    /// The emitted events, in order.
    pub(crate) events: Vec<E::Event>,
    /// The side effects, in order.
    pub(crate) side_effects: Vec<Effect>,
    /// The timer changes, in order.
    pub(crate) timers: Vec<TimerChange>,
    /// The state with the events applied, if any was emitted.
    pub(crate) working: Option<E>,
}
