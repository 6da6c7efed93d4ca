//! The WebAssembly export of CRDT entities: the glue between the generated
//! `crdt` bindings and the [`raw::crdt`](crate::raw::crdt) core, converting
//! values and deltas at the edge, and the `export_crdt!` macro.

use crate::__private::{command_of, failure, reply, side_effects, timers};
use crate::bindings::crdt::exports::wasmstate::entity::crdt as wit;
use crate::bindings::types;
use crate::crdt::{Clock, CrdtDelta, CrdtValue, OrMapDelta, OrSetDelta, VoteValue};
use crate::raw;

/// Implements the exported `crdt.handle` for entity type `E`.
pub fn crdt_handle<E: crate::CrdtEntity>(
    value: Option<wit::CrdtValue>,
    command: types::Command,
) -> Result<wit::CrdtEffects, types::Failure> {
    let value = value.map(value_of);
    let effects = raw::crdt::handle::<E>(value.as_ref(), command_of(&command)).map_err(failure)?;
    Ok(wit::CrdtEffects {
        reply: reply(effects.reply),
        delta: effects.delta.map(delta),
        delete: effects.delete,
        side_effects: side_effects(effects.side_effects),
        timers: timers(effects.timers),
    })
}

/// The SDK's value of the host's.
fn value_of(value: wit::CrdtValue) -> CrdtValue {
    match value {
        wit::CrdtValue::Gcounter(sum) => CrdtValue::GCounter(sum),
        wit::CrdtValue::Pncounter(sum) => CrdtValue::PNCounter(sum),
        wit::CrdtValue::Gset(elements) => CrdtValue::GSet(elements),
        wit::CrdtValue::Orset(elements) => CrdtValue::OrSet(elements),
        wit::CrdtValue::LwwRegister(value) => CrdtValue::LwwRegister(value),
        wit::CrdtValue::Flag(enabled) => CrdtValue::Flag(enabled),
        wit::CrdtValue::Ormap(entries) => {
            CrdtValue::OrMap(entries.into_iter().map(|(key, value)| (key, leaf_value(value))).collect())
        }
        wit::CrdtValue::Vote(vote) => CrdtValue::Vote(vote_of(vote)),
    }
}

/// The SDK's value of a map key's.
fn leaf_value(value: wit::LeafValue) -> CrdtValue {
    match value {
        wit::LeafValue::Gcounter(sum) => CrdtValue::GCounter(sum),
        wit::LeafValue::Pncounter(sum) => CrdtValue::PNCounter(sum),
        wit::LeafValue::Gset(elements) => CrdtValue::GSet(elements),
        wit::LeafValue::Orset(elements) => CrdtValue::OrSet(elements),
        wit::LeafValue::LwwRegister(value) => CrdtValue::LwwRegister(value),
        wit::LeafValue::Flag(enabled) => CrdtValue::Flag(enabled),
        wit::LeafValue::Vote(vote) => CrdtValue::Vote(vote_of(vote)),
    }
}

fn vote_of(vote: wit::VoteValue) -> VoteValue {
    VoteValue { self_vote: vote.self_vote, votes_for: vote.votes_for, voters: vote.voters }
}

/// The host's delta of the SDK's.
fn delta(delta: CrdtDelta) -> wit::CrdtDelta {
    match delta {
        CrdtDelta::GCounter(by) => wit::CrdtDelta::Gcounter(by),
        CrdtDelta::PNCounter(by) => wit::CrdtDelta::Pncounter(by),
        CrdtDelta::GSet(elements) => wit::CrdtDelta::Gset(elements),
        CrdtDelta::OrSet(change) => wit::CrdtDelta::Orset(orset(change)),
        CrdtDelta::LwwRegister(write) => {
            wit::CrdtDelta::LwwRegister(wit::LwwDelta { value: write.value, clock: clock(write.clock) })
        }
        CrdtDelta::Flag => wit::CrdtDelta::Flag,
        CrdtDelta::OrMap(OrMapDelta { clear, remove, update }) => wit::CrdtDelta::Ormap(wit::OrmapDelta {
            clear,
            remove,
            update: update.into_iter().filter_map(|(key, delta)| Some((key, leaf_delta(delta)?))).collect(),
        }),
        CrdtDelta::Vote(yes) => wit::CrdtDelta::Vote(yes),
    }
}

