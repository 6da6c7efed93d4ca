//! The database goes away under running hosts (one, or three sharing it)
//! and comes back: commands answer 503 `journal_unavailable` meanwhile,
//! nothing acknowledged is lost, and the hosts recover by themselves.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Mutex;
use wasmstate_tests::guests::COUNTER;
use wasmstate_tests::postgres::{OwnPostgres, start_own};
use wasmstate_tests::{Api, JournalKind, Options, Server};

use crate::host_loss::{assert_each_increment_once, increment};

/// A host for each of `dirs` on one fresh database of `postgres`, with
/// the counter deployed and served by all.
async fn hosts_on(postgres: &OwnPostgres, dirs: &[tempfile::TempDir]) -> Vec<(Server, Api)> {
    let url = postgres.create_database().await.expect("a database");
    let mut hosts = Vec::new();
    for dir in dirs {
        hosts.push(crate::start_host(&url, dir.path(), &[]).await);
    }
    hosts[0].1.deploy("counter", Path::new(COUNTER)).await;
    for (_, api) in &hosts {
        assert!(crate::serves(api, "counter").await);
    }
    hosts
}

/// What a load of increments saw: the counter values acknowledged (each
/// `Increase` by 1 answers the new value), and the refusals.
#[derive(Debug, Default)]
struct Seen {
    acknowledged: Vec<u64>,
    unavailable: usize,
}

/// What each entity's load saw.
type SeenBy = Arc<Mutex<HashMap<&'static str, Seen>>>;

