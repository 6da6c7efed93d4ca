//! `make bench`: starts the release `wasmstate` binary, drives HTTP load at
//! it from keep-alive connections, and measures the in-process bounds of
//! what it does (journal, HTTP, Wasm). Prints a table and writes
//! `target/bench/results.json`.
//!
//! Usage: `bench [--quick] [SCENARIO...]` where a scenario is 1 to 14; all of
//! them by default. `--quick` shortens every run (for checking the bench,
//! not for figures). Set `WASMSTATE_BIN` to the binary to measure; by
//! default the `wasmstate` next to this program.

mod cluster;
mod crdt;
mod followers;
mod inproc;
mod load;
mod memory;
mod outbound;
mod rehydrate;
mod report;
mod servers;
mod timer_memory;
mod timers;
mod verify;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::report::{Report, Target, fmt_dur};
use crate::servers::Guests;

/// The allocator of the `wasmstate` binary, for the in-process measurements.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long each measured run lasts.
struct Durations {
    sequential: Duration,
    headline: Duration,
    hot: Duration,
    ceiling: Duration,
    rounds: usize,
    events: u64,
    /// New entities of scenario 7.
    entities: u64,
    /// Stored entities of scenario 8, and their events.
    verified: (usize, u64),
    /// Single timers of scenario 12c.
    idle_timers: usize,
    /// Timers pending in the end of scenario 12d.
    pending_timers: u64,
}

impl Durations {
    fn new(quick: bool) -> Self {
        if quick {
            let s = Duration::from_secs(1);
            Durations {
                sequential: s,
                headline: s,
                hot: s,
                ceiling: s,
                rounds: 2,
                events: 100_000,
                entities: 10_000,
                verified: (1_000, 100),
                idle_timers: 3,
                pending_timers: 100_000,
            }
        } else {
            Durations {
                sequential: Duration::from_secs(5),
                headline: Duration::from_secs(10),
                hot: Duration::from_secs(5),
                ceiling: Duration::from_secs(5),
                rounds: 5,
                events: 100_000,
                entities: 100_000,
                verified: (10_000, 100),
                idle_timers: 10,
                pending_timers: 1_000_000,
            }
        }
    }
}

const USAGE: &str = "bench [--quick] [1|2|3|4|5|6|7|8|9|10|11|12|13|14 ...]";

fn main() -> anyhow::Result<()> {
    let mut quick = false;
    let mut only = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "-h" | "--help" => {
                println!("usage: {USAGE}");
                return Ok(());
            }
            n if matches!(
                n,
                "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "10" | "11" | "12" | "13" | "14"
            ) =>
            {
                only.push(n.to_string())
            }
            other => anyhow::bail!("unknown argument {other:?}; usage: {USAGE}"),
        }
    }
    if std::env::var_os("WASMSTATE_BIN").is_none() {
        let exe = std::env::current_exe()?;
        let sibling = exe.parent().context("exe dir")?.join("wasmstate");
        anyhow::ensure!(sibling.exists(), "set WASMSTATE_BIN: there is no {}", sibling.display());
        // SAFETY: no other thread runs yet.
        unsafe { std::env::set_var("WASMSTATE_BIN", &sibling) };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(Durations::new(quick), only))
}

