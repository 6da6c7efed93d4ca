//! Crash safety: concurrent load, SIGKILL at random moments, restart on the
//! same data dir. Every acknowledged command has all its events, no command
//! is half-written, and every log's seqs run 1..n with no gap or duplicate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use wasmstate_tests::guests::MISBEHAVING;
use wasmstate_tests::{Api, Server};

use crate::Rng;

const SVC: &str = "misbehaving";
const ENTITIES: usize = 6;
const CLIENTS: usize = 12;
const PARTS: u64 = 3;
const ROUNDS: usize = 20;

#[tokio::test]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::from_clock("crash");
    let acknowledged: Arc<Mutex<BTreeMap<usize, BTreeSet<String>>>> = Arc::default();
    let mut next_token = 0u64;

    let server = Server::start(dir.path(), &[]).await.unwrap();
    Api::new(server.base()).deploy(SVC, Path::new(MISBEHAVING)).await;
    let mut server = Some(server);

    for round in 0..ROUNDS {
        let running = match server.take() {
            Some(s) => s,
            None => Server::start(dir.path(), &[]).await.unwrap(),
        };
        let api = Api::new(running.base());
        let so_far = acknowledged.lock().unwrap().clone();
        verify(&api, &so_far).await;

        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let api = api.clone();
                let acknowledged = acknowledged.clone();
                let first_token = next_token + (client as u64) * 1_000_000;
                tokio::spawn(async move {
                    for n in 0.. {
                        let entity = (client + n) % ENTITIES;
                        let token = format!("r{round}-t{}", first_token + n as u64);
                        let body = json!({"value": token, "count": PARTS});
                        match api.try_invoke(SVC, &format!("e{entity}"), "Batch", body).await {
                            Ok(reply) if reply.status == 200 => {
                                acknowledged.lock().unwrap().entry(entity).or_default().insert(token);
                            }
                            Ok(reply) => panic!("unexpected {}: {}", reply.status, reply.body),
                            Err(_) => break, // the server is gone
                        }
                    }
                })
            })
            .collect();
        next_token += CLIENTS as u64 * 1_000_000;
        tokio::time::sleep(Duration::from_millis(50 + rng.next_u64() % 400)).await;
        running.kill().await.unwrap();
        for client in clients {
            client.await.unwrap();
        }
    }

    let server = Server::start(dir.path(), &[]).await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let total: usize = acknowledged.values().map(BTreeSet::len).sum();
    eprintln!("{total} commands acknowledged over {ROUNDS} crashes");
    assert!(total > ROUNDS, "the load must get commands through, got {total}");
    verify(&Api::new(server.base()), &acknowledged).await;
}

/// Checks every entity's log against what was acknowledged.
async fn verify(api: &Api, acknowledged: &BTreeMap<usize, BTreeSet<String>>) {
    for entity in 0..ENTITIES {
        // Every event, page by page: a page ends at 10,000 events, which
        // need not be a command's last.
        let mut events = Vec::new();
        loop {
            let page = api.events(SVC, &format!("e{entity}"), events.len() as u64 + 1).await;
            if page.is_empty() {
                break;
            }
            events.extend(page);
        }
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>(), "e{entity}: gap or duplicate");
        // Events come in whole commands: PARTS consecutive parts of one batch.
        let mut in_log = BTreeSet::new();
        for chunk in events.chunks(PARTS as usize) {
            let batch = &chunk[0]["payload"]["value"]["batch"];
            assert_eq!(chunk.len() as u64, PARTS, "e{entity}: a half-written command");
            for (part, event) in chunk.iter().enumerate() {
                assert_eq!(&event["payload"]["value"]["batch"], batch, "e{entity}: commands interleaved");
                assert_eq!(event["payload"]["value"]["part"], part as u64);
            }
            assert!(in_log.insert(batch.as_str().unwrap().to_string()), "e{entity}: a command written twice");
        }
        if let Some(acked) = acknowledged.get(&entity) {
            let missing: Vec<_> = acked.difference(&in_log).collect();
            assert!(missing.is_empty(), "e{entity}: acknowledged but lost: {missing:?}");
        }
    }
}
