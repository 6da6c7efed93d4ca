//! Replicas that apply random changes concurrently and then join each
//! other's deltas — in any order, some twice — hold the same state, for
//! every type; and the join of states is commutative, associative and
//! idempotent.

use proptest::prelude::*;
use wasmstate_crdt::{Change, Clock, Crdt, OrMapChange, OrSetChange, ReplicaId, Value};

const REPLICAS: [&str; 3] = ["host-a", "host-b", "host-c"];

fn element() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(b"x".to_vec()), Just(b"y".to_vec()), Just(b"z".to_vec())]
}

fn or_set_change() -> impl Strategy<Value = OrSetChange> {
    (
        proptest::bool::weighted(0.1),
        proptest::collection::vec(element(), 0..2),
        proptest::collection::vec(element(), 0..3),
    )
        .prop_map(|(clear, remove, add)| OrSetChange { clear, remove, add })
}

/// Changes of the type `kind` (0..8), and of the values a map may hold.
fn change(kind: u8) -> BoxedStrategy<Change> {
    match kind {
        0 => (0u64..10).prop_map(Change::Increment).boxed(),
        1 => (-10i64..10).prop_map(Change::PnChange).boxed(),
        2 => proptest::collection::vec(element(), 1..3).prop_map(Change::GSetAdd).boxed(),
        3 => or_set_change().prop_map(Change::OrSet).boxed(),
        4 => (element(), prop_oneof![Just(Clock::Default), Just(Clock::Reverse), (0i64..5).prop_map(Clock::Custom)])
            .prop_map(|(value, clock)| Change::Set { value, clock })
            .boxed(),
        5 => Just(Change::Enable).boxed(),
        6 => any::<bool>().prop_map(Change::Vote).boxed(),
        _ => {
            // Each key's values are of one type, as its name says.
            let value = prop_oneof![
                change(0).prop_map(|c| (b"count".to_vec(), c)),
                change(1).prop_map(|c| (b"balance".to_vec(), c)),
                change(3).prop_map(|c| (b"tags".to_vec(), c)),
                change(4).prop_map(|c| (b"title".to_vec(), c)),
                change(6).prop_map(|c| (b"ok".to_vec(), c)),
            ];
            let keys = prop_oneof![Just(b"count".to_vec()), Just(b"tags".to_vec()), Just(b"title".to_vec())];
            let update = proptest::collection::vec(value, 0..3);
            (proptest::bool::weighted(0.1), proptest::collection::vec(keys, 0..2), update)
                .prop_map(|(clear, remove, update)| Change::OrMap(OrMapChange { clear, remove, update }))
                .boxed()
        }
    }
}

/// A type, and changes of it, each made by one of the replicas at a time.
fn history() -> impl Strategy<Value = (u8, Vec<(usize, Change, u64)>)> {
    (0u8..8).prop_flat_map(|kind| {
        let step = (0..REPLICAS.len(), change(kind), 0u64..1000);
        (Just(kind), proptest::collection::vec(step, 1..25))
    })
}

fn replica(index: usize) -> ReplicaId {
    REPLICAS[index].to_string()
}

/// Each replica applies its own changes, in order, seeing nothing of the
/// others': answers each replica's state and every delta with its maker.
fn run_apart(history: &[(usize, Change, u64)]) -> (Vec<Crdt>, Vec<(usize, Crdt)>) {
    let empty = Crdt::empty_for(&history[0].1);
    let mut states = vec![empty; REPLICAS.len()];
    let mut deltas = Vec::new();
    for (index, change, now_ms) in history {
        let delta = states[*index].apply(&replica(*index), change, *now_ms).expect("a change of the state's type");
        deltas.push((*index, delta));
    }
    (states, deltas)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn replicas_that_join_every_delta_in_any_order_converge(
        (_, history) in history(),
        orders in proptest::collection::vec(any::<proptest::sample::Index>(), 3),
    ) {
        let (mut states, deltas) = run_apart(&history);
        for (index, state) in states.iter_mut().enumerate() {
            // A different order for each replica, and each delta twice.
            let mut order: Vec<&Crdt> = deltas.iter().map(|(_, delta)| delta).collect();
            let shift = orders[index].index(order.len());
            order.rotate_left(shift);
            if index % 2 == 1 {
                order.reverse();
            }
            for delta in order.iter().chain(order.iter()) {
                state.join(delta).unwrap();
            }
        }
        prop_assert_eq!(&states[0], &states[1]);
        prop_assert_eq!(&states[1], &states[2]);
    }

    #[test]
    fn the_join_of_states_is_commutative_associative_and_idempotent((_, history) in history()) {
        let (states, _) = run_apart(&history);
        let join = |a: &Crdt, b: &Crdt| {
            let mut joined = a.clone();
            joined.join(b).unwrap();
            joined
        };
        let (a, b, c) = (&states[0], &states[1], &states[2]);
        prop_assert_eq!(join(a, b), join(b, a));
        prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
        prop_assert_eq!(join(a, a), a.clone());
    }
}

fn elements(value: Value) -> Vec<Vec<u8>> {
    match value {
        Value::OrSet(elements) => elements,
        other => panic!("not a set: {other:?}"),
    }
}

#[test]
fn a_remove_concurrent_with_an_add_of_the_same_element_leaves_it_present() {
    let (a, b) = (replica(0), replica(1));
    let mut on_a = Crdt::empty_for(&Change::OrSet(OrSetChange::default()));
    let added = on_a.apply(&a, &Change::OrSet(OrSetChange { add: vec![b"x".to_vec()], ..Default::default() }), 0);
    let mut on_b = on_a.clone();
    on_b.join(&added.unwrap()).unwrap();
    let removed = on_a.apply(&a, &Change::OrSet(OrSetChange { remove: vec![b"x".to_vec()], ..Default::default() }), 0);
    let readded = on_b.apply(&b, &Change::OrSet(OrSetChange { add: vec![b"x".to_vec()], ..Default::default() }), 0);
    on_a.join(&readded.unwrap()).unwrap();
    on_b.join(&removed.unwrap()).unwrap();
    assert_eq!(elements(on_a.value(&a)), [b"x".to_vec()]);
    assert_eq!(on_a, on_b);
}

#[test]
fn no_increment_is_lost_among_many_replicas() {
    let replicas: Vec<ReplicaId> = (0..3).map(replica).collect();
    let mut states = vec![Crdt::empty_for(&Change::Increment(0)); 3];
    let mut deltas = Vec::new();
    for n in 0..300 {
        let at = n % 3;
        deltas.push(states[at].apply(&replicas[at], &Change::Increment(1), 0).unwrap());
    }
    for state in &mut states {
        for delta in deltas.iter().rev() {
            state.join(delta).unwrap();
        }
    }
    for (state, replica) in states.iter().zip(&replicas) {
        assert_eq!(state.value(replica), Value::GCounter(300));
    }
}

#[test]
fn a_change_of_another_type_is_refused() {
    let mut counter = Crdt::empty_for(&Change::Increment(1));
    let refused = counter.apply(&replica(0), &Change::Vote(true), 0);
    assert_eq!(refused.unwrap_err().to_string(), "a change of Vote does not apply to GCounter");
}
