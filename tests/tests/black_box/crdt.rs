//! CRDT entities on one host, with the conformance guest (`tck-crdt`):
//! every type from empty through its changes, the value over HTTP, restart
//! and passivation, delete for good, failures that change nothing,
//! forwards and side effects, idempotency and dry runs. Runs on both
//! journals (`WASMSTATE_TEST_JOURNAL`).

use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::TCK_CRDT;

use crate::{Running, start_with};

const CRDT: &str = "tck-crdt";

async fn process(t: &Running, id: &str, actions: Value) -> wasmstate_tests::Reply {
    t.api.invoke(CRDT, id, "Process", json!({ "actions": actions })).await
}

async fn get(t: &Running, id: &str) -> Value {
    t.api.invoke(CRDT, id, "Get", json!({})).await.expect(200)
}

/// What `GET …/entities/{id}` shows: (type, value).
async fn shown(t: &Running, id: &str) -> (Value, Value) {
    let body = t.api.get(&format!("/v1/services/{CRDT}/entities/{id}")).await.expect(200);
    (body["crdt"].clone(), body["state"].clone())
}

/// An entity, its empty value, commands with the value after each, and
/// the type and value GET shows at the end.
type Case = (&'static str, Value, Vec<Step>, (&'static str, Value));

/// Actions, and the value after them.
type Step = (Value, Value);

#[tokio::test]
async fn every_type_starts_empty_and_changes_by_its_rules() {
    let t = start_with(CRDT, TCK_CRDT, &[]).await;
    let cases: Vec<Case> = vec![
        (
            "gcounter-a",
            json!({"value": 0}),
            vec![
                (json!([{"increment": 3}]), json!({"value": 3})),
                (json!([{"increment": 4}, {"increment": 1}]), json!({"value": 8})),
            ],
            ("gcounter", json!(8)),
        ),
        (
            "pncounter-a",
            json!({"value": 0}),
            vec![(json!([{"increment": 5}]), json!({"value": 5})), (json!([{"decrement": 8}]), json!({"value": -3}))],
            ("pncounter", json!(-3)),
        ),
        (
            "gset-a",
            json!({"elements": []}),
            vec![
                (json!([{"add": "b"}, {"add": "a"}]), json!({"elements": ["a", "b"]})),
                (json!([{"add": "a"}]), json!({"elements": ["a", "b"]})),
            ],
            ("gset", json!(["a", "b"])),
        ),
        (
            "orset-a",
            json!({"elements": []}),
            vec![
                (json!([{"add": "a"}, {"add": "b"}, {"add": "c"}]), json!({"elements": ["a", "b", "c"]})),
                (json!([{"remove": "b"}]), json!({"elements": ["a", "c"]})),
                (json!([{"clear": true}, {"add": "d"}]), json!({"elements": ["d"]})),
            ],
            ("orset", json!(["d"])),
        ),
        (
            "lwwregister-a",
            json!({"value": null}),
            vec![
                (json!([{"set": "one"}]), json!({"value": "one"})),
                (json!([{"set": "two"}]), json!({"value": "two"})),
            ],
            ("lww-register", json!("two")),
        ),
        (
            "flag-a",
            json!({"value": false}),
            vec![(json!([{"enable": true}]), json!({"value": true}))],
            ("flag", json!(true)),
        ),
        (
            "ormap-a",
            json!({"entries": {}}),
            vec![
                (
                    json!([
                        {"key": "gcounter-hits", "action": {"increment": 2}},
                        {"key": "lwwregister-title", "action": {"set": "Buy milk"}},
                        {"key": "flag-done", "action": {"enable": true}},
                    ]),
                    json!({"entries": {
                        "flag-done": {"value": true},
                        "gcounter-hits": {"value": 2},
                        "lwwregister-title": {"value": "Buy milk"},
                    }}),
                ),
                (
                    json!([{"remove": "flag-done"}, {"key": "gcounter-hits", "action": {"increment": 1}}]),
                    json!({"entries": {"gcounter-hits": {"value": 3}, "lwwregister-title": {"value": "Buy milk"}}}),
                ),
            ],
            ("ormap", json!({"gcounter-hits": 3, "lwwregister-title": "Buy milk"})),
        ),
        (
            "vote-a",
            json!({"self_vote": false, "votes_for": 0, "voters": 0}),
            vec![
                (json!([{"vote": true}]), json!({"self_vote": true, "votes_for": 1, "voters": 1})),
                (json!([{"vote": false}]), json!({"self_vote": false, "votes_for": 0, "voters": 1})),
            ],
            ("vote", json!({"self_vote": false, "votes_for": 0, "voters": 1})),
        ),
    ];
    for (id, empty, steps, (kind, value)) in cases {
        assert_eq!(get(&t, id).await, empty, "{id} starts empty");
        assert_eq!(shown(&t, id).await, (Value::Null, Value::Null), "{id} is shown as never changed");
        for (actions, expected) in steps {
            assert_eq!(process(&t, id, actions.clone()).await.expect(200), expected, "{id} after {actions}");
        }
        assert_eq!(shown(&t, id).await, (json!(kind), value), "{id} as GET shows it");
    }
    // What a type does not support fails the command and changes nothing.
    for (id, action) in [
        ("gcounter-a", json!({"decrement": 1})),
        ("gcounter-a", json!({"increment": -1})),
        ("gset-a", json!({"remove": "a"})),
        ("orset-a", json!({"vote": true})),
    ] {
        let before = get(&t, id).await;
        let (kind, _) = process(&t, id, json!([action])).await.expect_error(400);
        assert_eq!(kind, "command_failed", "{id}: {action}");
        assert_eq!(get(&t, id).await, before, "{id} unchanged by {action}");
    }
    // The service lists its CRDT entities.
    let listed = t.api.get(&format!("/v1/services/{CRDT}/entities")).await.expect(200);
    let ids: Vec<&str> = listed["entities"].as_array().unwrap().iter().map(|e| e["entity"].as_str().unwrap()).collect();
    assert_eq!(ids, ["flag-a", "gcounter-a", "gset-a", "lwwregister-a", "ormap-a", "orset-a", "pncounter-a", "vote-a"]);
}

