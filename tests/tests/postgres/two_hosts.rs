//! Two `wasmstate` processes on one PostgreSQL database: every request
//! works on either. Commands race through both hosts on one entity and
//! every one lands once, in order; a read on one host answers what the
//! other acknowledged; a version deployed on one serves on the other
//! within a second; when one host dies, the other serves its entities.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::{COUNTER, SHOPPING_CART, USER_PROFILE};
use wasmstate_tests::postgres::shared;
use wasmstate_tests::{Api, JournalKind, Options, Server};

use crate::{answers, race_increments, serves, start_host};

/// Starts a host on the database `url`, with a data dir of its own; a host
/// silent for three heartbeats is taken for dead.
async fn host(url: &str) -> (tempfile::TempDir, Server, Api) {
    host_with(url, &["--host-timeout", "3s"]).await
}

/// Starts a host on the database `url` with `args`.
async fn host_with(url: &str, args: &[&str]) -> (tempfile::TempDir, Server, Api) {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = start_host(url, dir.path(), args).await;
    (dir, server, api)
}

/// Starts three hosts on the database `url` and waits until they see each
/// other; answers them, and their APIs.
async fn three_hosts(url: &str) -> (Vec<(tempfile::TempDir, Server, Api)>, Vec<Api>) {
    let mut hosts = Vec::new();
    for _ in 0..3 {
        hosts.push(host(url).await);
    }
    let apis: Vec<Api> = hosts.iter().map(|(_, _, api)| api.clone()).collect();
    see_each_other(&apis.iter().collect::<Vec<_>>()).await;
    (hosts, apis)
}

#[tokio::test]
async fn two_hosts_on_one_database_serve_the_same_entities() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let (_first_dir, first, a) = host(&url).await;
    let (_second_dir, second, b) = host(&url).await;
    see_each_other(&[&a, &b]).await;
    a.deploy("counter", Path::new(COUNTER)).await;
    assert!(serves(&b, "counter").await, "what the first host deployed serves on the second within a second");

    // Increments raced through both hosts all land, once each, in order.
    const CALLS: u64 = 200;
    let replies = race_increments(&[a.clone(), b.clone()], CALLS as usize, |_| "c".into()).await;
    let mut values: Vec<u64> =
        replies.into_iter().map(|(_, reply)| reply.expect(200)["value"].as_u64().unwrap()).collect();
    values.sort_unstable();
    assert_eq!(values, (1..=CALLS).collect::<Vec<_>>(), "each increment saw the one before it");
    for api in [&a, &b] {
        assert_eq!(api.invoke("counter", "c", "Get", json!({})).await.expect(200), json!({ "value": CALLS }));
    }
    assert_eq!(b.seqs("counter", "c").await, (1..=CALLS).collect::<Vec<_>>(), "no gap, no duplicate");

    // A value entity written on one host reads back on the other.
    b.deploy("profiles", Path::new(USER_PROFILE)).await;
    assert!(serves(&a, "profiles").await);
    for (api, name) in [(&a, "one"), (&b, "two"), (&a, "three")] {
        api.invoke("profiles", "p", "Update", json!({ "name": name, "email": "p@example.com" })).await.expect(200);
        for reader in [&a, &b] {
            assert_eq!(reader.invoke("profiles", "p", "Get", json!({})).await.expect(200)["name"], name);
        }
    }

    // Each host lists both, itself first, with the URL it is reached at.
    for (api, me, other) in [(&a, &first, &second), (&b, &second, &first)] {
        let hosts = api.get("/v1/cluster").await.expect(200)["hosts"].clone();
        let urls: Vec<(&str, bool)> = hosts
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["url"].as_str().unwrap(), h["self"].as_bool().unwrap()))
            .collect();
        assert_eq!(urls, [(me.base(), true), (other.base(), false)], "{hosts}");
    }

    // The first host dies: the second serves everything it held, and soon
    // no longer lists it.
    first.kill().await.unwrap();
    assert_eq!(
        b.invoke("counter", "c", "Increase", json!({ "value": 1 })).await.expect(200),
        json!({ "value": CALLS + 1 })
    );
    assert_eq!(b.invoke("profiles", "p", "Get", json!({})).await.expect(200)["name"], "three");
    let alone = b.eventually(Duration::from_secs(6), || async {
        b.get("/v1/cluster").await.expect(200)["hosts"].as_array().unwrap().len() == 1
    });
    assert!(alone.await, "a host silent past --host-timeout is dropped from the cluster");
    drop(second);
}

