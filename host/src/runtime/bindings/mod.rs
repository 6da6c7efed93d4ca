//! The generated host bindings of every released `wasmstate:entity` WIT
//! package, side by side — one `bindgen!` per version (`v0_1.rs`,
//! `v0_2.rs`, both expanded from [`version_bindings!`]) — and their
//! conversions to and from the host's own types ([`crate::domain`]).
//! Nothing generated leaves `runtime/`.
//!
//! Each version's `host` world exports every kind's interface; a component
//! exports one of them, of one version, and `guest_call.rs` looks up
//! whichever it is. What every version shares is written once, in
//! [`version_bindings!`]; each version's module adds what differs.

pub(super) mod crdt;
pub(super) mod v0_1;
pub(super) mod v0_2;

use crate::domain::ServiceKind;

/// A version of the `wasmstate:entity` package the host runs components
/// of: 0.1.0, released and frozen; 0.2.0, open until it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WitVersion {
    /// `wasmstate:entity@0.1.0`, frozen: `handle` (and `on-event`) only.
    V0_1,
    /// `wasmstate:entity@0.2.0`: adds versions to stored events and
    /// snapshots, `event-sourced.replay`, `value.decode-state` and timers.
    V0_2,
}

impl WitVersion {
    /// Every version the host runs, newest first: a component exporting the
    /// same kind in two versions runs as the newest.
    pub const NEWEST_FIRST: [WitVersion; 2] = [WitVersion::V0_2, WitVersion::V0_1];

    /// The package version, as in `@0.2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1 => "0.1.0",
            WitVersion::V0_2 => "0.2.0",
        }
    }
}

/// The fully qualified name of the interface a component of `kind` built
/// against `version` exports; `None` for a kind the version does not have
/// (CRDT entities came with 0.2.0).
pub(crate) fn interface(version: WitVersion, kind: ServiceKind) -> Option<&'static str> {
    use {ServiceKind as K, WitVersion as V};
    Some(match (version, kind) {
        (V::V0_1, K::EventSourced) => "wasmstate:entity/event-sourced@0.1.0",
        (V::V0_1, K::Value) => "wasmstate:entity/value@0.1.0",
        (V::V0_1, K::Action) => "wasmstate:entity/action@0.1.0",
        (V::V0_1, K::Crdt) => return None,
        (V::V0_2, K::EventSourced) => "wasmstate:entity/event-sourced@0.2.0",
        (V::V0_2, K::Value) => "wasmstate:entity/value@0.2.0",
        (V::V0_2, K::Action) => "wasmstate:entity/action@0.2.0",
        (V::V0_2, K::Crdt) => "wasmstate:entity/crdt@0.2.0",
    })
}

/// An entity's state as of one position of its log, as the guest encoded
/// it: what a warm entity keeps between commands and lends to the next
/// call. Kept in the newest version's shape, which a call lends without
/// copying; a call of a 0.1.0 component copies it into that shape.
#[derive(Debug, Clone)]
pub struct Snapshot(pub(super) v0_2::wit::Snapshot);

impl Snapshot {
    /// The state `state` as of event `seq`, folded by version `version` of
    /// the service.
    pub fn new(seq: u64, version: u32, state: Vec<u8>) -> Self {
        Self(v0_2::wit::Snapshot { seq, version, state })
    }

    /// The seq of the last event folded into the state.
    pub fn seq(&self) -> u64 {
        self.0.seq
    }

    /// The version of the service that folded it.
    pub fn version(&self) -> u32 {
        self.0.version
    }

    /// The state.
    pub fn state(&self) -> &[u8] {
        &self.0.state
    }

    /// The state, owned.
    pub fn into_state(self) -> Vec<u8> {
        self.0.state
    }
}

