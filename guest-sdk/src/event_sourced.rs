//! Event-sourced entities: state, events and the command context.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Command, Failure, Reply, SideEffect};

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
    /// Add side effects with [`Context::effect`]; reply with a message or a
    /// [`Reply::forward`]. Returning `Err` discards every event emitted and
    /// every side effect added.
    fn handle(&self, command: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure>;
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

/// What a command handler can do besides replying: emit events and add side
/// effects.
pub struct Context<'a, E: EventSourcedEntity> {
    entity_id: &'a str,
    state: &'a E,
    working: Option<E>,
    events: Vec<E::Event>,
    side_effects: Vec<SideEffect>,
}

impl<'a, E: EventSourcedEntity> Context<'a, E> {
    /// A context for entity `entity_id` whose state before the command is `state`.
    pub(crate) fn new(entity_id: &'a str, state: &'a E) -> Self {
        Self { entity_id, state, working: None, events: Vec::new(), side_effects: Vec::new() }
    }

    /// The id of the entity handling the command.
    pub fn entity_id(&self) -> &'a str {
        self.entity_id
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

    /// Adds a side effect, run once the events are durable.
    pub fn effect(&mut self, effect: SideEffect) {
        self.side_effects.push(effect);
    }

    /// The side effects added so far by this command, in order.
    pub fn side_effects(&self) -> &[SideEffect] {
        &self.side_effects
    }

    /// Splits the context into the emitted events, the side effects and the
    /// working state, if any.
    pub(crate) fn into_parts(self) -> (Vec<E::Event>, Vec<SideEffect>, Option<E>) {
        (self.events, self.side_effects, self.working)
    }
}
