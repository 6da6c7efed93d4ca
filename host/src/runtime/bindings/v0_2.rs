//! `wasmstate:entity@0.2.0`: what the SDK builds components against.

use crate::domain::{CommandMeta, Event, SubscribedEvent};

super::version_bindings!("../wit/v0.2.0");

/// The command `call`, run as `meta` says.
pub(in crate::runtime) fn command(call: Call, meta: CommandMeta) -> wit::Command {
    wit::Command {
        name: call.command,
        payload: call.payload,
        entity_id: call.entity,
        seq: meta.seq,
        now_ms: meta.now_ms,
        idempotency_key: meta.idempotency_key,
    }
}

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
