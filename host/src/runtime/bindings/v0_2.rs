//! `wasmstate:entity@0.2.0`: what the SDK builds components against.

use crate::domain::{Event, SubscribedEvent};

super::version_bindings!("../wit/v0.2.0");

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
