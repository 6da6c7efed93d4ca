//! Actions: stateless services that answer commands and react to the events
//! of other services.

use serde::de::DeserializeOwned;

use crate::timer::timer_methods;
use crate::{Command, Effect, Failure, Metadata, Reply, TimerChange};

/// A stateless action: the host runs its commands fully in parallel.
///
/// An action answers commands with [`handle`](Self::handle), usually by
/// validating them and [forwarding](Reply::forward) them to an entity, and
/// reacts to the committed events of the services it subscribes to with
/// [`on_event`](Self::on_event). Both can add side effects through
/// [`ActionContext::effect`].
///
/// The implementing type holds no state between calls: every call gets a
/// fresh [`Default::default`] value as `self`.
///
/// # Example
///
/// ```
/// use serde::Deserialize;
/// use wasmstate_sdk::{Action, ActionContext, Command, Failure, Forward, Reply, SideEffect, SubscribedEvent};
///
/// /// Checks deposits before they reach an account, and audits withdrawals.
/// #[derive(Default)]
/// struct Teller;
///
/// #[derive(Deserialize)]
/// struct Deposit {
///     account: String,
///     amount: u64,
/// }
///
/// #[derive(Deserialize)]
/// #[serde(tag = "type")]
/// enum AccountEvent {
///     Withdrawn { amount: u64 },
///     #[serde(other)]
///     Other,
/// }
///
/// impl Action for Teller {
///     fn handle(&self, command: Command<'_>, _ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
///         match command.name() {
///             "Deposit" => {
///                 let Deposit { account, amount } = command.json()?;
///                 if amount == 0 {
///                     return Err(Failure::rejected("a deposit must not be empty"));
///                 }
///                 let forward = Forward::new("account", account, "Deposit")
///                     .json(&serde_json::json!({"amount": amount}));
///                 Ok(Reply::forward(forward))
///             }
///             _ => Err(command.unknown()),
///         }
///     }
///
///     fn on_event(&self, event: SubscribedEvent<'_>, ctx: &mut ActionContext<'_>) -> Result<(), Failure> {
///         if let AccountEvent::Withdrawn { amount } = event.json()? {
///             ctx.effect(
///                 SideEffect::new("audit", event.entity_id(), "Record")
///                     .json(&serde_json::json!({"amount": amount}))
///                     .synchronous(),
///             );
///         }
///         Ok(())
///     }
/// }
///
/// // Makes this crate a component exporting `wasmstate:entity/action`.
/// wasmstate_sdk::export_action!(Teller);
///
/// // Unit tests drive the action like the host does.
/// use serde_json::json;
/// use wasmstate_sdk::testkit::{ActionTestKit, ForwardCall, SideEffectCall};
///
/// let kit = ActionTestKit::<Teller>::new();
/// let outcome = kit.handle_outcome("Deposit", json!({"account": "a-1", "amount": 5})).unwrap();
/// assert_eq!(outcome.forward, Some(ForwardCall::new("account", "a-1", "Deposit", json!({"amount": 5}))));
///
/// let event = json!({"type": "Withdrawn", "amount": 7});
/// assert_eq!(
///     kit.on_event("account", "a-1", 3, event),
///     Ok(vec![SideEffectCall::new("audit", "a-1", "Record", json!({"amount": 7})).synchronous()]),
/// );
/// assert_eq!(kit.on_event("account", "a-1", 4, json!({"type": "Opened"})), Ok(vec![]));
/// ```
pub trait Action: Default {
    /// Handles one command.
    ///
    /// Returning `Err` discards every side effect added and every timer
    /// change.
    fn handle(&self, command: Command<'_>, ctx: &mut ActionContext<'_>) -> Result<Reply, Failure>;

    /// Handles one committed event of a service this action subscribes to.
    ///
    /// Events come at least once, in `seq` order per entity. The side
    /// effects added run before the event counts as delivered; returning
    /// `Err` discards them. An event sets no timers: scheduling or
    /// cancelling one here panics. By default events are ignored.
    fn on_event(&self, _event: SubscribedEvent<'_>, _ctx: &mut ActionContext<'_>) -> Result<(), Failure> {
        Ok(())
    }
}

/// A stateless action whose commands are an enum: the typed way to write
/// one.
///
/// Like [`Action`] (which every `Stateless` type also is, so
/// [`export_action!`](crate::export_action) and
/// [`ActionTestKit`](crate::testkit::ActionTestKit) take it), but the SDK
/// decodes each command into [`Self::Command`] first (see
/// [`Command::decode`]).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use wasmstate_sdk::{ActionContext, Failure, Forward, Reply, Stateless};
///
/// /// Checks deposits before they reach an account.
/// #[derive(Default)]
/// struct Teller;
///
/// #[derive(Deserialize)]
/// enum TellerCommand {
///     Deposit { account: String, amount: u64 },
/// }
///
/// /// The account service's commands, as this action calls them.
/// #[derive(Serialize)]
/// enum AccountCommand {
///     Deposit { amount: u64 },
/// }
///
/// impl Stateless for Teller {
///     type Command = TellerCommand;
///
///     fn handle(command: TellerCommand, _ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
///         match command {
///             TellerCommand::Deposit { amount: 0, .. } => Err(Failure::rejected("a deposit must not be empty")),
///             TellerCommand::Deposit { account, amount } => {
///                 Ok(Reply::forward(Forward::call("account", account, &AccountCommand::Deposit { amount })))
///             }
///         }
///     }
/// }
///
/// wasmstate_sdk::export_action!(Teller);
///
/// use serde_json::json;
/// use wasmstate_sdk::testkit::{ActionTestKit, ForwardCall};
///
/// let outcome = ActionTestKit::<Teller>::new().handle_outcome("Deposit", json!({"account": "a-1", "amount": 5}));
/// assert_eq!(outcome.unwrap().forward, Some(ForwardCall::new("account", "a-1", "Deposit", json!({"amount": 5}))));
/// ```
pub trait Stateless: Default {
    /// The action's commands: a serde enum whose variant names are the
    /// command names and whose fields are their JSON arguments.
    type Command: DeserializeOwned;