/// One version's bindings, expanded inside its module: the `bindgen!` of
/// its `host` world (from the WIT package at `$path`), the names the rest
/// of `runtime/` knows its interfaces by (`wit`, `event_sourced_iface`,
/// `value_iface`, `action_iface`), and the conversions between the host's
/// types and the generated ones that are the same in every version. Each
/// version converts its kinds' effects itself: 0.2.0's carry timers and
/// webhooks.
///
/// A version whose effects carry timers names their field, `timers`, after
/// the path; its module defines `timer_requests`, which converts them.
/// Every version's module defines `GuestEffect`, what its side-effect
/// lists hold, and `effects_of`, which splits such a list into commands
/// and webhooks.
macro_rules! version_bindings {
    (@timers $effects:ident) => {
        Vec::new()
    };
    (@timers $effects:ident, $timers:ident) => {
        timer_requests($effects.$timers)
    };
    ($path:literal $(, $timers:ident)?) => {
        wasmtime::component::bindgen!({
            path: $path,
            world: "host",
            // Guests run as futures on the async workers, yielding at every
            // epoch tick, so a long call never holds a thread to itself.
            exports: { default: async },
        });

        pub(in crate::runtime) use self::exports::wasmstate::entity::action as action_iface;
        pub(in crate::runtime) use self::exports::wasmstate::entity::event_sourced as event_sourced_iface;
        pub(in crate::runtime) use self::exports::wasmstate::entity::value as value_iface;
        pub(in crate::runtime) use self::wasmstate::entity::types as wit;

        use crate::domain::{Call, Effects, Failure, FailureCode, Reply, SideEffect, StateChange};

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
                    wit::Reply::Forward(f) => Reply::Forward(Call {
                        service: f.service,
                        entity: f.entity_id,
                        command: f.command,
                        payload: f.payload,
                    }),
                }
            }
        }

        impl From<wit::SideEffect> for SideEffect {
            fn from(e: wit::SideEffect) -> Self {
                let call = Call { service: e.service, entity: e.entity_id, command: e.command, payload: e.payload };
                Self { call, synchronous: e.synchronous }
            }
        }

        impl From<event_sourced_iface::Effects> for Effects {
            fn from(e: event_sourced_iface::Effects) -> Self {
                let (side_effects, webhooks) = effects_of(e.side_effects);
                Self {
                    reply: e.reply.into(),
                    side_effects,
                    webhooks,
                    state: StateChange::Events { events: e.events, state: e.state },
                    timers: super::version_bindings!(@timers e $(, $timers)?),
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
                let (side_effects, webhooks) = effects_of(e.side_effects);
                Self {
                    reply: e.reply.into(),
                    side_effects,
                    webhooks,
                    state,
                    timers: super::version_bindings!(@timers e $(, $timers)?),
                }
            }
        }

        impl From<action_iface::ActionEffects> for Effects {
            fn from(e: action_iface::ActionEffects) -> Self {
                let (side_effects, webhooks) = effects_of(e.side_effects);
                Self {
                    reply: e.reply.into(),
                    side_effects,
                    webhooks,
                    state: StateChange::Unchanged,
                    timers: super::version_bindings!(@timers e $(, $timers)?),
                }
            }
        }

        /// What an `on-event` returned: its side effects, with no reply.
        pub(in crate::runtime) fn event_effects(effects: Vec<GuestEffect>) -> Effects {
            let (side_effects, webhooks) = effects_of(effects);
            Effects { side_effects, webhooks, ..Effects::reply(Reply::Message(Vec::new())) }
        }
    };
}
use version_bindings;

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    /// A released WIT package never changes: components built against it
    /// must keep deploying and running. What the next version adds goes
    /// into the open one (0.2.0) instead.
    #[test]
    fn released_packages_are_frozen() {
        let released: [(&str, &[u8], &str); 1] = [(
            "0.1.0",
            include_bytes!("../../../../wit/v0.1.0/entity.wit"),
            "f7828dc9764287dba74e1b632e431d6bc960071aec4437cc3ff2023bebac05f0",
        )];
        for (version, text, digest) in released {
            let found: String = Sha256::digest(text).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(found, digest, "wasmstate:entity@{version} was released and must not change");
        }
    }
}
