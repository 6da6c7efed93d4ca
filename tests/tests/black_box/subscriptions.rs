//! Event deliveries take the one invocation path: they obey a command's
//! output limits, and a delivery repeated after a crash changes nothing,
//! whether its side effects are synchronous or go through the outbox.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::{COUNTER, EFFECTS_PER_EVENT, MISBEHAVING};
use wasmstate_tests::{Api, Server};

use crate::{Running, start};

/// The source service (the misbehaving entity) and its subscriber.
const SOURCE: &str = "m";
const SUBSCRIBER: &str = "per-event";

/// Deploys the source, the counter the side effects increase, and the
/// subscriber.
async fn deploy_all(api: &Api) {
    api.deploy(SOURCE, Path::new(MISBEHAVING)).await;
    api.deploy("counter", Path::new(COUNTER)).await;
    let bytes = std::fs::read(EFFECTS_PER_EVENT).unwrap();
    api.send(reqwest::Method::PUT, &format!("/v1/services/{SUBSCRIBER}?subscribe={SOURCE}"), bytes).await.expect(201);
}

/// Commits an event on `entity` asking the subscriber for `effects` side effects.
async fn ask(api: &Api, entity: &str, effects: u32, synchronous: bool) {
    let value = json!({"effects": effects, "synchronous": synchronous});
    api.invoke(SOURCE, entity, "Echo", json!({ "value": value })).await.expect(200);
}

async fn flooded(api: &Api) -> Value {
    api.invoke("counter", "flooded", "Get", json!({})).await.expect(200)["value"].clone()
}

#[tokio::test]
async fn an_event_delivery_obeys_the_output_limits_of_a_command() {
    let t = start(&["--max-events-per-command", "10"]).await;
    let api = &t.api;
    deploy_all(api).await;
    // A command asking for more than the limit is refused...
    let ask_effect = json!({"service": "counter", "entity": "flooded", "synchronous": false, "command": "Increase", "payload": {"value": 1}});
    api.invoke(SOURCE, "cmd", "Flood", json!({"count": 11, "bytes": 1})).await.expect_error(500);
    api.invoke(SOURCE, "cmd", "Effect", ask_effect).await.expect(200);
    assert!(api.eventually(Duration::from_secs(5), || async { flooded(api).await == json!(1) }).await);

    // ...and so is an event delivery: none of its side effects run.
    ask(api, "a", 11, false).await;
    ask(api, "b", 20_000, true).await;
    ask(api, "c", 20_000, false).await;
    // The events after them are delivered, so those were passed over.
    ask(api, "d", 10, true).await;
    ask(api, "e", 10, false).await;
    let total = || async { flooded(api).await == json!(21) };
    assert!(api.eventually(Duration::from_secs(10), total).await, "flooded = {}", flooded(api).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(flooded(api).await, json!(21), "the refused deliveries ran nothing");
    assert_eq!(api.metric("wasmstate_subscription_failures_total").await, 3.0);
    let trapped = "wasmstate_invocations_total{service=\"per-event\",kind=\"action\",outcome=\"trapped\"}";
    assert_eq!(api.metric(trapped).await, 3.0, "counted as output-limit failures");
    api.get("/healthz").await.expect(200);
}

/// Fills the source's log with `events` events, each asking the subscriber
/// for one side effect, before the subscriber exists, then deploys the
/// subscriber and SIGKILLs the host while it is delivering them. After a
/// restart every event has counted exactly once, though deliveries ran
/// again from the last stored offset.
async fn exactly_once_across_sigkill(synchronous: bool) {
    const EVENTS: u64 = 240;
    let Running { dir, server, api } = start(&[]).await;
    api.deploy(SOURCE, Path::new(MISBEHAVING)).await;
    api.deploy("counter", Path::new(COUNTER)).await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let api = api.clone();
            tokio::spawn(async move {
                for _ in 0..EVENTS / 8 {
                    ask(&api, &format!("e{w}"), 1, synchronous).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let bytes = std::fs::read(EFFECTS_PER_EVENT).unwrap();
    api.send(reqwest::Method::PUT, &format!("/v1/services/{SUBSCRIBER}?subscribe={SOURCE}"), bytes).await.expect(201);
    let started =
        api.eventually(Duration::from_secs(10), || async { flooded(&api).await.as_u64().unwrap_or(0) > 0 }).await;
    assert!(started, "the subscriber started delivering");
    let before_kill = flooded(&api).await.as_u64().unwrap();
    eprintln!("killed after {before_kill} of {EVENTS} deliveries");
    server.kill().await.unwrap();
    // Offsets are stored after each batch of 256 events, so a kill before
    // the last delivery makes the next start deliver them all again.
    assert!(before_kill < EVENTS, "the host was killed before it delivered everything ({before_kill})");

    let server = Server::start(dir.path(), &[]).await.unwrap();
    let api = Api::new(server.base());
    let done = api.eventually(Duration::from_secs(30), || async { flooded(&api).await == json!(EVENTS) }).await;
    assert!(done, "every event counted: {}", flooded(&api).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(flooded(&api).await, json!(EVENTS), "and none twice");
    assert_eq!(api.position("counter", "flooded").await.0, EVENTS, "one Increase per event");
}

#[tokio::test]
async fn synchronous_side_effects_of_event_deliveries_run_once_across_a_sigkill() {
    exactly_once_across_sigkill(true).await;
}

#[tokio::test]
async fn outbox_side_effects_of_event_deliveries_run_once_across_a_sigkill() {
    exactly_once_across_sigkill(false).await;
}
