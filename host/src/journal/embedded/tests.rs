//! Unit tests of the journal on a temporary redb file.

use std::sync::Arc;

use super::*;
use crate::domain::ServiceKind;
use crate::domain::{AsyncEffect, Call, Fingerprint, FollowUp, IdempotencyKey, Reply};

fn journal() -> (tempfile::TempDir, RedbJournal) {
    let dir = tempfile::tempdir().unwrap();
    let journal = RedbJournal::open(&dir.path().join("j.redb"), Arc::new(Metrics::default())).unwrap();
    (dir, journal)
}

fn append(service: &str, entity: &str, expected: u64, events: &[&str]) -> Commit {
    Commit::events(service, entity, expected, events.iter().map(|e| e.as_bytes().to_vec()).collect())
}

fn payloads(events: &[Event]) -> Vec<(u64, String)> {
    events.iter().map(|e| (e.seq, String::from_utf8(e.payload.clone()).unwrap())).collect()
}

#[tokio::test]
async fn appends_get_consecutive_seqs() {
    let (_dir, journal) = journal();
    journal.commit(append("cart", "a", 0, &["x", "y"])).await.unwrap();
    journal.commit(append("cart", "a", 2, &["z"])).await.unwrap();
    let events = journal.events("cart", "a", 1, usize::MAX).unwrap();
    assert_eq!(payloads(&events), [(1, "x".into()), (2, "y".into()), (3, "z".into())]);
    assert_eq!(journal.position("cart", "a").unwrap(), EntityPosition { last_seq: 3, snapshot_seq: 0 });
    assert_eq!(payloads(&journal.events("cart", "a", 3, 10).unwrap()), [(3, "z".into())]);
    assert_eq!(journal.events("cart", "a", 2, 1).unwrap().len(), 1);
}

#[tokio::test]
async fn a_stale_append_is_refused_and_writes_nothing() {
    let (_dir, journal) = journal();
    assert_eq!(journal.commit(append("cart", "a", 0, &["x"])).await.unwrap(), CommitStatus::Durable { last_seq: 1 });
    let refused = journal.commit(append("cart", "a", 0, &["again"])).await.unwrap();
    assert_eq!(refused, CommitStatus::Conflict { expected: 0, found: 1 });
    assert_eq!(payloads(&journal.events("cart", "a", 1, 10).unwrap()), [(1, "x".into())]);
}

/// Another writer appended one event while this host ran two commands on
/// its stale state: the first conflicts, and the second — whose expected
/// seq happens to match the other writer's log — is refused with it.
#[tokio::test]
async fn a_commit_after_a_refused_one_of_its_run_is_refused_whatever_its_seq() {
    let (_dir, journal) = journal();
    journal.commit(append("cart", "a", 0, &["theirs"])).await.unwrap();
    let run = journal.commit_run(vec![append("cart", "a", 0, &["mine"]), append("cart", "a", 1, &["mine too"])]);
    let mut outcomes = Vec::new();
    for pending in run {
        outcomes.push(pending.await.unwrap());
    }
    assert_eq!(outcomes, [CommitStatus::Conflict { expected: 0, found: 1 }, CommitStatus::AfterRefused]);
    assert_eq!(payloads(&journal.events("cart", "a", 1, 10).unwrap()), [(1, "theirs".into())]);
    // A run that starts on the journal's state lands whole.
    let run = journal.commit_run(vec![append("cart", "a", 1, &["b"]), append("cart", "a", 2, &["c"])]);
    for pending in run {
        assert!(pending.await.unwrap().is_durable());
    }
}

#[tokio::test]
async fn entities_and_services_never_share_keys() {
    let (_dir, journal) = journal();
    // Pairs whose concatenations collide must stay apart.
    journal.commit(append("ab", "c", 0, &["ab/c"])).await.unwrap();
    journal.commit(append("a", "bc", 0, &["a/bc"])).await.unwrap();
    journal.commit(append("a", "b", 0, &["a/b"])).await.unwrap();
    assert_eq!(payloads(&journal.events("a", "bc", 1, 10).unwrap()), [(1, "a/bc".into())]);
    assert_eq!(payloads(&journal.events("a", "b", 1, 10).unwrap()), [(1, "a/b".into())]);
    assert_eq!(payloads(&journal.events("ab", "c", 1, 10).unwrap()), [(1, "ab/c".into())]);
    assert!(journal.events("a", "", 1, 10).unwrap().is_empty());
}

