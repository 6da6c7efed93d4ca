//! Bounded queues: a flood answers 503 with Retry-After, memory stays
//! bounded, and the host recovers.

use std::time::Duration;

use serde_json::json;
use wasmstate_tests::guests::MISBEHAVING;

use crate::start_with;

const SVC: &str = "misbehaving";

#[tokio::test]
async fn a_full_mailbox_answers_503_and_the_entity_recovers() {
    let t = start_with(SVC, MISBEHAVING, &["--mailbox-capacity", "4"]).await;
    // Keep the entity busy, then flood it.
    let api = t.api.clone();
    let busy = tokio::spawn(async move { api.invoke(SVC, "e", "Spin", json!({"millis": 1500})).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flood: Vec<_> = (0..40)
        .map(|i| {
            let api = t.api.clone();
            tokio::spawn(async move { api.invoke(SVC, "e", "Echo", json!({"value": i})).await })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for reply in flood {
        let reply = reply.await.unwrap();
        match reply.status.as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(reply.retry_after.as_deref(), Some("1"));
                assert_eq!(reply.body["error"]["kind"], "overloaded");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    busy.await.unwrap().expect(200);
    assert!(ok <= 4, "at most the mailbox's capacity is queued, got {ok}");
    assert!(refused >= 36, "the rest is refused, got {refused}");
    // Only what was accepted was persisted, and the entity goes on.
    assert_eq!(t.api.position(SVC, "e").await.0, 1 + ok);
    t.api.invoke(SVC, "e", "Echo", json!({"value": "after"})).await.expect(200);
}

#[tokio::test]
async fn the_global_in_flight_limit_answers_503() {
    let t = start_with(SVC, MISBEHAVING, &["--max-in-flight", "2"]).await;
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let api = t.api.clone();
            tokio::spawn(async move { api.invoke(SVC, &format!("busy{i}"), "Spin", json!({"millis": 1000})).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = t.api.invoke(SVC, "other", "Echo", json!({"value": 1})).await;
    assert_eq!(reply.retry_after.as_deref(), Some("1"));
    let (kind, _) = reply.expect_error(503);
    assert_eq!(kind, "overloaded");
    for b in busy {
        b.await.unwrap().expect(200);
    }
    t.api.invoke(SVC, "other", "Echo", json!({"value": 2})).await.expect(200);
    assert_eq!(t.api.position(SVC, "other").await, (1, 0));
}

#[tokio::test]
async fn flooding_one_entity_keeps_host_memory_bounded() {
    let t = start_with(SVC, MISBEHAVING, &["--mailbox-capacity", "16"]).await;
    t.api.invoke(SVC, "warm", "Echo", json!({"value": 0})).await.expect(200);
    let before = t.server.rss_kib();
    // 64 clients hammer one slow entity for a while: most are refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let api = t.api.clone();
            tokio::spawn(async move {
                let mut statuses = (0u32, 0u32);
                while tokio::time::Instant::now() < deadline {
                    let reply = api.invoke(SVC, "hot", "Spin", json!({"millis": 5})).await;
                    match reply.status.as_u16() {
                        200 => statuses.0 += 1,
                        503 => statuses.1 += 1,
                        other => panic!("unexpected {other}"),
                    }
                }
                statuses
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for c in clients {
        let (o, r) = c.await.unwrap();
        ok += o;
        refused += r;
    }
    let after = t.server.rss_kib();
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(after < before + 64 * 1024, "RSS grew from {before} KiB to {after} KiB");
    // It recovers at once.
    t.api.invoke(SVC, "hot", "Echo", json!({"value": "after"})).await.expect(200);
    assert_eq!(t.api.position(SVC, "hot").await.0, u64::from(ok) + 1);
}