async fn run(d: Durations, only: Vec<String>) -> anyhow::Result<()> {
    let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let binary = wasmstate_tests::server::binary();
    eprintln!("bench: measuring {} on {cores} cores", binary.display());
    if cfg!(debug_assertions) || !binary.to_string_lossy().contains("release") {
        eprintln!("bench: WARNING: not a release build; the figures mean little (use `make bench`)");
    }
    let guests = Guests {
        cart: std::fs::read(wasmstate_tests::guests::SHOPPING_CART)?,
        counter: std::fs::read(wasmstate_tests::guests::COUNTER)?,
    };
    let mut report = Report::default();
    let load_before = load_average();
    let started = Instant::now();

    // The in-process measurements of the guest call and instantiation come
    // first, before any server or load generator has run.
    let needs_guest = wanted("4") || wanted("5") || wanted("6");
    let guest = if needs_guest {
        eprintln!("bench: compiling the guests in process");
        let mut scratch = Report::default();
        let guest = inproc::Guest::new(&guests, &mut scratch)?;
        if wanted("4") {
            report.timings.extend(scratch.timings);
        }
        Some(guest)
    } else {
        None
    };
    if let (true, Some(guest)) = (wanted("4"), &guest) {
        eprintln!("bench: 4c guest call and instantiation, in process");
        inproc::guest_call(guest, &mut report).await?;
    }

    if wanted("1") {
        eprintln!("bench: 1 sequential invocations on one warm cart");
        servers::sequential(&guests, &mut report, d.sequential).await?;
    }
    if wanted("2") {
        eprintln!("bench: 2 64 connections across 1,000 carts");
        servers::headline(&guests, &mut report, d.headline).await?;
    }
    if wanted("3") {
        eprintln!("bench: 3 64 connections on one counter");
        servers::hot_counter(&guests, &mut report, d.hot).await?;
    }
    if wanted("4") {
        eprintln!("bench: 4a deploy → first invocation");
        servers::deploy_to_first_reply(&guests, &mut report, d.rounds).await?;
        eprintln!("bench: 4b restart → first invocation");
        servers::restart_to_first_reply(&guests, &mut report, d.rounds).await?;
    }
    if let (true, Some(guest)) = (wanted("5"), &guest) {
        eprintln!("bench: 5 rehydration of {} events", d.events);
        rehydrate::rehydration(&guests, guest, &mut report, d.events).await?;
    }
    if wanted("6") {
        eprintln!("bench: 6a storage ceiling");
        inproc::storage_ceiling(&mut report, d.headline).await?;
        eprintln!("bench: 6b HTTP ceiling");
        inproc::http_ceiling(&mut report, d.ceiling).await?;
        if let Some(guest) = &guest {
            eprintln!("bench: 6c Wasm ceiling");
            inproc::wasm_ceiling(guest, &mut report, d.ceiling)?;
        }
    }
    if wanted("7") {
        eprintln!("bench: 7 host memory with {} passivated entities", d.entities);
        memory::passivated_memory(&guests, &mut report, d.entities).await?;
    }
    if wanted("8") {
        let (entities, events) = d.verified;
        eprintln!("bench: 8 verified deploy over {entities} stored carts of {events} events");
        verify::verified_deploy(&guests, &mut report, entities, events).await?;
    }
    if wanted("9") {
        eprintln!("bench: 9 commit latency with live event streams on other entities");
        followers::followers(&guests, &mut report, d.sequential).await?;
    }
    if wanted("12") {
        eprintln!(
            "bench: 12a/b 10,000 delayed calls due in one second / at one instant, 12c single timers on an idle host"
        );
        timers::timers(&guests, &mut report, d.idle_timers).await?;
        eprintln!(
            "bench: 12d host memory with {} pending timers against 1,000, 12e 10,000 more due on their counters",
            d.pending_timers
        );
        timer_memory::pending_memory(&guests, &mut report, d.pending_timers).await?;
    }
    if wanted("13") {
        eprintln!("bench: 13a commands calling out over HTTP, 13b 10,000 webhooks to one origin");
        let http_client = std::fs::read(wasmstate_tests::guests::HTTP_CLIENT)?;
        outbound::outbound(&http_client, &mut report, d.hot).await?;
    }
    // Last: the PostgreSQL server they start stays up (idle) until the bench exits.
    if wanted("10") {
        eprintln!("bench: 10 scenario 2's load on a PostgreSQL journal on this machine");
        servers::headline_postgres(&guests, &mut report, d.headline).await?;
    }
    if wanted("11") {
        eprintln!("bench: 11 three hosts on one PostgreSQL database on this machine");
        cluster::three_hosts(&guests, &mut report, d.headline).await?;
    }
    if wanted("14") {
        eprintln!("bench: 14 CRDT counters on one host, and on three hosts on one PostgreSQL database");
        let tck_crdt = std::fs::read(wasmstate_tests::guests::TCK_CRDT)?;
        crdt::crdt(&tck_crdt, &mut report, d.headline).await?;
    }
    let wall = started.elapsed();
    report.facts.push((
        "load average (1 min) before / after; other work on the machine skews every figure".into(),
        format!("{load_before} / {}", load_average()),
    ));
    derived_facts(&mut report, d.events);
    targets(&mut report);

    print!("{}", report.table(cores, wall));
    let out = results_dir();
    std::fs::create_dir_all(&out)?;
    let path = out.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report.json(cores, wall))?)?;
    println!("\nwrote {}", path.display());
    Ok(())
}