#[tokio::test]
async fn load_starts_from_the_latest_snapshot() {
    let (_dir, journal) = journal();
    let mut first = append("c", "e", 0, &["1", "2", "3"]);
    if let EntityWrite::Events { snapshot, .. } = &mut first.write {
        *snapshot = Some(StoredSnapshot { seq: 3, version: 0, state: b"s3".to_vec() });
    }
    journal.commit(first).await.unwrap();
    journal.commit(append("c", "e", 3, &["4"])).await.unwrap();
    let history = journal.load_entity("c", "e").unwrap();
    assert_eq!(history.snapshot, Some(StoredSnapshot { seq: 3, version: 0, state: b"s3".to_vec() }));
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
                    journal.commit(append("svc", &format!("e{i}"), n, &["ev"])).await.unwrap();
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

fn new_version(service: &str, digest: &str) -> NewVersion {
    NewVersion {
        service: service.into(),
        digest: digest.into(),
        kind: ServiceKind::EventSourced,
        deployed_at_ms: 1,
        subscriptions: Vec::new(),
        allow_http: Vec::new(),
    }
}

#[test]
fn versions_round_trip_and_their_numbers_are_never_given_twice() {
    let (_dir, journal) = journal();
    let one = journal.save_version(&new_version("cart", "d1"), b"one").unwrap();
    let two = journal.save_version(&new_version("cart", "d2"), b"two!").unwrap();
    assert_eq!((one.version, two.version, two.size, two.digest.as_str()), (1, 2, 4, "d2"));
    assert_eq!(journal.save_version(&new_version("other", "d3"), b"x").unwrap().version, 1, "numbers are per service");
    assert_eq!(journal.versions().unwrap()[..2], [one, two]);
    assert_eq!(journal.component("cart", 2).unwrap().as_deref(), Some(&b"two!"[..]));
    assert_eq!(journal.component("cart", 3).unwrap(), None);

    // A deleted service's numbers stay taken: "version 1" never names two components.
    assert_eq!(journal.delete_versions("cart").unwrap(), 2);
    assert_eq!(journal.component("cart", 2).unwrap(), None);
    let again = journal.save_version(&new_version("cart", "d4"), b"three").unwrap();
    assert_eq!(again.version, 3);
    assert_eq!(journal.versions().unwrap().iter().filter(|v| v.service == "cart").count(), 1);
}

#[tokio::test]
async fn a_failed_disk_write_fails_the_whole_batch_and_acknowledges_nothing() {
    let backend = super::FailingStorage::default();
    let failing = backend.switch();
    let db = redb::Builder::new().create_with_backend(backend).unwrap();
    let journal = Arc::new(RedbJournal::from_database(db, Arc::new(Metrics::default())).unwrap());
    journal.commit(append("c", "e", 0, &["kept"])).await.unwrap();

    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let journal = journal.clone();
            tokio::spawn(async move { journal.commit(append("c", &format!("other{i}"), 0, &["lost"])).await })
        })
        .collect();
    let first = journal.commit(append("c", "e", 1, &["lost"])).await;
    assert!(
        matches!(first, Err(JournalError::CommitFailed(_) | JournalError::WritesRefused(_))),
        "an append whose commit failed must not be acknowledged"
    );
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
    assert!(journal.commit(append("c", "e", 1, &["after"])).await.is_err());
    assert_eq!(journal.events("c", "e", 1, 10).unwrap().len(), 1);
}

mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Names chosen so that concatenations, prefixes and odd bytes collide
    /// if keys were ever encoded carelessly.
    const NAMES: &[&str] = &["a", "ab", "b", "a\0", "a/b", "..", "", "ü", "a\u{10FFFF}"];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever is appended, in whatever interleaving, reads back per
        /// entity in seq order, complete, and never shows in another's log.
        #[test]
        fn appends_read_back_exactly(ops in prop::collection::vec(
            (0..NAMES.len(), 0..NAMES.len(), prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..4)),
            1..40,
        )) {
            let (_dir, journal) = journal();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut model: BTreeMap<(&str, &str), Vec<Vec<u8>>> = BTreeMap::new();
            for (s, e, events) in ops {
                let log = model.entry((NAMES[s], NAMES[e])).or_default();
                let commit = Commit::events(NAMES[s], NAMES[e], log.len() as u64, events.clone());
                runtime.block_on(journal.commit(commit)).unwrap();
                log.extend(events);
            }
            for s in NAMES {
                for e in NAMES {
                    let expected = model.get(&(*s, *e)).cloned().unwrap_or_default();
                    let read = journal.events(s, e, 1, usize::MAX).unwrap();
                    let seqs: Vec<u64> = read.iter().map(|ev| ev.seq).collect();
                    prop_assert_eq!(seqs, (1..=expected.len() as u64).collect::<Vec<_>>());
                    let payloads: Vec<Vec<u8>> = read.into_iter().map(|ev| ev.payload).collect();
                    prop_assert_eq!(payloads, expected.clone());
                    prop_assert_eq!(journal.position(s, e).unwrap().last_seq, expected.len() as u64);
                }
            }
        }
    }
}

