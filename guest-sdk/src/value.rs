//! Value entities: one state value, which the host stores.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raw::value::StateChange;
use crate::reply::encode_json;
use crate::timer::timer_methods;
use crate::{Command, Effect, Failure, Metadata, Reply, TimerChange};

/// A value entity: its state is one value, which the host stores and hands
/// back before every command.
///
/// The implementing type is the entity's state, encoded as JSON with serde.
/// A command reads it as `self` and changes it through [`ValueContext`]:
/// [`update`](ValueContext::update) replaces it,
/// [`delete`](ValueContext::delete) removes it. The change is committed
/// before the reply; returning `Err` discards it.
///
/// # Example
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use wasmstate_sdk::{Command, Failure, Reply, ValueContext, ValueEntity};
///
/// /// A note that can be written, read and erased.
/// #[derive(Default, Clone, Serialize, Deserialize)]
/// struct Note {
///     text: String,
/// }
///
/// impl ValueEntity for Note {
///     fn handle(&self, command: Command<'_>, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
///         match command.name() {
///             "Write" => {
///                 let note: Note = command.json()?;
///                 if note.text.is_empty() {
///                     return Err(Failure::rejected("a note needs some text"));
///                 }
///                 ctx.update(note);
///                 Ok(Reply::json(ctx.state()))
///             }
///             "Read" if ctx.exists() => Ok(Reply::json(self)),
///             "Read" => Err(Failure::rejected("no note was written")),
///             "Erase" => {
///                 ctx.delete();
///                 Ok(Reply::empty())
///             }
///             _ => Err(command.unknown()),
///         }
///     }
/// }
///
/// // Makes this crate a component exporting `wasmstate:entity/value`.
/// wasmstate_sdk::export_value_entity!(Note);
///
/// // Unit tests drive the entity like the host does.
/// use serde_json::json;
/// use wasmstate_sdk::{FailureCode, testkit::ValueTestKit};
///
/// let mut kit = ValueTestKit::<Note>::new("note-1");
/// assert_eq!(kit.handle("Read", ()).unwrap_err().code(), FailureCode::Rejected);
/// assert_eq!(kit.handle("Write", json!({"text": "milk"})), Ok(json!({"text": "milk"})));
/// assert_eq!(kit.handle("Read", ()), Ok(json!({"text": "milk"})));
/// assert_eq!(kit.handle("Erase", ()), Ok(json!({})));
/// assert!(kit.state().is_none());
/// ```
pub trait ValueEntity: Default + Serialize + DeserializeOwned {
    /// Handles one command against the stored state, `self`, or
    /// [`Default::default`] when none is stored (see
    /// [`ValueContext::exists`]).
    ///
    /// Change the state with [`ValueContext::update`] and
    /// [`ValueContext::delete`], add side effects with
    /// [`ValueContext::effect`], set and cancel timers with
    /// [`ValueContext::schedule`] and [`ValueContext::cancel`]; reply with
    /// a message or a [`Reply::forward`]. Returning `Err` discards the
    /// state change, every side effect added and every timer change.
    fn handle(&self, command: Command<'_>, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure>;
}

/// A value entity whose commands are an enum: the typed way to write one.
///
/// Like [`ValueEntity`] (which every `KeyValue` type also is, so
/// [`export_value_entity!`](crate::export_value_entity) and
/// [`ValueTestKit`](crate::testkit::ValueTestKit) take it), but the SDK
/// decodes each command into [`Self::Command`] first (see
/// [`Command::decode`]), and [`handle`](Self::handle) reads the state from
/// [`ValueContext::state`], which includes the command's own update.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use wasmstate_sdk::{Failure, KeyValue, Reply, ValueContext};
///
/// /// A note that can be written, read and erased.
/// #[derive(Default, Clone, Serialize, Deserialize)]
/// struct Note {
///     text: String,
/// }
///
/// #[derive(Deserialize)]
/// enum NoteCommand {
///     Write(Note),
///     Read,
///     Erase,
/// }
///
/// impl KeyValue for Note {
///     type Command = NoteCommand;
///
///     fn handle(command: NoteCommand, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
///         match command {
///             NoteCommand::Write(note) if note.text.is_empty() => Err(Failure::rejected("a note needs some text")),
///             NoteCommand::Write(note) => {
///                 ctx.update(note);
///                 Ok(Reply::json(ctx.state()))
///             }
///             NoteCommand::Read if ctx.exists() => Ok(Reply::json(ctx.state())),
///             NoteCommand::Read => Err(Failure::rejected("no note was written")),
///             NoteCommand::Erase => {
///                 ctx.delete();
///                 Ok(Reply::empty())
///             }
///         }
///     }
/// }
///
/// wasmstate_sdk::export_value_entity!(Note);
///
/// use serde_json::json;
/// use wasmstate_sdk::testkit::ValueTestKit;
///
/// let mut kit = ValueTestKit::<Note>::new("note-1");
/// assert_eq!(kit.handle("Write", json!({"text": "milk"})), Ok(json!({"text": "milk"})));
/// assert_eq!(kit.handle("Read", ()), Ok(json!({"text": "milk"})));
/// ```
pub trait KeyValue: Default + Serialize + DeserializeOwned {
    /// The entity's commands: a serde enum whose variant names are the
    /// command names and whose fields are their JSON arguments.
    type Command: DeserializeOwned;

