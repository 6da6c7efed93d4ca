//! Cloudstate's TCK scenarios for event-sourced and value entities, on test
//! guests whose command is a list of actions: emit (or update/delete),
//! forward, effect, fail.

use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::{TCK_EVENT_SOURCED, TCK_VALUE};

use crate::{Running, start_with};

const ES: &str = "tck";
const VALUE: &str = "tck-value";

fn emit(values: &[&str]) -> Value {
    json!({"actions": values.iter().map(|v| json!({"emit": v})).collect::<Vec<_>>()})
}

async fn process(t: &Running, service: &str, id: &str, actions: Value) -> wasmstate_tests::Reply {
    t.api.invoke(service, id, "Process", actions).await
}

async fn state_of(t: &Running, id: &str) -> Value {
    process(t, ES, id, json!({"actions": []})).await.expect(200)["message"].clone()
}

async fn start_tck(extra: &[&str]) -> Running {
    let mut args = vec!["--snapshot-every", "5"];
    args.extend_from_slice(extra);
    let t = start_with(ES, TCK_EVENT_SOURCED, &args).await;
    t.api.deploy(VALUE, std::path::Path::new(TCK_VALUE)).await;
    t
}

#[tokio::test]
async fn event_sourced_state_snapshots_and_rehydration() {
    let t = start_tck(&["--passivate-after", "300ms"]).await;
    let steps: [(&[&str], &str, u64); 6] = [
        (&[], "", 0),
        (&["A"], "A", 0),
        (&["B", "C", "D"], "ABCD", 0),
        (&["E"], "ABCDE", 5),
        (&["F", "G", "H", "I"], "ABCDEFGHI", 5),
        // Event 10 triggers the snapshot; it holds the state after all the
        // command's events, so it is the state as of seq 11.
        (&["J", "K"], "ABCDEFGHIJK", 11),
    ];
    for (values, expected, snapshot_seq) in steps {
        let reply = process(&t, ES, "one", emit(values)).await.expect(200);
        assert_eq!(reply, json!({"message": expected}), "after {values:?}");
        assert_eq!(t.api.position(ES, "one").await.1, snapshot_seq, "snapshot after {values:?}");
    }
    assert_eq!(t.api.position(ES, "one").await, (11, 11));

    // Passivation: the entity drops its state, then rehydrates from the
    // snapshot at 11.
    assert!(t.api.metric("wasmstate_active_entities").await >= 1.0);
    let passivated = t
        .api
        .eventually(Duration::from_secs(5), || async { t.api.metric("wasmstate_active_entities").await == 0.0 })
        .await;
    assert!(passivated, "the idle entity must passivate");
    let cold_loads = t.api.metric("wasmstate_entity_cold_loads_total").await;
    assert_eq!(state_of(&t, "one").await, "ABCDEFGHIJK");
    assert_eq!(t.api.metric("wasmstate_entity_cold_loads_total").await, cold_loads + 1.0);

    // And after a restart.
    let t = t.restart().await;
    assert_eq!(state_of(&t, "one").await, "ABCDEFGHIJK");
    assert_eq!(process(&t, ES, "one", emit(&["L"])).await.expect(200), json!({"message": "ABCDEFGHIJKL"}));
    assert_eq!(t.api.position(ES, "one").await, (12, 11));
    // A fresh process rebuilds from the snapshot plus the event after it.
    let t = t.restart().await;
    assert_eq!(state_of(&t, "one").await, "ABCDEFGHIJKL");
}

