//! Scenarios against the real `wasmstate` binary: load on warm entities
//! (1–3), the cold paths of deploying and restarting (4a, 4b), and the
//! headline load on a PostgreSQL journal (10); `cluster.rs` has 11.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hyper::{Method, Uri};
use tempfile::TempDir;
use wasmstate_tests::{JournalKind, Options, Server};

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
    /// The name of the server's journal threads: `journal-writer` (the
    /// embedded journal's writer) or `journal-pg` (the PostgreSQL journal's
    /// runtime, whose writer and connection pool share its threads).
    pub journal_threads: &'static str,
}

impl Running {
    /// Starts a server on a fresh data dir with `args` and deploys `services`.
    pub async fn start(args: &[&str], services: &[(&str, &[u8])]) -> anyhow::Result<Self> {
        Self::start_with(args, services, Options::default()).await
    }

    /// [`Running::start`] with `options` (the journal, ...).
    pub async fn start_with(args: &[&str], services: &[(&str, &[u8])], options: Options) -> anyhow::Result<Self> {
        let journal_threads = match options.journal.clone().unwrap_or_else(JournalKind::under_test) {
            JournalKind::Redb => "journal-writer",
            JournalKind::Postgres | JournalKind::Database(_) => "journal-pg",
        };
        let dir = tempfile::tempdir()?;
        let server = Server::start_with(dir.path(), args, options).await?;
        let addr = load::addr_of(server.base())?;
        let mut client = Client::connect(addr).await?;
        for (name, bytes) in services {
            deploy(&mut client, name, bytes).await?;
        }
        Ok(Self { dir, server, addr, journal_threads })
    }

    /// Stops the server with SIGTERM, checking it exits cleanly; answers the data dir.
    pub async fn stop(self) -> anyhow::Result<TempDir> {
        let status = self.server.stop().await?;
        anyhow::ensure!(status.success(), "wasmstate exited with {status}");
        Ok(self.dir)
    }

    /// The CPU a load run watches: the server's, the load generator's, and
    /// the server's journal threads' (see [`Running::journal_threads`]).
    pub fn watched(&self) -> [load::CpuProbe; 3] {
        let pid = self.server.pid();
        [load::process(pid), load::process(std::process::id()), load::threads(pid, self.journal_threads)]
    }
}

/// `PUT /v1/services/{name}`, expecting 201.
pub async fn deploy(client: &mut Client, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = format!("/v1/services/{name}");
    client.expect(Method::PUT, &path, Bytes::copy_from_slice(bytes), 201).await.map(drop)
}

/// The AddItem bodies the cart scenarios cycle through.
/// The headline load's requests: AddItem round-robin across the [`CARTS`],
/// each cart getting the [`PRODUCTS`] in turn.
pub fn across_carts() -> anyhow::Result<load::NextRequest> {
    let uris: Arc<Vec<Uri>> =
        Arc::new((0..CARTS).map(|c| add_item(&format!("cart-{c:04}")).parse()).collect::<Result<_, _>>()?);
    let bodies = cart_bodies();
    Ok(Arc::new(move |n| {
        let n = n as usize;
        (uris[n % CARTS].clone(), bodies[(n / CARTS) % PRODUCTS].clone())
    }))
}

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
pub fn row(report: &mut Report, key: &str, name: &str, result: LoadResult) -> Row {
    row_of(report, key, name, result, "journal-writer thread")
}

