//! The counter: one writer per entity under concurrency.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use wasmstate_tests::guests::COUNTER;

use crate::start_with;

#[tokio::test]
async fn two_hundred_concurrent_increases_on_one_counter() {
    let t = start_with("counter", COUNTER, &[]).await;
    let calls = (0..200).map(|_| {
        let api = t.api.clone();
        tokio::spawn(async move { api.invoke("counter", "hot", "Increase", json!({"value": 1})).await.expect(200) })
    });
    let mut seen = BTreeSet::new();
    for call in calls {
        let reply = call.await.unwrap();
        seen.insert(reply["value"].as_i64().unwrap());
    }
    // Every command ran against the state its predecessor left: each reply is distinct.
    assert_eq!(seen, (1..=200).collect());
    assert_eq!(t.api.invoke("counter", "hot", "Get", json!({})).await.expect(200), json!({"value": 200}));
    let seqs: Vec<u64> = t.api.events("counter", "hot", 1).await.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert_eq!(t.api.position("counter", "hot").await, (200, 200));
}

#[tokio::test]
async fn increase_and_decrease() {
    let t = start_with("counter", COUNTER, &[]).await;
    let api = &t.api;
    assert_eq!(api.invoke("counter", "c", "Increase", json!({"value": 5})).await.expect(200), json!({"value": 5}));
    assert_eq!(api.invoke("counter", "c", "Decrease", json!({"value": 2})).await.expect(200), json!({"value": 3}));
    assert_eq!(api.invoke_raw("counter", "c", "Get", Vec::new()).await.expect(200), json!({"value": 3}));
    let (kind, _) = api.invoke("counter", "c", "Increase", json!({"value": -1})).await.expect_error(400);
    assert_eq!(kind, "command_failed");
    assert_eq!(api.position("counter", "c").await, (2, 0));
}

#[tokio::test]
async fn the_least_recently_used_entities_are_passivated_when_the_active_cap_is_reached() {
    let t = start_with("counter", COUNTER, &["--max-active-entities", "10"]).await;
    let api = &t.api;
    for i in 0..10 {
        api.invoke("counter", &format!("c{i}"), "Increase", json!({"value": i})).await.expect(200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // c0 is used again, so c1 and c2 are now the least recently used.
    api.invoke("counter", "c0", "Get", json!({})).await.expect(200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next new entity finds the cap reached: the oldest idle ones make
    // room, down to a tenth under the cap, and no more.
    api.invoke("counter", "newcomer", "Increase", json!({"value": 1})).await.expect(200);
    let made_room =
        api.eventually(Duration::from_secs(2), || async { api.metric("wasmstate_active_entities").await <= 9.0 }).await;
    assert!(made_room, "active entities: {}", api.metric("wasmstate_active_entities").await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.metric("wasmstate_active_entities").await, 9.0, "only the excess is passivated");

    // The recently used ones are still warm; the passivated ones come back
    // from the journal.
    let cold_loads = api.metric("wasmstate_entity_cold_loads_total").await;
    for i in [0, 3, 9] {
        assert_eq!(api.invoke("counter", &format!("c{i}"), "Get", json!({})).await.expect(200), json!({"value": i}));
    }
    assert_eq!(api.metric("wasmstate_entity_cold_loads_total").await, cold_loads, "c0, c3 and c9 were kept");
    for i in [1, 2] {
        assert_eq!(api.invoke("counter", &format!("c{i}"), "Get", json!({})).await.expect(200), json!({"value": i}));
    }
    assert_eq!(api.metric("wasmstate_entity_cold_loads_total").await, cold_loads + 2.0, "c1 and c2 were passivated");
}
