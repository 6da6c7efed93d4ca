//! A journal that fails honestly: a record changed on disk is refused
//! naming it, a damaged file is refused at start with what to do, and a
//! compiled file of another component is never run.

use std::path::Path;

use serde_json::json;
use wasmstate_tests::guests::{COUNTER, MISBEHAVING};
use wasmstate_tests::{Api, JournalKind, Options, Server};

use crate::stored::Stored;
use crate::{Running, start};

/// Stops the server, leaving its data dir.
async fn stopped(t: Running) -> tempfile::TempDir {
    let Running { dir, server, .. } = t;
    assert!(server.stop().await.unwrap().success());
    dir
}

#[tokio::test]
async fn an_event_changed_on_disk_is_refused_naming_it() {
    let t = start(&[]).await;
    t.api.deploy("counter", Path::new(COUNTER)).await;
    for entity in ["c", "d"] {
        t.api.invoke("counter", entity, "Increase", json!({"value": 1})).await.expect(200);
        t.api.invoke("counter", entity, "Increase", json!({"value": 2})).await.expect(200);
    }
    let dir = stopped(t).await;
    Stored::of(dir.path())
        .await
        .edit_event("counter", "c", 2, |row| {
            // `{"type":"Increased","value":2}` becomes `...:3}`.
            let at = row.iter().rposition(|&b| b == b'2').unwrap();
            row[at] = b'3';
        })
        .await;
    let server = Server::start(dir.path(), &[]).await.unwrap();
    let api = Api::new(server.base());
    let (kind, message) = api.get("/v1/services/counter/entities/c/events?from=1").await.expect_error(500);
    assert_eq!(kind, "corrupt_record");
    assert!(message.contains("event 2 of counter/c"), "{message}");
    let (kind, _) = api.invoke("counter", "c", "Get", json!({})).await.expect_error(500);
    assert_eq!(kind, "corrupt_record", "the entity is not folded from it");
    assert_eq!(api.position("counter", "c").await.0, 2, "nothing was written");
    assert_eq!(api.invoke("counter", "d", "Get", json!({})).await.expect(200), json!({"value": 3}));
}

/// About the redb file itself, so on redb whatever the suite runs on
/// (PostgreSQL keeps its own files whole).
#[tokio::test]
async fn a_damaged_journal_is_refused_at_start_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let redb = Options { journal: Some(JournalKind::Redb), ..Options::default() };
    let server = Server::start_with(dir.path(), &[], redb.clone()).await.unwrap();
    let t = Running { api: Api::new(server.base()), server, dir };
    t.api.deploy("counter", Path::new(COUNTER)).await;
    t.api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    let dir = stopped(t).await;
    let path = dir.path().join("journal.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in &mut bytes[4096..] {
        *byte ^= 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    let options = Options { capture_stderr: true, ..redb };
    let error = Server::start_with(dir.path(), &[], options).await.err().expect("the start is refused");
    let said = format!("{error:#}");
    assert!(said.contains("is damaged") && said.contains("backup"), "{said}");
}

#[tokio::test]
async fn a_compiled_file_of_another_component_is_never_run() {
    let t = start(&[]).await;
    let counter = t.api.deploy("a", Path::new(COUNTER)).await;
    let misbehaving = t.api.deploy("b", Path::new(MISBEHAVING)).await;
    let dir = stopped(t).await;
    let compiled = dir.path().join("compiled");
    let file_of = |digest: &str| {
        std::fs::read_dir(&compiled)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.file_name().unwrap().to_string_lossy().starts_with(digest))
            .unwrap_or_else(|| panic!("no compiled file for {digest}"))
    };
    let (a, b) = (file_of(counter["digest"].as_str().unwrap()), file_of(misbehaving["digest"].as_str().unwrap()));
    std::fs::copy(&a, &b).unwrap();
    let server = Server::start(dir.path(), &[]).await.unwrap();
    let api = Api::new(server.base());
    let reply = api.invoke("b", "e", "Echo", json!({"value": 1})).await.expect(200);
    assert_eq!(reply["value"], 1, "b runs its own code, recompiled");
    assert_eq!(api.invoke("a", "e", "Increase", json!({"value": 1})).await.expect(200), json!({"value": 1}));
}