/// The 1-minute load average, from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// `target/bench` of the workspace.
fn results_dir() -> PathBuf {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    crate_dir.parent().unwrap_or(&crate_dir).join("target").join("bench")
}

/// Facts computed from several measurements.
fn derived_facts(report: &mut Report, events: u64) {
    if let Some(hot) = report.row("3") {
        let seconds = events as f64 / hot.rate.max(1e-9);
        report.facts.push((
            format!("5 building a {events}-event log over HTTP at scenario 3's rate"),
            format!("≈ {seconds:.0} s (the bench writes it through the journal instead)"),
        ));
    }
    if let (Some(embedded), Some(postgres)) = (report.row("2"), report.row("10")) {
        report.facts.push((
            "10 / 2: the headline load on PostgreSQL against the embedded journal".into(),
            format!(
                "{:.0} % of the throughput, p99 {} against {}",
                100.0 * postgres.rate / embedded.rate.max(1e-9),
                fmt_dur(postgres.p99),
                fmt_dur(embedded.p99)
            ),
        ));
    }
}

/// The team's targets, judged on this run's figures.
fn targets(report: &mut Report) {
    let mut targets = Vec::new();
    if let Some(row) = report.row("2") {
        targets.push(Target {
            goal: "2: ≥ 15,000 durable invocations/s".into(),
            measured: format!("{:.0}/s", row.rate),
            met: row.rate >= 15_000.0,
        });
        targets.push(Target {
            goal: "2: p99 < 10 ms".into(),
            measured: fmt_dur(row.p99),
            met: row.p99 < Duration::from_millis(10),
        });
    }
    if let Some(row) = report.row("11a") {
        targets.push(Target {
            goal: "11a: three hosts ≥ 4,000 durable invocations/s, p99 < 50 ms".into(),
            measured: format!("{:.0}/s, p99 {}", row.rate, fmt_dur(row.p99)),
            met: row.rate >= 4_000.0 && row.p99 < Duration::from_millis(50),
        });
    }
    if let Some(row) = report.row("11b") {
        targets.push(Target {
            goal: "11b: one counter through three hosts ≥ 1,500/s".into(),
            measured: format!("{:.0}/s", row.rate),
            met: row.rate >= 1_500.0,
        });
    }
    if let (Some(crdt), Some(event_sourced)) = (report.row("14c"), report.row("11b")) {
        targets.push(Target {
            goal: "14c: a hot GCounter through three hosts beats 11b's event-sourced hot counter".into(),
            measured: format!("{:.0}/s against {:.0}/s", crdt.rate, event_sourced.rate),
            met: crdt.rate > event_sourced.rate,
        });
    }
    if let Some(row) = report.row("1") {
        targets.push(Target {
            goal: "1: p50 < 0.5 ms".into(),
            measured: fmt_dur(row.p50),
            met: row.p50 < Duration::from_micros(500),
        });
    }
    let timed: [(&str, &str, &str, Duration); 4] = [
        ("4c", inproc::INSTANTIATE, "4c: instantiate < 10 µs", Duration::from_micros(10)),
        ("4b", "restart: spawn → first 200", "4b: restart → first invocation < 20 ms", Duration::from_millis(20)),
        ("4a", "deploy → first 200 of the cart", "4a: deploy → first invocation < 300 ms", Duration::from_millis(300)),
        (
            "5",
            "snapshot-every 100: first Get",
            "5: rehydrate 100k events, snapshot-every 100 < 5 ms",
            Duration::from_millis(5),
        ),
    ];
    for (key, name, goal, limit) in timed {
        if let Some(timing) = report.timings.iter().find(|t| t.key == key && t.name.contains(name)) {
            let median = timing.median();
            targets.push(Target {
                goal: goal.into(),
                measured: format!("{} (median)", fmt_dur(median)),
                met: median < limit,
            });
        }
    }
    // Scenarios that judge their own targets (7, 8, 9, 12) have added them already.
    targets.append(&mut report.targets);
    report.targets = targets;
}
