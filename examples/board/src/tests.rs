//! The board run natively in the SDK's CRDT test kit, on this host and on
//! simulated others.

use serde_json::{Value, json};
use wasmstate_sdk::testkit::CrdtKit;
use wasmstate_sdk::{CrdtValue, FailureCode};

use super::*;

/// A kit for board `team`, at a fixed time.
fn board() -> CrdtKit<Board> {
    let mut kit = CrdtKit::<Board>::new("team");
    kit.set_time_ms(1_000);
    kit
}

/// The reply of a board holding `items`: (id, text, done).
fn items(items: &[(&str, &str, bool)]) -> Value {
    let items: Vec<Value> =
        items.iter().map(|(id, text, done)| json!({ "id": id, "text": text, "done": done })).collect();
    json!({ "items": items })
}

fn add(id: &str, text: &str) -> Value {
    json!({ "id": id, "text": text })
}

#[test]
fn items_are_added_edited_done_and_listed_by_id() {
    let mut kit = board();
    assert_eq!(kit.handle("Get", ()), Ok(items(&[])));
    assert_eq!(kit.handle("Add", add("milk", "Buy milk")), Ok(items(&[("milk", "Buy milk", false)])));
    kit.handle("Add", add("bread", "Buy bread")).unwrap();
    assert_eq!(
        kit.handle("Edit", add("milk", "Buy oat milk")),
        Ok(items(&[("bread", "Buy bread", false), ("milk", "Buy oat milk", false)]))
    );
    let both = items(&[("bread", "Buy bread", true), ("milk", "Buy oat milk", false)]);
    assert_eq!(kit.handle("Done", json!({"id": "bread"})), Ok(both.clone()));
    assert_eq!(kit.handle("Done", json!({"id": "bread"})), Ok(both.clone()), "done twice changes nothing");
    assert_eq!(kit.send(&BoardCommand::Get), Ok(both));
}

#[test]
fn an_item_is_a_text_register_and_a_done_flag() {
    let mut kit = board();
    kit.handle("Add", add("milk", "Buy milk")).unwrap();
    kit.handle("Add", add("a/b", "Ids may hold slashes")).unwrap();
    kit.handle("Done", json!({"id": "a/b"})).unwrap();
    let value = kit.value().unwrap();
    let keys: Vec<String> = value.map_entries::<String>().unwrap().into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys, ["a/b/done", "a/b/text", "milk/text"]);
    assert_eq!(value.map_get(&done_key("a/b")), Some(&CrdtValue::Flag(true)));
    assert_eq!(value.map_get(&text_key("milk")).unwrap().register::<String>(), Ok(Some("Buy milk".to_owned())));
    assert_eq!(kit.handle("Get", ()), Ok(items(&[("a/b", "Ids may hold slashes", true), ("milk", "Buy milk", false)])));
}

#[test]
fn remove_takes_both_keys_and_clear_every_item() {
    let mut kit = board();
    kit.handle("Add", add("milk", "Buy milk")).unwrap();
    kit.handle("Add", add("bread", "Buy bread")).unwrap();
    kit.handle("Done", json!({"id": "milk"})).unwrap();
    assert_eq!(kit.handle("Remove", json!({"id": "milk"})), Ok(items(&[("bread", "Buy bread", false)])));
    assert_eq!(kit.value().unwrap().map_get(&done_key("milk")), None);
    // A removed item's id is free again, and it starts not done.
    assert_eq!(
        kit.handle("Add", add("milk", "Milk again")),
        Ok(items(&[("bread", "Buy bread", false), ("milk", "Milk again", false)]))
    );
    assert_eq!(kit.handle("Clear", ()), Ok(items(&[])));
    assert_eq!(kit.value(), Some(CrdtValue::OrMap(Vec::new())));
}

#[test]
fn changes_to_a_missing_item_and_blank_input_are_refused_and_change_nothing() {
    let mut kit = board();
    kit.handle("Add", add("milk", "Buy milk")).unwrap();
    let before = kit.value();
    for (command, payload, message) in [
        ("Edit", add("eggs", "Buy eggs"), "no item eggs on board team"),
        ("Done", json!({"id": "eggs"}), "no item eggs on board team"),
        ("Remove", json!({"id": "eggs"}), "no item eggs on board team"),
        ("Add", add("milk", "Buy more milk"), "item milk is already on board team: Edit changes its text"),
        ("Add", add(" ", "Nameless"), "an item's id may not be blank"),
        ("Edit", add("milk", ""), "an item's text may not be blank"),
    ] {
        let failure = kit.handle(command, payload).unwrap_err();
        assert_eq!((failure.code(), failure.message()), (FailureCode::Rejected, message), "{command}");
    }
    assert_eq!(kit.handle("Done", ()).unwrap_err().code(), FailureCode::InvalidPayload);
    assert_eq!(kit.value(), before);
}

#[test]
fn an_edit_concurrent_with_a_remove_on_another_host_brings_the_item_back() {
    let mut kit = board();
    kit.handle("Add", add("milk", "Buy milk")).unwrap();
    kit.handle("Done", json!({"id": "milk"})).unwrap();
    // Host B edits the item while this host removes it.
    let edited = kit.replica("host-b").handle("Edit", add("milk", "Buy oat milk")).unwrap();
    assert_eq!(edited, items(&[("milk", "Buy oat milk", true)]));
    assert_eq!(kit.handle("Remove", json!({"id": "milk"})), Ok(items(&[])));
    kit.sync();
    // The edit wins: the item is back with B's text; its done flag, which B
    // did not change, stays removed.
    let back = items(&[("milk", "Buy oat milk", false)]);
    assert_eq!(kit.handle("Get", ()), Ok(back.clone()));
    assert_eq!(kit.replica("host-b").handle("Get", ()), Ok(back));
}

#[test]
fn a_done_concurrent_with_a_clear_brings_the_item_back_done_without_text() {
    let mut kit = board();
    kit.handle("Add", add("milk", "Buy milk")).unwrap();
    kit.replica("host-b").handle("Done", json!({"id": "milk"})).unwrap();
    assert_eq!(kit.handle("Clear", ()), Ok(items(&[])));
    kit.merge_from("host-b");
    assert_eq!(kit.handle("Get", ()), Ok(items(&[("milk", "", true)])));
    // It is on the board: an edit gives it a text again.
    assert_eq!(kit.handle("Edit", add("milk", "Buy milk")), Ok(items(&[("milk", "Buy milk", true)])));
}

#[test]
fn concurrent_edits_keep_the_latest_and_items_added_anywhere_merge() {
    let mut kit = board();
    kit.handle("Add", add("milk", "Buy milk")).unwrap();
    kit.replica("host-b").handle("Add", add("bread", "Buy bread")).unwrap();
    kit.replica("host-c").handle("Add", add("eggs", "Buy eggs")).unwrap();
    // This host edits milk at 2 s, host B (not having seen it) at 3 s.
    kit.set_time_ms(2_000);
    kit.handle("Edit", add("milk", "Buy two litres of milk")).unwrap();
    kit.set_time_ms(3_000);
    kit.replica("host-b").handle("Edit", add("milk", "Buy oat milk")).unwrap();
    kit.sync();
    let merged = items(&[("bread", "Buy bread", false), ("eggs", "Buy eggs", false), ("milk", "Buy oat milk", false)]);
    assert_eq!(kit.handle("Get", ()), Ok(merged.clone()));
    assert_eq!(kit.replica("host-c").handle("Get", ()), Ok(merged));
}
