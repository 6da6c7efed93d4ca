//! 14: CRDT entities, every host a replica that takes writes. 14a: 64
//! connections incrementing 1,000 grow-only counters on one host (redb);
//! 14b: the same spread over three hosts on one PostgreSQL database; 14c:
//! one hot counter hit through all three at once (no routing, no
//! conflicts: against scenario 11b's event-sourced hot counter). After 14c,
//! how long until every host's own replica answers the total the journal
//! holds: the convergence time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, Uri};
use wasmstate_tests::{JournalKind, Options};

use crate::cluster::start_hosts;
use crate::load::{self, Client, Load};
use crate::report::{Report, Row, Target, fmt_dur};
use crate::servers::{CONNECTIONS, Running, row};

/// The counters 14a and 14b spread their increments over.
const COUNTERS: u64 = 1_000;
/// The longest the hosts may take to converge.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(30);

/// An increment by 1 of the counter `n` picks among `spread`.
fn increments(spread: u64) -> load::NextRequest {
    let body = Bytes::from_static(br#"{"actions":[{"increment":1}]}"#);
    Arc::new(move |n| {
        let id = if spread == 1 { "hot".to_string() } else { format!("{}", n % spread) };
        let uri: Uri = format!("/v1/services/crdt/entities/gcounter-{id}/Process").parse().unwrap();
        (uri, body.clone())
    })
}

/// Runs 14a, 14b and 14c.
pub async fn crdt(tck_crdt: &[u8], report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let warmup = Duration::from_secs(1);
    let redb = Options { journal: Some(JournalKind::Redb), ..Options::default() };
    let running = Running::start_with(&[], &[("crdt", tck_crdt)], redb).await?;
    let load = Load { connections: CONNECTIONS, warmup, duration, requests: None };
    let result = load::run(running.addr, load, increments(COUNTERS), &running.watched()).await?;
    let one = row(report, "14a", "64 conns incrementing 1,000 GCounters, one host (redb)", result);
    report.rows.push(one);
    running.stop().await?;

    let postgres = wasmstate_tests::postgres::shared().await?;
    let url = postgres.create_database().await?;
    let probe = "/v1/services/crdt/entities/flag-probe/Get";
    let (dirs, servers, addrs) = start_hosts(&url, &[("crdt", tck_crdt)], probe).await?;
    let mut watched = vec![load::machine()];
    watched.extend(postgres.pid().map(load::process_tree));
    watched.extend(servers.iter().map(|s| load::process(s.pid())));
    let rows = [
        ("14b", "64 conns incrementing 1,000 GCounters, spread over 3 hosts on PostgreSQL", COUNTERS),
        ("14c", "64 conns on one GCounter, spread over 3 hosts (no routing)", 1),
    ];
    for (key, name, spread) in rows {
        let load = Load { connections: CONNECTIONS, warmup, duration, requests: None };
        let mut result = load::run_spread(&addrs, load, increments(spread), &watched).await?;
        let stopped = Instant::now();
        let cpu = result.cpu.clone();
        let mut row = Row::new(key, name, &mut result.latencies, result.elapsed);
        row.errors = result.errors;
        if let Some(error) = result.first_error {
            row.note = format!("first error: {error}");
        }
        row.server_cpu = Some(cpu.iter().skip(2).sum());
        if spread == 1 {
            let (total, converged) = convergence(&addrs, stopped).await?;
            row.note =
                format!("{total} increments; every host's replica answered them {} after the load", fmt_dur(converged));
            report.facts.push(("14c: convergence after the load stops".into(), fmt_dur(converged)));
            report.targets.push(Target {
                goal: "14c: every host converged within 1 s of the last write".into(),
                measured: fmt_dur(converged),
                met: converged <= Duration::from_secs(1),
            });
        }
        report.rows.push(row);
    }
    for server in servers {
        server.stop().await?;
    }
    drop(dirs);
    Ok(())
}

/// The hot counter's total as the journal holds it (the join of every
/// replica's row), and how long after `stopped` every host's own `Get`
/// answered it.
async fn convergence(addrs: &[SocketAddr], stopped: Instant) -> anyhow::Result<(u64, Duration)> {
    let mut client = Client::connect(addrs[0]).await?;
    let shown = client.expect(Method::GET, "/v1/services/crdt/entities/gcounter-hot", Bytes::new(), 200).await?;
    let total = serde_json::from_slice::<serde_json::Value>(&shown)?["state"].as_u64().unwrap_or(0);
    let expected = serde_json::json!({ "value": total });
    let mut clients = Vec::new();
    for addr in addrs {
        clients.push(Client::connect(*addr).await?);
    }
    for client in &mut clients {
        loop {
            let (_, body) =
                client.send(Method::POST, "/v1/services/crdt/entities/gcounter-hot/Get".parse()?, "{}".into()).await?;
            if serde_json::from_slice::<serde_json::Value>(&body).ok().as_ref() == Some(&expected) {
                break;
            }
            anyhow::ensure!(stopped.elapsed() < CONVERGENCE_BOUND, "the hosts did not converge on {total}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok((total, stopped.elapsed()))
}
