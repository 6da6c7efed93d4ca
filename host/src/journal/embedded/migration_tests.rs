//! The schema version: a schema-1 journal migrates in one transaction, a
//! newer one is refused and left alone, and a current one opens as it is.

use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableHandle};

use super::schema::SCHEMA_VERSION;
use super::tables::{META, SCHEMA_VERSION_KEY};
use super::*;
use crate::domain::ServiceKind;
use crate::domain::{AsyncEffect, Call, Event, FollowUp, IdempotencyKey, Reply};

fn database(dir: &tempfile::TempDir) -> Database {
    Database::create(dir.path().join("journal.redb")).unwrap()
}

fn table_names(db: &Database) -> Vec<String> {
    let txn = db.begin_read().unwrap();
    txn.list_tables().unwrap().map(|t| t.name().to_string()).collect()
}

fn stored_version(db: &Database) -> Option<u64> {
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).ok()?;
    meta.get(SCHEMA_VERSION_KEY).unwrap().map(|v| v.value())
}

#[test]
fn a_new_journal_is_created_at_the_current_version_and_opens_as_current() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir);
    assert_eq!(schema::open(&db).unwrap(), SchemaStatus::Created);
    assert_eq!(stored_version(&db), Some(SCHEMA_VERSION));
    assert_eq!(schema::open(&db).unwrap(), SchemaStatus::Current);
}

