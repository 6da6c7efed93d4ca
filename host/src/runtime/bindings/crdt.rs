//! The CRDT interface of `wasmstate:entity@0.2.0` at the edge: the values
//! the host hands a guest and the deltas it answers, converted to and from
//! `wasmstate-crdt`'s types. A delta is typed, so the host can merge it.

use wasmstate_crdt::{Change, Clock, OrMapChange, OrSetChange, Value};

use super::v0_2::crdt_iface as wit;
use crate::domain::{Effects, StateChange};

/// The value a guest sees, in the interface's shape. A map's value that is
/// itself a map (which no guest can write) is shown as an empty counter.
pub(in crate::runtime) fn value_to_wit(value: Value) -> wit::CrdtValue {
    match value {
        Value::GCounter(n) => wit::CrdtValue::Gcounter(n),
        Value::PNCounter(n) => wit::CrdtValue::Pncounter(n),
        Value::GSet(elements) => wit::CrdtValue::Gset(elements),
        Value::OrSet(elements) => wit::CrdtValue::Orset(elements),
        Value::LwwRegister(value) => wit::CrdtValue::LwwRegister(value),
        Value::Flag(on) => wit::CrdtValue::Flag(on),
        Value::Vote { self_vote, votes_for, voters } => {
            wit::CrdtValue::Vote(wit::VoteValue { self_vote, votes_for, voters })
        }
        Value::OrMap(entries) => {
            wit::CrdtValue::Ormap(entries.into_iter().map(|(key, value)| (key, leaf_to_wit(value))).collect())
        }
    }
}

fn leaf_to_wit(value: Value) -> wit::LeafValue {
    match value {
        Value::GCounter(n) => wit::LeafValue::Gcounter(n),
        Value::PNCounter(n) => wit::LeafValue::Pncounter(n),
        Value::GSet(elements) => wit::LeafValue::Gset(elements),
        Value::OrSet(elements) => wit::LeafValue::Orset(elements),
        Value::LwwRegister(value) => wit::LeafValue::LwwRegister(value),
        Value::Flag(on) => wit::LeafValue::Flag(on),
        Value::Vote { self_vote, votes_for, voters } => {
            wit::LeafValue::Vote(wit::VoteValue { self_vote, votes_for, voters })
        }
        Value::OrMap(_) => wit::LeafValue::Gcounter(0),
    }
}

/// The change a guest's delta asks for.
fn change_of(delta: wit::CrdtDelta) -> Change {
    match delta {
        wit::CrdtDelta::Gcounter(n) => Change::Increment(n),
        wit::CrdtDelta::Pncounter(n) => Change::PnChange(n),
        wit::CrdtDelta::Gset(elements) => Change::GSetAdd(elements),
        wit::CrdtDelta::Orset(delta) => Change::OrSet(orset_change(delta)),
        wit::CrdtDelta::LwwRegister(delta) => lww_change(delta),
        wit::CrdtDelta::Flag => Change::Enable,
        wit::CrdtDelta::Vote(yes) => Change::Vote(yes),
        wit::CrdtDelta::Ormap(delta) => Change::OrMap(OrMapChange {
            clear: delta.clear,
            remove: delta.remove,
            update: delta.update.into_iter().map(|(key, delta)| (key, leaf_change(delta))).collect(),
        }),
    }
}

fn leaf_change(delta: wit::LeafDelta) -> Change {
    match delta {
        wit::LeafDelta::Gcounter(n) => Change::Increment(n),
        wit::LeafDelta::Pncounter(n) => Change::PnChange(n),
        wit::LeafDelta::Gset(elements) => Change::GSetAdd(elements),
        wit::LeafDelta::Orset(delta) => Change::OrSet(orset_change(delta)),
        wit::LeafDelta::LwwRegister(delta) => lww_change(delta),
        wit::LeafDelta::Flag => Change::Enable,
        wit::LeafDelta::Vote(yes) => Change::Vote(yes),
    }
}

fn orset_change(delta: wit::OrsetDelta) -> OrSetChange {
    OrSetChange { clear: delta.clear, remove: delta.remove, add: delta.add }
}

fn lww_change(delta: wit::LwwDelta) -> Change {
    let clock = match delta.clock {
        wit::LwwClock::LatestWrite => Clock::Default,
        wit::LwwClock::FirstWrite => Clock::Reverse,
        wit::LwwClock::Custom(value) => Clock::Custom(value),
    };
    Change::Set { value: delta.value, clock }
}

impl From<wit::CrdtEffects> for Effects {
    fn from(e: wit::CrdtEffects) -> Self {
        let (side_effects, webhooks) = super::v0_2::effects_of(e.side_effects);
        let state = match e.delete {
            true => StateChange::CrdtDelete,
            false => StateChange::Crdt(e.delta.map(change_of)),
        };
        Self { reply: e.reply.into(), side_effects, webhooks, state, timers: super::v0_2::timer_requests(e.timers) }
    }
}
