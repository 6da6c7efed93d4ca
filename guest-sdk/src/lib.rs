//! Write wasmstate services in Rust: event-sourced entities, value entities,
//! CRDT entities and actions, compiled to WebAssembly components.
//!
//! A service is one of four kinds, each a trait whose commands are an
//! enum the SDK decodes for you:
//!
//! - [`EventSourced`]: the state is the fold of the entity's events.
//!   [`apply`](EventSourced::apply) folds one event into the state;
//!   [`handle`](EventSourced::handle) turns a command into events (through
//!   [`Context::emit`]) and a reply. Before each command the host hands the
//!   entity its latest snapshot and the events after it.
//! - [`KeyValue`]: the state is one value the host stores;
//!   [`handle`](KeyValue::handle) reads it and replaces or deletes it
//!   through [`ValueContext`].
//! - [`CrdtEntity`]: the state is a replicated data type (a counter, a
//!   set, a register, a flag, a map of them, a vote) that every host
//!   changes on its own and the hosts merge; [`handle`](CrdtEntity::handle)
//!   reads it and changes it through [`CrdtContext`]'s typed handles
//!   (`ctx.orset().add(&item)`), which record one delta per command.
//! - [`Stateless`]: an action; [`handle`](Stateless::handle) answers
//!   commands, usually by validating and forwarding them, and
//!   [`on_event`](Stateless::on_event) reacts to the committed events of
//!   services the action subscribes to.
//!
//! # Commands
//!
//! A service's commands are a serde enum (its `type Command`): the
//! command's name (the last segment of the invocation URL) picks the
//! variant, its JSON payload fills the variant's fields. A misspelt command
//! is a compile error in the handler's `match`; a request naming a command
//! the enum lacks is answered `unknown_command`, one whose payload does not
//! fit `invalid_payload`, both with a precise message and without running
//! the handler (see [`Command::decode`]). A service without commands (a
//! subscriber) takes [`NoCommands`].
//!
//! Every command also carries its [`Metadata`] (`ctx.metadata()`): the
//! entity's seq, the host's time and the idempotency key it runs under.
//!
//! Every command either succeeds, with a [`Reply`] (a message, or a
//! [`Forward`] that hands the command on to another service) and any
//! [`SideEffect`]s (commands, or [webhooks](#webhooks-and-outbound-http))
//! and timers (see [Timers](#timers)) added through the context, or fails
//! with a [`Failure`]. A failure discards everything the command produced:
//! events, state changes, side effects, webhooks, timer changes. Forwards
//! and side effects name their target by type where its command enum is
//! at hand ([`Commands`], [`Forward::to`], [`Forward::call`]) or by
//! strings ([`Forward::new`]).
//!
//! Commands, events, state and replies are JSON, encoded with serde.
//! [`export_event_sourced!`], [`export_value_entity!`], [`export_crdt!`] and
//! [`export_action!`] turn the crate into a WebAssembly component (build it with
//! `cargo build --target wasm32-wasip2`); [`testkit`] runs the service
//! natively in unit tests, through the same byte-level cores ([`raw`]) as
//! the component.
//!
//! # Example: an event-sourced entity
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use wasmstate_sdk::{Context, EventSourced, Failure, Reply};
//!
//! /// A counter that only goes up.
//! #[derive(Default, Clone, Serialize, Deserialize)]
//! struct Counter {
//!     value: i64,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! enum Command {
//!     Increase { value: i64 },
//!     Get,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(tag = "type")]
//! enum Event {
//!     Increased { value: i64 },
//! }
//!
//! impl EventSourced for Counter {
//!     type Command = Command;
//!     type Event = Event;
//!
//!     fn apply(&mut self, event: &Event) {
//!         match event {
//!             Event::Increased { value } => self.value += value,
//!         }
//!     }
//!
//!     fn handle(command: Command, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
//!         match command {
//!             Command::Increase { value } if value <= 0 => Err(Failure::rejected("Increase requires a positive value")),
//!             Command::Increase { value } => {
//!                 ctx.emit(Event::Increased { value });
//!                 Ok(Reply::json(ctx.state()))
//!             }
//!             Command::Get => Ok(Reply::json(ctx.state())),
//!         }
//!     }
//! }
//!
//! // Makes this crate a component exporting `wasmstate:entity/event-sourced`.
//! wasmstate_sdk::export_event_sourced!(Counter);
//!
//! // Unit tests drive the entity like the host does, by name or by value.
//! use serde_json::json;
//! use wasmstate_sdk::{FailureCode, testkit::TestKit};
//!
//! let mut kit = TestKit::<Counter>::new("counter-1");
//! assert_eq!(kit.handle("Increase", json!({"value": 2})), Ok(json!({"value": 2})));
//! assert_eq!(kit.handle("Increase", json!({"value": -1})).unwrap_err().code(), FailureCode::Rejected);
//! assert_eq!(kit.handle("Reset", ()).unwrap_err().code(), FailureCode::UnknownCommand);
//! assert_eq!(kit.send(&Command::Get), Ok(json!({"value": 2})));
//! assert_eq!(kit.events_json(), [(1, json!({"type": "Increased", "value": 2}))]);
//! ```
//!
//! [`KeyValue`] and [`Stateless`] show complete examples of the other two
//! kinds.
//!
//! # Timers
//!
//! A command can ask the host to run a command later: `ctx.schedule(name,
//! when, call)` sets a timer, `ctx.cancel(name)` cancels one, on every
//! context ([`Context`], [`ValueContext`], [`CrdtContext`],
//! [`ActionContext`]; an action's timers belong to its routing key).
//! [`When`] says when it fires: after a
//! [`Duration`](std::time::Duration) from the command's time, at a
//! [`SystemTime`](std::time::SystemTime), or at every slot of a [`Cron`]
//! schedule (`0 9 * * MON-FRI Europe/Paris`) with its [`Missed`] policy. A
//! [`TimerCall`] names what it runs, like a [`Forward`]: any command of any
//! service, or, with `ctx.schedule_self(name, when, &command)`, a command
//! of this entity by its [`Commands`] enum. Each entity's timers have
//! unique names: setting a name again replaces that timer.
//!
//! Timers are durable: they are committed with the command, atomically
//! with its events or state change, and a command that fails schedules (and
//! cancels) nothing. The host keeps them across restarts and crashes, and
//! fires each at least once, running its command under an idempotency key
//! of the timer's setting and slot (`timer <id> <slot ms>`), so a firing
//! repeated after a crash runs once in effect.
//!
//! ```
//! use std::time::Duration;
//!
//! use serde::{Deserialize, Serialize};
//! use wasmstate_sdk::{Commands, Context, EventSourced, Failure, Reply, When};
//!
//! /// An order that expires unless it is paid within 15 minutes.
//! #[derive(Default, Clone, Serialize, Deserialize)]
//! struct Order {
//!     paid: bool,
//!     expired: bool,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! enum OrderCommand {
//!     Place,
//!     Pay,
//!     Expire,
//! }
//!
//! impl Commands for OrderCommand {
//!     const SERVICE: &'static str = "orders";
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(tag = "type")]
//! enum OrderEvent {
//!     Paid,
//!     Expired,
//! }
//!
//! impl EventSourced for Order {
//!     type Command = OrderCommand;
//!     type Event = OrderEvent;
//!
//!     fn apply(&mut self, event: &OrderEvent) {
//!         match event {
//!             OrderEvent::Paid => self.paid = true,
//!             OrderEvent::Expired => self.expired = true,
//!         }
//!     }
//!
//!     fn handle(command: OrderCommand, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
//!         match command {
//!             OrderCommand::Place => {
//!                 let timeout = When::After(Duration::from_secs(15 * 60));
//!                 ctx.schedule_self("payment-timeout", timeout, &OrderCommand::Expire);
//!             }
//!             OrderCommand::Pay if ctx.state().expired => return Err(Failure::rejected("the order expired")),
//!             OrderCommand::Pay => {
//!                 ctx.emit(OrderEvent::Paid);
//!                 ctx.cancel("payment-timeout");
//!             }
//!             OrderCommand::Expire if ctx.state().paid => {}
//!             OrderCommand::Expire => ctx.emit(OrderEvent::Expired),
//!         }
//!         Ok(Reply::json(ctx.state()))
//!     }
//! }
//!
//! // The test kit keeps the timers and has a clock: advancing it fires them.
//! use serde_json::json;
//! use wasmstate_sdk::testkit::TestKit;
//!
//! let mut kit = TestKit::<Order>::new("order-1");
//! kit.set_time_ms(1_700_000_000_000);
//! kit.send(&OrderCommand::Place).unwrap();
//! assert_eq!(kit.timers()[0].name, "payment-timeout");
//! assert_eq!(kit.timers()[0].due_ms, 1_700_000_900_000);
//!
//! let fired = kit.advance(Duration::from_secs(20 * 60));
//! assert_eq!(fired[0].key, "timer 0000000000000001 1700000900000");
//! assert_eq!(fired[0].answer.as_ref().unwrap().as_ref().unwrap().reply, Some(json!({"paid": false, "expired": true})));
//! assert!(kit.state().expired && kit.timers().is_empty());
//!
//! // Paid in time, the timeout is cancelled and never fires.
//! let mut kit = TestKit::<Order>::new("order-2");
//! kit.send(&OrderCommand::Place).unwrap();
//! kit.send(&OrderCommand::Pay).unwrap();
//! assert!(kit.timers().is_empty() && kit.advance(Duration::from_secs(3600)).is_empty());
//! ```
//!
//! # Webhooks and outbound HTTP
//!
//! A side effect may be an HTTP request to the outside world instead of a
//! command: `ctx.effect(SideEffect::webhook(url).json(&body))` adds a
//! [`Webhook`] (a `POST` unless [`method`](Webhook::method) says another;
//! [`header`](Webhook::header) and [`body`](Webhook::body) set the rest),
//! on every context and in an action's `on_event` alike. The host
//! sends it from its durable outbox once the command's effects are
//! durable — never for a command that failed — at least once, with an
//! `Idempotency-Key` header that stays the same across attempts. Its URL's
//! host must be on the service's allow-list (deploy with
//! `?allow_http=host:port,...`). The test kits keep the webhooks sent:
//! `kit.webhooks()`, and each command's in [`testkit::Outcome::webhooks`].
//!
//! To call an endpoint *during* a command and use its answer, [`http`]
//! sends requests through the host (`http::get(url)?.json()?`). Such a
//! call happens before the commit, so a command that fails afterwards has
//! still made it: the module's documentation shows how to keep the state
//! deterministic (record the answer in an event). In unit tests, the stubs
//! of [`testkit::http`] answer instead of the network.
//!
//! # Commands by name
//!
//! [`EventSourcedEntity`], [`ValueEntity`] and [`Action`] are the same
//! kinds with a handler that receives the undecoded [`Command`] and
//! dispatches on [`Command::name`], decoding the payload with
//! [`Command::json`]: the style of the SDK's first release, which keeps
//! compiling and running. Every typed service is also one of them, so the
//! export macros and test kits take both.

#![warn(missing_docs)]

mod action;
mod command;
mod command_decode;
mod command_encode;
mod crdt;
mod effect;
mod event_sourced;
mod export;
mod export_crdt;
pub mod http;
pub mod raw;
mod reply;
pub mod testkit;
mod timer;
mod value;

pub use action::{Action, ActionContext, Stateless, SubscribedEvent};
pub use command::{Command, Failure, FailureCode, Metadata, NoCommands};
pub use crdt::{
    Clock, CrdtContext, CrdtDelta, CrdtEntity, CrdtKind, CrdtValue, FlagHandle, GCounterHandle, GSetHandle, LwwDelta,
    LwwHandle, MapHandle, OrMapDelta, OrSetDelta, OrSetHandle, PNCounterHandle, VoteHandle, VoteValue,
};
pub use effect::{Effect, Webhook};
pub use event_sourced::{Context, EventSourced, EventSourcedEntity, StoredEvent};
#[doc(hidden)]
pub use export::{__private, bindings};
pub use reply::{Commands, Forward, Reply, SideEffect};
pub use timer::{Cron, MAX_TIMER_NAME, Missed, TimerCall, TimerChange, TimerDue, When};
pub use value::{KeyValue, ValueContext, ValueEntity};
