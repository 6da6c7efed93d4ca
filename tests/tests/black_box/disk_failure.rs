//! A disk that fails under the journal: the host runs in-process on a redb
//! storage backend whose writes fail on demand. The command fails, nothing
//! is acknowledged or persisted, and the host stays up: it keeps answering,
//! reads still work, and `/healthz` says a restart is needed.

use std::sync::atomic::Ordering;

use serde_json::json;
use wasmstate::{FailingStorage, ServeConfig};
use wasmstate_tests::Api;
use wasmstate_tests::guests::COUNTER;

/// Serves the host in process on `disk`, with its data dir (for the
/// compiled-code cache) and a client.
async fn serve(disk: FailingStorage) -> (tempfile::TempDir, Api) {
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Builder::new().create_with_backend(disk).unwrap();
    let config = ServeConfig::from_args(["--data-dir".as_ref(), dir.path().as_os_str()]).unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let state = wasmstate::open_with_database(&config, db, shutdown).await.unwrap().state;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _stop = stop;
        axum::serve(listener, wasmstate::app(state)).await
    });
    (dir, Api::new(&base))
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
    let (kind, _) = api.invoke("counter", "other", "Increase", json!({"value": 1})).await.expect_error(500);
    assert_eq!(kind, "internal");
    failing.store(false, Ordering::SeqCst);

    // Still up: reads answer, and only what was acknowledged is there.
    let (kind, _) = api.get("/healthz").await.expect_error(503);
    assert_eq!(kind, "journal_failed");
    assert_eq!(api.events("counter", "c", 1).await.len(), 1);
    assert_eq!(api.position("counter", "other").await, (0, 0));
    assert_eq!(api.get("/v1/services").await.expect(200).as_array().unwrap().len(), 1);
    // redb refuses writes until it is reopened, so commands keep failing
    // cleanly rather than half-writing.
    api.invoke("counter", "c", "Increase", json!({"value": 100})).await.expect_error(500);
    assert_eq!(api.events("counter", "c", 1).await.len(), 1);
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
    assert_eq!(api.events("counter", "c", 1).await.len(), 1);
}