#[tokio::test]
async fn a_schema_1_journal_is_migrated_with_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir);
    migrate_v1::write_v1_fixture(&db).unwrap();
    assert_eq!(stored_version(&db), None);

    let journal = RedbJournal::from_database(db, Arc::new(crate::metrics::Metrics::default())).unwrap();
    assert_eq!(journal.schema_status(), SchemaStatus::Migrated { from: 1, to: SCHEMA_VERSION });

    let versions = journal.versions().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        (versions[0].service.as_str(), versions[0].version, versions[0].kind),
        ("cart", 3, ServiceKind::EventSourced)
    );
    assert_eq!((versions[0].digest.as_str(), versions[0].size, versions[0].deployed_at_ms), ("ab12", 9, 5));
    assert_eq!(
        (versions[1].kind, versions[1].subscriptions.as_slice()),
        (ServiceKind::Action, &["cart".to_string()][..])
    );
    assert_eq!(journal.component("cart", 3).unwrap().as_deref(), Some(&b"component"[..]));
    // The numbers already given stay given.
    let next = NewVersion {
        service: "cart".into(),
        digest: "ef".into(),
        kind: ServiceKind::EventSourced,
        deployed_at_ms: 7,
        subscriptions: vec![],
        allow_http: vec![],
    };
    assert_eq!(journal.save_version(&next, b"c4").unwrap().version, 4);

    assert_eq!(journal.value("profile", "ada").unwrap().as_deref(), Some(&br#"{"name":"Ada"}"#[..]));
    let events = journal.events("cart", "c1", 1, 10).unwrap();
    assert_eq!(events, [Event { seq: 1, version: 0, payload: br#"{"e":1}"#.to_vec() }], "version 0: not recorded");
    let history = journal.load_entity("cart", "c1").unwrap();
    assert_eq!(history.snapshot, Some(StoredSnapshot { seq: 1, version: 0, state: br#"{"s":1}"#.to_vec() }));
    assert_eq!((history.events.len(), history.last_seq), (0, 1));
    assert_eq!(journal.position("cart", "c1").unwrap(), EntityPosition { last_seq: 1, snapshot_seq: 1 });

    let (due, pending) = journal.outbox_due(u64::MAX, 0, 10).unwrap();
    let call = Call {
        service: "counter".into(),
        entity: "orders".into(),
        command: "Increase".into(),
        payload: br#"{"value":1}"#.to_vec(),
    };
    assert_eq!(pending, 1);
    let effect = AsyncEffect::Command(call);
    assert_eq!(due, [OutboxEntry { id: 4, effect, hops: 0, attempts: 2, next_attempt_ms: 77, trace: None }]);

    let k1 = journal.idempotency_record("cart", "c1", &IdempotencyKey::client(b"k1").unwrap(), 0).unwrap().unwrap();
    assert_eq!((k1.fingerprint, k1.follow_up.reply), (None, Reply::Message(br#"{"ok":1}"#.to_vec())));
    let k2 = journal.idempotency_record("proj", "any", &IdempotencyKey::client(b"k2").unwrap(), 0).unwrap().unwrap();
    let audit = Call { service: "audit".into(), entity: "a1".into(), command: "Log".into(), payload: b"{}".to_vec() };
    let forward = Call {
        service: "cart".into(),
        entity: "c1".into(),
        command: "AddItem".into(),
        payload: br#"{"q":2}"#.to_vec(),
    };
    assert_eq!(k2.follow_up, FollowUp { synchronous: vec![audit], reply: Reply::Forward(forward) });

    let log = journal.service_log("cart", 0, 10).unwrap();
    assert_eq!(log.iter().map(|e| (e.position, e.entity.as_str(), e.event.seq)).collect::<Vec<_>>(), [(1, "c1", 1)]);
    assert_eq!(journal.offset("proj", "cart").unwrap(), 1);

    // New writes go on where the old ones stopped.
    let mut commit = Commit::events("cart", "c1", 1, vec![b"e2".to_vec()]);
    commit.outbox = vec![AsyncEffect::Command(commit_call())];
    assert_eq!(journal.commit(commit).await.unwrap(), CommitStatus::Durable { last_seq: 2 });
    assert_eq!(journal.service_log("cart", 1, 10).unwrap()[0].position, 2);
    assert_eq!(journal.outbox_due(u64::MAX, 0, 10).unwrap().0.last().unwrap().id, 5);
}

fn commit_call() -> Call {
    Call { service: "s".into(), entity: "e".into(), command: "C".into(), payload: vec![] }
}

#[test]
fn a_journal_from_a_newer_wasmstate_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir);
    schema::open(&db).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION + 1).unwrap();
    txn.commit().unwrap();
    let tables = table_names(&db);

    let error = schema::open(&db).unwrap_err();
    assert!(
        matches!(error, JournalError::SchemaTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION)
    );
    assert!(error.to_string().contains("newer"), "{error}");
    assert_eq!(stored_version(&db), Some(SCHEMA_VERSION + 1));
    assert_eq!(table_names(&db), tables);
}

#[test]
fn a_migration_that_fails_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir);
    migrate_v1::write_v1_fixture(&db).unwrap();
    // A version whose JSON is damaged: the migration cannot read it.
    let txn = db.begin_write().unwrap();
    txn.open_table(migrate_v1::VERSIONS_V1).unwrap().insert(("cart", 4), "{not json").unwrap();
    txn.commit().unwrap();
    let tables = table_names(&db);

    let error = schema::open(&db).unwrap_err();
    assert!(matches!(&error, JournalError::Corrupt(message) if message.contains("version 4 of cart")), "{error}");
    assert_eq!(stored_version(&db), None, "still schema 1");
    assert_eq!(table_names(&db), tables);
    // The schema-1 rows are still there, as they were.
    let txn = db.begin_read().unwrap();
    assert_eq!(txn.open_table(migrate_v1::OUTBOX_V1).unwrap().get(4).unwrap().unwrap().value().0, "counter");
}

/// A schema-2 journal (before timers) gains the timer tables, empty, and
/// keeps what it held; timers then set and list as on a new one.
#[tokio::test]
async fn a_schema_2_journal_gains_the_timer_tables() {
    use crate::journal::contract::TimerStore;
    use crate::journal::{Commit, EntityWrite, Timer, TimerChange};
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir);
    schema::open(&db).unwrap();
    let txn = db.begin_write().unwrap();
    txn.delete_table(tables::TIMERS).unwrap();
    txn.delete_table(tables::TIMERS_DUE).unwrap();
    txn.open_table(META).unwrap().insert(SCHEMA_VERSION_KEY, 2).unwrap();
    txn.open_table(tables::EVENTS).unwrap().insert(("s", "e", 1), &b"kept"[..]).unwrap();
    txn.commit().unwrap();
    assert!(!table_names(&db).contains(&"timers".to_string()));

    let journal = RedbJournal::from_database(db, Arc::new(crate::metrics::Metrics::default())).unwrap();
    assert_eq!(journal.schema_status(), SchemaStatus::Migrated { from: 2, to: SCHEMA_VERSION });
    let txn = journal.db().unwrap().begin_read().unwrap();
    assert!(txn.open_table(tables::EVENTS).unwrap().get(("s", "e", 1)).unwrap().is_some(), "its data stays");
    drop(txn);
    assert_eq!(journal.timers_pending().unwrap(), 0);
    let call = Call { service: "s".into(), entity: "e".into(), command: "C".into(), payload: Vec::new() };
    let mut commit = Commit::events("s", "e", 0, Vec::new());
    commit.write = EntityWrite::Nothing;
    commit.timers = vec![TimerChange::Set(Box::new(Timer::new("s", "e", "t", call, 7, 0)))];
    assert!(journal.commit(commit).await.unwrap().is_durable());
    let due = journal.timers_due(7, 10).unwrap();
    assert_eq!(
        (due.len(), journal.timers_due(6, 10).unwrap().len(), journal.next_timer_due().unwrap()),
        (1, 0, Some(7))
    );
    assert_eq!(journal.timers_of("s", "e").unwrap(), due);
}

/// A schema-3 journal's timers (before repeating ones) are rewritten in
/// the layout of 4, with their trace, and fire and list as before.
#[tokio::test]
async fn a_schema_3_journal_s_timers_are_rewritten() {
    use crate::journal::Timer;
    use crate::journal::contract::TimerStore;
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir);
    schema::open(&db).unwrap();
    // Timer `t` of s/e, id 5, due at 300, as schema 3 wrote it, with a trace.
    let mut row = b"\x05\x01s\x01e\x01C\x02{}\xac\x02\xac\x02\x01\x00\x00".to_vec();
    let trace = crate::trace_context::TraceContext::root(true);
    row.push(1);
    row.extend(postcard::to_allocvec(&trace).unwrap());
    let txn = db.begin_write().unwrap();
    txn.open_table(tables::TIMERS).unwrap().insert(("s", "e", "t"), row.as_slice()).unwrap();
    txn.open_table(tables::TIMERS_DUE).unwrap().insert((300, 5), ("s", "e", "t")).unwrap();
    txn.open_table(META).unwrap().insert(SCHEMA_VERSION_KEY, 3).unwrap();
    txn.commit().unwrap();

    let journal = RedbJournal::from_database(db, Arc::new(crate::metrics::Metrics::default())).unwrap();
    assert_eq!(journal.schema_status(), SchemaStatus::Migrated { from: 3, to: SCHEMA_VERSION });
    let call = Call { service: "s".into(), entity: "e".into(), command: "C".into(), payload: b"{}".to_vec() };
    let mut expected = Timer::new("s", "e", "t", call, 300, 1);
    (expected.id, expected.trace) = (5, Some(trace));
    assert_eq!(journal.timers_due(300, 10).unwrap(), [expected.clone()]);
    assert_eq!(journal.timers_of("s", "e").unwrap(), [expected]);
}

/// A schema-4 journal's outbox entries and versions (before webhooks and
/// allow-lists) are rewritten in the layout of 5: the entries deliver as
/// the commands they were, the versions grant no HTTP.
#[tokio::test]
async fn a_schema_4_journal_s_outbox_and_versions_are_rewritten() {
    use crate::journal::contract::{OutboxStore, VersionStore};
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir);
    schema::open(&db).unwrap();
    // Outbox entry 3, a command to s/e, hops 1, attempts 2, due at 3, as
    // schema 4 wrote it; version 1 of `cart`, as schema 4 wrote it.
    let outbox_row = b"\x01s\x01e\x01C\x02{}\x01\x02\x03";
    let version_row = b"\x02ab\x0devent-sourced\x05\x01\x00";
    let txn = db.begin_write().unwrap();
    txn.open_table(tables::OUTBOX).unwrap().insert(3, &outbox_row[..]).unwrap();
    txn.open_table(tables::VERSIONS).unwrap().insert(("cart", 1), &version_row[..]).unwrap();
    txn.open_table(tables::VERSION_HEADS).unwrap().insert("cart", 1).unwrap();
    txn.open_table(META).unwrap().insert(SCHEMA_VERSION_KEY, 4).unwrap();
    txn.commit().unwrap();

    let journal = RedbJournal::from_database(db, Arc::new(crate::metrics::Metrics::default())).unwrap();
    assert_eq!(journal.schema_status(), SchemaStatus::Migrated { from: 4, to: SCHEMA_VERSION });
    let call = Call { service: "s".into(), entity: "e".into(), command: "C".into(), payload: b"{}".to_vec() };
    let (due, pending) = journal.outbox_due(u64::MAX, 0, 10).unwrap();
    let effect = AsyncEffect::Command(call);
    assert_eq!(
        (due, pending),
        (vec![OutboxEntry { id: 3, effect, hops: 1, attempts: 2, next_attempt_ms: 3, trace: None }], 1)
    );
    let versions = journal.versions().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!((versions[0].kind, versions[0].digest.as_str()), (ServiceKind::EventSourced, "ab"));
    assert!(versions[0].allow_http.is_empty());
}

/// A schema-5 journal (before CRDT entities) gains their table, empty, and
/// keeps what it held; CRDT entities then commit and load as on a new one.
#[tokio::test]
async fn a_schema_5_journal_gains_the_crdt_table() {
    use crate::journal::{Commit, EntityWrite};
    use wasmstate_crdt::{Change, Crdt};
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir);
    schema::open(&db).unwrap();
    let txn = db.begin_write().unwrap();
    txn.delete_table(tables::CRDT_REPLICAS).unwrap();
    txn.open_table(META).unwrap().insert(SCHEMA_VERSION_KEY, 5).unwrap();
    txn.commit().unwrap();
    assert!(!table_names(&db).contains(&"crdt_replicas".to_string()));

    let journal = RedbJournal::from_database(db, Arc::new(crate::metrics::Metrics::default())).unwrap();
    assert_eq!(journal.schema_status(), SchemaStatus::Migrated { from: 5, to: SCHEMA_VERSION });
    assert_eq!(journal.load_crdt("s", "e").unwrap().replicas, []);
    let mut state = Crdt::empty_for(&Change::Increment(2));
    state.apply(&"a".to_string(), &Change::Increment(2), 0).unwrap();
    let mut commit = Commit::events("s", "e", 0, Vec::new());
    commit.write =
        EntityWrite::Crdt { replica: "a".into(), expected_revision: 0, state: Some(state.clone()), delta: None };
    assert!(journal.commit(commit.clone()).await.unwrap().is_durable());
    // The same revision again is a conflict: the row is at 1.
    let refused = journal.commit(commit).await.unwrap();
    assert_eq!(refused, crate::journal::CommitStatus::Conflict { expected: 0, found: 1 });
    let stored = journal.load_crdt("s", "e").unwrap();
    assert_eq!((stored.revision_of("a"), stored.merged("s", "e").unwrap().state), (1, Some(state)));
}