/// The host's delta of a map key's value; `None` for a map's, which the
/// context never records.
fn leaf_delta(delta: CrdtDelta) -> Option<wit::LeafDelta> {
    Some(match delta {
        CrdtDelta::GCounter(by) => wit::LeafDelta::Gcounter(by),
        CrdtDelta::PNCounter(by) => wit::LeafDelta::Pncounter(by),
        CrdtDelta::GSet(elements) => wit::LeafDelta::Gset(elements),
        CrdtDelta::OrSet(change) => wit::LeafDelta::Orset(orset(change)),
        CrdtDelta::LwwRegister(write) => {
            wit::LeafDelta::LwwRegister(wit::LwwDelta { value: write.value, clock: clock(write.clock) })
        }
        CrdtDelta::Flag => wit::LeafDelta::Flag,
        CrdtDelta::Vote(yes) => wit::LeafDelta::Vote(yes),
        CrdtDelta::OrMap(_) => return None,
    })
}

fn orset(change: OrSetDelta) -> wit::OrsetDelta {
    wit::OrsetDelta { clear: change.clear, remove: change.remove, add: change.add }
}

fn clock(clock: Clock) -> wit::LwwClock {
    match clock {
        Clock::Default => wit::LwwClock::LatestWrite,
        Clock::Reverse => wit::LwwClock::FirstWrite,
        Clock::Custom(at) => wit::LwwClock::Custom(at),
    }
}

/// Exports a [`CrdtEntity`](crate::CrdtEntity) as the component's
/// `wasmstate:entity/crdt` interface (world `crdt-entity`).
///
/// Invoke it once, at the crate's top level, in a `cdylib` crate; a
/// component exports exactly one kind of service. The exports are only
/// emitted when compiling for WebAssembly.
///
/// ```
/// # use wasmstate_sdk::{CrdtContext, CrdtEntity, Failure, NoCommands, Reply};
/// # struct Visits;
/// # impl CrdtEntity for Visits {
/// #     type Command = NoCommands;
/// #     fn handle(command: NoCommands, _: &mut CrdtContext<'_>) -> Result<Reply, Failure> {
/// #         match command {}
/// #     }
/// # }
/// wasmstate_sdk::export_crdt!(Visits);
/// ```
#[macro_export]
macro_rules! export_crdt {
    ($entity:ty) => {
        const _: () = {
            struct __WasmstateCrdt;

            impl $crate::bindings::crdt::exports::wasmstate::entity::crdt::Guest for __WasmstateCrdt {
                fn handle(
                    value: ::core::option::Option<$crate::bindings::crdt::exports::wasmstate::entity::crdt::CrdtValue>,
                    command: $crate::bindings::types::Command,
                ) -> ::core::result::Result<
                    $crate::bindings::crdt::exports::wasmstate::entity::crdt::CrdtEffects,
                    $crate::bindings::types::Failure,
                > {
                    $crate::__private::crdt_handle::<$entity>(value, command)
                }
            }

            #[cfg(target_family = "wasm")]
    $crate::bindings::crdt::__export_crdt_entity!(__WasmstateCrdt with_types_in $crate::bindings::crdt);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_deltas_cross_the_edge() {
        let value = wit::CrdtValue::Ormap(vec![
            (b"a".to_vec(), wit::LeafValue::Vote(wit::VoteValue { self_vote: true, votes_for: 1, voters: 2 })),
            (b"b".to_vec(), wit::LeafValue::Orset(vec![b"x".to_vec()])),
        ]);
        let expected = CrdtValue::OrMap(vec![
            (b"a".to_vec(), CrdtValue::Vote(VoteValue { self_vote: true, votes_for: 1, voters: 2 })),
            (b"b".to_vec(), CrdtValue::OrSet(vec![b"x".to_vec()])),
        ]);
        assert_eq!(value_of(value), expected);

        let change = CrdtDelta::OrMap(OrMapDelta {
            clear: true,
            remove: vec![b"k".to_vec()],
            update: vec![(
                b"c".to_vec(),
                CrdtDelta::LwwRegister(crate::LwwDelta { value: b"1".to_vec(), clock: Clock::Custom(5) }),
            )],
        });
        let wit::CrdtDelta::Ormap(map) = delta(change) else { panic!("a map's delta") };
        assert!(map.clear && map.remove == [b"k".to_vec()]);
        assert!(matches!(
            &map.update[..],
            [(key, wit::LeafDelta::LwwRegister(wit::LwwDelta { clock: wit::LwwClock::Custom(5), .. }))] if key == b"c"
        ));
    }
}
