//! The conformance entity, run natively by the test kit, replicas included.

use serde_json::{Value as Json, json};
use wasmstate_sdk::testkit::{CrdtKit, ForwardCall, SideEffectCall};
use wasmstate_sdk::{CrdtDelta, Failure, OrSetDelta};

use super::TckCrdt;

fn process(kit: &mut CrdtKit<TckCrdt>, actions: Json) -> Result<Json, Failure> {
    kit.handle("Process", json!({ "actions": actions }))
}

#[test]
fn counters_add_up_into_one_delta() {
    let mut kit = CrdtKit::<TckCrdt>::new("gcounter-1");
    assert_eq!(kit.handle("Get", ()), Ok(json!({"value": 0})));
    assert_eq!(process(&mut kit, json!([{"increment": 2}, {"increment": 3}])), Ok(json!({"value": 5})));
    assert_eq!(kit.handle("Get", ()), Ok(json!({"value": 5})));
    let refused = process(&mut kit, json!([{"increment": 1}, {"decrement": 1}]));
    assert_eq!(refused, Err(Failure::rejected("GCounter does not support decrement")));
    let refused = process(&mut kit, json!([{"increment": -1}]));
    assert_eq!(refused, Err(Failure::rejected("GCounter does not support a negative increment")));
    assert_eq!(kit.handle("Get", ()), Ok(json!({"value": 5})), "a failed command commits nothing");

    let mut kit = CrdtKit::<TckCrdt>::new("pncounter-1");
    let actions = json!([{"increment": 5}, {"decrement": 7}, {"increment": -1}]);
    assert_eq!(process(&mut kit, actions), Ok(json!({"value": -3})));
    assert_eq!(kit.value().and_then(|value| value.as_counter()), Some(-3));
}

#[test]
fn counters_on_two_hosts_sum_once_merged() {
    let mut kit = CrdtKit::<TckCrdt>::new("gcounter-2");
    process(&mut kit, json!([{"increment": 1}])).unwrap();
    let other = kit.replica("host-b").handle("Process", json!({"actions": [{"increment": 10}]}));
    assert_eq!(other, Ok(json!({"value": 11})), "host b started from this host's state");
    assert_eq!(process(&mut kit, json!([{"increment": 100}])), Ok(json!({"value": 101})));
    kit.merge_from("host-b");
    kit.merge_from("host-b");
    assert_eq!(kit.handle("Get", ()), Ok(json!({"value": 111})), "merging twice counts once");
    kit.sync();
    assert_eq!(kit.replica("host-b").handle("Get", ()), Ok(json!({"value": 111})));
}

#[test]
fn orset_actions_fold_into_clear_remove_add() {
    let mut kit = CrdtKit::<TckCrdt>::new("orset-1");
    assert_eq!(
        process(&mut kit, json!([{"add": "b"}, {"add": "a"}, {"add": "c"}])),
        Ok(json!({"elements": ["a", "b", "c"]}))
    );
    let actions = json!([{"add": "d"}, {"remove": "d"}, {"remove": "a"}, {"add": "a"}, {"remove": "b"}]);
    let outcome = kit.handle_outcome("Process", json!({ "actions": actions })).unwrap();
    assert_eq!(outcome.reply, Some(json!({"elements": ["a", "c"]})));
    assert_eq!(kit.handle("Get", ()), Ok(json!({"elements": ["a", "c"]})));
    assert_eq!(process(&mut kit, json!([{"add": "z"}, {"clear": true}, {"add": "y"}])), Ok(json!({"elements": ["y"]})));
    assert_eq!(process(&mut kit, json!([{"clear": false}])), Ok(json!({"elements": ["y"]})));
    let refused = process(&mut kit, json!([{"add": "x"}, {"vote": true}]));
    assert_eq!(refused, Err(Failure::rejected("ORSet does not support vote")));
}

#[test]
fn an_orset_add_wins_over_a_concurrent_remove() {
    let mut kit = CrdtKit::<TckCrdt>::new("orset-2");
    process(&mut kit, json!([{"add": "x"}, {"add": "y"}])).unwrap();
    // Host A (this one) removes x while host B adds it again, concurrently.
    let b = kit.replica("host-b").handle("Process", json!({"actions": [{"add": "x"}, {"remove": "y"}]}));
    assert_eq!(b, Ok(json!({"elements": ["x"]})));
    assert_eq!(process(&mut kit, json!([{"remove": "x"}])), Ok(json!({"elements": ["y"]})));
    kit.merge_from("host-b");
    assert_eq!(kit.handle("Get", ()), Ok(json!({"elements": ["x"]})), "b's add of x wins; its remove of y holds");
    kit.sync();
    assert_eq!(kit.value_at("host-b"), kit.value());
}

