//! A disk that fails under the journal: the host runs in-process on a redb
//! storage backend that fails on demand (writes, a full disk, reads, a
//! panic). The command fails, nothing is acknowledged or persisted, the
//! host stays up and keeps answering, reads go on where they can,
//! `/healthz` says the journal failed — and once the disk works again, the
//! host recovers by itself, without a restart.

use std::sync::atomic::Ordering;

use serde_json::json;
use wasmstate::{FailingStorage, ServeConfig};
use wasmstate_tests::Api;
use wasmstate_tests::guests::COUNTER;

/// Serves the host in process on `disk`, with its data dir (for the
/// compiled-code cache) and a client.
async fn serve(disk: FailingStorage) -> (tempfile::TempDir, Api) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig::from_args(["--data-dir".as_ref(), dir.path().as_os_str()]).unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let open = move || redb::Builder::new().create_with_backend(disk.clone());
    let state = wasmstate::open_with_storage(&config, open, shutdown).await.unwrap().state;
    (dir, crate::in_process::serve(state, stop).await)
}

#[tokio::test]
async fn a_failing_disk_fails_the_command_and_the_host_stays_up() {
    let disk = FailingStorage::default();
    let failing = disk.switch();
    let (_dir, api) = serve(disk).await;

    api.deploy("counter", std::path::Path::new(COUNTER)).await;
    api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);

    failing.store(true, Ordering::SeqCst);
    let (kind, message) = api.invoke("counter", "c", "Increase", json!({"value": 10})).await.expect_error(500);
    assert_eq!(kind, "internal");
    assert!(!message.contains("injected"), "internals stay in the log: {message}");
    // While the journal is reopened, commands answer 503: retry.
    let reply = api.invoke("counter", "other", "Increase", json!({"value": 1})).await;
    let kind = reply.body["error"]["kind"].clone();
    assert!(kind == "internal" || kind == "journal_unavailable", "{} {}", reply.status, reply.body);
    // Still up, and saying what is wrong.
    let (kind, _) = api.get("/healthz").await.expect_error(503);
    assert_eq!(kind, "journal_failed");
    assert_eq!(api.get("/v1/services").await.expect(200).as_array().unwrap().len(), 1);
    failing.store(false, Ordering::SeqCst);

    // The disk works again: the host recovers by itself, and only what was
    // acknowledged is there.
    recovers(&api).await;
    assert_eq!(api.events("counter", "c", 1).await.len(), 1);
    assert_eq!(api.position("counter", "other").await, (0, 0));
    api.invoke("counter", "c", "Increase", json!({"value": 100})).await.expect(200);
    assert_eq!(api.events("counter", "c", 1).await.len(), 2);
}

/// Waits until `/healthz` says the journal takes writes again.
async fn recovers(api: &Api) {
    let healthy =
        api.eventually(std::time::Duration::from_secs(10), || async { api.get("/healthz").await.status == 200 }).await;
    assert!(healthy, "the journal recovered without a restart");
}

#[tokio::test]
async fn a_full_disk_fails_writes_and_the_host_recovers_when_space_returns() {
    let disk = FailingStorage::default();
    let full = disk.disk_full();
    let (_dir, api) = serve(disk).await;
    api.deploy("counter", std::path::Path::new(COUNTER)).await;
    api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);

    full.store(true, Ordering::SeqCst);
    api.invoke("counter", "c", "Increase", json!({"value": 10})).await.expect_error(500);
    let (kind, _) = api.get("/healthz").await.expect_error(503);
    assert_eq!(kind, "journal_failed");
    // A read answers what was committed, or 503 while the journal cannot
    // be reopened (redb must write to reopen): never anything else.
    for _ in 0..5 {
        let reply = api.get("/v1/services/counter/entities/c/events").await;
        match reply.status.as_u16() {
            200 => assert_eq!(reply.body.as_array().unwrap().len(), 1),
            503 => assert_eq!(reply.retry_after.as_deref(), Some("1"), "{}", reply.body),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    let refused = api.invoke("counter", "d", "Increase", json!({"value": 1})).await;
    assert!(refused.status.is_server_error(), "{}", refused.body);

    full.store(false, Ordering::SeqCst);
    recovers(&api).await;
    assert_eq!(api.position("counter", "d").await, (0, 0), "nothing of the refused commands");
    api.invoke("counter", "c", "Increase", json!({"value": 2})).await.expect(200);
    assert_eq!(api.invoke("counter", "c", "Get", json!({})).await.expect(200), json!({"value": 3}));
}

#[tokio::test]
async fn failing_reads_answer_errors_never_wrong_data() {
    let disk = FailingStorage::default();
    let failing_reads = disk.read_switch();
    let (_dir, api) = serve(disk).await;
    api.deploy("counter", std::path::Path::new(COUNTER)).await;
    api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);

    failing_reads.store(true, Ordering::SeqCst);
    // The journal's page cache may still hold the pages: either the right
    // answer, or an error — never a wrong one.
    let reply = api.get("/v1/services/counter/entities/c/events").await;
    assert!(reply.status == 200 && reply.body.as_array().unwrap().len() == 1 || reply.status == 500, "{}", reply.body);
    api.get("/metrics").await.expect(200);
    failing_reads.store(false, Ordering::SeqCst);
    recovers(&api).await;
    assert_eq!(api.events("counter", "c", 1).await.len(), 1);
    api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
}

/// The storage engine panics inside the journal's writer, as redb does on
/// some damaged files: the command fails, nothing is acknowledged,
/// `/healthz` says the journal failed, the failure is counted, and the
/// host keeps answering.
#[tokio::test]
async fn a_storage_panic_marks_the_journal_failed_and_the_host_stays_up() {
    let disk = FailingStorage::default();
    let panicking = disk.panic_switch();
    let (_dir, api) = serve(disk).await;
    api.deploy("counter", std::path::Path::new(COUNTER)).await;
    api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    api.get("/healthz").await.expect(200);

    panicking.store(true, Ordering::SeqCst);
    for entity in ["c", "new"] {
        let reply = api.invoke("counter", entity, "Increase", json!({"value": 10})).await;
        assert!(reply.status.is_server_error(), "{entity}: {} {}", reply.status, reply.body);
    }
    let (kind, _) = api.get("/healthz").await.expect_error(503);
    assert_eq!(kind, "journal_failed");
    assert!(api.metric("wasmstate_journal_commit_failures_total").await >= 1.0);
    panicking.store(false, Ordering::SeqCst);
    // Still answering, and what was acknowledged is what is there.
    api.get("/metrics").await.expect(200);
    recovers(&api).await;
    assert_eq!(api.events("counter", "c", 1).await.len(), 1);
    api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
}
