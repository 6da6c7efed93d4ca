//! Black-box tests of what only the PostgreSQL journal has: a database
//! that goes away under a running host, and several hosts on one. Each
//! test runs a PostgreSQL server of its own, whatever journal the rest of
//! the suite runs on.

mod copy;
mod crdt_hosts;
mod host_loss;
#[path = "../common/in_process.rs"]
mod in_process;
mod leases;
mod outage;
mod shared_journal;
mod two_hosts;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use wasmstate_tests::{Api, JournalKind, Options, Reply, Server};

/// Starts a host on the database `url`, with `dir` for its data and `args`.
async fn start_host(url: &str, dir: &Path, args: &[&str]) -> (Server, Api) {
    let options = Options { journal: Some(JournalKind::Database(url.to_string())), ..Options::default() };
    let server = Server::start_with(dir, args, options).await.expect("the host starts");
    let api = Api::new(server.base());
    (server, api)
}

/// Whether `api` serves `service` within a second: hosts take in what
/// another deployed within that.
async fn serves(api: &Api, service: &str) -> bool {
    answers(api, service, "Get", Duration::from_secs(1)).await
}

/// Whether `api` answers `command` of `service` (on entity `probe`, with
/// `{}`) with 200 within `within`.
async fn answers(api: &Api, service: &str, command: &str, within: Duration) -> bool {
    api.eventually(within, || async { api.invoke(service, "probe", command, json!({})).await.status == 200 }).await
}

/// Sends `calls` counter increments by 1 at once, the i-th to
/// `apis[i % apis.len()]` on entity `entity(i)`; answers each reply with
/// its entity, in the order sent.
async fn race_increments(apis: &[Api], calls: usize, entity: impl Fn(usize) -> String) -> Vec<(String, Reply)> {
    let sent: Vec<_> = (0..calls)
        .map(|i| {
            let (api, entity) = (apis[i % apis.len()].clone(), entity(i));
            tokio::spawn(async move {
                let reply = api.invoke("counter", &entity, "Increase", json!({ "value": 1 })).await;
                (entity, reply)
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(calls);
    for call in sent {
        replies.push(call.await.expect("the increment's task"));
    }
    replies
}
