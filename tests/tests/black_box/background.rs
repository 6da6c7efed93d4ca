//! Background work that cannot stall for good: an event a subscriber cannot
//! take becomes a dead letter, side effects that keep asking for more are
//! bounded and stopped by a delete, and a slow target delays only its own
//! side effects.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmstate_tests::Api;
use wasmstate_tests::guests::{COUNTER, EFFECTS_PER_EVENT, MISBEHAVING};

use crate::start;

async fn count(api: &Api, service: &str, entity: &str) -> Value {
    api.invoke(service, entity, "Get", json!({})).await.expect(200)["value"].clone()
}

#[tokio::test]
async fn an_event_a_subscriber_cannot_take_becomes_a_dead_letter_and_the_subscription_goes_on() {
    let t = start(&["--invocation-timeout", "1s", "--subscription-max-attempts", "2"]).await;
    let api = &t.api;
    api.deploy("m", Path::new(MISBEHAVING)).await;
    let bytes = std::fs::read(EFFECTS_PER_EVENT).unwrap();
    api.send(reqwest::Method::PUT, "/v1/services/per-event?subscribe=m", bytes).await.expect(201);
    // The first event makes on-event loop; the second asks for a side
    // effect on `counter`, which is not deployed.
    api.invoke("m", "a", "Echo", json!({"value": {"loop": true}})).await.expect(200);
    api.invoke("m", "b", "Echo", json!({"value": {"effects": 1, "synchronous": true}})).await.expect(200);
    let letters = || async { api.get("/v1/services/per-event/dead-letters").await.expect(200) };
    let both =
        api.eventually(Duration::from_secs(15), || async { letters().await.as_array().unwrap().len() == 2 }).await;
    assert!(both, "{}", letters().await);
    let letters = letters().await;
    assert_eq!(
        (&letters[0]["source"], &letters[0]["position"], &letters[0]["entity"]),
        (&json!("m"), &json!(1), &json!("a"))
    );
    assert_eq!((&letters[0]["seq"], &letters[0]["attempts"]), (&json!(1), &json!(2)));
    assert!(letters[0]["error"].as_str().unwrap().contains("time limit"), "{letters}");
    assert_eq!((&letters[1]["position"], &letters[1]["entity"]), (&json!(2), &json!("b")));
    assert!(letters[1]["error"].as_str().unwrap().contains("counter"), "{letters}");
    assert_eq!(api.metric("wasmstate_subscription_dead_letters_total").await, 2.0);

    // The subscription went on past them.
    api.deploy("counter", Path::new(COUNTER)).await;
    api.invoke("m", "c", "Echo", json!({"value": {"effects": 1, "synchronous": true}})).await.expect(200);
    let counted =
        api.eventually(Duration::from_secs(5), || async { count(api, "counter", "flooded").await == json!(1) }).await;
    assert!(counted, "the next event was delivered");
    let lag = "wasmstate_subscription_lag{subscriber=\"per-event\",source=\"m\"}";
    assert!(api.eventually(Duration::from_secs(3), || async { api.metric(lag).await == 0.0 }).await);
    api.get("/v1/services/nobody/dead-letters").await.expect_error(404);
}

#[tokio::test]
async fn a_side_effect_that_keeps_asking_for_more_ends_at_the_hop_limit() {
    let t = start(&[]).await;
    let api = &t.api;
    api.deploy("m", Path::new(MISBEHAVING)).await;
    api.invoke("m", "s", "Spread", json!({"service": "m", "fanout": 1})).await.expect(200);
    let stopped = api
        .eventually(Duration::from_secs(20), || async {
            api.metric("wasmstate_outbox_dropped_total").await >= 1.0
                && api.metric("wasmstate_outbox_pending").await == 0.0
        })
        .await;
    assert!(stopped, "the chain was dropped at the hop limit");
    // The request's command, then one delivery at each of 16 hops.
    assert_eq!(api.metric("wasmstate_journal_events_total").await, 17.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.metric("wasmstate_journal_events_total").await, 17.0, "and nothing after");
}

#[tokio::test]
async fn a_runaway_fan_out_is_bounded_by_the_outbox_quota_and_stopped_by_a_delete() {
    let t = start(&["--max-outbox-per-service", "20"]).await;
    let api = &t.api;
    api.deploy("m", Path::new(MISBEHAVING)).await;
    api.invoke("m", "s", "Spread", json!({"service": "m", "fanout": 2})).await.expect(200);
    let mut most = 0.0_f64;
    for _ in 0..20 {
        most = most.max(api.metric("wasmstate_outbox_pending").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(most <= 20.0, "at most the quota waits: {most}");
    api.get("/healthz").await.expect(200);

    api.send(reqwest::Method::DELETE, "/v1/services/m", Vec::new()).await.expect(200);
    let emptied =
        api.eventually(Duration::from_secs(5), || async { api.metric("wasmstate_outbox_pending").await == 0.0 }).await;
    assert!(emptied, "the deleted service's side effects were dropped");
    // Deliveries already running when it was deleted may still commit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = api.metric("wasmstate_journal_events_total").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.metric("wasmstate_journal_events_total").await, events, "nothing runs after the delete");
}

#[tokio::test]
async fn a_slow_target_delays_only_its_own_side_effects() {
    let t = start(&[]).await;
    let api = &t.api;
    api.deploy("m", Path::new(MISBEHAVING)).await;
    api.deploy("counter", Path::new(COUNTER)).await;
    // 100 side effects to one entity that takes 100 ms a command: 10 s of
    // work, one at a time.
    let slow = json!({"count": 100, "service": "m", "entity": "slow", "command": "Sleep", "payload": {"millis": 100}});
    api.invoke("m", "asker", "Fan", slow).await.expect(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let fast = json!({"service": "counter", "entity": "fast", "synchronous": false, "command": "Increase", "payload": {"value": 1}});
    api.invoke("m", "other", "Effect", fast).await.expect(200);
    let delivered =
        api.eventually(Duration::from_secs(5), || async { count(api, "counter", "fast").await == json!(1) }).await;
    assert!(delivered && started.elapsed() < Duration::from_secs(2), "another target waited {:?}", started.elapsed());
    assert!(api.position("m", "slow").await.0 < 50, "the slow target is still at work");
}