#[tokio::test]
async fn restart_and_passivation_keep_the_value() {
    let t = start_with(CRDT, TCK_CRDT, &["--passivate-after", "300ms"]).await;
    process(&t, "orset-keep", json!([{"add": "x"}, {"add": "y"}])).await.expect(200);
    process(&t, "orset-keep", json!([{"remove": "x"}])).await.expect(200);
    process(&t, "gcounter-keep", json!([{"increment": 41}])).await.expect(200);
    let passivated = t
        .api
        .eventually(Duration::from_secs(5), || async { t.api.metric("wasmstate_active_entities").await == 0.0 })
        .await;
    assert!(passivated, "idle entities must passivate");
    assert_eq!(get(&t, "orset-keep").await, json!({"elements": ["y"]}));
    let t = t.restart().await;
    assert_eq!(get(&t, "orset-keep").await, json!({"elements": ["y"]}));
    assert_eq!(process(&t, "gcounter-keep", json!([{"increment": 1}])).await.expect(200), json!({"value": 42}));
    let t = t.restart().await;
    assert_eq!(get(&t, "gcounter-keep").await, json!({"value": 42}));
    assert_eq!(shown(&t, "orset-keep").await, (json!("orset"), json!(["y"])));
    let state = t.api.get(&format!("/v1/services/{CRDT}/entities/orset-keep/state")).await.expect(200);
    assert_eq!(state, json!(["y"]), "the state route shows the value too");
}

#[tokio::test]
async fn a_deleted_entity_is_gone_for_good() {
    let t = start_with(CRDT, TCK_CRDT, &[]).await;
    process(&t, "gset-gone", json!([{"add": "a"}])).await.expect(200);
    process(&t, "gset-gone", json!([{"delete": true}])).await.expect(200);
    let check = |t: &Running| {
        let api = t.api.clone();
        async move {
            let (kind, _) = api.invoke(CRDT, "gset-gone", "Get", json!({})).await.expect_error(404);
            assert_eq!(kind, "entity_deleted");
            let (kind, _) =
                api.invoke(CRDT, "gset-gone", "Process", json!({"actions": [{"add": "b"}]})).await.expect_error(404);
            assert_eq!(kind, "entity_deleted");
            let (kind, _) = api.get(&format!("/v1/services/{CRDT}/entities/gset-gone")).await.expect_error(404);
            assert_eq!(kind, "entity_deleted");
        }
    };
    check(&t).await;
    let t = t.restart().await;
    check(&t).await;
    // Others of the service are untouched.
    assert_eq!(get(&t, "gset-other").await, json!({"elements": []}));
}

#[tokio::test]
async fn a_failed_command_commits_and_sends_nothing() {
    let t = start_with(CRDT, TCK_CRDT, &[]).await;
    process(&t, "pncounter-f", json!([{"increment": 2}])).await.expect(200);
    let actions = json!([
        {"increment": 5},
        {"effect": "pncounter-target", "synchronous": false, "actions": [{"increment": 1}]},
        {"effect": "pncounter-target", "synchronous": true, "actions": [{"increment": 1}]},
        {"fail": "not today"},
    ]);
    let (kind, message) = process(&t, "pncounter-f", actions).await.expect_error(400);
    assert_eq!((kind.as_str(), message.as_str()), ("command_failed", "not today"));
    assert_eq!(get(&t, "pncounter-f").await, json!({"value": 2}));
    assert_eq!(shown(&t, "pncounter-f").await, (json!("pncounter"), json!(2)));
    // Had the side effects gone out, the outbox would have delivered by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shown(&t, "pncounter-target").await, (Value::Null, Value::Null));
    assert_eq!(t.api.metric("wasmstate_outbox_pending").await, 0.0);
}