    /// Handles one decoded command against [`ValueContext::state`].
    ///
    /// Change the state with [`ValueContext::update`] and
    /// [`ValueContext::delete`], add side effects with
    /// [`ValueContext::effect`], set and cancel timers with
    /// [`ValueContext::schedule`] and [`ValueContext::cancel`]. Returning
    /// `Err` discards the state change, every side effect added and every
    /// timer change.
    fn handle(command: Self::Command, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure>;
}

impl<E: KeyValue> ValueEntity for E {
    fn handle(&self, command: Command<'_>, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
        <E as KeyValue>::handle(command.decode()?, ctx)
    }
}

/// What a command does to the stored state.
enum Change<E> {
    /// Nothing yet.
    Unchanged,
    /// Replace the state with this value.
    Update(E),
    /// Delete the state; `empty` is what [`ValueContext::state`] reads then.
    Delete { empty: E },
}

/// What a value entity's command handler can do besides replying: change the
/// state, add side effects, and set and cancel timers.
pub struct ValueContext<'a, E: ValueEntity> {
    entity_id: &'a str,
    metadata: Metadata<'a>,
    current: &'a E,
    stored: bool,
    change: Change<E>,
    side_effects: Vec<Effect>,
    timers: Vec<TimerChange>,
}

impl<'a, E: ValueEntity> ValueContext<'a, E> {
    /// A context for `command`, whose state before the command is
    /// `current`, stored by the host or not.
    pub(crate) fn new(command: &Command<'a>, current: &'a E, stored: bool) -> Self {
        let (entity_id, metadata) = (command.entity_id(), command.metadata());
        let (change, side_effects, timers) = (Change::Unchanged, Vec::new(), Vec::new());
        Self { entity_id, metadata, current, stored, change, side_effects, timers }
    }

    /// The id of the entity handling the command.
    pub fn entity_id(&self) -> &'a str {
        self.entity_id
    }

    /// The revision the command runs at, the host's time and the
    /// idempotency key.
    pub fn metadata(&self) -> Metadata<'a> {
        self.metadata
    }

    /// Whether a state is stored, counting this command's update or delete
    /// so far: before either, whether the host handed the entity a state.
    pub fn exists(&self) -> bool {
        match self.change {
            Change::Unchanged => self.stored,
            Change::Update(_) => true,
            Change::Delete { .. } => false,
        }
    }

    /// The state including this command's update or delete so far: the
    /// state passed to the last [`update`](Self::update), the default state
    /// after a [`delete`](Self::delete), the state before the command
    /// otherwise.
    pub fn state(&self) -> &E {
        match &self.change {
            Change::Unchanged => self.current,
            Change::Update(state) => state,
            Change::Delete { empty } => empty,
        }
    }

    /// Replaces the state with `state` once the command succeeds.
    ///
    /// The last update or delete of a command wins.
    pub fn update(&mut self, state: E) {
        self.change = Change::Update(state);
    }

    /// Deletes the state once the command succeeds: the next command sees
    /// none, and `self` is [`Default::default`] then.
    ///
    /// The last update or delete of a command wins.
    pub fn delete(&mut self) {
        self.change = Change::Delete { empty: E::default() };
    }

    /// Adds a side effect, run once the state change is durable: a command
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

    timer_methods!("the state change");

    /// Splits the context into the encoded state change, the side effects
    /// and the timer changes.
    pub(crate) fn into_parts(self) -> (StateChange, Vec<Effect>, Vec<TimerChange>) {
        let change = match self.change {
            Change::Unchanged => StateChange::Unchanged,
            Change::Update(state) => StateChange::Update(encode_json(&state, "state")),
            Change::Delete { .. } => StateChange::Delete,
        };
        (change, self.side_effects, self.timers)
    }
}