#[tokio::test]
async fn failures_persist_nothing() {
    let t = start_tck(&[]).await;
    process(&t, ES, "f", emit(&["1", "2"])).await.expect(200);
    let (kind, message) =
        process(&t, ES, "f", json!({"actions": [{"fail": "expected failure"}]})).await.expect_error(400);
    assert_eq!((kind.as_str(), message.as_str()), ("command_failed", "expected failure"));
    assert_eq!(state_of(&t, "f").await, "12");

    let emit_fail_emit = json!({"actions": [{"emit": "4"}, {"fail": "expected failure"}, {"emit": "5"}]});
    process(&t, ES, "f", emit_fail_emit).await.expect_error(400);
    assert_eq!(t.api.position(ES, "f").await.0, 2, "an emit before a failure persists nothing");
    assert_eq!(process(&t, ES, "f", emit(&["4", "5"])).await.expect(200), json!({"message": "1245"}));
    assert_eq!(t.api.position(ES, "f").await.0, 4);
}

#[tokio::test]
async fn synchronous_side_effects_run_before_the_reply() {
    let t = start_tck(&[]).await;
    let actions = json!({"actions": [{"emit": "x"}, {"effect": {"service": ES, "id": "two", "synchronous": true}}]});
    assert_eq!(process(&t, ES, "one", actions).await.expect(200), json!({"message": "x"}));
    // The other entity got the call before the reply was sent.
    let events = t.api.events(ES, "two", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["payload"]["from"], "one");

    // A failure after an effect sends nothing.
    let actions = json!({"actions": [{"emit": "y"}, {"effect": {"service": ES, "id": "two", "synchronous": true}}, {"fail": "no"}]});
    process(&t, ES, "one", actions).await.expect_error(400);
    let async_then_fail =
        json!({"actions": [{"effect": {"service": ES, "id": "two", "synchronous": false}}, {"fail": "no"}]});
    process(&t, ES, "one", async_then_fail).await.expect_error(400);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.api.events(ES, "two", 1).await.len(), 1, "a failed command sends no side effect");
    assert_eq!(state_of(&t, "one").await, "x");
}

#[tokio::test]
async fn asynchronous_side_effects_are_delivered_from_the_outbox() {
    let t = start_tck(&[]).await;
    let actions = json!({"actions": [{"emit": "a"}, {"effect": {"service": ES, "id": "three", "synchronous": false}}]});
    assert_eq!(process(&t, ES, "one", actions).await.expect(200), json!({"message": "a"}));
    let delivered =
        t.api.eventually(Duration::from_secs(5), || async { t.api.events(ES, "three", 1).await.len() == 1 }).await;
    assert!(delivered, "the asynchronous side effect must arrive");
    assert!(t.api.metric("wasmstate_outbox_delivered_total").await >= 1.0);
}

#[tokio::test]
async fn the_outbox_survives_a_crash_and_retries_until_the_target_exists() {
    let t = start_tck(&[]).await;
    // The target service does not exist yet: delivery fails and is retried.
    let actions =
        json!({"actions": [{"emit": "a"}, {"effect": {"service": "later", "id": "x", "synchronous": false}}]});
    process(&t, ES, "one", actions).await.expect(200);
    let retried = t
        .api
        .eventually(Duration::from_secs(5), || async { t.api.metric("wasmstate_outbox_retries_total").await >= 1.0 })
        .await;
    assert!(retried);
    assert_eq!(t.api.metric("wasmstate_outbox_pending").await, 1.0);

    let crate::Running { dir, server, .. } = t;
    server.kill().await.unwrap();
    let server = wasmstate_tests::Server::start(dir.path(), &[]).await.unwrap();
    let api = wasmstate_tests::Api::new(server.base());
    api.deploy("later", std::path::Path::new(TCK_EVENT_SOURCED)).await;
    let delivered =
        api.eventually(Duration::from_secs(15), || async { api.events("later", "x", 1).await.len() == 1 }).await;
    assert!(delivered, "the side effect committed before the crash must still arrive");
    assert_eq!(api.events("later", "x", 1).await[0]["payload"]["from"], "one");
}

