//! The generated host bindings of the `wasmstate:entity` WIT package: the one
//! `bindgen!` of the host.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "event-sourced-entity",
});

pub use self::exports::wasmstate::entity::event_sourced::Effects;
pub use self::wasmstate::entity::types::{Command, Event, Failure, FailureCode, Snapshot};

/// The fully qualified name of the interface an event-sourced entity exports.
pub const EVENT_SOURCED_INTERFACE: &str = "wasmstate:entity/event-sourced@0.1.0";
