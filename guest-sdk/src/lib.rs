//! Write wasmstate services in Rust: event-sourced entities, value entities
//! and actions, compiled to WebAssembly components.
//!
//! A service is one of three kinds, each a trait:
//!
//! - [`EventSourcedEntity`]: the state is the fold of the entity's events.
//!   [`apply`](EventSourcedEntity::apply) folds one event into the state;
//!   [`handle`](EventSourcedEntity::handle) turns a command into events
//!   (through [`Context::emit`]) and a reply. Before each command the host
//!   hands the entity its latest snapshot and the events after it.
//! - [`ValueEntity`]: the state is one value the host stores;
//!   [`handle`](ValueEntity::handle) reads it and replaces or deletes it
//!   through [`ValueContext`].
//! - [`Action`]: stateless; [`handle`](Action::handle) answers commands,
//!   usually by validating and forwarding them, and
//!   [`on_event`](Action::on_event) reacts to the committed events of
//!   services the action subscribes to.
//!
//! Every command either succeeds, with a [`Reply`] (a message, or a
//! [`Forward`] that hands the command on to another service) and any
//! [`SideEffect`]s added through the context, or fails with a [`Failure`].
//! A failure discards everything the command produced: events, state
//! changes, side effects.
//!
//! Commands, events, state and replies are JSON, encoded with serde.
//! [`export_event_sourced!`], [`export_value_entity!`] and [`export_action!`]
//! turn the crate into a WebAssembly component (build it with
//! `cargo build --target wasm32-wasip2`); [`testkit`] runs the service
//! natively in unit tests, through the same byte-level cores ([`raw`]) as
//! the component.
//!
//! # Example: an event-sourced entity
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use wasmstate_sdk::{Command, Context, EventSourcedEntity, Failure, Reply};
//!
//! /// A counter that only goes up.
//! #[derive(Default, Clone, Serialize, Deserialize)]
//! struct Counter {
//!     value: i64,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(tag = "type")]
//! enum Event {
//!     Increased { by: i64 },
//! }
//!
//! #[derive(Deserialize)]
//! struct Increase {
//!     by: i64,
//! }
//!
//! impl EventSourcedEntity for Counter {
//!     type Event = Event;
//!
//!     fn apply(&mut self, event: &Event) {
//!         match event {
//!             Event::Increased { by } => self.value += by,
//!         }
//!     }
//!
//!     fn handle(&self, command: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
//!         match command.name() {
//!             "Increase" => {
//!                 let Increase { by } = command.json()?;
//!                 if by <= 0 {
//!                     return Err(Failure::rejected("Increase requires a positive value"));
//!                 }
//!                 ctx.emit(Event::Increased { by });
//!                 Ok(Reply::json(ctx.state()))
//!             }
//!             "Get" => Ok(Reply::json(self)),
//!             _ => Err(command.unknown()),
//!         }
//!     }
//! }
//!
//! // Makes this crate a component exporting `wasmstate:entity/event-sourced`.
//! wasmstate_sdk::export_event_sourced!(Counter);
//!
//! // Unit tests drive the entity like the host does.
//! use serde_json::json;
//! use wasmstate_sdk::{FailureCode, testkit::TestKit};
//!
//! let mut kit = TestKit::<Counter>::new("counter-1");
//! assert_eq!(kit.handle("Increase", json!({"by": 2})), Ok(json!({"value": 2})));
//! assert_eq!(kit.handle("Increase", json!({"by": -1})).unwrap_err().code(), FailureCode::Rejected);
//! assert_eq!(kit.handle("Get", ()), Ok(json!({"value": 2})));
//! assert_eq!(kit.events_json(), [(1, json!({"type": "Increased", "by": 2}))]);
//! ```
//!
//! [`ValueEntity`] and [`Action`] show complete examples of the other two
//! kinds.

#![warn(missing_docs)]

mod action;
mod command;
mod event_sourced;
mod export;
pub mod raw;
mod reply;
pub mod testkit;
mod value;

pub use action::{Action, ActionContext, SubscribedEvent};
pub use command::{Command, Failure, FailureCode};
pub use event_sourced::{Context, EventSourcedEntity, StoredEvent};
#[doc(hidden)]
pub use export::{__private, bindings};
pub use reply::{Forward, Reply, SideEffect};
pub use value::{ValueContext, ValueEntity};
