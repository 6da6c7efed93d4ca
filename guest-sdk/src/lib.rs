//! Write wasmstate event-sourced entities in Rust.
//!
//! An entity is a type holding its state. It implements
//! [`EventSourcedEntity`]: [`apply`](EventSourcedEntity::apply) folds one
//! event into the state, [`handle`](EventSourcedEntity::handle) turns a
//! command into events (through [`Context::emit`]) and a [`Reply`], or a
//! [`Failure`]. The host owns the event log: before each command it hands
//! the entity its latest snapshot and the events after it, and it persists
//! the emitted events only if the command succeeds.
//!
//! Commands, events, state and replies are JSON, encoded with serde.
//! [`export_event_sourced!`] turns the crate into a WebAssembly component
//! (build it with `cargo build --target wasm32-wasip2`), and
//! [`testkit::TestKit`] runs the entity natively in unit tests.
//!
//! # Example
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

#![warn(missing_docs)]

mod command;
mod entity;
pub mod raw;
pub mod testkit;

pub use command::{Command, Failure, FailureCode, Reply};
pub use entity::{Context, EventSourcedEntity};

/// Bindings generated from the `wasmstate:entity` WIT package.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "event-sourced-entity",
        pub_export_macro: true,
        export_macro_name: "__export_event_sourced_entity",
        default_bindings_module: "wasmstate_sdk::bindings",
    });
}

/// Glue between the generated bindings and [`raw::handle`].
#[doc(hidden)]
pub mod __private {
    use crate::bindings::exports::wasmstate::entity::event_sourced as wit;
    use crate::bindings::wasmstate::entity::types;

    /// Implements the exported WIT `handle` for entity type `E`.
    pub fn handle<E: crate::EventSourcedEntity>(
        snapshot: Option<types::Snapshot>,
        events: Vec<types::Event>,
        command: types::Command,
    ) -> Result<wit::Effects, types::Failure> {
        let snapshot = snapshot.as_ref().map(|s| (s.seq, s.state.as_slice()));
        let events = events.iter().map(|e| (e.seq, e.payload.as_slice()));
        let command = crate::Command::new(&command.name, &command.payload, &command.entity_id);
        match crate::raw::handle::<E>(snapshot, events, command) {
            Ok(effects) => Ok(wit::Effects {
                events: effects.events,
                reply: effects.reply,
                state: effects.state,
            }),
            Err(failure) => Err(types::Failure {
                code: match failure.code() {
                    crate::FailureCode::Rejected => types::FailureCode::Rejected,
                    crate::FailureCode::UnknownCommand => types::FailureCode::UnknownCommand,
                    crate::FailureCode::InvalidPayload => types::FailureCode::InvalidPayload,
                    crate::FailureCode::InvalidState => types::FailureCode::InvalidState,
                },
                message: failure.message().to_owned(),
            }),
        }
    }
}

/// Exports an [`EventSourcedEntity`] as the component's
/// `wasmstate:entity/event-sourced` interface.
///
/// Invoke it once, at the crate's top level, in a `cdylib` crate. The
/// exports are only emitted when compiling for WebAssembly, so the same
/// crate also builds natively for unit tests.
///
/// ```
/// # use wasmstate_sdk::{Command, Context, EventSourcedEntity, Failure, Reply};
/// # #[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
/// # struct ShoppingCart {}
/// # impl EventSourcedEntity for ShoppingCart {
/// #     type Event = ();
/// #     fn apply(&mut self, _: &()) {}
/// #     fn handle(&self, c: Command<'_>, _: &mut Context<'_, Self>) -> Result<Reply, Failure> {
/// #         Err(c.unknown())
/// #     }
/// # }
/// wasmstate_sdk::export_event_sourced!(ShoppingCart);
/// ```
#[macro_export]
macro_rules! export_event_sourced {
    ($entity:ty) => {
        const _: () = {
            struct __WasmstateEntity;

            impl $crate::bindings::exports::wasmstate::entity::event_sourced::Guest for __WasmstateEntity {
                fn handle(
                    snapshot: ::core::option::Option<$crate::bindings::wasmstate::entity::types::Snapshot>,
                    events: ::std::vec::Vec<$crate::bindings::wasmstate::entity::types::Event>,
                    command: $crate::bindings::wasmstate::entity::types::Command,
                ) -> ::core::result::Result<
                    $crate::bindings::exports::wasmstate::entity::event_sourced::Effects,
                    $crate::bindings::wasmstate::entity::types::Failure,
                > {
                    $crate::__private::handle::<$entity>(snapshot, events, command)
                }
            }

            // Native builds (unit tests) only type-check the glue: the export
            // names are not valid symbol names for native linkers.
            #[cfg(target_family = "wasm")]
            $crate::bindings::__export_event_sourced_entity!(__WasmstateEntity with_types_in $crate::bindings);
        };
    };
}