/// [`row`] of a run whose third watched CPU is `writer`'s (what the facts call it).
fn row_of(report: &mut Report, key: &str, name: &str, mut result: LoadResult, writer: &str) -> Row {
    let mut row = Row::new(key, name, &mut result.latencies, result.elapsed);
    row.errors = result.errors;
    row.server_cpu = result.cpu.first().copied();
    row.load_cpu = result.cpu.get(1).copied();
    if let Some(error) = result.first_error {
        row.note = format!("first error: {error}");
    }
    if let (Some(per_op), Some(writer_cpu)) = (row.cpu_per_op(), result.cpu.get(2)) {
        let writer_per_op = Duration::from_secs_f64(writer_cpu / row.rate.max(1e-9));
        report.facts.push((
            format!("{key}: server CPU per invocation"),
            format!(
                "{} = {writer} {} + everything else {}",
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
    let [commits, appends] =
        counters(addr, ["wasmstate_journal_commits_total", "wasmstate_journal_appends_total"]).await?;
    Ok((commits, appends))
}

/// The values of counters `names` in the server's `/metrics`.
pub async fn counters<const N: usize>(addr: SocketAddr, names: [&str; N]) -> anyhow::Result<[u64; N]> {
    let mut client = Client::connect(addr).await?;
    let text = client.expect(Method::GET, "/metrics", Bytes::new(), 200).await?;
    let text = String::from_utf8_lossy(&text);
    let mut values = [0; N];
    for (value, name) in values.iter_mut().zip(names) {
        *value = text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("no {name} in /metrics"))?;
    }
    Ok(values)
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

/// 2 (headline): 64 connections invoking AddItem round-robin across 1,000
/// carts, on the embedded journal.
pub async fn headline(guests: &Guests, report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let name = "64 conns, AddItem over 1,000 carts (headline)";
    carts_under_load(guests, report, duration, "2", name, HeadlineJournal::Embedded).await
}

/// 10: scenario 2's load on a host whose journal is a database on a
/// PostgreSQL server on this machine (the test harness's throwaway one,
/// started here with `initdb`, or the one `$WASMSTATE_TEST_PG` names).
pub async fn headline_postgres(guests: &Guests, report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let postgres = wasmstate_tests::postgres::shared().await?;
    let url = postgres.create_database().await?;
    let journal = HeadlineJournal::Postgres { url, postmaster: postgres.pid() };
    carts_under_load(guests, report, duration, "10", "scenario 2's load, local PostgreSQL journal", journal).await
}

/// The journal a run of the headline load is on.
enum HeadlineJournal {
    /// The embedded redb journal in the data dir.
    Embedded,
    /// The PostgreSQL database `url`; `postmaster` is its server's pid,
    /// when that server runs here as a child of this process.
    Postgres { url: String, postmaster: Option<u32> },
}

/// The headline load (64 connections invoking AddItem round-robin across
/// 1,000 carts) on a fresh server on `journal`, as row `key`. Besides the
/// row, the facts get the journal's commits per transaction and where the
/// machine's CPU went during the window.
async fn carts_under_load(
    guests: &Guests,
    report: &mut Report,
    duration: Duration,
    key: &str,
    name: &str,
    journal: HeadlineJournal,
) -> anyhow::Result<()> {
    let (options, postmaster) = match journal {
        // Named, not left to $WASMSTATE_TEST_JOURNAL: scenario 2 is the embedded journal's.
        HeadlineJournal::Embedded => (Options { journal: Some(JournalKind::Redb), ..Default::default() }, None),
        HeadlineJournal::Postgres { url, postmaster } => {
            (Options { journal: Some(JournalKind::Database(url)), ..Default::default() }, postmaster)
        }
    };
    let on_postgres = matches!(options.journal, Some(JournalKind::Database(_)));
    let running = Running::start_with(&[], &[("cart", &guests.cart)], options).await?;
    let next = across_carts()?;
    // The row's three probes, then the whole machine's, then PostgreSQL's.
    let mut watched = running.watched().to_vec();
    watched.push(load::machine());
    watched.extend(postmaster.map(load::process_tree));
    let (commits_before, appends_before) = commit_counters(running.addr).await?;
    // The warm-up touches every cart (each starts cold, with an empty log).
    let warmup = Duration::from_secs(2);
    let load = Load { connections: CONNECTIONS, warmup, duration, requests: None };
    let result = load::run(running.addr, load, next, &watched).await?;
    let (commits_after, appends_after) = commit_counters(running.addr).await?;
    let commits = commits_after - commits_before;
    let appends = appends_after - appends_before;
    let transaction = if on_postgres { "transaction (one WAL flush at its COMMIT)" } else { "fsync'd transaction" };
    report.facts.push((
        format!("{key}: journal commits during the run (warm-up included)"),
        format!(
            "{commits} commits for {appends} appends = {:.1} appends per {transaction}, {:.0} commits/s",
            appends as f64 / commits.max(1) as f64,
            commits as f64 / (duration + warmup).as_secs_f64()
        ),
    ));
    let cpu = result.cpu.clone();
    let writer = if on_postgres { "journal-pg threads (writer and pool)" } else { "journal-writer thread" };
    let row = row_of(report, key, name, result, writer);
    let [host, generator, _, machine] = [0, 1, 2, 3].map(|i| cpu.get(i).copied().unwrap_or(0.0));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut split = format!("machine busy {machine:.2} = host {host:.2} + load generator {generator:.2}");
    let mut measured = host + generator;
    if on_postgres {
        match cpu.get(4) {
            Some(&postgres) => {
                let per_op = Duration::from_secs_f64(postgres / row.rate.max(1e-9));
                report.facts.push((
                    format!("{key}: PostgreSQL CPU (postmaster and its children)"),
                    format!(
                        "{postgres:.2} cores = {:.0} % of the machine's busy CPU, {} per invocation",
                        100.0 * postgres / machine.max(1e-9),
                        fmt_dur(per_op)
                    ),
                ));
                split.push_str(&format!(" + PostgreSQL {postgres:.2}"));
                measured += postgres;
            }
            None => report.facts.push((
                format!("{key}: PostgreSQL CPU"),
                "not measured: the server is not one this process started".into(),
            )),
        }
    }
    split.push_str(&format!(" + other processes and interrupts {:.2}", (machine - measured).max(0.0)));
    report.facts.push((format!("{key}: CPU during the window, in cores of {cores}"), split));
    report.rows.push(row);
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