#[tokio::test]
async fn forwards_answer_with_the_other_entitys_reply() {
    let t = start_tck(&[]).await;
    process(&t, ES, "two", emit(&["T"])).await.expect(200);
    let actions = json!({"actions": [{"emit": "z"}, {"forward": {"service": ES, "id": "two"}}]});
    assert_eq!(process(&t, ES, "one", actions).await.expect(200), json!({"message": "T"}));
    assert_eq!(state_of(&t, "one").await, "z", "the forwarding command's own events are persisted");
    let two = t.api.events(ES, "two", 1).await;
    assert_eq!(two.last().unwrap()["payload"]["from"], "one");

    // A forward to a service that does not exist fails the reply, but the
    // forwarding command's events are already committed.
    let actions = json!({"actions": [{"emit": "w"}, {"forward": {"service": "nowhere", "id": "x"}}]});
    let (kind, _) = process(&t, ES, "one", actions).await.expect_error(404);
    assert_eq!(kind, "unknown_service");
    assert_eq!(state_of(&t, "one").await, "zw");
}

#[tokio::test]
async fn value_entity_actions() {
    let t = start_tck(&[]).await;
    let actions = |a: Value| json!({"actions": a});
    assert_eq!(process(&t, VALUE, "v", actions(json!([]))).await.expect(200), json!({"message": ""}));
    for v in ["one", "two", "three"] {
        process(&t, VALUE, "v", actions(json!([{"update": v}]))).await.expect(200);
    }
    assert_eq!(process(&t, VALUE, "v", actions(json!([]))).await.expect(200), json!({"message": "three"}));
    let reply = process(&t, VALUE, "v", actions(json!([{"update": "A"}, {"delete": true}, {"update": "B"}]))).await;
    assert_eq!(reply.expect(200), json!({"message": "B"}));
    process(&t, VALUE, "v", actions(json!([{"update": "C"}, {"fail": "nope"}]))).await.expect_error(400);
    assert_eq!(process(&t, VALUE, "v", actions(json!([]))).await.expect(200), json!({"message": "B"}));
    process(&t, VALUE, "d", actions(json!([{"update": "gone"}]))).await.expect(200);
    assert_eq!(process(&t, VALUE, "d", actions(json!([{"delete": true}]))).await.expect(200), json!({"message": ""}));

    // Effects and forwards work for value entities too.
    let with_effect =
        actions(json!([{"update": "E"}, {"effect": {"service": ES, "id": "witness", "synchronous": true}}]));
    process(&t, VALUE, "e", with_effect).await.expect(200);
    assert_eq!(t.api.events(ES, "witness", 1).await[0]["payload"]["from"], "e");
    process(&t, ES, "target", emit(&["Q"])).await.expect(200);
    let forward = actions(json!([{"update": "F"}, {"forward": {"service": ES, "id": "target"}}]));
    assert_eq!(process(&t, VALUE, "f", forward).await.expect(200), json!({"message": "Q"}));
    assert_eq!(process(&t, VALUE, "f", actions(json!([]))).await.expect(200), json!({"message": "F"}));

    let t = t.restart().await;
    assert_eq!(process(&t, VALUE, "v", actions(json!([]))).await.expect(200), json!({"message": "B"}));
    assert_eq!(process(&t, VALUE, "d", actions(json!([]))).await.expect(200), json!({"message": ""}));
}

#[tokio::test]
async fn forward_loops_are_cut_and_an_entity_may_call_itself() {
    let t = start_with("misbehaving", wasmstate_tests::guests::MISBEHAVING, &[]).await;
    let (kind, message) =
        t.api.invoke("misbehaving", "m", "Bounce", json!({"service": "misbehaving"})).await.expect_error(500);
    assert_eq!(kind, "too_many_hops");
    assert!(message.contains("loop"), "{message}");
    // A synchronous side effect on the entity itself runs after the command
    // left the entity's task, so it cannot deadlock.
    let reply = t.api.invoke("misbehaving", "m", "SelfEffect", json!({"service": "misbehaving"})).await.expect(200);
    assert_eq!(reply, json!({"asked": "myself"}));
    assert_eq!(t.api.events("misbehaving", "m", 1).await.len(), 1);
}