fn commit_with(service: &str, entity: &str, write: EntityWrite) -> Commit {
    Commit {
        service: service.into(),
        entity: entity.into(),
        version: 1,
        hops: 0,
        write,
        outbox: Vec::new(),
        idempotency: None,
        timers: Vec::new(),
        fires: None,
        trace: None,
    }
}

fn call(entity: &str) -> Call {
    Call { service: "svc".into(), entity: entity.into(), command: "Go".into(), payload: b"{}".to_vec() }
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::client(text.as_bytes()).unwrap()
}

/// A value write of `state` on an entity at `revision`.
fn value_write(revision: u64, state: Option<&[u8]>) -> EntityWrite {
    EntityWrite::Value { expected_revision: revision, state: state.map(<[u8]>::to_vec) }
}

#[tokio::test]
async fn value_states_are_written_and_deleted() {
    let (_dir, journal) = journal();
    journal.commit(commit_with("v", "e", value_write(0, Some(b"one")))).await.unwrap();
    journal.commit(commit_with("v", "e", value_write(1, Some(b"two")))).await.unwrap();
    assert_eq!(journal.value("v", "e").unwrap().as_deref(), Some(&b"two"[..]));
    journal.commit(commit_with("v", "e", value_write(2, None))).await.unwrap();
    assert_eq!(journal.value("v", "e").unwrap(), None);
    assert_eq!(journal.load_value("v", "e").unwrap(), StoredValue { state: None, revision: 3 });
    assert_eq!(journal.value("v", "other").unwrap(), None);
    assert_eq!(journal.load_value("v", "other").unwrap(), StoredValue::default());
}

#[tokio::test]
async fn a_value_write_on_a_stale_revision_is_refused_and_writes_nothing() {
    let (_dir, journal) = journal();
    journal.commit(commit_with("v", "e", value_write(0, Some(b"theirs")))).await.unwrap();
    let stale = journal.commit(commit_with("v", "e", value_write(0, Some(b"mine")))).await.unwrap();
    assert_eq!(stale, CommitStatus::Conflict { expected: 0, found: 1 });
    assert_eq!(journal.load_value("v", "e").unwrap(), StoredValue { state: Some(b"theirs".to_vec()), revision: 1 });
    assert_eq!(journal.head("v", "e").unwrap(), 1);
}