#[tokio::test]
async fn an_event_stream_on_one_host_follows_commands_sent_to_the_other() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let (_first_dir, _first, a) = host(&url).await;
    let (_second_dir, second, b) = host(&url).await;
    a.deploy("counter", Path::new(COUNTER)).await;
    a.invoke("counter", "live", "Increase", json!({ "value": 1 })).await.expect(200);
    assert!(serves(&b, "counter").await, "the second host runs the counter");
    let stream_url = format!("{}/v1/services/counter/entities/live/events?follow=true", second.base());
    let mut stream = wasmstate_tests::sse::EventStream::open(&stream_url).await.unwrap();
    let (id, _) = stream.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(id, "1", "the backlog first");
    // b commits nothing itself: only a's commits, heard through the
    // database, wake its stream.
    for seq in 2..=20u64 {
        a.invoke("counter", "live", "Increase", json!({ "value": 1 })).await.expect(200);
        let (id, event) = stream.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!((id, event["seq"].as_u64()), (seq.to_string(), Some(seq)), "in order, no gap");
    }
    assert!(stream.next(Duration::from_millis(300)).await.is_err(), "no duplicate after the last event");
    drop(b);
}

/// A journal of schema version 1 (before the hosts' heartbeats) is
/// migrated when a host starts on it, and keeps its data.
#[tokio::test]
async fn a_version_1_journal_is_migrated_and_keeps_its_data() {
    migrated_from(1).await;
}

/// So is one of version 2 (before the leases, the writers' marks and the
/// outbox's due times).
#[tokio::test]
async fn a_version_2_journal_is_migrated_and_keeps_its_data() {
    migrated_from(2).await;
}

/// So is one of version 3 (before timers).
#[tokio::test]
async fn a_version_3_journal_is_migrated_and_keeps_its_data() {
    migrated_from(3).await;
}

/// So is one of version 4 (before repeating timers), whose timer rows are
/// rewritten.
#[tokio::test]
async fn a_version_4_journal_is_migrated_and_keeps_its_timers() {
    migrated_from(4).await;
}

/// So is one of version 5 (before webhooks and allow-lists), whose outbox
/// and version rows are rewritten.
#[tokio::test]
async fn a_version_5_journal_is_migrated_and_keeps_its_outbox() {
    migrated_from(5).await;
}

/// So is one of version 6 (before CRDT entities), which gains their table.
#[tokio::test]
async fn a_version_6_journal_is_migrated_and_keeps_its_outbox() {
    migrated_from(6).await;
}

/// What the versions after `version` added, dropped.
fn undo_after(version: i64) -> String {
    // Version 7 added CRDT entities' table.
    let mut undo = String::from("DROP TABLE wasmstate.crdt_replicas;");
    if version == 6 {
        return undo;
    }
    // Version 6 put a byte (a command) before each outbox row, and one (no
    // allow-list) after each version row.
    undo.push_str(
        " UPDATE wasmstate.outbox SET record = substring(record from 2); \
         UPDATE wasmstate.versions SET record = substring(record from 1 for length(record) - 1);",
    );
    if version == 5 {
        return undo;
    }
    if version == 4 {
        // Version 5 added a byte (no schedule) at the end of an untraced row.
        undo.push_str(" UPDATE wasmstate.timers SET record = substring(record from 1 for length(record) - 1);");
        return undo;
    }
    undo.push_str(" DROP TABLE wasmstate.timers;");
    if version < 3 {
        undo.push_str(
            " DROP TABLE wasmstate.leases, wasmstate.writer_marks; ALTER TABLE wasmstate.outbox DROP COLUMN due_ms;",
        );
    }
    if version < 2 {
        undo.push_str(" DROP TABLE wasmstate.hosts;");
    }
    undo
}

