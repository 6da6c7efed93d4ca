//! Scenarios against the real `wasmstate` binary: load on warm entities
//! (1–3) and the cold paths of deploying and restarting (4a, 4b).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hyper::{Method, Uri};
use tempfile::TempDir;
use wasmstate_tests::Server;

use crate::load::{self, Client, Load, LoadResult};
use crate::report::{Report, Row, Samples, Timing, fmt_dur};

/// Carts of the headline scenario.
pub const CARTS: usize = 1_000;
/// Connections of the concurrent scenarios.
pub const CONNECTIONS: usize = 64;
/// Distinct products each cart gets, so its state stays small.
const PRODUCTS: usize = 5;

/// The guest components, read once.
pub struct Guests {
    /// The shopping cart component.
    pub cart: Vec<u8>,
    /// The counter component.
    pub counter: Vec<u8>,
}

/// A server on a temporary data dir.
pub struct Running {
    /// The data dir (deleted when dropped).
    pub dir: TempDir,
    /// The server process.
    pub server: Server,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Running {
    /// Starts a server on a fresh data dir with `args` and deploys `services`.
    pub async fn start(args: &[&str], services: &[(&str, &[u8])]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let server = Server::start(dir.path(), args).await?;
        let addr = load::addr_of(server.base())?;
        let mut client = Client::connect(addr).await?;
        for (name, bytes) in services {
            deploy(&mut client, name, bytes).await?;
        }
        Ok(Self { dir, server, addr })
    }

    /// Stops the server with SIGTERM, checking it exits cleanly; answers the data dir.
    pub async fn stop(self) -> anyhow::Result<TempDir> {
        let status = self.server.stop().await?;
        anyhow::ensure!(status.success(), "wasmstate exited with {status}");
        Ok(self.dir)
    }

    /// The CPU a load run watches: the server's, the load generator's, and
    /// the server's journal writer thread's.
    pub fn watched(&self) -> [load::CpuProbe; 3] {
        let pid = self.server.pid();
        [load::process(pid), load::process(std::process::id()), load::threads(pid, "journal-writer")]
    }
}

/// `PUT /v1/services/{name}`, expecting 201.
pub async fn deploy(client: &mut Client, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = format!("/v1/services/{name}");
    client.expect(Method::PUT, &path, Bytes::copy_from_slice(bytes), 201).await.map(drop)
}

/// The AddItem bodies the cart scenarios cycle through.
fn cart_bodies() -> Arc<Vec<Bytes>> {
    Arc::new(
        (0..PRODUCTS)
            .map(|p| Bytes::from(format!(r#"{{"productId":"P{p:08}","name":"Product {p}","quantity":1}}"#)))
            .collect(),
    )
}

fn add_item(cart: &str) -> String {
    format!("/v1/services/cart/entities/{cart}/AddItem")
}

/// A table row from a load run; the journal writer's share of the server's
/// CPU goes to the facts.
pub fn row(report: &mut Report, key: &str, name: &str, mut result: LoadResult) -> Row {
    let mut row = Row::new(key, name, &mut result.latencies, result.elapsed);
    row.errors = result.errors;
    row.server_cpu = result.cpu.first().copied();
    row.load_cpu = result.cpu.get(1).copied();
    if let Some(error) = result.first_error {
        row.note = format!("first error: {error}");
    }
    if let (Some(per_op), Some(writer)) = (row.cpu_per_op(), result.cpu.get(2)) {
        let writer_per_op = Duration::from_secs_f64(writer / row.rate.max(1e-9));
        report.facts.push((
            format!("{key}: server CPU per invocation"),
            format!(
                "{} = journal-writer thread {} + everything else {}",
                fmt_dur(per_op),
                fmt_dur(writer_per_op),
                fmt_dur(per_op.saturating_sub(writer_per_op))
            ),
        ));
    }
    row
}

/// The journal's commit and append counters from `/metrics`.
async fn commit_counters(addr: SocketAddr) -> anyhow::Result<(u64, u64)> {
    let mut client = Client::connect(addr).await?;
    let text = client.expect(Method::GET, "/metrics", Bytes::new(), 200).await?;
    let text = String::from_utf8_lossy(&text);
    let value = |name: &str| -> anyhow::Result<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .with_context(|| format!("no {name} in /metrics"))
    };
    Ok((value("wasmstate_journal_commits_total ")?, value("wasmstate_journal_appends_total ")?))
}

/// Warms the cart `warm` up and answers the load of scenarios 1 and 9: one
/// connection invoking AddItem on it, each after the previous reply.
pub async fn one_warm_cart(running: &Running, duration: Duration) -> anyhow::Result<(load::NextRequest, Load)> {
    let path = add_item("warm");
    Client::connect(running.addr).await?.post_ok(&path, r#"{"productId":"P0","name":"P","quantity":1}"#).await?;
    let uri: Uri = path.parse()?;
    let bodies = cart_bodies();
    let next: load::NextRequest = Arc::new(move |n| (uri.clone(), bodies[n as usize % PRODUCTS].clone()));
    Ok((next, Load { connections: 1, warmup: Duration::from_millis(500), duration, requests: None }))
}

/// 1: one connection invoking AddItem on one warm cart, each after the previous reply.
pub async fn sequential(guests: &Guests, report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let running = Running::start(&[], &[("cart", &guests.cart)]).await?;
    let (next, load) = one_warm_cart(&running, duration).await?;
    let result = load::run(running.addr, load, next, &running.watched()).await?;
    let row1 = row(report, "1", "sequential AddItem, one warm cart, 1 conn", result);
    report.rows.push(row1);
    // The same path without a commit: GetCart emits no event.
    let uri: Uri = "/v1/services/cart/entities/warm/GetCart".parse()?;
    let next: load::NextRequest = Arc::new(move |_| (uri.clone(), Bytes::new()));
    let load = Load {
        connections: 1,
        warmup: Duration::from_millis(500),
        duration: duration.min(Duration::from_secs(3)),
        requests: None,
    };
    let result = load::run(running.addr, load, next, &running.watched()).await?;
    let mut row1b = row(report, "1b", "the same cart's GetCart (no event, no commit)", result);
    row1b.reference = true;
    report.rows.push(row1b);
    running.stop().await?;
    Ok(())
}

/// 2 (headline): 64 connections invoking AddItem round-robin across 1,000 carts.
pub async fn headline(guests: &Guests, report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let running = Running::start(&[], &[("cart", &guests.cart)]).await?;
    let uris: Arc<Vec<Uri>> =
        Arc::new((0..CARTS).map(|c| add_item(&format!("cart-{c:04}")).parse()).collect::<Result<_, _>>()?);
    let bodies = cart_bodies();
    let next: load::NextRequest = Arc::new(move |n| {
        let n = n as usize;
        (uris[n % CARTS].clone(), bodies[(n / CARTS) % PRODUCTS].clone())
    });
    let (commits_before, appends_before) = commit_counters(running.addr).await?;
    // The warm-up touches every cart (each starts cold, with an empty log).
    let load = Load { connections: CONNECTIONS, warmup: Duration::from_secs(2), duration, requests: None };
    let result = load::run(running.addr, load, next, &running.watched()).await?;
    let (commits_after, appends_after) = commit_counters(running.addr).await?;
    let commits = commits_after - commits_before;
    let appends = appends_after - appends_before;
    report.facts.push((
        "2: journal commits during the run (warm-up included)".into(),
        format!(
            "{commits} commits for {appends} appends = {:.1} appends per fsync'd transaction, {:.0} commits/s",
            appends as f64 / commits.max(1) as f64,
            commits as f64 / (duration + Duration::from_secs(2)).as_secs_f64()
        ),
    ));
    let row2 = row(report, "2", "64 conns, AddItem over 1,000 carts (headline)", result);
    report.rows.push(row2);
    running.stop().await?;
    Ok(())
}

/// 3: 64 connections invoking Increase on one counter.
pub async fn hot_counter(guests: &Guests, report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let running = Running::start(&[], &[("counter", &guests.counter)]).await?;
    let uri: Uri = "/v1/services/counter/entities/hot/Increase".parse()?;
    let body = Bytes::from_static(br#"{"value":1}"#);
    let next: load::NextRequest = Arc::new(move |_| (uri.clone(), body.clone()));
    let (commits_before, appends_before) = commit_counters(running.addr).await?;
    let load = Load { connections: CONNECTIONS, warmup: Duration::from_secs(1), duration, requests: None };
    let result = load::run(running.addr, load, next, &running.watched()).await?;
    let (commits_after, appends_after) = commit_counters(running.addr).await?;
    report.facts.push((
        "3: journal commits during the run (warm-up included)".into(),
        format!(
            "{} commits for {} appends (one entity: its commands run, and commit, one after the other)",
            commits_after - commits_before,
            appends_after - appends_before
        ),
    ));
    let row3 = row(report, "3", "64 conns, Increase on one hot counter", result);
    report.rows.push(row3);
    running.stop().await?;
    Ok(())
}

/// 4a: from the start of `PUT` of the cart to the first 200 of an invocation
/// of it, on a running server (each round deploys under a new name, so each
/// compiles and stores the component afresh).
pub async fn deploy_to_first_reply(guests: &Guests, report: &mut Report, rounds: usize) -> anyhow::Result<()> {
    let running = Running::start(&[], &[]).await?;
    let (mut put, mut invoke, mut total) = (Samples::default(), Samples::default(), Samples::default());
    for round in 0..rounds {
        let mut client = Client::connect(running.addr).await?;
        let service = format!("cart{round}");
        let start = Instant::now();
        deploy(&mut client, &service, &guests.cart).await?;
        let deployed = Instant::now();
        let path = format!("/v1/services/{service}/entities/first/AddItem");
        client.post_ok(&path, r#"{"productId":"P0","name":"P","quantity":1}"#).await?;
        let done = Instant::now();
        put.push(deployed - start);
        invoke.push(done - deployed);
        total.push(done - start);
    }
    report.timings.push(Timing::new("4a", "deploy: PUT of the cart (compile, store)", put));
    report.timings.push(Timing::new("4a", "deploy: first AddItem after the PUT", invoke));
    report.timings.push(Timing::new("4a", "deploy → first 200 of the cart", total));
    running.stop().await?;
    Ok(())
}

/// 4b: stop a server (SIGTERM) and start it again on the same data dir; time
/// from spawning the process to its listening line and to the first 200 of
/// an invocation of an existing cart (which is rebuilt from the journal).
pub async fn restart_to_first_reply(guests: &Guests, report: &mut Report, rounds: usize) -> anyhow::Result<()> {
    let running = Running::start(&[], &[("cart", &guests.cart)]).await?;
    let path = add_item("restarted");
    let mut client = Client::connect(running.addr).await?;
    for p in 0..10 {
        client.post_ok(&path, &format!(r#"{{"productId":"P{p}","name":"P","quantity":1}}"#)).await?;
    }
    drop(client);
    let dir = running.stop().await?;
    let (mut listening, mut first, mut total) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..rounds {
        let start = Instant::now();
        let server = Server::start(dir.path(), &[]).await?;
        let listened = Instant::now();
        let addr = load::addr_of(server.base())?;
        Client::connect(addr).await?.post_ok(&path, r#"{"productId":"P0","name":"P","quantity":1}"#).await?;
        let done = Instant::now();
        listening.push(listened - start);
        first.push(done - listened);
        total.push(done - start);
        let status = server.stop().await?;
        anyhow::ensure!(status.success(), "wasmstate exited with {status}");
    }
    report.timings.push(Timing::new("4b", "restart: spawn → listening line", listening));
    report.timings.push(Timing::new("4b", "restart: listening → first 200 (cold cart)", first));
    report.timings.push(Timing::new("4b", "restart: spawn → first 200", total));
    Ok(())
}
