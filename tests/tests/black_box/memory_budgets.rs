//! Memory budgets across guests and entities, with small budgets so the
//! attacks run on any machine: guests growing at once get a 503 instead of
//! the OOM killer, the state entities hold is bounded in bytes, and an
//! entity never outgrows what a guest can load.

use std::time::Duration;

use serde_json::json;
use wasmstate_tests::guests::{MISBEHAVING, USER_PROFILE};

use crate::start_with;

#[tokio::test]
async fn guests_growing_at_once_stay_within_the_host_memory_budget() {
    let t = start_with("m", MISBEHAVING, &["--max-total-guest-memory", "96MiB", "--max-guest-memory", "64MiB"]).await;
    let before = t.server.rss_kib();
    let growers: Vec<_> = (0..8)
        .map(|i| {
            let api = t.api.clone();
            tokio::spawn(
                async move { api.invoke("m", &format!("g{i}"), "Grow", json!({"mib": 30, "millis": 1500})).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let during = t.server.rss_kib();
    let held = t.api.metric("wasmstate_guest_memory_bytes").await;
    let (mut grown, mut refused) = (0, 0);
    for grower in growers {
        let reply = grower.await.unwrap();
        match reply.status.as_u16() {
            200 => grown += 1,
            503 => {
                assert_eq!(reply.body["error"]["kind"], "overloaded", "{}", reply.body);
                assert_eq!(reply.retry_after.as_deref(), Some("1"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert!(grown >= 1 && refused >= 1, "{grown} grew, {refused} were refused");
    assert!(held <= (96 << 20) as f64, "the guests held {held} bytes");
    assert!(during < before + 160 * 1024, "the host grew from {before} KiB to {during} KiB");
    // Once the others are done, each grows in turn.
    for i in 0..3 {
        t.api.invoke("m", &format!("g{i}"), "Grow", json!({"mib": 30})).await.expect(200);
    }
    t.api.get("/healthz").await.expect(200);
}

#[tokio::test]
async fn the_state_entities_hold_is_bounded_in_bytes() {
    let args = [
        "--max-cached-state-bytes",
        "16MiB",
        "--max-state-bytes",
        "4MiB",
        "--max-body-bytes",
        "16MiB",
        "--max-reply-bytes",
        "16MiB",
    ];
    let t = start_with("profiles", USER_PROFILE, &args).await;
    let api = &t.api;
    let big = "n".repeat(2 << 20);
    for i in 0..40 {
        api.invoke("profiles", &format!("p{i}"), "Update", json!({"name": big, "email": "a@b"})).await.expect(200);
    }
    let bounded = api
        .eventually(Duration::from_secs(5), || async {
            api.metric("wasmstate_cached_state_bytes").await <= (16 << 20) as f64
        })
        .await;
    assert!(bounded, "the entities hold {} bytes of state", api.metric("wasmstate_cached_state_bytes").await);
    assert!(api.metric("wasmstate_active_entities").await < 20.0);
    // The least recently used went first: the last one written is still
    // warm, and what was passivated comes back from the journal.
    let cold_loads = api.metric("wasmstate_entity_cold_loads_total").await;
    for (entity, loads) in [("p39", 0.0), ("p0", 1.0)] {
        assert_eq!(
            api.invoke("profiles", entity, "Get", json!({})).await.expect(200)["name"].as_str().unwrap().len(),
            2 << 20
        );
        assert_eq!(api.metric("wasmstate_entity_cold_loads_total").await, cold_loads + loads, "{entity}");
    }

    // A state past --max-state-bytes fails its command and changes nothing.
    let huge = "n".repeat(5 << 20);
    let (kind, message) =
        api.invoke("profiles", "p1", "Update", json!({"name": huge, "email": "a@b"})).await.expect_error(500);
    assert_eq!(kind, "output_limit");
    assert!(message.contains("state"), "{message}");
    assert_eq!(
        api.invoke("profiles", "p1", "Get", json!({})).await.expect(200)["name"].as_str().unwrap().len(),
        2 << 20
    );
}

#[tokio::test]
async fn an_entity_never_outgrows_what_a_guest_can_load() {
    let args = ["--max-guest-memory", "24MiB", "--snapshot-every", "1000000"];
    let t = start_with("m", MISBEHAVING, &args).await;
    // 36 MiB of events, more than a guest may hold, 3 MiB a command.
    for _ in 0..12 {
        t.api.invoke("m", "big", "Flood", json!({"count": 3, "bytes": 1 << 20})).await.expect(200);
    }
    // More than 4 MiB of events in one command is refused.
    let (kind, _) = t.api.invoke("m", "big", "Flood", json!({"count": 5, "bytes": 1 << 20})).await.expect_error(500);
    assert_eq!(kind, "output_limit");
    let (last_seq, snapshot_seq) = t.api.position("m", "big").await;
    assert_eq!(last_seq, 36);
    assert!(snapshot_seq > 0, "a snapshot was taken by size");
    // Cold, it loads from its latest snapshot.
    let t = t.restart().await;
    assert_eq!(t.api.invoke("m", "big", "Get", json!({})).await.expect(200), json!({"applied": 36}));
    // The events come in pages of at most 4 MiB (and one event).
    let page = t.api.events("m", "big", 1).await;
    assert!(!page.is_empty() && page.len() <= 5, "{} events in one page", page.len());
}

/// However the snapshot thresholds are set, a commit never leaves more for
/// a cold load than a guest can take in: past half its memory, the host
/// takes a snapshot.
#[tokio::test]
async fn no_commit_makes_its_entity_unloadable_whatever_the_snapshot_thresholds() {
    let args = ["--max-guest-memory", "24MiB", "--snapshot-every", "1000000", "--snapshot-every-bytes", "1GiB"];
    let t = start_with("m", MISBEHAVING, &args).await;
    assert_eq!(t.api.position("m", "big").await, (0, 0));
    // 36 MiB of events, three times what a cold load may hand a guest.
    for _ in 0..12 {
        t.api.invoke("m", "big", "Flood", json!({"count": 3, "bytes": 1 << 20})).await.expect(200);
    }
    let (last_seq, snapshot_seq) = t.api.position("m", "big").await;
    assert_eq!(last_seq, 36);
    assert!(snapshot_seq >= 12, "snapshots were taken before 12 MiB waited for a cold load: {snapshot_seq}");
    let t = t.restart().await;
    assert_eq!(t.api.invoke("m", "big", "Get", json!({})).await.expect(200), json!({"applied": 36}));
}
