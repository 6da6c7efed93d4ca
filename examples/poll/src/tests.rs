//! The poll run natively in the SDK's CRDT test kit, on this host and on
//! simulated others.

use serde_json::{Value, json};
use wasmstate_sdk::testkit::CrdtKit;
use wasmstate_sdk::{CrdtValue, FailureCode};

use super::*;

/// A kit whose poll offers `options`, at a fixed time.
fn poll_with(options: &[&str]) -> CrdtKit<Poll> {
    let mut kit = CrdtKit::<Poll>::new("lunch");
    kit.set_time_ms(1_000);
    for option in options {
        kit.handle("AddOption", json!({ "option": option })).unwrap();
    }
    kit
}

fn vote(voter: &str, option: &str) -> Value {
    json!({ "voter": voter, "option": option })
}

fn results(options: Value, voters: u64, closed: bool) -> Value {
    json!({ "options": options, "voters": voters, "closed": closed })
}

#[test]
fn a_new_poll_has_no_options_and_no_votes() {
    let mut kit = CrdtKit::<Poll>::new("lunch");
    assert_eq!(kit.handle("Results", ()), Ok(results(json!({}), 0, false)));
    assert_eq!(kit.value(), None, "reading changes nothing");
    let failure = kit.handle("Vote", vote("ada", "pizza")).unwrap_err();
    assert_eq!(failure.message(), "poll lunch has no options yet: add \"pizza\" with AddOption first");
}

#[test]
fn each_voter_counts_once_and_a_second_vote_moves_theirs() {
    let mut kit = poll_with(&["pizza", "salad"]);
    assert_eq!(kit.handle("Vote", vote("ada", "pizza")), Ok(results(json!({"pizza": 1, "salad": 0}), 1, false)));
    kit.handle("Vote", vote("bob", "salad")).unwrap();
    assert_eq!(kit.handle("Vote", vote("cy", "pizza")), Ok(results(json!({"pizza": 2, "salad": 1}), 3, false)));
    assert_eq!(kit.handle("Vote", vote("ada", "salad")), Ok(results(json!({"pizza": 1, "salad": 2}), 3, false)));
    assert_eq!(kit.handle("Vote", vote("ada", "salad")), Ok(results(json!({"pizza": 1, "salad": 2}), 3, false)));
    assert_eq!(kit.handle("Retract", json!({"voter": "cy"})), Ok(results(json!({"pizza": 0, "salad": 2}), 2, false)));
    assert_eq!(kit.handle("Retract", json!({"voter": "cy"})), Ok(results(json!({"pizza": 0, "salad": 2}), 2, false)));
    assert_eq!(kit.send(&PollCommand::Results), Ok(results(json!({"pizza": 0, "salad": 2}), 2, false)));
}

#[test]
fn the_map_holds_the_options_a_register_per_voter_and_the_closed_flag() {
    let mut kit = poll_with(&["salad", "pizza"]);
    kit.handle("Vote", vote("ada", "pizza")).unwrap();
    kit.handle("Close", ()).unwrap();
    let value = kit.value().unwrap();
    let keys: Vec<String> = value.map_entries::<String>().unwrap().into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys, ["closed", "options", "voter:ada"]);
    assert_eq!(value.map_get(CLOSED), Some(&CrdtValue::Flag(true)));
    assert_eq!(value.map_get(OPTIONS).unwrap().elements::<String>().unwrap(), ["pizza", "salad"]);
    assert_eq!(value.map_get(&voter_key("ada")).unwrap().register::<String>(), Ok(Some("pizza".to_owned())));
}

#[test]
fn refused_commands_change_nothing() {
    let mut kit = poll_with(&["pizza"]);
    kit.handle("Vote", vote("ada", "pizza")).unwrap();
    let before = kit.value();
    let failure = kit.handle("Vote", vote("bob", "sushi")).unwrap_err();
    assert_eq!(failure.code(), FailureCode::Rejected);
    assert_eq!(failure.message(), "\"sushi\" is not an option of poll lunch; its options are pizza");
    assert_eq!(kit.handle("Vote", vote(" ", "pizza")).unwrap_err().message(), "a voter's id may not be blank");
    assert_eq!(kit.handle("AddOption", json!({"option": ""})).unwrap_err().message(), "an option may not be blank");
    assert_eq!(kit.handle("Vote", json!({"voter": "bob"})).unwrap_err().code(), FailureCode::InvalidPayload);
    assert_eq!(kit.value(), before);
}