    /// Handles one decoded command; returning `Err` discards every side
    /// effect added and every timer change.
    fn handle(command: Self::Command, ctx: &mut ActionContext<'_>) -> Result<Reply, Failure>;

    /// Handles one committed event of a service this action subscribes to;
    /// see [`Action::on_event`] (it sets no timers). By default events are
    /// ignored.
    ///
    /// # Errors
    ///
    /// A failure discards the side effects added; the event is delivered
    /// again.
    fn on_event(_event: SubscribedEvent<'_>, _ctx: &mut ActionContext<'_>) -> Result<(), Failure> {
        Ok(())
    }
}

impl<A: Stateless> Action for A {
    fn handle(&self, command: Command<'_>, ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
        <A as Stateless>::handle(command.decode()?, ctx)
    }

    fn on_event(&self, event: SubscribedEvent<'_>, ctx: &mut ActionContext<'_>) -> Result<(), Failure> {
        <A as Stateless>::on_event(event, ctx)
    }
}

/// What an action can do besides replying: add side effects, and, while
/// handling a command, set and cancel the timers of its routing key (in
/// `on_event`, setting or cancelling a timer panics: an event delivery
/// commits none).
pub struct ActionContext<'a> {
    entity_id: &'a str,
    metadata: Metadata<'a>,
    side_effects: Vec<Effect>,
    timers: Vec<TimerChange>,
}

impl<'a> ActionContext<'a> {
    /// A context for a call addressed to `entity_id`, run as `metadata` says.
    pub(crate) fn new(entity_id: &'a str, metadata: Metadata<'a>) -> Self {
        Self { entity_id, metadata, side_effects: Vec::new(), timers: Vec::new() }
    }

    /// The routing key of the command, or the id of the entity that emitted
    /// the event.
    pub fn entity_id(&self) -> &'a str {
        self.entity_id
    }

    /// The host's time and the idempotency key of the call (its seq is 0).
    pub fn metadata(&self) -> Metadata<'a> {
        self.metadata
    }

    /// Adds a side effect: a command ([`SideEffect`](crate::SideEffect)) or
    /// a webhook ([`SideEffect::webhook`](crate::SideEffect::webhook)).
    pub fn effect(&mut self, effect: impl Into<Effect>) {
        self.side_effects.push(effect.into());
    }

    /// The side effects added so far by this call, commands and webhooks,
    /// in order.
    pub fn side_effects(&self) -> &[Effect] {
        &self.side_effects
    }

    timer_methods!("the command, on its routing key");

    /// The side effects added and the timer changes.
    pub(crate) fn into_parts(self) -> (Vec<Effect>, Vec<TimerChange>) {
        (self.side_effects, self.timers)
    }
}

/// A committed event of another service, delivered to a subscribed action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribedEvent<'a> {
    service: &'a str,
    entity_id: &'a str,
    seq: u64,
    version: u32,
    payload: &'a [u8],
}

impl<'a> SubscribedEvent<'a> {
    /// Event `seq` of entity `entity_id` of service `service`, encoded as
    /// `payload`, of no recorded version.
    pub fn new(service: &'a str, entity_id: &'a str, seq: u64, payload: &'a [u8]) -> Self {
        Self { service, entity_id, seq, version: 0, payload }
    }

    /// The same event, written by version `version` of its service.
    pub fn with_version(self, version: u32) -> Self {
        Self { version, ..self }
    }

    /// The version of the service that emitted the event (0 when the host
    /// did not record it), to tell the shapes of its versions apart.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The service whose entity emitted the event.
    pub fn service(&self) -> &'a str {
        self.service
    }

    /// The entity that emitted the event.
    pub fn entity_id(&self) -> &'a str {
        self.entity_id
    }

    /// The event's position in that entity's log, from 1.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The event as that entity encoded it.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Decodes the event as JSON into `T`.
    ///
    /// # Errors
    ///
    /// A [`FailureCode::InvalidPayload`](crate::FailureCode::InvalidPayload)
    /// failure naming the event and quoting the decoder's error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(self.payload).map_err(|error| {
            Failure::invalid_payload(format!(
                "event {} of {}/{} could not be decoded: {error}",
                self.seq, self.service, self.entity_id
            ))
        })
    }
}
