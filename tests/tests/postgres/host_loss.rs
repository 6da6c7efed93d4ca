//! Three hosts on one database under load, one of them killed again and
//! again: every acknowledged command is in the journal once, nothing is
//! half-written, and the survivors serve the dead host's entities at once.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use wasmstate_tests::guests::COUNTER;
use wasmstate_tests::postgres::shared;
use wasmstate_tests::{Api, Server};

use crate::{serves, start_host};

/// A host silent this long is taken for dead.
const HOST_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times a host is killed.
const ROUNDS: usize = 10;

/// The entities the load increments, one sequential client each.
const ENTITIES: usize = 6;

/// The hosts a client may send to: those not killed.
pub(crate) type Live = Arc<Mutex<Vec<Api>>>;

async fn start(url: &str, dir: &Path) -> (Server, Api) {
    start_host(url, dir, &["--host-timeout", &format!("{}s", HOST_TIMEOUT.as_secs())]).await
}

/// Increments `counter/e{entity}` by 1 again and again until `stop`, each
/// increment under a key of its own, sent to the live hosts in turn and
/// sent again (through the next one) until acknowledged; answers the
/// values acknowledged, in order.
pub(crate) async fn increment(live: Live, entity: usize, stop: Arc<AtomicBool>, acks: Arc<AtomicUsize>) -> Vec<u64> {
    let mut acknowledged = Vec::new();
    let (mut turn, name) = (entity, format!("e{entity}"));
    while !stop.load(Ordering::Relaxed) {
        let key = format!("e{entity}-{}", acknowledged.len());
        loop {
            turn += 1;
            let api = {
                let live = live.lock().unwrap();
                live[turn % live.len()].clone()
            };
            match api.try_invoke_idempotent("counter", &name, "Increase", json!({"value": 1}), &key).await {
                Ok(reply) if reply.status == 200 => {
                    acknowledged.push(reply.body["value"].as_u64().expect("a value"));
                    acks.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                // The owner died under a forwarded command: it may have run, and the key says.
                Ok(reply) if reply.status == 503 => {}
                Ok(reply) => panic!("unexpected {}: {}", reply.status, reply.body),
                // The host died under the request.
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    acknowledged
}

#[tokio::test]
async fn a_host_killed_ten_times_under_load_loses_nothing_acknowledged() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers = Vec::new();
    for dir in &dirs {
        servers.push(start(&url, dir.path()).await);
    }
    servers[0].1.deploy("counter", Path::new(COUNTER)).await;
    for (_, api) in &servers {
        assert!(serves(api, "counter").await);
    }
    let live: Live = Arc::new(Mutex::new(servers.iter().map(|(_, api)| api.clone()).collect()));
    let (stop, acks) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> =
        (0..ENTITIES).map(|entity| tokio::spawn(increment(live.clone(), entity, stop.clone(), acks.clone()))).collect();

    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let victim = round % servers.len();
        let (server, _) = servers.remove(victim);
        live.lock().unwrap().retain(|other| !other.is(server.base()));
        server.kill().await.unwrap();
        // The survivors serve every entity, the dead host's too, at once.
        let survivor = live.lock().unwrap()[0].clone();
        for entity in 0..ENTITIES {
            let served = survivor.eventually(HOST_TIMEOUT, || async {
                survivor.invoke("counter", &format!("e{entity}"), "Get", json!({})).await.status == 200
            });
            assert!(served.await, "round {round}: e{entity} is served without the dead host");
        }
        let before = acks.load(Ordering::Relaxed);
        let going_on = survivor.eventually(HOST_TIMEOUT, || async { acks.load(Ordering::Relaxed) >= before + 50 });
        assert!(going_on.await, "round {round}: the load goes on without the dead host");
        let back = start(&url, dirs[victim].path()).await;
        live.lock().unwrap().push(back.1.clone());
        servers.insert(victim, back);
    }
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.push(client.await.expect("the client"));
    }

    assert!(acks.load(Ordering::Relaxed) >= ROUNDS * 100, "{} acknowledged", acks.load(Ordering::Relaxed));
    assert_each_increment_once(&servers[1].1, &acknowledged).await;
}

/// Each entity `e{i}` holds the increments its client saw acknowledged
/// (`acknowledged[i]`), once each, in order, and nothing else.
pub(crate) async fn assert_each_increment_once(api: &Api, acknowledged: &[Vec<u64>]) {
    for (entity, values) in acknowledged.iter().enumerate() {
        let n = values.len() as u64;
        assert!(n > 0, "e{entity} took increments");
        assert_eq!(*values, (1..=n).collect::<Vec<_>>(), "e{entity}: each increment acknowledged once, in order");
        let name = format!("e{entity}");
        assert_eq!(api.invoke("counter", &name, "Get", json!({})).await.expect(200), json!({ "value": n }));
        assert_eq!(api.seqs("counter", &name).await, (1..=n).collect::<Vec<_>>(), "e{entity}: no gap, no extra");
    }
}