#[tokio::test]
async fn forwards_and_side_effects_run_after_the_commit() {
    let t = start_with(CRDT, TCK_CRDT, &[]).await;
    process(&t, "gcounter-other", json!([{"increment": 9}])).await.expect(200);
    // A forward answers the other entity's reply, after this one's change.
    let reply = process(&t, "gcounter-fw", json!([{"increment": 1}, {"forward": "gcounter-other"}])).await;
    assert_eq!(reply.expect(200), json!({"value": 9}));
    assert_eq!(get(&t, "gcounter-fw").await, json!({"value": 1}));
    // A synchronous side effect has run when the reply comes.
    let actions = json!([
        {"add": "mine"},
        {"effect": "orset-sync", "synchronous": true, "actions": [{"add": "from-effect"}]},
    ]);
    assert_eq!(process(&t, "orset-src", actions).await.expect(200), json!({"elements": ["mine"]}));
    assert_eq!(get(&t, "orset-sync").await, json!({"elements": ["from-effect"]}));
    // An asynchronous one is delivered from the outbox.
    let actions = json!([{"effect": "flag-async", "actions": [{"enable": true}]}]);
    process(&t, "orset-src", actions).await.expect(200);
    let delivered = t
        .api
        .eventually(Duration::from_secs(5), || async { get(&t, "flag-async").await == json!({"value": true}) })
        .await;
    assert!(delivered, "the side effect must be delivered");
}

#[tokio::test]
async fn a_repeated_key_changes_once_and_a_dry_run_not_at_all() {
    let t = start_with(CRDT, TCK_CRDT, &[]).await;
    let body = json!({"actions": [{"increment": 5}]});
    for _ in 0..3 {
        let reply = t.api.invoke_idempotent(CRDT, "gcounter-key", "Process", body.clone(), "k-1").await;
        assert_eq!(reply.expect(200), json!({"value": 5}));
    }
    assert_eq!(get(&t, "gcounter-key").await, json!({"value": 5}));
    let path = format!("/v1/services/{CRDT}/entities/gcounter-key/Process?dry_run=true");
    let dry = t.api.post(&path, json!({"actions": [{"increment": 2}]})).await.expect(200);
    assert_eq!((dry["state_change"].clone(), dry["state"].clone()), (json!("update"), json!(7)), "{dry}");
    assert_eq!(dry["reply"], json!({"value": 7}));
    assert_eq!(get(&t, "gcounter-key").await, json!({"value": 5}));
}

#[tokio::test]
async fn the_value_streams_after_every_change_until_the_entity_is_deleted() {
    let t = start_with(CRDT, TCK_CRDT, &[]).await;
    process(&t, "orset-live", json!([{"add": "a"}])).await.expect(200);
    let url = format!("{}/v1/services/{CRDT}/entities/orset-live/events?follow=true", t.server.base());
    let mut stream = wasmstate_tests::sse::EventStream::open(&url).await.expect("the stream opens");
    let next = Duration::from_secs(5);
    assert_eq!(stream.next(next).await.unwrap(), ("1".into(), json!({"crdt": "orset", "state": ["a"]})));
    process(&t, "orset-live", json!([{"add": "b"}])).await.expect(200);
    assert_eq!(stream.next(next).await.unwrap(), ("2".into(), json!({"crdt": "orset", "state": ["a", "b"]})));
    // A command that changes nothing sends nothing; the next change does.
    get(&t, "orset-live").await;
    process(&t, "orset-live", json!([{"remove": "a"}])).await.expect(200);
    assert_eq!(stream.next(next).await.unwrap(), ("3".into(), json!({"crdt": "orset", "state": ["b"]})));
    process(&t, "orset-live", json!([{"delete": true}])).await.expect(200);
    assert_eq!(stream.next(next).await.unwrap(), ("4".into(), json!({"deleted": true})));
    assert!(stream.next(next).await.is_err(), "the stream ends with the entity");
}

#[tokio::test]
async fn consistency_is_local_or_all() {
    let t = start_with(CRDT, TCK_CRDT, &[]).await;
    let path = |consistency: &str| format!("/v1/services/{CRDT}/entities/gcounter-c/Process?consistency={consistency}");
    let body = json!({"actions": [{"increment": 1}]});
    // One host is every host: `all` is done once the change is durable.
    assert_eq!(t.api.post(&path("all"), body.clone()).await.expect(200), json!({"value": 1}));
    assert_eq!(t.api.post(&path("local"), body.clone()).await.expect(200), json!({"value": 2}));
    let (kind, _) = t.api.post(&path("most"), body).await.expect_error(400);
    assert_eq!(kind, "bad_request");
    assert_eq!(get(&t, "gcounter-c").await, json!({"value": 2}));
}
