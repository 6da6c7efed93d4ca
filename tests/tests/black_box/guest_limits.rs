//! Guests that trap, loop or eat memory fail the command, persist nothing,
//! and leave the entity usable.

use std::time::{Duration, Instant};

use serde_json::json;
use wasmstate_tests::guests::{COUNTER, MISBEHAVING};

use crate::start_with;

const SVC: &str = "misbehaving";

#[tokio::test]
async fn a_trap_answers_500_persists_nothing_and_the_entity_goes_on() {
    let t = start_with(SVC, MISBEHAVING, &[]).await;
    let api = &t.api;
    api.invoke(SVC, "e", "Echo", json!({"value": "first"})).await.expect(200);

    let (kind, message) = api.invoke(SVC, "e", "Panic", json!({})).await.expect_error(500);
    assert_eq!(kind, "guest_trap");
    assert!(message.contains("trapped"), "{message}");
    let (kind, _) = api.invoke(SVC, "e", "EmitThenPanic", json!({})).await.expect_error(500);
    assert_eq!(kind, "guest_trap");
    assert_eq!(api.position(SVC, "e").await, (1, 0), "a trapped command persists nothing");

    let (kind, message) = api.invoke(SVC, "e", "Fail", json!({"message": "no way"})).await.expect_error(400);
    assert_eq!((kind.as_str(), message.as_str()), ("command_failed", "no way"));
    assert_eq!(api.position(SVC, "e").await, (1, 0), "a failed command persists nothing");

    api.invoke(SVC, "e", "Echo", json!({"value": "second"})).await.expect(200);
    let events = api.events(SVC, "e", 1).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["seq"], 2);
}

/// A new instance never sees what an earlier one left in its memory, also
/// when it reuses the earlier one's slot of the pool, whose memory the host
/// resets partly by writing and partly by returning pages to the system.
#[tokio::test]
async fn a_new_instance_never_sees_an_earlier_ones_memory() {
    let t = start_with(SVC, MISBEHAVING, &[]).await;
    let api = &t.api;
    let clean = json!({"found": null, "dirtyChunks": 0});
    assert_eq!(api.invoke(SVC, "r", "Residue", json!({"mark": "first"})).await.expect(200), clean);
    let reply = api.invoke(SVC, "r", "Residue", json!({"mark": "second"})).await.expect(200);
    assert_eq!(reply, json!({"found": "first", "dirtyChunks": 64}), "the idle instance is reused, so residue shows");
    // A trap drops the instance; the next call makes a new one. Dropped
    // instances' slots are reused once the pool has reset a batch of them.
    for round in 0..100 {
        let (kind, _) = api.invoke(SVC, "r", "Panic", json!({})).await.expect_error(500);
        assert_eq!(kind, "guest_trap");
        let reply = api.invoke(SVC, "r", "Residue", json!({"mark": format!("round {round}")})).await.expect(200);
        assert_eq!(reply, clean, "round {round}");
    }
}

/// A guest may write to stdout and stderr as much as it likes: output
/// never fills up, and a trap's reply still carries the panic message.
#[tokio::test]
async fn a_guest_that_logs_keeps_working_and_its_panic_message_is_reported() {
    let t = start_with(SVC, MISBEHAVING, &[]).await;
    let api = &t.api;
    for _ in 0..20 {
        let reply = api.invoke(SVC, "chatty", "Log", json!({"bytes": 1000})).await.expect(200);
        assert_eq!(reply["logged"], 1000);
    }
    api.invoke(SVC, "chatty", "Log", json!({"bytes": 100_000})).await.expect(200);
    let (kind, message) = api.invoke(SVC, "chatty", "Panic", json!({})).await.expect_error(500);
    assert_eq!(kind, "guest_trap");
    assert!(message.contains("the Panic command panics"), "{message}");
    assert!(!message.contains("lll"), "earlier calls' output is not part of the reply: {message}");
    assert_eq!(api.position(SVC, "chatty").await, (0, 0), "Log emits nothing");
}

/// More looping guests than the server has threads: guests yield at every
/// epoch tick, so they share the threads with everything else.
const LOOPS: usize = 6;

/// The looping guests' time limit. Long enough that "answered before the
/// loops were stopped" stays true with margin on a loaded two-core machine
/// (where the journal, PostgreSQL included, shares the cores with the loops),
/// short enough to keep the test quick.
const LOOP_LIMIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_guest_that_loops_is_stopped_and_others_keep_being_served() {
    let t = start_with(SVC, MISBEHAVING, &["--invocation-timeout", "5s"]).await;
    t.api.deploy("counter", std::path::Path::new(COUNTER)).await;
    let looping: Vec<_> = (0..LOOPS)
        .map(|i| {
            let api = t.api.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let reply = api.invoke(SVC, &format!("spin-{i}"), "Loop", json!({})).await;
                (reply, started.elapsed())
            })
        })
        .collect();
    // Meanwhile another entity answers promptly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    t.api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    let waited = started.elapsed();
    assert!(waited < LOOP_LIMIT / 2, "other entities must not wait for the loops: {waited:?}");

    for (i, handle) in looping.into_iter().enumerate() {
        let (reply, elapsed) = handle.await.unwrap();
        let (kind, _) = reply.expect_error(504);
        assert_eq!(kind, "timeout");
        assert!(elapsed >= LOOP_LIMIT - Duration::from_millis(100) && elapsed < LOOP_LIMIT * 4, "{elapsed:?}");
        assert_eq!(t.api.position(SVC, &format!("spin-{i}")).await, (0, 0));
    }
    t.api.invoke(SVC, "spin-0", "Echo", json!({"value": "alive"})).await.expect(200);
}

