//! 11: three hosts on one PostgreSQL database, on this machine, with the
//! load spread over them: scenario 2's carts (11a) and one hot counter
//! (11b). Besides each row, the facts say how many commands went to their
//! entity's owner and how many conflicted and ran again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, Uri};
use wasmstate_tests::{JournalKind, Options, Server};

use crate::load::{self, Client, Load};
use crate::report::{Report, Row};
use crate::servers::{CONNECTIONS, Guests, across_carts, counters};

/// How many hosts share the database.
pub const HOSTS: usize = 3;

/// Runs 11a and 11b on a fresh database of the shared PostgreSQL server.
pub async fn three_hosts(guests: &Guests, report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let postgres = wasmstate_tests::postgres::shared().await?;
    let url = postgres.create_database().await?;
    let services: [(&str, &[u8]); 2] = [("cart", &guests.cart), ("counter", &guests.counter)];
    let (dirs, servers, addrs) = start_hosts(&url, &services, "/v1/services/counter/entities/probe/Get").await?;
    let mut watched = vec![load::machine()];
    watched.extend(postgres.pid().map(load::process_tree));
    watched.extend(servers.iter().map(|s| load::process(s.pid())));

    let carts = across_carts()?;
    let hot: Uri = "/v1/services/counter/entities/hot/Increase".parse()?;
    let one = Bytes::from_static(br#"{"value":1}"#);
    let counter: load::NextRequest = Arc::new(move |_| (hot.clone(), one.clone()));
    let rows = [
        ("11a", "scenario 2's load spread over 3 hosts on PostgreSQL", carts, Duration::from_secs(2)),
        ("11b", "64 conns on one counter, spread over 3 hosts", counter, Duration::from_secs(1)),
    ];
    for (key, name, next, warmup) in rows {
        let before = routing(&addrs).await?;
        let load = Load { connections: CONNECTIONS, warmup, duration, requests: None };
        let mut result = load::run_spread(&addrs, load, next, &watched).await?;
        let after = routing(&addrs).await?;
        let cpu = result.cpu.clone();
        let mut row = Row::new(key, name, &mut result.latencies, result.elapsed);
        row.errors = result.errors;
        if let Some(error) = result.first_error {
            row.note = format!("first error: {error}");
        }
        let hosts: f64 = cpu.iter().skip(2).sum();
        row.server_cpu = Some(hosts);
        // The counters take in the warm-up too: so does the estimate.
        let commands = (row.rate * (duration + warmup).as_secs_f64()).max(1.0);
        let [forwarded, fallbacks, retries] = [0, 1, 2].map(|i| after[i].saturating_sub(before[i]) as f64);
        report.facts.push((
            format!("{key}: routing (warm-up included)"),
            format!(
                "about {:.0} % of the commands forwarded to their entity's owner, {fallbacks:.0} run where they \
                 arrived for an unreachable owner, {retries:.0} runs retried after a conflict ({:.2} % of the commands)",
                100.0 * forwarded / commands,
                100.0 * retries / commands
            ),
        ));
        let postgres_cpu = cpu.get(1).copied().unwrap_or(0.0);
        report.facts.push((
            format!("{key}: CPU during the window, in cores"),
            format!(
                "machine busy {:.2} = {HOSTS} hosts {hosts:.2} + PostgreSQL {postgres_cpu:.2} + load generator and the rest {:.2}",
                cpu[0],
                (cpu[0] - hosts - postgres_cpu).max(0.0)
            ),
        ));
        report.rows.push(row);
    }
    for server in servers {
        server.stop().await?;
    }
    drop(dirs);
    Ok(())
}

/// Starts [`HOSTS`] hosts on the database `url`, each with a data dir of
/// its own, deploys `services` through the first, and waits until every
/// host sees the others and answers `probe` (a POST): answers the data
/// dirs, the servers and their addresses.
pub async fn start_hosts(
    url: &str,
    services: &[(&str, &[u8])],
    probe: &str,
) -> anyhow::Result<(Vec<tempfile::TempDir>, Vec<Server>, Vec<SocketAddr>)> {
    let mut dirs = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..HOSTS {
        let dir = tempfile::tempdir()?;
        let options = Options { journal: Some(JournalKind::Database(url.to_string())), ..Options::default() };
        servers.push(Server::start_with(dir.path(), &["--host-timeout", "3s"], options).await?);
        dirs.push(dir);
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| load::addr_of(s.base())).collect::<Result<_, _>>()?;
    let mut first = Client::connect(addrs[0]).await?;
    for (name, bytes) in services {
        first.expect(Method::PUT, &format!("/v1/services/{name}"), Bytes::copy_from_slice(bytes), 201).await?;
    }
    // Every host routes to every other, and runs the services.
    for addr in &addrs {
        let mut client = Client::connect(*addr).await?;
        for _ in 0..100 {
            let cluster = client.expect(Method::GET, "/v1/cluster", Bytes::new(), 200).await?;
            let hosts = serde_json::from_slice::<serde_json::Value>(&cluster)?["hosts"].as_array().map_or(0, Vec::len);
            let ready = client.send(Method::POST, probe.parse()?, "{}".into());
            if hosts == HOSTS && ready.await?.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok((dirs, servers, addrs))
}

/// Forwarded commands, fallbacks and conflict retries, summed over `addrs`.
async fn routing(addrs: &[SocketAddr]) -> anyhow::Result<[u64; 3]> {
    let mut sum = [0; 3];
    for addr in addrs {
        let names =
            ["wasmstate_forwarded_total", "wasmstate_forward_fallbacks_total", "wasmstate_conflict_retries_total"];
        let values = counters(*addr, names).await?;
        for (total, value) in sum.iter_mut().zip(values) {
            *total += value;
        }
    }
    Ok(sum)
}
