//! Unit tests of the journal on a temporary redb file.

use std::sync::Arc;

use super::*;

fn journal() -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.redb"), Arc::new(Metrics::default())).unwrap();
    (dir, journal)
}

fn append(service: &str, entity: &str, expected: u64, events: &[&str]) -> Append {
    Append {
        service: service.into(),
        entity: entity.into(),
        expected_last_seq: expected,
        events: events.iter().map(|e| e.as_bytes().to_vec()).collect(),
        snapshot: None,
    }
}

fn payloads(events: &[StoredEvent]) -> Vec<(u64, String)> {
    events.iter().map(|e| (e.seq, String::from_utf8(e.payload.clone()).unwrap())).collect()
}

#[tokio::test]
async fn appends_get_consecutive_seqs() {
    let (_dir, journal) = journal();
    journal.append(append("cart", "a", 0, &["x", "y"])).await.unwrap();
    journal.append(append("cart", "a", 2, &["z"])).await.unwrap();
    let events = journal.events("cart", "a", 1, usize::MAX).unwrap();
    assert_eq!(payloads(&events), [(1, "x".into()), (2, "y".into()), (3, "z".into())]);
    assert_eq!(journal.position("cart", "a").unwrap(), EntityPosition { last_seq: 3, snapshot_seq: 0 });
    assert_eq!(payloads(&journal.events("cart", "a", 3, 10).unwrap()), [(3, "z".into())]);
    assert_eq!(journal.events("cart", "a", 2, 1).unwrap().len(), 1);
}

#[tokio::test]
async fn a_stale_append_is_refused_and_writes_nothing() {
    let (_dir, journal) = journal();
    journal.append(append("cart", "a", 0, &["x"])).await.unwrap();
    let err = journal.append(append("cart", "a", 0, &["again"])).await.unwrap_err();
    assert!(matches!(err, JournalError::Conflict { expected: 0, found: 1, .. }), "{err}");
    assert_eq!(payloads(&journal.events("cart", "a", 1, 10).unwrap()), [(1, "x".into())]);
}

#[tokio::test]
async fn entities_and_services_never_share_keys() {
    let (_dir, journal) = journal();
    // Pairs whose concatenations collide must stay apart.
    journal.append(append("ab", "c", 0, &["ab/c"])).await.unwrap();
    journal.append(append("a", "bc", 0, &["a/bc"])).await.unwrap();
    journal.append(append("a", "b", 0, &["a/b"])).await.unwrap();
    assert_eq!(payloads(&journal.events("a", "bc", 1, 10).unwrap()), [(1, "a/bc".into())]);
    assert_eq!(payloads(&journal.events("a", "b", 1, 10).unwrap()), [(1, "a/b".into())]);
    assert_eq!(payloads(&journal.events("ab", "c", 1, 10).unwrap()), [(1, "ab/c".into())]);
    assert!(journal.events("a", "", 1, 10).unwrap().is_empty());
}

#[tokio::test]
async fn load_starts_from_the_latest_snapshot() {
    let (_dir, journal) = journal();
    let mut first = append("c", "e", 0, &["1", "2", "3"]);
    first.snapshot = Some(StoredSnapshot { seq: 3, state: b"s3".to_vec() });
    journal.append(first).await.unwrap();
    journal.append(append("c", "e", 3, &["4"])).await.unwrap();
    let history = journal.load_entity("c", "e").unwrap();
    assert_eq!(history.snapshot, Some(StoredSnapshot { seq: 3, state: b"s3".to_vec() }));
    assert_eq!(payloads(&history.events), [(4, "4".into())]);
    assert_eq!(history.last_seq, 4);
    assert_eq!(journal.position("c", "e").unwrap(), EntityPosition { last_seq: 4, snapshot_seq: 3 });

    let empty = journal.load_entity("c", "unknown").unwrap();
    assert!(empty.snapshot.is_none() && empty.events.is_empty() && empty.last_seq == 0);
}

#[tokio::test]
async fn concurrent_appends_to_many_entities_all_commit() {
    let (_dir, journal) = journal();
    let journal = Arc::new(journal);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let journal = journal.clone();
            tokio::spawn(async move {
                for n in 0..5 {
                    journal.append(append("svc", &format!("e{i}"), n, &["ev"])).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for i in 0..64 {
        assert_eq!(journal.position("svc", &format!("e{i}")).unwrap().last_seq, 5);
    }
}

#[test]
fn versions_round_trip_and_never_overwrite() {
    let (_dir, journal) = journal();
    let meta = |version| VersionMeta {
        service: "cart".into(),
        version,
        digest: "ab".into(),
        kind: "event-sourced".into(),
        size: 3,
        deployed_at_ms: 1,
    };
    journal.save_version(&meta(1), b"one").unwrap();
    journal.save_version(&meta(2), b"two").unwrap();
    assert!(journal.save_version(&meta(2), b"again").is_err());
    assert_eq!(journal.versions().unwrap(), [meta(1), meta(2)]);
    assert_eq!(journal.component("cart", 2).unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(journal.component("cart", 3).unwrap(), None);
}

/// A storage backend whose writes and syncs fail while `failing` is set.
#[derive(Debug, Default)]
struct FaultyBackend {
    inner: redb::backends::InMemoryBackend,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl FaultyBackend {
    fn check(&self) -> std::io::Result<()> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::other("injected disk failure"))
        } else {
            Ok(())
        }
    }
}

impl redb::StorageBackend for FaultyBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
}

#[tokio::test]
async fn a_failed_disk_write_fails_the_whole_batch_and_acknowledges_nothing() {
    let backend = FaultyBackend::default();
    let failing = backend.failing.clone();
    let db = redb::Builder::new().create_with_backend(backend).unwrap();
    let journal = Arc::new(Journal::from_database(db, Arc::new(Metrics::default())).unwrap());
    journal.append(append("c", "e", 0, &["kept"])).await.unwrap();

    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let journal = journal.clone();
            tokio::spawn(async move { journal.append(append("c", &format!("other{i}"), 0, &["lost"])).await })
        })
        .collect();
    let first = journal.append(append("c", "e", 1, &["lost"])).await;
    assert!(first.is_err(), "an append whose commit failed must not be acknowledged");
    for attempt in attempts {
        assert!(attempt.await.unwrap().is_err());
    }
    failing.store(false, std::sync::atomic::Ordering::SeqCst);

    // What was acknowledged is still there; nothing of the failed batch is.
    assert_eq!(payloads(&journal.events("c", "e", 1, 10).unwrap()), [(1, "kept".into())]);
    for i in 0..8 {
        assert!(journal.events("c", &format!("other{i}"), 1, 10).unwrap().is_empty());
    }
    // redb refuses writes after an I/O error until reopened: the journal
    // says so (health checks answer 503) and keeps refusing, never half-writing.
    assert!(!journal.is_healthy());
    assert!(journal.append(append("c", "e", 1, &["after"])).await.is_err());
    assert_eq!(journal.events("c", "e", 1, 10).unwrap().len(), 1);
}
