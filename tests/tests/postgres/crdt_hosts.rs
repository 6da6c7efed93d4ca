//! CRDT entities on three `wasmstate` processes sharing one PostgreSQL
//! journal: every host takes writes to the same entity without routing
//! them to an owner and without conflicts (each host writes its own
//! replica's row), merges the others' changes as their commits are
//! announced, and converges to what the merge rules say. With
//! `?consistency=all`, a reply waits until every host has merged the
//! change, so a command on any host afterwards sees it.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::TCK_CRDT;
use wasmstate_tests::postgres::shared;
use wasmstate_tests::sse::EventStream;
use wasmstate_tests::{Api, Server};

use crate::start_host;

const CRDT: &str = "crdt";

/// Three hosts on a fresh database that see each other, the TCK's CRDT
/// entity deployed and served on every one.
async fn three_hosts() -> (Vec<(tempfile::TempDir, Server)>, [Api; 3]) {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let mut hosts = Vec::new();
    let mut apis = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (server, api) = start_host(&url, dir.path(), &["--host-timeout", "3s"]).await;
        hosts.push((dir, server));
        apis.push(api);
    }
    apis[0].deploy(CRDT, Path::new(TCK_CRDT)).await;
    for api in &apis {
        let all = api.eventually(Duration::from_secs(5), || async {
            api.get("/v1/cluster").await.expect(200)["hosts"].as_array().unwrap().len() == 3
        });
        assert!(all.await, "the hosts see each other");
        assert!(serves_crdt(api).await, "every host serves the CRDT service");
    }
    let apis: [Api; 3] = apis.try_into().unwrap_or_else(|_| unreachable!());
    (hosts, apis)
}

/// Whether `api` serves the CRDT service within a second (hosts take in
/// what another deployed within that).
async fn serves_crdt(api: &Api) -> bool {
    api.eventually(Duration::from_secs(2), || async {
        api.invoke(CRDT, "flag-probe", "Get", json!({})).await.status == 200
    })
    .await
}

/// Runs `actions` on `id` through `api`; `all`: with `?consistency=all`,
/// which every other host must then have confirmed.
async fn process(api: &Api, id: &str, actions: Value, all: bool) -> Value {
    let query = if all { "?consistency=all" } else { "" };
    let url = format!("{}/v1/services/{CRDT}/entities/{id}/Process{query}", api.base());
    let reply = reqwest::Client::new().post(url).json(&json!({ "actions": actions })).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers().get("wasmstate-unmerged"), None, "every host merged the change");
    reply.json().await.unwrap()
}

async fn get(api: &Api, id: &str) -> Value {
    api.invoke(CRDT, id, "Get", json!({})).await.expect(200)
}

/// Whether every host's `Get` of `id` answers `expected` within a few seconds.
async fn converges(apis: &[Api], id: &str, expected: &Value) -> bool {
    for api in apis {
        let there = api.eventually(Duration::from_secs(5), || async { &get(api, id).await == expected });
        if !there.await {
            eprintln!("{} answers {} for {id}, not {expected}", api.base(), get(api, id).await);
            return false;
        }
    }
    true
}

#[tokio::test]
async fn increments_raced_through_three_hosts_all_count_without_a_conflict() {
    let (_hosts, apis) = three_hosts().await;
    const CALLS: usize = 300;
    let sent: Vec<_> = (0..CALLS)
        .map(|i| {
            let api = apis[i % 3].clone();
            tokio::spawn(async move {
                let counter = api.invoke(CRDT, "gcounter-hot", "Process", json!({"actions": [{"increment": 1}]}));
                let by = if i % 2 == 0 { json!({"increment": 3}) } else { json!({"decrement": 2}) };
                let pn = api.invoke(CRDT, "pncounter-hot", "Process", json!({ "actions": [by] }));
                let (counter, pn) = tokio::join!(counter, pn);
                (counter.status.as_u16(), pn.status.as_u16())
            })
        })
        .collect();
    for call in sent {
        assert_eq!(call.await.unwrap(), (200, 200), "every command lands where it was sent");
    }
    assert!(converges(&apis, "gcounter-hot", &json!({"value": CALLS})).await, "no increment lost");
    // 150 increments by 3, 150 decrements by 2.
    assert!(converges(&apis, "pncounter-hot", &json!({"value": 150})).await);
    for api in &apis {
        let shown = api.get(&format!("/v1/services/{CRDT}/entities/gcounter-hot")).await.expect(200);
        assert_eq!((shown["state"].clone(), shown["replicas"].clone()), (json!(CALLS), json!(3)), "{shown}");
        // Each host wrote its own replica's row: nothing ran again.
        assert_eq!(api.metric("wasmstate_conflict_retries_total").await, 0.0);
    }
}