/// A guest that waits in the host (a sleep runs no Wasm, so the epoch
/// cannot interrupt it) is stopped at its time limit all the same, even if
/// it would wait forever.
#[tokio::test]
async fn a_guest_that_sleeps_past_its_time_limit_is_stopped() {
    let t = start_with(SVC, MISBEHAVING, &["--invocation-timeout", "1s"]).await;
    let api = &t.api;
    api.invoke(SVC, "s", "Sleep", json!({"millis": 10})).await.expect(200);
    for millis in [6_000, u64::MAX] {
        let started = Instant::now();
        let (kind, _) = api.invoke(SVC, "s", "Sleep", json!({ "millis": millis })).await.expect_error(504);
        let elapsed = started.elapsed();
        assert_eq!(kind, "timeout");
        assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(4_000), "{elapsed:?}");
    }
    assert_eq!(api.position(SVC, "s").await, (1, 0), "a stopped command persists nothing");
    api.invoke(SVC, "s", "Echo", json!({"value": "awake"})).await.expect(200);
}

#[tokio::test]
async fn a_guest_that_eats_memory_fails_the_command() {
    let t = start_with(SVC, MISBEHAVING, &["--max-guest-memory", "16MiB"]).await;
    t.api.invoke(SVC, "m", "Grow", json!({"mib": 4})).await.expect(200);
    let before = t.server.rss_kib();
    for _ in 0..10 {
        let (kind, message) = t.api.invoke(SVC, "m", "Grow", json!({"mib": 64})).await.expect_error(500);
        assert_eq!(kind, "memory_limit");
        assert!(message.contains("memory limit"), "{message}");
    }
    let after = t.server.rss_kib();
    assert!(after < before + 48 * 1024, "the host's memory grew from {before} KiB to {after} KiB");
    assert_eq!(t.api.position(SVC, "m").await, (0, 0));
    t.api.invoke(SVC, "m", "Grow", json!({"mib": 4})).await.expect(200);
}

#[tokio::test]
async fn the_sandbox_has_no_filesystem() {
    let t = start_with(SVC, MISBEHAVING, &[]).await;
    let reply = t.api.invoke(SVC, "fs", "ReadFile", json!({"path": "/etc/passwd"})).await.expect(200);
    assert!(reply.get("error").is_some(), "the guest must not read host files: {reply}");
}

#[tokio::test]
async fn too_much_output_fails_the_command_not_the_host() {
    let t = start_with(SVC, MISBEHAVING, &["--max-events-per-command", "10", "--max-reply-bytes", "1KiB"]).await;
    let (kind, message) = t.api.invoke(SVC, "o", "Flood", json!({"count": 11, "bytes": 32})).await.expect_error(500);
    assert_eq!(kind, "output_limit");
    assert!(message.contains("11 events"), "{message}");
    let big = "x".repeat(2048);
    let (kind, _) = t.api.invoke(SVC, "o", "Echo", json!({"value": big})).await.expect_error(500);
    assert_eq!(kind, "output_limit");
    assert_eq!(t.api.position(SVC, "o").await, (0, 0));
    t.api.invoke(SVC, "o", "Flood", json!({"count": 10, "bytes": 32})).await.expect(200);
    assert_eq!(t.api.position(SVC, "o").await, (10, 0));
}

/// A side effect (or forward) no request could address fails its command
/// before anything is committed: an asynchronous one would otherwise be
/// delivered to, and journaled under, an id no route can read.
#[tokio::test]
async fn a_side_effect_to_an_invalid_target_fails_the_command() {
    let t = start_with(SVC, MISBEHAVING, &[]).await;
    let long = "e".repeat(10_000);
    for synchronous in [false, true] {
        for (service, entity) in [(SVC, ""), (SVC, long.as_str()), ("no such/service", "e")] {
            let ask = json!({"service": service, "entity": entity, "synchronous": synchronous});
            let (kind, message) = t.api.invoke(SVC, "t", "Effect", ask).await.expect_error(500);
            assert_eq!(kind, "invalid_target", "{message}");
        }
    }
    assert_eq!(t.api.position(SVC, "t").await, (0, 0), "nothing was committed");
    let ask = json!({"service": SVC, "entity": "other", "synchronous": false});
    t.api.invoke(SVC, "t", "Effect", ask).await.expect(200);
    assert_eq!(t.api.position(SVC, "t").await, (1, 0));
}
