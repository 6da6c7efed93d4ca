//! `wasmstate:entity@0.2.0`: what the SDK builds components against.

use crate::domain::{Event, SubscribedEvent};

wasmtime::component::bindgen!({
    path: "../wit/v0.2.0",
    world: "host",
    // Guests run as futures on the async workers, yielding at every epoch
    // tick, so a long call never holds a thread to itself.
    exports: { default: async },
});

pub(in crate::runtime) use self::exports::wasmstate::entity::action as action_iface;
pub(in crate::runtime) use self::exports::wasmstate::entity::event_sourced as event_sourced_iface;
pub(in crate::runtime) use self::exports::wasmstate::entity::value as value_iface;
pub(in crate::runtime) use self::wasmstate::entity::types as wit;

super::conversions!();

impl From<Event> for wit::Event {
    fn from(event: Event) -> Self {
        Self { seq: event.seq, version: event.version, payload: event.payload }
    }
}

impl From<SubscribedEvent> for wit::SubscribedEvent {
    fn from(event: SubscribedEvent) -> Self {
        Self {
            service: event.source,
            entity_id: event.entity,
            seq: event.seq,
            version: event.version,
            payload: event.payload,
        }
    }
}