/// Takes a journal back to schema `version` and starts a host on it.
async fn migrated_from(version: i64) {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let (dir, server, api) = host(&url).await;
    api.deploy("counter", Path::new(COUNTER)).await;
    api.invoke("counter", "c", "Increase", json!({ "value": 5 })).await.expect(200);
    let body = br#"{"value": 1}"#.to_vec();
    let path = "/v1/services/counter/entities/c/Increase?delay=1h";
    let timer = api.send(reqwest::Method::POST, path, body).await.expect(202);
    server.stop().await.unwrap();
    let client = wasmstate_tests::postgres::connect(&url).await.unwrap();
    // A side effect waiting in the outbox: Increase c by 1, in the current
    // layout (what the undo takes back to `version`'s).
    let waiting = [&b"\x00\x07counter\x01c\x08Increase\x0b"[..], br#"{"value":1}"#, b"\x01\x00\x00"].concat();
    client
        .execute(
            "INSERT INTO wasmstate.outbox (id, target, record, due_ms) VALUES (1000, 'counter', $1, 0)",
            &[&waiting],
        )
        .await
        .unwrap();
    let back =
        format!("{} UPDATE wasmstate.meta SET value = {version} WHERE key = 'schema_version'", undo_after(version));
    client.batch_execute(&back).await.unwrap();
    let options = Options { journal: Some(JournalKind::Database(url.clone())), ..Options::default() };
    let server = Server::start_with(dir.path(), &[], options).await.expect("the host starts on the old version");
    let said = format!("migrated the journal from schema version {version} to 7");
    assert!(server.stdout().contains(&said), "{:?}", server.stdout());
    let api = Api::new(server.base());
    let delivered = api.eventually(Duration::from_secs(10), || async {
        api.invoke("counter", "c", "Get", json!({})).await.expect(200) == json!({ "value": 6 })
    });
    assert!(delivered.await, "the side effect that waited is delivered");
    assert_eq!(api.get("/v1/cluster").await.expect(200)["hosts"].as_array().unwrap().len(), 1);
    let stored: i64 =
        client.query_one("SELECT value FROM wasmstate.meta WHERE key = 'schema_version'", &[]).await.unwrap().get(0);
    assert_eq!(stored, 7);
    let crdt: i64 = client.query_one("SELECT count(*) FROM wasmstate.crdt_replicas", &[]).await.unwrap().get(0);
    assert_eq!(crdt, 0, "version 7 adds CRDT entities' table, empty");
    let timers = api.get("/v1/services/counter/entities/c/timers").await.expect(200);
    if version >= 4 {
        assert_eq!(timers[0]["name"], timer["timer"], "{timers}");
        assert_eq!(timers[0]["next_due_ms"], timer["due_at_ms"], "{timers}");
        assert_eq!(timers[0]["schedule"], Value::Null, "{timers}");
    } else {
        assert_eq!(timers, json!([]), "the timers table came with version 4");
    }
    // The host takes its leases in the background, after it starts
    // answering.
    let leases_taken = api.eventually(Duration::from_secs(5), || async {
        !api.get("/v1/cluster").await.expect(200)["leases"].as_array().unwrap().is_empty()
    });
    assert!(leases_taken.await, "leases are taken");
}

/// Waits until each of `apis` routes to all of them.
async fn see_each_other(apis: &[&Api]) {
    for api in apis {
        let all = api.eventually(Duration::from_secs(5), || async {
            api.get("/v1/cluster").await.expect(200)["hosts"].as_array().unwrap().len() == apis.len()
        });
        assert!(all.await, "the hosts see each other");
    }
}

async fn metric_sum(apis: &[&Api], name: &str) -> f64 {
    let mut sum = 0.0;
    for api in apis {
        sum += api.metric(name).await;
    }
    sum
}

/// Commands for one entity sent to either host run on its owner, which
/// keeps it cached: they never conflict.
#[tokio::test]
async fn commands_go_to_their_entity_s_owner_so_they_do_not_conflict() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let (_a_dir, _a_server, a) = host(&url).await;
    let (_b_dir, _b_server, b) = host(&url).await;
    see_each_other(&[&a, &b]).await;
    a.deploy("counter", Path::new(COUNTER)).await;
    assert!(serves(&b, "counter").await);
    let before = metric_sum(&[&a, &b], "wasmstate_conflict_retries_total").await;
    for entity in ["hot", "cold", "warm"] {
        for i in 1..=20u64 {
            let api = if i % 2 == 0 { &a } else { &b };
            let reply = api.invoke("counter", entity, "Increase", json!({ "value": 1 })).await.expect(200);
            assert_eq!(reply, json!({ "value": i }));
        }
    }
    assert_eq!(metric_sum(&[&a, &b], "wasmstate_conflict_retries_total").await, before, "no command conflicted");
    assert!(metric_sum(&[&a, &b], "wasmstate_forwarded_total").await >= 30.0, "half of them went to the owner");
    // The trace a request names goes with it to the owner, and the owner's
    // invocation's span comes back, through either host.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for base in [_a_server.base(), _b_server.base()] {
        let traced = reqwest::Client::new()
            .post(format!("{base}/v1/services/counter/entities/hot/Increase"))
            .header("traceparent", parent)
            .body(r#"{"value": 1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(traced.status(), 200);
        let answered = traced.headers()["traceparent"].to_str().unwrap().to_string();
        assert!(
            answered.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && answered.ends_with("-01"),
            "{answered}"
        );
        assert!(!answered.contains("00f067aa0ba902b7"), "the owner's own span: {answered}");
    }
    // A request that says another host sent it, without the cluster token,
    // is refused and changes nothing.
    let forged = reqwest::Client::new()
        .post(format!("{}/v1/services/counter/entities/hot/Increase", _a_server.base()))
        .header("wasmstate-forwarded-by", "someone")
        .body(r#"{"value": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // One meant for another host, as after the owner's address changed
    // hands, is refused too (its sender then runs it itself).
    let misdirected = reqwest::Client::new()
        .post(format!("{}/v1/services/counter/entities/hot/Increase", _a_server.base()))
        .header("wasmstate-forwarded-by", "someone")
        .header("wasmstate-forwarded-to", "another host")
        .header("wasmstate-cluster-token", wasmstate_tests::server::CLUSTER_TOKEN)
        .body(r#"{"value": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(misdirected.status(), 421);
    assert_eq!(a.invoke("counter", "hot", "Get", json!({})).await.expect(200), json!({ "value": 22 }));
}

/// While a dead host is still listed, its entities' commands cannot reach
/// it and run on the host that received them.
#[tokio::test]
async fn a_command_whose_owner_cannot_be_reached_runs_where_it_arrived() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let (_a_dir, a_server, a) = host_with(&url, &["--host-timeout", "60s"]).await;
    let (_b_dir, _b_server, b) = host_with(&url, &["--host-timeout", "60s"]).await;
    see_each_other(&[&a, &b]).await;
    a.deploy("counter", Path::new(COUNTER)).await;
    let entities: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    assert!(serves(&b, "counter").await);
    for entity in &entities {
        b.invoke("counter", entity, "Increase", json!({ "value": 1 })).await.expect(200);
    }
    a_server.kill().await.unwrap();
    for entity in &entities {
        let reply = b.invoke("counter", entity, "Increase", json!({ "value": 1 })).await.expect(200);
        assert_eq!(reply, json!({ "value": 2 }), "{entity}");
    }
    let fallbacks = b.metric("wasmstate_forward_fallbacks_total").await;
    let cluster = b.get("/v1/cluster").await.body;
    assert!(fallbacks >= 1.0, "some of them were a's: {cluster}");
}

/// The issue's own: 300 concurrent increments of one counter spread
/// round-robin over three hosts, then the same over 50 counters — every
/// one answered, each value once, seqs without gap or duplicate.
#[tokio::test]
async fn three_hosts_take_concurrent_increments_of_one_counter_and_of_fifty() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let (_hosts, apis) = three_hosts(&url).await;
    apis[0].deploy("counter", Path::new(COUNTER)).await;
    for api in &apis {
        assert!(serves(api, "counter").await);
    }
    for counters in [1usize, 50] {
        const CALLS: usize = 300;
        let replies = race_increments(&apis, CALLS, |i| format!("n{counters}-{}", i % counters)).await;
        let mut values: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for (entity, reply) in replies {
            values.entry(entity).or_default().push(reply.expect(200)["value"].as_u64().unwrap());
        }
        for (entity, mut seen) in values {
            seen.sort_unstable();
            let each = (CALLS / counters) as u64;
            assert_eq!(seen, (1..=each).collect::<Vec<_>>(), "{entity}: each increment saw the one before it");
            for api in &apis {
                assert_eq!(api.seqs("counter", &entity).await, (1..=each).collect::<Vec<_>>(), "{entity}");
            }
        }
    }
}

