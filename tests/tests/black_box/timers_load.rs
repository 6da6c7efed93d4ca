//! Many durable timers at once: 10,000 delayed calls, set from many
//! connections onto 1,000 counters, all due at the same moment, each run
//! exactly once. How fast they fire is `make bench`'s to measure (scenario
//! 12); here only a generous deadline bounds the wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wasmstate_tests::guests::COUNTER;

use crate::start_with;

/// Delayed calls in all.
const TIMERS: u64 = 10_000;
/// Counters they are spread over: each gets `TIMERS / ENTITIES` of them.
const ENTITIES: u64 = 1_000;
/// Requests in flight while setting them.
const CONNECTIONS: usize = 32;
/// How far ahead of the test's start they are all due: setting them on a
/// debug build takes a few seconds.
const LEAD: Duration = Duration::from_secs(4);
/// The longest the test waits for all of them to have fired.
const DEADLINE: Duration = Duration::from_secs(120);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Counter `n`'s id.
fn entity(n: u64) -> String {
    format!("due-{n:04}")
}

#[tokio::test]
async fn ten_thousand_timers_due_together_each_run_once() {
    let t = start_with("counter", COUNTER, &[]).await;
    let api = &t.api;
    let due = now_ms() + LEAD.as_millis() as u64;
    let per_entity = TIMERS / ENTITIES;

    // Timer `n` increases counter `n % ENTITIES` by `n / ENTITIES + 1`, so
    // each counter gets the values 1 to 10 once each: its log tells which
    // timers ran, and how often. The delay is counted so that every one is
    // due at `due`, whenever it is set.
    let next = Arc::new(AtomicU64::new(0));
    let setting = Instant::now();
    let setters: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (api, next) = (api.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= TIMERS {
                        return;
                    }
                    let delay = due.saturating_sub(now_ms());
                    let path =
                        format!("/v1/services/counter/entities/{}/Increase?delay={delay}ms", entity(n % ENTITIES));
                    let body = serde_json::to_vec(&json!({"value": n / ENTITIES + 1})).unwrap();
                    let scheduled = api.send(reqwest::Method::POST, &path, body).await.expect(202);
                    assert!(scheduled["timer"].is_string(), "{scheduled}");
                }
            })
        })
        .collect();
    for setter in setters {
        setter.await.expect("a setter panicked");
    }
    eprintln!("set {TIMERS} timers in {:?}", setting.elapsed());

    // All fired, and none waits any more.
    let done = || async {
        api.metric("wasmstate_timers_fired_total").await >= TIMERS as f64
            && api.metric("wasmstate_timers_pending").await == 0.0
    };
    assert!(
        api.eventually(DEADLINE, done).await,
        "{} of {TIMERS} fired, {} pending, after {DEADLINE:?}",
        api.metric("wasmstate_timers_fired_total").await,
        api.metric("wasmstate_timers_pending").await
    );
    eprintln!("all {TIMERS} fired, none pending, {} ms after they came due", now_ms().saturating_sub(due));
    assert_eq!(api.metric("wasmstate_timers_failed_total").await, 0.0, "none failed for good");

    // Each ran exactly once: every counter's log holds one event of each value.
    let expected: Vec<u64> = (1..=per_entity).collect();
    let total: u64 = expected.iter().sum();
    for n in 0..ENTITIES {
        let id = entity(n);
        let events = api.events("counter", &id, 1).await;
        let mut values: Vec<u64> = events
            .iter()
            .map(|e| e["payload"]["value"].as_u64().unwrap_or_else(|| panic!("an Increased event: {e}")))
            .collect();
        values.sort_unstable();
        assert_eq!(values, expected, "{id}'s timers ran once each");
        let reply = api.invoke("counter", &id, "Get", json!({})).await.expect(200);
        assert_eq!(reply["value"], json!(total), "{id}");
    }
    let listed: Value = api.get(&format!("/v1/services/counter/entities/{}/timers", entity(0))).await.expect(200);
    assert_eq!(listed, json!([]), "a fired timer is gone");
}
