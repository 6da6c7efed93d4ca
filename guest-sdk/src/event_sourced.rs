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

    /// Handles one command against the current state, `self`.
    ///
    /// Emit events with [`Context::emit`]; read the state including them
    /// with [`Context::state`] (`self` stays the state before the command).
    /// Add side effects with [`Context::effect`]; reply with a message or a
    /// [`Reply::forward`]. Returning `Err` discards every event emitted and
    /// every side effect added.
    fn handle(&self, command: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure>;
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