/// Increments `entity` by 1 until `stop`, recording each answer.
async fn load(api: Api, entity: &'static str, stop: Arc<AtomicBool>, seen: SeenBy) {
    while !stop.load(Ordering::Relaxed) {
        let reply = api.invoke("counter", entity, "Increase", json!({"value": 1})).await;
        let mut all = seen.lock().await;
        let seen = all.entry(entity).or_default();
        match reply.status.as_u16() {
            200 => seen.acknowledged.push(reply.body["value"].as_u64().expect("a value")),
            503 => {
                assert_eq!(reply.body["error"]["kind"], "journal_unavailable", "{}", reply.body);
                assert!(reply.retry_after.is_some(), "503 says when to retry");
                seen.unavailable += 1;
                drop(all);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
}

/// Every value acknowledged is in the log, once: the log is gap-free from
/// 1 and holds at least every acknowledged increment.
async fn assert_nothing_acknowledged_lost(api: &Api, entity: &str, seen: &Seen) {
    let value = api.invoke("counter", entity, "Get", json!({})).await.expect(200)["value"].as_u64().unwrap();
    let events = api.events("counter", entity, 1).await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "the log has no gap");
    assert_eq!(value, seqs.len() as u64, "each event added 1");
    let mut acknowledged = seen.acknowledged.clone();
    acknowledged.sort_unstable();
    acknowledged.dedup();
    assert_eq!(acknowledged.len(), seen.acknowledged.len(), "no value was acknowledged twice");
    assert!(acknowledged.last().is_none_or(|last| *last <= value), "every acknowledged increment is in the log");
    // An increment refused with 503 may have landed; none landed twice.
    assert!(value <= (seen.acknowledged.len() + seen.unavailable) as u64, "{value} increments for {seen:?}");
}

async fn healthz(api: &Api) -> u16 {
    api.get("/healthz").await.status.as_u16()
}

/// The entities the load increments, one task each.
const ENTITIES: [&str; 4] = ["a", "b", "c", "d"];

#[tokio::test]
async fn a_database_restart_under_load_answers_503_loses_nothing_and_heals() {
    database_restart_under_load(1).await;
}

#[tokio::test]
async fn a_database_restart_under_three_hosts_answers_503_loses_nothing_and_heals() {
    database_restart_under_load(3).await;
}

/// The database stops and starts, then crashes and starts, under `hosts`
/// hosts taking increments (each entity's through one host, the i-th
/// entity's through the i-th host in turn).
async fn database_restart_under_load(hosts: usize) {
    let postgres = start_own().await.expect("a PostgreSQL server of the test's own");
    let dirs: Vec<_> = (0..hosts).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut hosts = hosts_on(&postgres, &dirs).await;
    let apis: Vec<Api> = hosts.iter().map(|(_, api)| api.clone()).collect();
    let api = apis[0].clone();
    let (stop, seen) = (Arc::new(AtomicBool::new(false)), SeenBy::default());
    let workers: Vec<_> = ENTITIES
        .into_iter()
        .enumerate()
        .map(|(i, entity)| tokio::spawn(load(apis[i % apis.len()].clone(), entity, stop.clone(), seen.clone())))
        .collect();
    let acknowledged = || async { seen.lock().await.values().map(|s| s.acknowledged.len()).sum::<usize>() };
    let unavailable = || async { seen.lock().await.values().map(|s| s.unavailable).sum::<usize>() };
    assert!(api.eventually(Duration::from_secs(10), || async { acknowledged().await >= 40 }).await);

    postgres.stop().await.unwrap();
    let refused = api.eventually(Duration::from_secs(10), || async { unavailable().await >= 10 }).await;
    assert!(refused, "commands answer 503 while the database is away");
    for api in &apis {
        let failing = api.eventually(Duration::from_secs(5), || async { healthz(api).await == 503 });
        assert!(failing.await, "/healthz says so");
    }
    let during = acknowledged().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(acknowledged().await, during, "nothing is acknowledged while the database is away");

    postgres.start().await.unwrap();
    let healed = api.eventually(Duration::from_secs(20), || async { acknowledged().await >= during + 40 }).await;
    assert!(healed, "the hosts take commands again by themselves");
    for api in &apis {
        assert!(api.eventually(Duration::from_secs(5), || async { healthz(api).await == 200 }).await);
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    // Once more after a crash of the database, and across a restart of the host.
    postgres.kill().await.unwrap();
    api.invoke("counter", "a", "Increase", json!({"value": 1})).await.expect_error(503);
    postgres.start().await.unwrap();
    let back = api
        .eventually(Duration::from_secs(20), || async {
            api.invoke("counter", "a", "Get", json!({})).await.status.as_u16() == 200
        })
        .await;
    assert!(back);
    let server = hosts.remove(0).0.restart().await.unwrap();
    let api = Api::new(server.base());
    for (entity, seen) in seen.lock().await.iter() {
        assert_nothing_acknowledged_lost(&api, entity, seen).await;
    }
}

#[tokio::test]
async fn a_host_starting_while_the_database_is_down_says_so() {
    let postgres = start_own().await.expect("a PostgreSQL server of the test's own");
    let url = postgres.create_database().await.unwrap();
    postgres.stop().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = Options { journal: Some(JournalKind::Database(url)), capture_stderr: true, ..Options::default() };
    let error = Server::start_with(dir.path(), &[], options).await.err().expect("the start is refused");
    let said = format!("{error:#}");
    assert!(said.contains("cannot open the journal on PostgreSQL") && said.contains("unavailable"), "{said}");
}

/// PostgreSQL ends the writer's connection in the middle of its
/// transactions, again and again, under load: each transaction rolls back
/// whole, the writer goes on on a new connection, and every increment
/// acknowledged is there once.
#[tokio::test]
async fn the_writer_s_connection_ended_mid_transaction_leaves_nothing_half_written() {
    let url = wasmstate_tests::postgres::shared().await.expect("a PostgreSQL server").create_database().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = crate::start_host(&url, dir.path(), &[]).await;
    api.deploy("counter", Path::new(COUNTER)).await;
    let live = Arc::new(std::sync::Mutex::new(vec![api.clone()]));
    let (stop, acks) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> =
        (0..4).map(|entity| tokio::spawn(increment(live.clone(), entity, stop.clone(), acks.clone()))).collect();
    // And one without keys: a batch whose COMMIT went unanswered must not
    // be written again.
    let keyless = SeenBy::default();
    let without_keys = tokio::spawn(load(api.clone(), "keyless", stop.clone(), keyless.clone()));

    let admin = wasmstate_tests::postgres::connect(&url).await.unwrap();
    let mut ended = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ended < 5 {
        assert!(std::time::Instant::now() < deadline, "the writer was caught mid-transaction {ended} times");
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'wasmstate writer' AND datname = current_database() \
                 AND xact_start IS NOT NULL AND state <> 'idle'",
                &[],
            )
            .await
            .unwrap();
        ended += rows.iter().filter(|row| row.get::<_, bool>(0)).count();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = acks.load(Ordering::Relaxed);
    let going_on = api.eventually(Duration::from_secs(10), || async { acks.load(Ordering::Relaxed) >= before + 100 });
    assert!(going_on.await, "the writer commits again on a new connection");
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.push(client.await.expect("the client"));
    }
    without_keys.await.unwrap();
    assert_each_increment_once(&api, &acknowledged).await;
    assert_nothing_acknowledged_lost(&api, "keyless", &keyless.lock().await["keyless"]).await;
}
