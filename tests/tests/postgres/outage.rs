//! The database goes away under a running host and comes back: commands
//! answer 503 `journal_unavailable` meanwhile, nothing acknowledged is
//! lost, and the host recovers by itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Mutex;
use wasmstate_tests::guests::COUNTER;
use wasmstate_tests::postgres::{OwnPostgres, start_own};
use wasmstate_tests::{Api, JournalKind, Options, Server};

/// A host on a fresh database of `postgres`, with the counter deployed.
async fn host_on(postgres: &OwnPostgres, dir: &Path) -> (Server, Api) {
    let url = postgres.create_database().await.expect("a database");
    let options = Options { journal: Some(JournalKind::Database(url)), ..Options::default() };
    let server = Server::start_with(dir, &[], options).await.expect("the host starts");
    let api = Api::new(server.base());
    api.deploy("counter", Path::new(COUNTER)).await;
    (server, api)
}

/// What a load of increments saw: the counter values acknowledged (each
/// `Increase` by 1 answers the new value), and the refusals.
#[derive(Default)]
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
}

async fn healthz(api: &Api) -> u16 {
    api.get("/healthz").await.status.as_u16()
}

/// The entities the load increments, one task each.
const ENTITIES: [&str; 4] = ["a", "b", "c", "d"];

#[tokio::test]
async fn a_database_restart_under_load_answers_503_loses_nothing_and_heals() {
    let postgres = start_own().await.expect("a PostgreSQL server of the test's own");
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = host_on(&postgres, dir.path()).await;
    let (stop, seen) = (Arc::new(AtomicBool::new(false)), SeenBy::default());
    let workers: Vec<_> = ENTITIES
        .into_iter()
        .map(|entity| tokio::spawn(load(api.clone(), entity, stop.clone(), seen.clone())))
        .collect();
    let acknowledged = || async { seen.lock().await.values().map(|s| s.acknowledged.len()).sum::<usize>() };
    let unavailable = || async { seen.lock().await.values().map(|s| s.unavailable).sum::<usize>() };
    assert!(api.eventually(Duration::from_secs(10), || async { acknowledged().await >= 40 }).await);

    postgres.stop().await.unwrap();
    let refused = api.eventually(Duration::from_secs(10), || async { unavailable().await >= 10 }).await;
    assert!(refused, "commands answer 503 while the database is away");
    assert_eq!(healthz(&api).await, 503, "/healthz says so");
    let during = acknowledged().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(acknowledged().await, during, "nothing is acknowledged while the database is away");

    postgres.start().await.unwrap();
    let healed = api.eventually(Duration::from_secs(20), || async { acknowledged().await >= during + 40 }).await;
    assert!(healed, "the host takes commands again by itself");
    assert!(api.eventually(Duration::from_secs(5), || async { healthz(&api).await == 200 }).await);
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
    let server = server.restart().await.unwrap();
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