#[tokio::test]
async fn outbox_entries_commit_with_the_events_and_retry_then_go() {
    let (_dir, journal) = journal();
    let mut commit = append("c", "e", 0, &["x"]);
    commit.outbox = vec![AsyncEffect::Command(call("a")), AsyncEffect::Command(call("b"))];
    journal.commit(commit).await.unwrap();
    // A refused commit adds nothing to the outbox.
    let mut stale = append("c", "e", 0, &["y"]);
    stale.outbox = vec![AsyncEffect::Command(call("lost"))];
    assert_eq!(journal.commit(stale).await.unwrap(), CommitStatus::Conflict { expected: 0, found: 1 });
    // So does one with no events, checked against a stale seq.
    let mut stale = append("c", "e", 0, &[]);
    stale.outbox = vec![AsyncEffect::Command(call("lost too"))];
    assert!(!stale.is_empty());
    assert_eq!(journal.commit(stale).await.unwrap(), CommitStatus::Conflict { expected: 0, found: 1 });
    assert!(append("c", "e", 0, &[]).is_empty(), "a seq check alone writes nothing");

    let (due, pending) = journal.outbox_due(0, 0, 10).unwrap();
    assert_eq!(pending, 2);
    assert_eq!(due.iter().map(|d| d.effect.command().entity.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let mut later = due[0].clone();
    later.attempts = 1;
    later.next_attempt_ms = 5_000;
    journal.outbox_retry(&later, &any_lease()).unwrap();
    assert_eq!(journal.outbox_due(1_000, 0, 10).unwrap().0.len(), 1, "a retried entry waits until it is due");
    assert_eq!(journal.outbox_due(5_000, 0, 10).unwrap().0[0].attempts, 1);
    journal.outbox_remove(&[due[0].id, due[1].id], &any_lease()).unwrap();
    assert_eq!(journal.outbox_due(u64::MAX, 0, 10).unwrap(), (Vec::new(), 0));
}

#[tokio::test]
async fn idempotency_records_answer_until_they_expire() {
    let (_dir, journal) = journal();
    let mut commit = append("c", "e", 0, &["x"]);
    let effect = Call { service: "d".into(), entity: "f".into(), command: "Do".into(), payload: b"{}".to_vec() };
    let follow_up = FollowUp { synchronous: vec![effect], reply: Reply::Message(b"{\"ok\":1}".to_vec()) };
    let record = IdempotencyRecord {
        key: key("k1"),
        expires_at_ms: 1_000,
        fingerprint: Some(Fingerprint::of("Add", b"{}")),
        follow_up,
    };
    commit.idempotency = Some(record.clone());
    journal.commit(commit).await.unwrap();
    assert_eq!(journal.idempotency_record("c", "e", &key("k1"), 999).unwrap(), Some(record));
    assert_eq!(journal.idempotency_record("c", "e", &key("k1"), 1_000).unwrap(), None);
    assert_eq!(journal.idempotency_record("c", "other", &key("k1"), 0).unwrap(), None);
    assert_eq!(journal.sweep_idempotency(999).unwrap(), 0);
    assert_eq!(journal.sweep_idempotency(1_000).unwrap(), 1);
    assert_eq!(journal.idempotency_record("c", "e", &key("k1"), 0).unwrap(), None);
}

#[tokio::test]
async fn the_service_log_orders_every_event_of_a_service_and_notifies() {
    let (_dir, journal) = journal();
    let mut entity = journal.commits().entity("s", "a");
    let mut service = journal.commits().service("s");
    journal.commit(append("s", "a", 0, &["a1", "a2"])).await.unwrap();
    journal.commit(append("other", "a", 0, &["o1"])).await.unwrap();
    journal.commit(append("s", "b", 0, &["b1"])).await.unwrap();
    let log = journal.service_log("s", 0, 10).unwrap();
    let seen: Vec<(u64, &str, u64)> = log.iter().map(|e| (e.position, e.entity.as_str(), e.event.seq)).collect();
    assert_eq!(seen, [(1, "a", 1), (2, "a", 2), (3, "b", 1)]);
    assert_eq!(journal.service_log("s", 2, 10).unwrap().len(), 1);
    assert_eq!(journal.service_log("other", 0, 10).unwrap().len(), 1);

    assert_eq!(journal.offset("sub", "s").unwrap(), 0);
    journal.set_offset("sub", "s", 2, &any_lease()).unwrap();
    assert_eq!(journal.offset("sub", "s").unwrap(), 2);

    assert_eq!(entity.changed().await, 2, "a's log ends at 2");
    assert_eq!(service.changed().await, 2, "s had two commits");
    assert_eq!(journal.service_log_head("s").unwrap(), 3);
    assert_eq!(journal.service_log_head("none").unwrap(), 0);
}

#[tokio::test]
async fn a_live_idempotency_key_is_recorded_once() {
    let (_dir, journal) = journal();
    let keyed = |expires_at_ms, outbox: &str| {
        let mut commit = commit_with("act", "any", EntityWrite::Nothing);
        commit.outbox = vec![AsyncEffect::Command(call(outbox))];
        let follow_up = FollowUp { synchronous: vec![], reply: Reply::Message(b"first".to_vec()) };
        commit.idempotency = Some(IdempotencyRecord { key: key("k"), expires_at_ms, fingerprint: None, follow_up });
        commit
    };
    journal.commit(keyed(u64::MAX, "first")).await.unwrap();
    let second = journal.commit(keyed(u64::MAX, "second")).await.unwrap();
    assert_eq!(second, CommitStatus::KeyRecorded);
    let (due, _) = journal.outbox_due(u64::MAX, 0, 10).unwrap();
    assert_eq!(
        due.iter().map(|d| d.effect.command().entity.as_str()).collect::<Vec<_>>(),
        ["first"],
        "the second wrote nothing"
    );

    // An expired record no longer holds its key.
    let (_dir, journal) = self::journal();
    journal.commit(keyed(1, "expired")).await.unwrap();
    journal.commit(keyed(u64::MAX, "renewed")).await.unwrap();
}

#[tokio::test]
async fn a_record_changed_on_disk_is_refused_never_served() {
    let (_dir, journal) = journal();
    journal.commit(append("c", "e", 0, &["one", "two"])).await.unwrap();
    journal.commit(commit_with("v", "e", value_write(0, Some(b"state")))).await.unwrap();
    // Flip a byte of event 2's payload and of the value, as a disk or an
    // editor might.
    let txn = journal.db().unwrap().begin_write().unwrap();
    {
        let mut events = txn.open_table(tables::EVENTS).unwrap();
        let mut row = events.get(("c", "e", 2)).unwrap().unwrap().value().to_vec();
        *row.last_mut().unwrap() ^= 1;
        events.insert(("c", "e", 2), row.as_slice()).unwrap();
        let mut values = txn.open_table(tables::VALUES).unwrap();
        let mut row = values.get(("v", "e")).unwrap().unwrap().value().to_vec();
        *row.last_mut().unwrap() ^= 1;
        values.insert(("v", "e"), row.as_slice()).unwrap();
    }
    txn.commit().unwrap();

    let refused = |result: Result<_, JournalError>, what: &str| match result {
        Err(JournalError::CorruptRecord(name)) => assert_eq!(name, what),
        other => panic!("expected a corrupt record, got {:?}", other.map(|_| ())),
    };
    refused(journal.events("c", "e", 1, 10).map(|_| ()), "event 2 of c/e");
    refused(journal.load_entity("c", "e").map(|_| ()), "event 2 of c/e");
    refused(journal.service_log("c", 0, 10).map(|_| ()), "event 2 of c/e");
    refused(journal.value("v", "e").map(|_| ()), "the value of v/e");
    // What was not changed still reads.
    assert_eq!(payloads(&journal.events("c", "e", 1, 1).unwrap()), [(1, "one".into())]);
}

#[tokio::test]
async fn the_outbox_quota_and_a_deleted_service_bound_what_waits() {
    let (_dir, journal) = journal();
    journal.set_outbox_quota(2);
    let with_effects = |entity: &str, targets: &[&str]| {
        let mut commit = commit_with("src", entity, EntityWrite::Nothing);
        commit.outbox =
            targets.iter().map(|t| AsyncEffect::Command(Call { service: (*t).into(), ..call("x") })).collect();
        commit
    };
    let durable = CommitStatus::Durable { last_seq: 0 };
    assert_eq!(journal.commit(with_effects("a", &["svc", "svc", "other"])).await.unwrap(), durable);
    let full = journal.commit(with_effects("b", &["other", "svc"])).await.unwrap();
    assert_eq!(full, CommitStatus::OutboxFull { service: "svc".into() });
    let (due, pending) = journal.outbox_due(u64::MAX, 0, 10).unwrap();
    assert_eq!(pending, 3, "the refused commit added nothing");
    // Two commits of one batch count together.
    let (first, second) =
        (journal.commit(with_effects("c", &["other"])), journal.commit(with_effects("d", &["other"])));
    assert_eq!((first.await.unwrap(), second.await.unwrap().is_durable()), (durable.clone(), false));
    journal.outbox_remove(&[due[0].id], &any_lease()).unwrap();
    assert_eq!(journal.commit(with_effects("e", &["svc"])).await.unwrap(), durable, "room again");

    assert_eq!(journal.outbox_drop_service("svc").unwrap(), 2);
    let (due, _) = journal.outbox_due(u64::MAX, 0, 10).unwrap();
    assert!(due.iter().all(|entry| entry.effect.command().service == "other"), "{due:?}");
    assert_eq!(journal.commit(with_effects("f", &["svc", "svc"])).await.unwrap(), durable);
    // Due entries are read past a cursor.
    let (all, _) = journal.outbox_due(u64::MAX, 0, 10).unwrap();
    let (after_first, _) = journal.outbox_due(u64::MAX, all[0].id, 10).unwrap();
    assert_eq!(after_first, all[1..]);
}

#[test]
fn identical_components_are_stored_once() {
    let (_dir, journal) = journal();
    for _ in 0..10 {
        journal.save_version(&new_version("cart", "same"), b"0123456789").unwrap();
    }
    journal.save_version(&new_version("copy", "same"), b"0123456789").unwrap();
    journal.save_version(&new_version("copy", "other"), b"abc").unwrap();
    assert_eq!(journal.component_bytes().unwrap(), 13, "each digest once");
    assert_eq!(journal.component("cart", 7).unwrap().as_deref(), Some(&b"0123456789"[..]));
    journal.delete_versions("cart").unwrap();
    assert_eq!(journal.component("copy", 1).unwrap().as_deref(), Some(&b"0123456789"[..]), "still shared by copy");
    journal.delete_versions("copy").unwrap();
    assert_eq!(journal.component_bytes().unwrap(), 0);
}

/// A lease, as the one host of an embedded journal holds them all.
fn any_lease() -> crate::journal::Lease {
    crate::journal::Lease { name: "outbox".into(), holder: "this host".into(), epoch: 1 }
}