#[tokio::test]
async fn an_add_racing_a_remove_wins_and_consistency_all_reads_anywhere() {
    let (_hosts, [a, b, c]) = three_hosts().await;
    let apis = [a.clone(), b.clone(), c.clone()];
    process(&a, "orset-s", json!([{"add": "x"}, {"add": "y"}]), true).await;
    for api in &apis {
        assert_eq!(get(api, "orset-s").await, json!({"elements": ["x", "y"]}), "merged before the reply");
    }
    // A remove on one host and an add of the same element on another, at
    // once: whichever saw the other first, the add survives.
    let (removed, added) = tokio::join!(
        process(&a, "orset-s", json!([{"remove": "x"}]), false),
        process(&b, "orset-s", json!([{"add": "x"}]), false)
    );
    assert!(removed["elements"].as_array().is_some() && added["elements"].as_array().is_some());
    assert!(converges(&apis, "orset-s", &json!({"elements": ["x", "y"]})).await, "the add wins");
    // A remove that saw every add removes it everywhere, read on any host
    // right after the reply.
    process(&c, "orset-s", json!([{"remove": "x"}]), true).await;
    for api in &apis {
        assert_eq!(get(api, "orset-s").await, json!({"elements": ["y"]}));
    }
    // Each host votes as its own replica.
    for (api, yes) in [(&a, true), (&b, false), (&c, true)] {
        process(api, "vote-v", json!([{ "vote": yes }]), true).await;
    }
    for (api, yes) in [(&a, true), (&b, false), (&c, true)] {
        assert_eq!(get(api, "vote-v").await, json!({"self_vote": yes, "votes_for": 2, "voters": 3}));
    }
    // A delete on one host holds on every host.
    process(&b, "orset-s", json!([{"delete": true}]), true).await;
    for api in &apis {
        let (kind, _) = api.invoke(CRDT, "orset-s", "Get", json!({})).await.expect_error(404);
        assert_eq!(kind, "entity_deleted");
    }
}

#[tokio::test]
async fn a_live_value_on_one_host_follows_changes_made_on_another() {
    let (_hosts, [a, b, c]) = three_hosts().await;
    let url = format!("{}/v1/services/{CRDT}/entities/gcounter-live/events?follow=true", c.base());
    let mut stream = EventStream::open(&url).await.expect("the stream opens");
    let (_, first) = stream.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(first, json!({"crdt": null, "state": null}), "never changed yet");
    for api in [&a, &b, &a, &b, &a] {
        process(api, "gcounter-live", json!([{"increment": 1}]), false).await;
    }
    // Changes that land together may come out as one value; the last is 5.
    let mut seen = Vec::new();
    while seen.last() != Some(&json!(5)) {
        let (_, value) = stream.next(Duration::from_secs(5)).await.expect("the value after each change");
        assert_eq!(value["crdt"], "gcounter");
        seen.push(value["state"].clone());
    }
    let counts: Vec<u64> = seen.iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "each value newer than the last: {counts:?}");
}

#[tokio::test]
async fn every_other_type_converges_by_its_merge_rule_across_hosts() {
    let (_hosts, [a, b, c]) = three_hosts().await;
    let apis = [a.clone(), b.clone(), c.clone()];
    // At once on the three hosts: adds to a grow-only set, writes of one
    // register, a flag enabled on one host, and a map changed everywhere,
    // its key "lwwregister-t" removed on one host as another updates it.
    process(&a, "ormap-m", json!([{"key": "lwwregister-t", "action": {"set": "first"}}]), true).await;
    let (_, _, _) = tokio::join!(
        process(&a, "gset-g", json!([{"add": "a"}]), false),
        process(&b, "gset-g", json!([{"add": "b"}, {"add": "a"}]), false),
        process(&c, "gset-g", json!([{"add": "c"}]), false),
    );
    let (_, _, _) = tokio::join!(
        process(&a, "lwwregister-r", json!([{"set": "from a"}]), false),
        process(&b, "lwwregister-r", json!([{"set": "from b"}]), false),
        process(&c, "flag-f", json!([{"enable": true}]), false),
    );
    let (_, _, _) = tokio::join!(
        process(&a, "ormap-m", json!([{"remove": "lwwregister-t"}]), false),
        process(&b, "ormap-m", json!([{"key": "lwwregister-t", "action": {"set": "second"}}]), false),
        process(&c, "ormap-m", json!([{"key": "gcounter-n", "action": {"increment": 2}}]), false),
    );
    assert!(converges(&apis, "gset-g", &json!({"elements": ["a", "b", "c"]})).await, "a union");
    assert!(converges(&apis, "flag-f", &json!({"value": true})).await, "enabled anywhere is enabled everywhere");
    // The register holds one of the two writes, the same on every host.
    let register = get(&a, "lwwregister-r").await;
    assert!(register == json!({"value": "from a"}) || register == json!({"value": "from b"}), "{register}");
    assert!(converges(&apis, "lwwregister-r", &register).await, "every host keeps the same write");
    // The key is there with the update's value unless the remove came after
    // it (an update concurrent with the remove wins); every host agrees.
    let kept = json!({"entries": {"gcounter-n": {"value": 2}, "lwwregister-t": {"value": "second"}}});
    let removed = json!({"entries": {"gcounter-n": {"value": 2}}});
    let there = |map: &Value| *map == kept || *map == removed;
    assert!(a.eventually(Duration::from_secs(5), || async { there(&get(&a, "ormap-m").await) }).await);
    let map = get(&a, "ormap-m").await;
    assert!(converges(&apis, "ormap-m", &map).await, "every host keeps the same map: {map}");
}
