//! The generated host bindings of the `wasmstate:entity` WIT package — the
//! one `bindgen!` of the host — and their conversions to and from the
//! host's own types ([`crate::domain`]). Nothing generated leaves
//! `runtime/`.
//!
//! The `host` world exports every kind's interface; a component exports
//! one of them, and `guest_call.rs` looks up whichever it is.

use crate::domain::{
    Call, Effects, Event, Failure, FailureCode, Reply, ServiceKind, SideEffect, StateChange, SubscribedEvent,
};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host",
    // Guests run as futures on the async workers, yielding at every epoch
    // tick, so a long call never holds a thread to itself.
    exports: { default: async },
});

pub(super) use self::exports::wasmstate::entity::action as action_iface;
pub(super) use self::exports::wasmstate::entity::event_sourced as event_sourced_iface;
pub(super) use self::exports::wasmstate::entity::value as value_iface;
pub(super) use self::wasmstate::entity::types as wit;

/// The fully qualified name of the interface a component of `kind` exports.
pub(crate) fn interface(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::EventSourced => "wasmstate:entity/event-sourced@0.1.0",
        ServiceKind::Value => "wasmstate:entity/value@0.1.0",
        ServiceKind::Action => "wasmstate:entity/action@0.1.0",
    }
}

/// An entity's state as of one position of its log, as the guest encoded
/// it: what a warm entity keeps between commands and lends to the next
/// call without copying.
#[derive(Debug, Clone)]
pub struct Snapshot(pub(super) wit::Snapshot);

impl Snapshot {
    /// The state `state` as of event `seq`.
    pub fn new(seq: u64, state: Vec<u8>) -> Self {
        Self(wit::Snapshot { seq, state })
    }

    /// The seq of the last event folded into the state.
    pub fn seq(&self) -> u64 {
        self.0.seq
    }

    /// The state.
    pub fn state(&self) -> &[u8] {
        &self.0.state
    }
}

impl From<Call> for wit::Command {
    fn from(call: Call) -> Self {
        Self { name: call.command, payload: call.payload, entity_id: call.entity }
    }
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

impl From<wit::Failure> for Failure {
    fn from(failure: wit::Failure) -> Self {
        let code = match failure.code {
            wit::FailureCode::Rejected => FailureCode::Rejected,
            wit::FailureCode::UnknownCommand => FailureCode::UnknownCommand,
            wit::FailureCode::InvalidPayload => FailureCode::InvalidPayload,
            wit::FailureCode::InvalidState => FailureCode::InvalidState,
        };
        Self { code, message: failure.message }
    }
}

impl From<wit::Reply> for Reply {
    fn from(reply: wit::Reply) -> Self {
        match reply {
            wit::Reply::Message(bytes) => Reply::Message(bytes),
            wit::Reply::Forward(f) => {
                Reply::Forward(Call { service: f.service, entity: f.entity_id, command: f.command, payload: f.payload })
            }
        }
    }
}

impl From<wit::SideEffect> for SideEffect {
    fn from(e: wit::SideEffect) -> Self {
        let call = Call { service: e.service, entity: e.entity_id, command: e.command, payload: e.payload };
        Self { call, synchronous: e.synchronous }
    }
}

fn side_effects(effects: Vec<wit::SideEffect>) -> Vec<SideEffect> {
    effects.into_iter().map(SideEffect::from).collect()
}

impl From<event_sourced_iface::Effects> for Effects {
    fn from(e: event_sourced_iface::Effects) -> Self {
        Self {
            reply: e.reply.into(),
            side_effects: side_effects(e.side_effects),
            state: StateChange::Events { events: e.events, state: e.state },
        }
    }
}

impl From<value_iface::ValueEffects> for Effects {
    fn from(e: value_iface::ValueEffects) -> Self {
        let state = match e.state {
            value_iface::StateChange::Unchanged => StateChange::Unchanged,
            value_iface::StateChange::Update(state) => StateChange::Update(state),
            value_iface::StateChange::Delete => StateChange::Delete,
        };
        Self { reply: e.reply.into(), side_effects: side_effects(e.side_effects), state }
    }
}

impl From<action_iface::ActionEffects> for Effects {
    fn from(e: action_iface::ActionEffects) -> Self {
        Self { reply: e.reply.into(), side_effects: side_effects(e.side_effects), state: StateChange::Unchanged }
    }
}

/// What an `on-event` returned: its side effects, with no reply.
pub(super) fn event_effects(effects: Vec<wit::SideEffect>) -> Effects {
    Effects { side_effects: side_effects(effects), ..Effects::reply(Reply::Message(Vec::new())) }
}
