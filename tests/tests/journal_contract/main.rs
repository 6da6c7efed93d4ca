//! The contract every journal keeps, whichever database holds it: each
//! case runs on the embedded redb journal and on PostgreSQL (a database
//! of its own on the suite's PostgreSQL server). The host above the
//! journal relies on exactly this: compare-and-set commits, runs that stop
//! at their first refusal, idempotency records, a gap-free service log,
//! the outbox, and leases whose lost epochs write nothing.

use std::sync::Arc;
use std::time::Duration;

use wasmstate::journal_hooks::{
    AsyncEffect, Call, Commit, CommitStatus, CronSchedule, DeadLetter, EntityWrite, FollowUp, IdempotencyKey,
    IdempotencyRecord, Journal, JournalError, Metrics, MissedFirings, PgJournal, RedbJournal, Timer, TimerChange,
    TimerGuard, Webhook,
};

/// A journal under test, and what keeps its storage alive.
struct Subject {
    name: &'static str,
    journal: Arc<dyn Journal>,
    _dir: Option<tempfile::TempDir>,
}

/// A new, empty journal of each kind.
async fn journals() -> Vec<Subject> {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbJournal::open(&dir.path().join("journal.redb"), Arc::new(Metrics::default())).unwrap();
    let server = wasmstate_tests::postgres::shared().await.expect("a PostgreSQL server");
    let url = server.create_database().await.expect("a database");
    let pg = tokio::task::spawn_blocking(move || PgJournal::connect(&url, Arc::new(Metrics::default())))
        .await
        .unwrap()
        .expect("the PostgreSQL journal opens");
    vec![
        Subject { name: "redb", journal: Arc::new(redb), _dir: Some(dir) },
        Subject { name: "postgres", journal: Arc::new(pg), _dir: None },
    ]
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn value_write(entity: &str, expected_revision: u64, state: Option<&[u8]>) -> Commit {
    let mut commit = Commit::events("profiles", entity, 0, Vec::new());
    commit.write = EntityWrite::Value { expected_revision, state: state.map(<[u8]>::to_vec) };
    commit
}

fn call(entity: &str) -> Call {
    Call { service: "counter".into(), entity: entity.into(), command: "Increase".into(), payload: b"{}".to_vec() }
}

#[tokio::test]
async fn a_commit_appends_at_the_expected_seq_and_a_stale_one_conflicts() {
    for Subject { name, journal, .. } in journals().await {
        let first = journal.commit(Commit::events("cart", "c", 0, vec![b"a".to_vec(), b"b".to_vec()])).await;
        assert_eq!(first.unwrap(), CommitStatus::Durable { last_seq: 2 }, "{name}");
        let stale = journal.commit(Commit::events("cart", "c", 0, vec![b"x".to_vec()])).await;
        assert_eq!(stale.unwrap(), CommitStatus::Conflict { expected: 0, found: 2 }, "{name}");
        assert_eq!(journal.head("cart", "c").unwrap(), 2, "{name}");
        let events = journal.events("cart", "c", 1, 10).unwrap();
        let seen: Vec<(u64, &[u8])> = events.iter().map(|e| (e.seq, e.payload.as_slice())).collect();
        assert_eq!(seen, [(1, &b"a"[..]), (2, &b"b"[..])], "{name}: the stale commit wrote nothing");
        assert_eq!(journal.load_entity("cart", "c").unwrap().last_seq, 2, "{name}");
    }
}

#[tokio::test]
async fn a_run_is_refused_from_its_first_refused_commit_on() {
    for Subject { name, journal, .. } in journals().await {
        journal.commit(Commit::events("cart", "c", 0, vec![b"a".to_vec()])).await.unwrap();
        let run = vec![
            Commit::events("cart", "c", 1, vec![b"b".to_vec()]),
            Commit::events("cart", "c", 7, vec![b"c".to_vec()]),
            Commit::events("cart", "c", 2, vec![b"d".to_vec()]),
        ];
        let mut statuses = Vec::new();
        for pending in journal.commit_run(run) {
            statuses.push(pending.await.unwrap());
        }
        let expected = [
            CommitStatus::Durable { last_seq: 2 },
            CommitStatus::Conflict { expected: 7, found: 2 },
            CommitStatus::AfterRefused,
        ];
        assert_eq!(statuses, expected, "{name}: the commit after a refused one is refused, whatever its seq");
        assert_eq!(journal.head("cart", "c").unwrap(), 2, "{name}");
    }
}

#[tokio::test]
async fn a_value_write_expects_its_revision() {
    for Subject { name, journal, .. } in journals().await {
        let first = journal.commit(value_write("p", 0, Some(b"one"))).await.unwrap();
        assert!(first.is_durable(), "{name}: {first:?}");
        let stored = journal.load_value("profiles", "p").unwrap();
        assert_eq!((stored.state.as_deref(), stored.revision), (Some(&b"one"[..]), 1), "{name}");
        let stale = journal.commit(value_write("p", 0, Some(b"two"))).await.unwrap();
        assert_eq!(stale, CommitStatus::Conflict { expected: 0, found: 1 }, "{name}");
        assert!(journal.commit(value_write("p", 1, None)).await.unwrap().is_durable(), "{name}");
        let deleted = journal.load_value("profiles", "p").unwrap();
        assert_eq!((deleted.state, deleted.revision), (None, 2), "{name}: a delete is a revision too");
        assert_eq!(journal.value("profiles", "p").unwrap(), None, "{name}");
    }
}

/// A GCounter that `replica` incremented by `by`.
fn counter(replica: &str, by: u64) -> wasmstate_crdt::Crdt {
    let change = wasmstate_crdt::Change::Increment(by);
    let mut state = wasmstate_crdt::Crdt::empty_for(&change);
    state.apply(&replica.to_string(), &change, 0).unwrap();
    state
}

fn crdt_write(replica: &str, expected_revision: u64, state: Option<wasmstate_crdt::Crdt>) -> Commit {
    let mut commit = Commit::events("votes", "v", 0, Vec::new());
    commit.write = EntityWrite::Crdt { replica: replica.into(), expected_revision, state, delta: None };
    commit
}

#[tokio::test]
async fn crdt_replicas_write_their_own_rows_and_one_tombstone_deletes() {
    for Subject { name, journal, .. } in journals().await {
        assert!(journal.commit(crdt_write("a", 0, Some(counter("a", 2)))).await.unwrap().is_durable(), "{name}");
        // Another replica writes its own row, whatever the first one's revision.
        assert!(journal.commit(crdt_write("b", 0, Some(counter("b", 5)))).await.unwrap().is_durable(), "{name}");
        let stale = journal.commit(crdt_write("a", 0, Some(counter("a", 9)))).await.unwrap();
        assert_eq!(
            stale,
            CommitStatus::Conflict { expected: 0, found: 1 },
            "{name}: a replica's row expects its revision"
        );
        let stored = journal.load_crdt("votes", "v").unwrap();
        let merged = stored.merged("votes", "v").unwrap();
        let value = merged.state.as_ref().map(|state| state.value(&"a".to_string()));
        assert_eq!(value, Some(wasmstate_crdt::Value::GCounter(7)), "{name}: the entity is the join of its rows");
        assert_eq!((stored.replicas.len(), stored.revision_of("a"), merged.deleted), (2, 1, false), "{name}");
        assert!(journal.commit(crdt_write("b", 1, None)).await.unwrap().is_durable(), "{name}");
        assert!(journal.load_crdt("votes", "v").unwrap().merged("votes", "v").unwrap().deleted, "{name}");
        assert_eq!(journal.load_crdt("votes", "other").unwrap().replicas, [], "{name}");
        // A key recorded through one replica refuses the same key through another.
        let key = IdempotencyKey::client(b"vote-1").unwrap();
        let record = IdempotencyRecord {
            key,
            expires_at_ms: now_ms() + 60_000,
            fingerprint: None,
            follow_up: FollowUp::nothing(),
        };
        let mut first = crdt_write("a", 0, Some(counter("a", 3)));
        first.entity = "keyed".into();
        first.idempotency = Some(record.clone());
        assert!(journal.commit(first).await.unwrap().is_durable(), "{name}");
        let mut second = crdt_write("b", 0, Some(counter("b", 3)));
        second.entity = "keyed".into();
        second.idempotency = Some(record);
        assert_eq!(journal.commit(second).await.unwrap(), CommitStatus::KeyRecorded, "{name}");
        assert_eq!(journal.load_crdt("votes", "keyed").unwrap().replicas.len(), 1, "{name}: the second wrote nothing");
    }
}

#[tokio::test]
async fn a_recorded_key_refuses_a_second_commit_under_it() {
    for Subject { name, journal, .. } in journals().await {
        let key = IdempotencyKey::client(b"order-1").unwrap();
        let record = IdempotencyRecord {
            key: key.clone(),
            expires_at_ms: now_ms() + 60_000,
            fingerprint: None,
            follow_up: FollowUp::nothing(),
        };
        let mut first = Commit::events("cart", "c", 0, vec![b"a".to_vec()]);
        first.idempotency = Some(record.clone());
        assert_eq!(journal.commit(first).await.unwrap(), CommitStatus::Durable { last_seq: 1 }, "{name}");
        let found = journal.idempotency_record("cart", "c", &key, now_ms()).unwrap();
        assert_eq!(found.map(|r| r.follow_up), Some(FollowUp::nothing()), "{name}");
        let mut again = Commit::events("cart", "c", 1, vec![b"a".to_vec()]);
        again.idempotency = Some(record);
        assert_eq!(journal.commit(again).await.unwrap(), CommitStatus::KeyRecorded, "{name}");
        assert_eq!(journal.head("cart", "c").unwrap(), 1, "{name}: the repeat wrote nothing");
        let later = now_ms() + 120_000;
        assert!(journal.idempotency_record("cart", "c", &key, later).unwrap().is_none(), "{name}: it expires");
    }
}

#[tokio::test]
async fn the_service_log_is_gap_free_and_in_commit_order() {
    for Subject { name, journal, .. } in journals().await {
        let mut heads = std::collections::HashMap::new();
        let order = ["a", "b", "a", "c", "b", "a"];
        for entity in order {
            let head: &mut u64 = heads.entry(entity).or_default();
            journal.commit(Commit::events("cart", entity, *head, vec![b"e".to_vec()])).await.unwrap();
            *head += 1;
        }
        let log = journal.service_log("cart", 0, 100).unwrap();
        let positions: Vec<u64> = log.iter().map(|e| e.position).collect();
        assert_eq!(positions, (1..=6).collect::<Vec<_>>(), "{name}: no gap");
        let entities: Vec<&str> = log.iter().map(|e| e.entity.as_str()).collect();
        assert_eq!(entities, order, "{name}: in commit order");
        assert_eq!(journal.service_log_head("cart").unwrap(), 6, "{name}");
        let rest: Vec<u64> = journal.service_log("cart", 4, 100).unwrap().iter().map(|e| e.position).collect();
        assert_eq!(rest, [5, 6], "{name}: from a position on");
    }
}

#[tokio::test]
async fn outbox_entries_are_due_deferred_and_removed() {
    for Subject { name, journal, .. } in journals().await {
        let mut commit = Commit::events("fan-out", "k", 0, Vec::new());
        commit.write = EntityWrite::Nothing;
        let webhook = Webhook {
            service: "fan-out".into(),
            version: 1,
            url: "https://cases.example.com/new".into(),
            method: "PUT".into(),
            headers: vec![("x-source".into(), "tests".into())],
            content_type: "text/plain".into(),
            body: b"case".to_vec(),
        };
        commit.outbox = vec![
            AsyncEffect::Command(call("x")),
            AsyncEffect::Command(call("y")),
            AsyncEffect::Webhook(webhook.clone()),
        ];
        assert!(journal.commit(commit).await.unwrap().is_durable(), "{name}");
        let lease = journal.take_lease("outbox", "this host", 60_000).unwrap().expect("a free lease");
        let (mut due, waiting) = journal.outbox_due(now_ms(), 0, 10).unwrap();
        assert_eq!(waiting, 3, "{name}");
        let last = due.pop().expect("three entries");
        assert_eq!(last.effect, AsyncEffect::Webhook(webhook), "{name}: a webhook reads back whole, last");
        journal.outbox_remove(&[last.id], &lease).unwrap();
        let targets: Vec<&str> = due
            .iter()
            .map(|e| match &e.effect {
                AsyncEffect::Command(call) => call.entity.as_str(),
                AsyncEffect::Webhook(webhook) => webhook.url.as_str(),
            })
            .collect();
        assert_eq!(targets, vec!["x", "y"], "{name}: due in commit order");
        assert!(due.iter().all(|e| e.hops == 1), "{name}: one hop deeper than the command");
        let mut later = due[0].clone();
        later.attempts = 1;
        later.next_attempt_ms = now_ms() + 60_000;
        journal.outbox_retry(&later, &lease).unwrap();
        journal.outbox_remove(&[due[1].id], &lease).unwrap();
        let (due_now, waiting) = journal.outbox_due(now_ms(), 0, 10).unwrap();
        assert_eq!((due_now.len(), waiting), (0, 1), "{name}: one deferred, one removed");
        let (due_later, _) = journal.outbox_due(now_ms() + 61_000, 0, 10).unwrap();
        assert_eq!(due_later.iter().map(|e| e.attempts).collect::<Vec<_>>(), [1], "{name}: its attempt recorded");
    }
}

#[tokio::test]
async fn a_lease_has_one_holder_and_a_lost_epoch_writes_nothing() {
    for Subject { name, journal, .. } in journals().await {
        let held = journal.take_lease("subscription/p/cart", "a", 60_000).unwrap().expect("a free lease");
        journal.set_offset("p", "cart", 5, &held).unwrap();
        assert_eq!(journal.offset("p", "cart").unwrap(), 5, "{name}");
        assert!(journal.renew_lease(&held, 60_000).unwrap(), "{name}: its holder renews it");
        if !journal.has_other_writers() {
            // One host opens the journal: it holds every lease, always.
            assert!(journal.take_lease("subscription/p/cart", "b", 60_000).unwrap().is_some(), "{name}");
            continue;
        }
        assert_eq!(journal.take_lease("subscription/p/cart", "b", 60_000).unwrap(), None, "{name}: held");
        journal.release_lease(&held).unwrap();
        let taken = journal.take_lease("subscription/p/cart", "b", 60_000).unwrap().expect("let go");
        assert!(taken.epoch > held.epoch, "{name}: a new holder, a new epoch");
        assert!(!journal.renew_lease(&held, 60_000).unwrap(), "{name}: the old holder cannot renew");
        let lost = |result: Result<(), JournalError>| matches!(result, Err(JournalError::LeaseLost(_)));
        assert!(lost(journal.set_offset("p", "cart", 3, &held)), "{name}");
        assert_eq!(journal.offset("p", "cart").unwrap(), 5, "{name}: the offset did not move back");
        let letter = DeadLetter { entity: "c".into(), seq: 1, attempts: 1, error: "refused".into(), at_ms: now_ms() };
        assert!(lost(journal.add_dead_letter("p", "cart", 1, &letter, &held)), "{name}");
        assert!(journal.dead_letters("p").unwrap().is_empty(), "{name}");
        assert!(lost(journal.outbox_remove(&[1], &held)), "{name}");
        journal.set_offset("p", "cart", 9, &taken).unwrap();
        assert_eq!(journal.offset("p", "cart").unwrap(), 9, "{name}: the new holder writes");

        // A lease its holder stops renewing is free once it expires.
        let brief = journal.take_lease("outbox", "a", 1).unwrap().expect("a free lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let next = journal.take_lease("outbox", "b", 60_000).unwrap().expect("expired");
        assert_eq!(next.epoch, brief.epoch + 1, "{name}");
        let names: Vec<String> = journal.leases().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["outbox", "subscription/p/cart"], "{name}");
    }
}

/// Timers set by commits, due in order; a firing removes one that fires
/// once and moves a repeating one to its next slot, and neither touches a
/// timer set again meanwhile.
#[tokio::test]
async fn fired_timers_go_or_move_on_and_a_newer_setting_is_left_alone() {
    for Subject { name, journal, .. } in journals().await {
        let set = |timers: Vec<Timer>| {
            let mut commit = Commit::events("orders", "o-1", 0, Vec::new());
            commit.write = EntityWrite::Nothing;
            commit.timers = timers.into_iter().map(|t| TimerChange::Set(Box::new(t))).collect();
            commit
        };
        let once = Timer::new("orders", "o-1", "expire", call("o-1"), 100, 0);
        let mut daily = Timer::new("orders", "o-1", "digest", call("o-1"), 200, 0);
        daily.schedule = Some(CronSchedule { expression: "0 9 * * *".into(), missed: MissedFirings::Skip });
        let replaced = Timer::new("orders", "o-1", "remind", call("o-1"), 50, 0);
        assert!(journal.commit(set(vec![once.clone(), daily.clone(), replaced.clone()])).await.unwrap().is_durable());
        let due = journal.timers_due(1_000, 10).unwrap();
        let names: Vec<&str> = due.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["remind", "expire", "digest"], "{name}: earliest first");
        assert_eq!(due[2], daily, "{name}: the schedule is kept");
        // `remind` is set again before its firing is recorded.
        let newer = Timer::new("orders", "o-1", "remind", call("o-1"), 5_000, 0);
        assert!(journal.commit(set(vec![newer.clone()])).await.unwrap().is_durable());

        let lease = journal.take_lease("timers", "this host", 60_000).unwrap().expect("a free lease");
        let mut moved = daily.clone();
        (moved.due_ms, moved.scheduled_ms) = (86_400_200, 86_400_200);
        journal.timers_fired(&[replaced, once, moved.clone()], &lease).unwrap();
        assert_eq!(journal.timers_of("orders", "o-1").unwrap(), [moved.clone(), newer.clone()], "{name}");
        assert_eq!(journal.next_timer_due().unwrap(), Some(5_000), "{name}");
        assert_eq!(journal.timers_pending().unwrap(), 2, "{name}");

        // A failed attempt is recorded on the setting it belongs to only.
        let mut retried = newer.clone();
        (retried.attempts, retried.last_error, retried.due_ms) = (1, Some("busy".into()), 6_000);
        journal.timer_update(&retried, &lease).unwrap();
        let mut stale = Timer::new("orders", "o-1", "digest", call("o-1"), 1, 0);
        stale.attempts = 9;
        journal.timer_update(&stale, &lease).unwrap();
        assert_eq!(journal.timers_of("orders", "o-1").unwrap(), [moved, retried], "{name}");
        assert_eq!(journal.timers_due(5_999, 10).unwrap(), [], "{name}");
    }
}