/// A shopping session whose commands go to a different host each: every
/// host's reply and state follow the commands before it, wherever they ran.
#[tokio::test]
async fn a_cart_sequence_split_across_three_hosts_reads_the_same_everywhere() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let (_hosts, apis) = three_hosts(&url).await;
    apis[0].deploy("shopping-cart", Path::new(SHOPPING_CART)).await;
    for api in &apis {
        let carts = answers(api, "shopping-cart", "GetCart", Duration::from_secs(2));
        assert!(carts.await, "every host serves the carts");
    }
    let add = |product: &str, quantity: u64| {
        ("AddItem", json!({"productId": product, "name": product, "quantity": quantity}))
    };
    let steps = [
        add("apple", 2),
        add("pear", 1),
        add("apple", 3),
        ("RemoveItem", json!({"productId": "pear"})),
        add("plum", 4),
        add("pear", 5),
    ];
    for (n, (command, body)) in steps.into_iter().enumerate() {
        apis[n % 3].invoke("shopping-cart", "session", command, body).await.expect(200);
        // Read on the next host: it sees this step and every one before.
        let items = apis[(n + 1) % 3].invoke("shopping-cart", "session", "GetCart", json!({})).await.expect(200);
        assert_eq!(items["items"].as_array().unwrap().len(), [1, 2, 2, 1, 2, 3][n], "after step {n}: {items}");
    }
    let expected = json!({"items": [
        {"productId": "apple", "name": "apple", "quantity": 5},
        {"productId": "plum", "name": "plum", "quantity": 4},
        {"productId": "pear", "name": "pear", "quantity": 5},
    ]});
    for api in &apis {
        assert_eq!(api.invoke("shopping-cart", "session", "GetCart", json!({})).await.expect(200), expected);
        assert_eq!(api.seqs("shopping-cart", "session").await, (1..=6).collect::<Vec<_>>(), "one event a step");
    }
}

