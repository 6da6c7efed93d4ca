//! `wasmstate:entity@0.1.0`, frozen: the bindings components built against
//! the first release keep running on.

use super::Snapshot;
use crate::domain::{CommandMeta, Event, SubscribedEvent};

super::version_bindings!("../wit/v0.1.0");

/// What 0.1.0's side-effect lists hold: commands only.
type GuestEffect = wit::SideEffect;

/// The side effects a guest asked for; 0.1.0 has no webhooks.
fn effects_of(effects: Vec<GuestEffect>) -> (Vec<SideEffect>, Vec<crate::domain::Webhook>) {
    (effects.into_iter().map(SideEffect::from).collect(), Vec::new())
}

/// The command `call`; 0.1.0 has no place for its metadata.
pub(in crate::runtime) fn command(call: Call, _meta: CommandMeta) -> wit::Command {
    wit::Command { name: call.command, payload: call.payload, entity_id: call.entity }
}

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