/// A timer's firing commits only while the setting it fires is stored: a
/// cancel or a new setting committed first, in an earlier batch or earlier
/// in the same run, refuses it, and it writes nothing.
#[tokio::test]
async fn a_firing_lands_only_while_its_timer_setting_is_stored() {
    for Subject { name, journal, .. } in journals().await {
        let timers = |changes: Vec<TimerChange>| {
            let mut commit = Commit::events("orders", "o-1", 0, Vec::new());
            commit.write = EntityWrite::Nothing;
            commit.timers = changes;
            commit
        };
        let set = |timer: &Timer| timers(vec![TimerChange::Set(Box::new(timer.clone()))]);
        let firing = |guard: TimerGuard, event: &str, expected: u64| {
            let mut commit = Commit::events("counter", "c", expected, vec![event.as_bytes().to_vec()]);
            commit.fires = Some(guard);
            commit
        };
        let expire = Timer::new("orders", "o-1", "expire", call("c"), 100, 0);
        assert!(journal.commit(set(&expire)).await.unwrap().is_durable());
        let fired = journal.commit(firing(TimerGuard::of(&expire), "a", 0)).await.unwrap();
        assert_eq!(fired, CommitStatus::Durable { last_seq: 1 }, "{name}: the setting is stored");

        // Set again: a firing of the first setting is refused.
        let again = Timer::new("orders", "o-1", "expire", call("c"), 100, 0);
        assert!(journal.commit(set(&again)).await.unwrap().is_durable());
        let stale = journal.commit(firing(TimerGuard::of(&expire), "b", 1)).await.unwrap();
        assert_eq!(stale, CommitStatus::TimerGone, "{name}");

        // Cancelled earlier in the same run: refused too, and what follows.
        let run = vec![
            timers(vec![TimerChange::Cancel("expire".into())]),
            firing(TimerGuard::of(&again), "c", 1),
            Commit::events("counter", "c", 1, vec![b"d".to_vec()]),
        ];
        let mut statuses = Vec::new();
        for pending in journal.commit_run(run) {
            statuses.push(pending.await.unwrap());
        }
        assert_eq!(
            statuses,
            [CommitStatus::Durable { last_seq: 0 }, CommitStatus::TimerGone, CommitStatus::AfterRefused],
            "{name}"
        );
        assert_eq!(journal.head("counter", "c").unwrap(), 1, "{name}: nothing of a refused firing is written");
        assert!(journal.timers_of("orders", "o-1").unwrap().is_empty(), "{name}");
    }
}