#[test]
fn gsets_registers_flags_and_votes() {
    let mut kit = CrdtKit::<TckCrdt>::new("gset-1");
    assert_eq!(
        process(&mut kit, json!([{"add": "b"}, {"add": "a"}, {"add": "b"}])),
        Ok(json!({"elements": ["a", "b"]}))
    );
    assert_eq!(process(&mut kit, json!([{"remove": "a"}])), Err(Failure::rejected("GSet does not support remove")));

    let mut kit = CrdtKit::<TckCrdt>::new("lwwregister-1");
    kit.set_time_ms(1_000);
    assert_eq!(kit.handle("Get", ()), Ok(json!({"value": null})));
    assert_eq!(process(&mut kit, json!([{"set": "one"}, {"set": "two"}])), Ok(json!({"value": "two"})));
    kit.replica("host-b").handle("Process", json!({"actions": [{"set": "b's"}]})).unwrap();
    kit.set_time_ms(2_000);
    process(&mut kit, json!([{"set": "later"}])).unwrap();
    kit.merge_from("host-b");
    assert_eq!(kit.handle("Get", ()), Ok(json!({"value": "later"})), "the latest write wins");

    let mut kit = CrdtKit::<TckCrdt>::new("flag-1");
    assert_eq!(process(&mut kit, json!([{"enable": false}])), Ok(json!({"value": false})));
    assert_eq!(process(&mut kit, json!([{"enable": true}])), Ok(json!({"value": true})));

    let mut kit = CrdtKit::<TckCrdt>::new("vote-1");
    assert_eq!(process(&mut kit, json!([{"vote": true}])), Ok(json!({"self_vote": true, "votes_for": 1, "voters": 1})));
    kit.replica("host-b").handle("Process", json!({"actions": [{"vote": false}]})).unwrap();
    kit.merge_from("host-b");
    assert_eq!(kit.handle("Get", ()), Ok(json!({"self_vote": true, "votes_for": 1, "voters": 2})));
    assert_eq!(
        process(&mut kit, json!([{"vote": false}])),
        Ok(json!({"self_vote": false, "votes_for": 0, "voters": 2}))
    );
    assert_eq!(process(&mut kit, json!([{"add": "x"}])), Err(Failure::rejected("Vote does not support add")));
}

#[test]
fn map_keys_take_the_type_their_prefix_names() {
    let mut kit = CrdtKit::<TckCrdt>::new("ormap-1");
    let actions = json!([
        {"key": "gcounter-n", "action": {"increment": 2}},
        {"key": "orset-s", "action": {"add": "x"}},
        {"key": "gcounter-n", "action": {"increment": 3}},
        {"key": "lwwregister-t", "action": {"set": "title"}},
        {"key": "flag-f", "action": {"enable": true}},
    ]);
    let entries = json!({"entries": {
        "flag-f": {"value": true},
        "gcounter-n": {"value": 5},
        "lwwregister-t": {"value": "title"},
        "orset-s": {"elements": ["x"]},
    }});
    assert_eq!(process(&mut kit, actions), Ok(entries));
    let actions =
        json!([{"remove": "gcounter-n"}, {"key": "gcounter-n", "action": {"increment": 1}}, {"remove": "flag-f"}]);
    let reply = process(&mut kit, actions).unwrap();
    assert_eq!(reply["entries"]["gcounter-n"], json!({"value": 1}), "a removed key starts afresh");
    assert_eq!(reply["entries"].get("flag-f"), None);
    assert_eq!(process(&mut kit, json!([{"clear": true}])), Ok(json!({"entries": {}})));
    let refused = process(&mut kit, json!([{"key": "ormap-x", "action": {"clear": true}}]));
    assert_eq!(refused, Err(Failure::rejected("map key ormap-x names no CRDT type a map's value may have")));
    let refused = process(&mut kit, json!([{"key": "gset-g", "action": {"remove": "x"}}]));
    assert_eq!(refused, Err(Failure::rejected("GSet does not support remove")));
    let refused = process(&mut kit, json!([{"increment": 1}]));
    assert_eq!(refused, Err(Failure::rejected("ORMap does not support increment")));
}

#[test]
fn fail_forward_effects_and_delete() {
    let mut kit = CrdtKit::<TckCrdt>::new("orset-3").with_service("crdts");
    let refused = process(&mut kit, json!([{"add": "x"}, {"effect": "orset-9"}, {"fail": "no"}]));
    assert_eq!(refused, Err(Failure::rejected("no")));
    assert_eq!(kit.value(), None, "nothing was committed");

    let actions = json!([
        {"add": "x"},
        {"effect": "orset-9", "synchronous": true},
        {"effect": "orset-8", "actions": [{"add": "y"}]},
        {"forward": "orset-7"},
    ]);
    let outcome = kit.handle_outcome("Process", json!({ "actions": actions })).unwrap();
    assert_eq!(outcome.forward, Some(ForwardCall::new("crdts", "orset-7", "Get", Json::Null)));
    assert_eq!(
        outcome.side_effects,
        [
            SideEffectCall::new("crdts", "orset-9", "Get", Json::Null).synchronous(),
            SideEffectCall::new("crdts", "orset-8", "Process", json!({"actions": [{"add": "y"}]})),
        ]
    );
    assert_eq!(kit.value().unwrap().elements::<String>(), Ok(vec!["x".to_owned()]));

    assert_eq!(process(&mut kit, json!([{"delete": false}])), Ok(json!({"elements": ["x"]})));
    assert_eq!(process(&mut kit, json!([{"delete": true}])), Ok(json!({"elements": ["x"]})));
    assert!(kit.is_deleted());
    let failure = kit.handle("Get", ()).unwrap_err();
    assert!(failure.message().starts_with("entity_deleted"), "{failure}");

    let unknown = CrdtKit::<TckCrdt>::new("thing-1").handle("Get", ());
    assert_eq!(unknown, Err(Failure::rejected("entity id thing-1 names no CRDT type")));
}

#[test]
fn the_delta_sent_is_one_orset_delta_in_clear_remove_add_order() {
    use wasmstate_sdk::Command;
    use wasmstate_sdk::raw::crdt::handle;

    let payload = json!({"actions": [{"add": "a"}, {"remove": "b"}, {"add": "b"}, {"remove": "a"}]}).to_string();
    let effects = handle::<TckCrdt>(None, Command::new("Process", payload.as_bytes(), "orset-4")).unwrap();
    let expected =
        OrSetDelta { clear: false, remove: vec![b"\"b\"".to_vec(), b"\"a\"".to_vec()], add: vec![b"\"b\"".to_vec()] };
    assert_eq!(effects.delta, Some(CrdtDelta::OrSet(expected)));
}
