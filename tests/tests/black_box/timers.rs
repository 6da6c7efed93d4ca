//! Durable timers through delayed calls: `?delay=` and `?at=` answer 202
//! once the timer is durable, the command runs once when it is due — after
//! a restart or a SIGKILL too — and an entity's timers can be listed and
//! cancelled. Bad input sets nothing.

use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::{COUNTER, MISBEHAVING};
use wasmstate_tests::{Api, Reply, Server};

use crate::start_with;

/// Posts `Increase {"value": 1}` to counter `entity` with `query`.
async fn delayed(api: &Api, entity: &str, query: &str) -> Reply {
    let path = format!("/v1/services/counter/entities/{entity}/Increase?{query}");
    api.send(reqwest::Method::POST, &path, br#"{"value": 1}"#.to_vec()).await
}

async fn value(api: &Api, entity: &str) -> Value {
    api.invoke("counter", entity, "Get", json!({})).await.expect(200)["value"].clone()
}

async fn timers(api: &Api, entity: &str) -> Vec<Value> {
    let listed = api.get(&format!("/v1/services/counter/entities/{entity}/timers")).await.expect(200);
    listed.as_array().expect("a list").clone()
}

/// Waits until `entity`'s counter reads `expected`, then a while longer,
/// and checks it still does: the command ran exactly that often.
async fn settles_at(api: &Api, entity: &str, expected: u64) {
    let reached = || async { value(api, entity).await == json!(expected) };
    assert!(api.eventually(Duration::from_secs(10), reached).await, "{entity} reaches {expected}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(value(api, entity).await, json!(expected), "{entity} ran more than once");
}

#[tokio::test]
async fn a_delayed_call_fires_once_and_timers_are_listed_and_cancelled() {
    let t = start_with("counter", COUNTER, &[]).await;
    let api = &t.api;
    let scheduled = delayed(api, "c", "delay=3s").await.expect(202);
    let name = scheduled["timer"].as_str().expect("the timer's name").to_string();
    let due = scheduled["due_at_ms"].as_u64().expect("when it is due");
    let later = delayed(api, "c", "delay=1h").await.expect(202);
    assert_ne!(later["timer"], scheduled["timer"]);

    let listed = timers(api, "c").await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let first = listed.iter().find(|t| t["name"] == name.as_str()).expect("the first timer is listed");
    assert_eq!((&first["command"], &first["next_due_ms"]), (&json!("counter/c/Increase"), &json!(due)));
    assert_eq!(
        (&first["payload"], &first["attempts"], &first["schedule"]),
        (&json!({"value": 1}), &json!(0), &Value::Null)
    );
    assert!(first["next_due"].as_str().unwrap().ends_with('Z'), "{first}");

    let path = format!("/v1/services/counter/entities/c/timers/{}", later["timer"].as_str().unwrap());
    api.send(reqwest::Method::DELETE, &path, Vec::new()).await.expect(200);
    let (kind, _) = api.send(reqwest::Method::DELETE, &path, Vec::new()).await.expect_error(404);
    assert_eq!(kind, "no_such_timer");
    assert_eq!(value(api, "c").await, json!(0), "nothing ran yet");

    settles_at(api, "c", 1).await;
    assert!(timers(api, "c").await.is_empty(), "a fired timer is gone, the cancelled one never fires");
    assert!(api.metric("wasmstate_timers_fired_total").await >= 1.0);
    assert_eq!(api.metric("wasmstate_timers_pending").await, 0.0);
    // A time in the past fires at once.
    delayed(api, "now", "at=2001-01-01T00:00:00Z").await.expect(202);
    settles_at(api, "now", 1).await;
}

#[tokio::test]
async fn a_delayed_call_with_a_key_sets_one_timer() {
    let t = start_with("counter", COUNTER, &[]).await;
    let api = &t.api;
    let keyed = |query: &'static str, body: &'static [u8]| {
        let path = format!("/v1/services/counter/entities/k/Increase?{query}");
        let request =
            reqwest::Client::new().post(format!("{}{path}", t.server.base())).header("Idempotency-Key", "once");
        async move { request.body(body.to_vec()).send().await.unwrap() }
    };
    let first = keyed("delay=1s", br#"{"value": 1}"#).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = keyed("delay=1s", br#"{"value": 1}"#).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.json::<Value>().await.unwrap(), first, "the same timer, due at the same time");
    assert_eq!(keyed("delay=1s", br#"{"value": 2}"#).await.status(), 422, "the key with another payload");
    assert_eq!(timers(api, "k").await.len(), 1);
    settles_at(api, "k", 1).await;
}

#[tokio::test]
async fn a_timer_fires_after_a_restart_and_once_after_a_sigkill() {
    let t = start_with("counter", COUNTER, &[]).await;
    delayed(&t.api, "r", "delay=2s").await.expect(202);
    let t = t.restart().await;
    assert_eq!(timers(&t.api, "r").await.len(), 1, "the timer outlives the host");
    settles_at(&t.api, "r", 1).await;

    // Killed right after the due time: the firing may have run, or not,
    // and runs once in effect either way.
    let scheduled = delayed(&t.api, "k", "delay=1s").await.expect(202);
    let due = scheduled["due_at_ms"].as_u64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(due.saturating_sub(now) + 20)).await;
    let crate::Running { dir, server, .. } = t;
    server.kill().await.unwrap();
    let server = Server::start(dir.path(), &[]).await.expect("the host starts again");
    let api = Api::new(server.base());
    settles_at(&api, "k", 1).await;
    // A firing that ran before the kill is removed once the new host fires
    // it again (answered from its key): on a shared journal, only after the
    // killed host's `timers` lease has expired.
    let gone = || async { timers(&api, "k").await.is_empty() };
    assert!(api.eventually(Duration::from_secs(20), gone).await, "the fired timer is removed");
    assert_eq!(value(&api, "k").await, json!(1), "and ran once");
}

#[tokio::test]
async fn bad_delayed_calls_are_refused_and_set_nothing() {
    let t = start_with("counter", COUNTER, &[]).await;
    let api = &t.api;
    for query in [
        "delay=soon",
        "delay=-5s",
        "delay=20000days",
        "at=tomorrow",
        "at=3000-01-01T00:00:00Z",
        "delay=5s&at=2030-01-01T00:00:00Z",
        "delay=5s&dry_run=true",
        "dry_run=true&at=2030-01-01T00:00:00Z",
    ] {
        let (kind, message) = delayed(api, "b", query).await.expect_error(400);
        assert_eq!(kind, "bad_request", "{query}: {message}");
    }
    let unknown =
        api.send(reqwest::Method::POST, "/v1/services/nope/entities/b/Increase?delay=1s", b"{}".to_vec()).await;
    assert_eq!(unknown.expect_error(404).0, "unknown_service");
    assert!(timers(api, "b").await.is_empty(), "nothing was set");
    assert_eq!(api.metric("wasmstate_timers_pending").await, 0.0);
    assert_eq!(value(api, "b").await, json!(0));
}

/// A firing that fails in a way that may pass (here a time limit) is tried
/// again with backoff, its attempts and error listed, until cancelled; one
/// whose command is refused is counted and removed.
#[tokio::test]
async fn failed_firings_are_retried_or_removed() {
    let t = start_with("m", MISBEHAVING, &["--invocation-timeout", "200ms"]).await;
    let api = &t.api;
    api.deploy("counter", std::path::Path::new(COUNTER)).await;
    let looping = api.send(reqwest::Method::POST, "/v1/services/m/entities/l/Loop?delay=0s", b"{}".to_vec()).await;
    let name = looping.expect(202)["timer"].as_str().unwrap().to_string();
    let listed = || async { api.get("/v1/services/m/entities/l/timers").await.expect(200)[0].clone() };
    let retried = || async { listed().await["attempts"].as_u64().is_some_and(|n| n >= 2) };
    assert!(api.eventually(Duration::from_secs(15), retried).await, "{}", listed().await);
    let timer = listed().await;
    assert!(timer["last_error"].as_str().is_some_and(|e| e.contains("time")), "{timer}");
    assert!(api.metric("wasmstate_timers_retried_total").await >= 2.0);
    let path = format!("/v1/services/m/entities/l/timers/{name}");
    api.send(reqwest::Method::DELETE, &path, Vec::new()).await.expect(200);
    assert_eq!(api.get("/v1/services/m/entities/l/timers").await.expect(200), json!([]));

    // A command the entity does not know fails for good.
    let path = "/v1/services/counter/entities/x/Nope?delay=0s";
    api.send(reqwest::Method::POST, path, b"{}".to_vec()).await.expect(202);
    let failed = || async { api.metric("wasmstate_timers_failed_total").await >= 1.0 };
    assert!(api.eventually(Duration::from_secs(10), failed).await);
    // Counted as it fails; removed with the next batch of fired timers.
    let removed = || async { timers(api, "x").await.is_empty() };
    assert!(api.eventually(Duration::from_secs(5), removed).await, "a timer that failed for good is removed");
}
