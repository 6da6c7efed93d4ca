//! The generated host bindings of the `wasmstate:entity` WIT package: the one
//! `bindgen!` of the host. It binds the `host` world, which exports every
//! kind's interface; a component exports one of them, and
//! [`KindIndices`](super::KindIndices) looks up whichever it is.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host",
    // Guests run as futures on the async workers, yielding at every epoch
    // tick, so a long call never holds a thread to itself.
    exports: { default: async },
});

pub use self::exports::wasmstate::entity::action::{self as action_iface, ActionEffects};
pub use self::exports::wasmstate::entity::event_sourced::{self as event_sourced_iface, Effects};
pub use self::exports::wasmstate::entity::value::{self as value_iface, StateChange, ValueEffects};
pub use self::wasmstate::entity::types::{
    Command, Event, Failure, FailureCode, Forward, Reply, SideEffect, Snapshot, SubscribedEvent,
};

/// The fully qualified name of the interface an event-sourced entity exports.
pub const EVENT_SOURCED_INTERFACE: &str = "wasmstate:entity/event-sourced@0.1.0";
/// The fully qualified name of the interface a value entity exports.
pub const VALUE_INTERFACE: &str = "wasmstate:entity/value@0.1.0";
/// The fully qualified name of the interface an action exports.
pub const ACTION_INTERFACE: &str = "wasmstate:entity/action@0.1.0";