/// An `Idempotency-Key` repeated through another host answers the reply
/// recorded the first time, and changes nothing, whichever host owns the
/// entity.
#[tokio::test]
async fn a_key_repeated_through_another_host_answers_the_recorded_reply() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let (_first_dir, _first, a) = host(&url).await;
    let (_second_dir, _second, b) = host(&url).await;
    see_each_other(&[&a, &b]).await;
    a.deploy("counter", Path::new(COUNTER)).await;
    assert!(serves(&b, "counter").await);
    for n in 0..8 {
        let entity = format!("keyed-{n}");
        let (key, body) = (format!("order-{n}"), json!({"value": 5}));
        let first = a.invoke_idempotent("counter", &entity, "Increase", body.clone(), &key).await.expect(200);
        assert_eq!(first, json!({"value": 5}));
        let repeat = b.invoke_idempotent("counter", &entity, "Increase", body.clone(), &key).await.expect(200);
        assert_eq!(repeat, first, "{entity}: the recorded reply");
        let other = b.invoke_idempotent("counter", &entity, "Increase", body, &format!("other-{n}")).await;
        assert_eq!(other.expect(200), json!({"value": 10}), "{entity}: the repeat changed nothing");
        assert_eq!(a.seqs("counter", &entity).await, [1, 2], "{entity}");
    }
}