#[test]
fn a_closed_poll_refuses_changes_and_still_answers() {
    let mut kit = poll_with(&["pizza", "salad"]);
    kit.handle("Vote", vote("ada", "pizza")).unwrap();
    assert_eq!(kit.handle("Close", ()), Ok(results(json!({"pizza": 1, "salad": 0}), 1, true)));
    let before = kit.value();
    for (command, payload) in [
        ("Vote", vote("bob", "salad")),
        ("Vote", vote("ada", "salad")),
        ("Retract", json!({"voter": "ada"})),
        ("AddOption", json!({"option": "sushi"})),
    ] {
        assert_eq!(kit.handle(command, payload).unwrap_err().message(), "poll lunch is closed", "{command}");
    }
    assert_eq!(kit.handle("Close", ()), Ok(results(json!({"pizza": 1, "salad": 0}), 1, true)));
    assert_eq!(kit.value(), before);
}

#[test]
fn the_same_voter_voting_on_two_hosts_counts_once_with_the_latest_vote() {
    let mut kit = poll_with(&["pizza", "salad"]);
    // Host B votes for ada at 2 s; this host, not having seen it, at 3 s.
    kit.set_time_ms(2_000);
    assert_eq!(
        kit.replica("host-b").handle("Vote", vote("ada", "salad")),
        Ok(results(json!({"pizza": 0, "salad": 1}), 1, false))
    );
    kit.set_time_ms(3_000);
    assert_eq!(kit.handle("Vote", vote("ada", "pizza")), Ok(results(json!({"pizza": 1, "salad": 0}), 1, false)));
    kit.sync();
    let merged = results(json!({"pizza": 1, "salad": 0}), 1, false);
    assert_eq!(kit.handle("Results", ()), Ok(merged.clone()));
    assert_eq!(kit.replica("host-b").handle("Results", ()), Ok(merged));
}

#[test]
fn votes_on_different_hosts_add_up() {
    let mut kit = poll_with(&["pizza", "salad"]);
    kit.handle("Vote", vote("ada", "pizza")).unwrap();
    kit.replica("host-b").handle("Vote", vote("bob", "pizza")).unwrap();
    kit.replica("host-c").handle("Vote", vote("cy", "salad")).unwrap();
    // Options added on two hosts unite too.
    kit.replica("host-b").handle("AddOption", json!({"option": "soup"})).unwrap();
    kit.sync();
    let merged = results(json!({"pizza": 2, "salad": 1, "soup": 0}), 3, false);
    assert_eq!(kit.handle("Results", ()), Ok(merged.clone()));
    assert_eq!(kit.replica("host-c").handle("Results", ()), Ok(merged));
}

#[test]
fn a_vote_concurrent_with_a_retract_on_another_host_wins() {
    let mut kit = poll_with(&["pizza", "salad"]);
    kit.handle("Vote", vote("ada", "pizza")).unwrap();
    kit.replica("host-b").handle("Vote", vote("ada", "salad")).unwrap();
    assert_eq!(kit.handle("Retract", json!({"voter": "ada"})), Ok(results(json!({"pizza": 0, "salad": 0}), 0, false)));
    kit.merge_from("host-b");
    assert_eq!(kit.handle("Results", ()), Ok(results(json!({"pizza": 0, "salad": 1}), 1, false)));
}

#[test]
fn a_close_reaches_the_other_hosts_as_they_merge() {
    let mut kit = poll_with(&["pizza"]);
    kit.replica("host-b").handle("Results", ()).unwrap();
    kit.handle("Close", ()).unwrap();
    // Host B has not seen the close yet: it takes bob's vote, which counts.
    assert_eq!(kit.replica("host-b").handle("Vote", vote("bob", "pizza")), Ok(results(json!({"pizza": 1}), 1, false)));
    kit.sync();
    assert_eq!(kit.handle("Results", ()), Ok(results(json!({"pizza": 1}), 1, true)));
    // Once it has, it refuses votes too.
    let failure = kit.replica("host-b").handle("Vote", vote("cy", "pizza")).unwrap_err();
    assert_eq!(failure.message(), "poll lunch is closed");
}
