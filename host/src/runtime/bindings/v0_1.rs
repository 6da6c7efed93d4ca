//! `wasmstate:entity@0.1.0`, frozen: the bindings components built against
//! the first release keep running on.

use super::Snapshot;
use crate::domain::{Event, SubscribedEvent};

super::version_bindings!("../wit/v0.1.0");

impl From<Event> for wit::Event {
    fn from(event: Event) -> Self {
        Self { seq: event.seq, payload: event.payload }
    }
}

impl From<SubscribedEvent> for wit::SubscribedEvent {
    fn from(event: SubscribedEvent) -> Self {
        Self { service: event.source, entity_id: event.entity, seq: event.seq, payload: event.payload }
    }
}

impl From<&Snapshot> for wit::Snapshot {
    /// A copy: 0.1.0 snapshots have no version.
    fn from(snapshot: &Snapshot) -> Self {
        Self { seq: snapshot.seq(), state: snapshot.state().to_vec() }
    }
}
