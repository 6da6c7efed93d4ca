//! 12d: the host's memory with many pending timers. A host gets 1,000
//! delayed calls due a day or more ahead, spread over 1,000 counters, then
//! 999,000 more from 128 connections: its resident memory with 1,000,000
//! pending should be what it is with 1,000, since it holds only the timers
//! due next and the journal the rest. Read while it runs (after the
//! scheduling's load, and on the way at 100,000) and, the claim itself,
//! after a restart on the same data dir (a host that has read a journal of
//! that many timers). Then 12e: that host gets 12a's 10,000 delayed calls
//! due within one second, onto the same counters, each of which holds a
//! thousand of the pending timers.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use wasmstate_tests::{JournalKind, Options, Server};

use crate::load::{self, Client};
use crate::memory::{Settled, mib, settled, signed_mib, status_kib, thousands};
use crate::report::{Memory, Report, Row, Target, fmt_dur};
use crate::servers::{CONNECTIONS, Guests, Running};
use crate::timers::{Burst, NextCall, Scheduling, TimerFigures, due_together, schedule};

/// Timers of the small reading.
const FEW: u64 = 1_000;
/// The counters the timers are spread over.
const ENTITIES: u64 = 1_000;
/// How far above the reading with [`FEW`] the one with many may be and
/// the target still be met: 8 MiB is less than 9 bytes per pending timer
/// of a million, so holding any of them (a key alone is larger) exceeds it.
const TOLERANCE_MIB: f64 = 8.0;
/// Connections setting the timers: more than the other scenarios' 64,
/// so the journal's group commits are larger and a million take less time.
const SCHEDULING_CONNECTIONS: usize = 128;
/// Quiet time before a reading: longer than the host's 2 s keep-alive of
/// idle blocking-pool threads and its 1 s between returns of freed memory,
/// and than a poll of the timer worker (which counts the pending timers).
const SETTLE: Duration = Duration::from_secs(3);

/// The `n`th delayed call: on counter `p-{n % 1000}` (`p-0000` ...), due in a day plus
/// `n % 86,400` seconds (a day's worth of due times, one each second).
fn far_ahead() -> NextCall {
    Arc::new(|n| {
        let delay = 86_400 + n % 86_400;
        format!("/v1/services/counter/entities/p-{:04}/Increase?delay={delay}s", n % ENTITIES)
    })
}

/// Runs the scenario with `many` timers pending in the end.
pub async fn pending_memory(guests: &Guests, report: &mut Report, many: u64) -> anyhow::Result<()> {
    let options = Options { journal: Some(JournalKind::Redb), ..Default::default() };
    let running = Running::start_with(&[], &[("counter", &guests.counter)], options.clone()).await?;
    let few = schedule(running.addr, CONNECTIONS, FEW, far_ahead(), false, &[]).await?;
    anyhow::ensure!(few.latencies.len() as u64 == FEW);
    let few_running = reading(&running.server, FEW).await?;
    let dir = running.stop().await?;
    let (server, few_start) = restart(dir.path(), &options).await?;
    let few_restarted = reading(&server, FEW).await?;

    // The rest, onto the same counters (their names go on from FEW), with
    // a reading on the way at a tenth of them.
    let more = many - FEW;
    let middle = many / 10;
    let addr_now = load::addr_of(server.base())?;
    let watched = [load::process(server.pid()), load::process(std::process::id())];
    let mut set: Option<Scheduling> = None;
    let mut middle_running = None;
    for (from, to) in [(FEW, middle), (middle, many)] {
        let far = far_ahead();
        let next: NextCall = Arc::new(move |n| far(n + from));
        let step = schedule(addr_now, SCHEDULING_CONNECTIONS, to - from, next, false, &watched).await?;
        set = Some(match set {
            None => step,
            Some(before) => before.and(step),
        });
        if to == middle {
            middle_running = Some(reading(&server, middle).await?);
        }
    }
    let (set, middle_running) = (set.context("no scheduling")?, middle_running.context("no middle reading")?);
    let peak = status_kib(&server, "VmHWM");
    let many_running = reading(&server, many).await?;
    let status = server.stop().await?;
    anyhow::ensure!(status.success(), "wasmstate exited with {status}");
    let journal = std::fs::metadata(dir.path().join(wasmstate::bench_hooks::JOURNAL_FILE)).map_or(0, |m| m.len());
    let (server, many_start) = restart(dir.path(), &options).await?;
    let many_restarted = reading(&server, many).await?;

    let mut latencies = set.latencies;
    let mut row = Row::new(
        "12d",
        &format!("{SCHEDULING_CONNECTIONS} conns, {} delayed calls a day ahead", thousands(more)),
        &mut latencies,
        set.elapsed,
    );
    row.server_cpu = set.cpu.first().copied();
    row.load_cpu = set.cpu.get(1).copied();
    row.note = format!("the journal file holds {} timers after it: {:.0} MiB", thousands(many), mb(journal));
    report.rows.push(row);

    let (f, m) = (thousands(FEW), thousands(many));
    let restarted_delta = many_restarted.rss as i64 - few_restarted.rss as i64;
    let running_delta = many_running.rss as i64 - few_running.rss as i64;
    let readings = [
        (format!("{f} pending, running (after setting them)"), few_running.rss as i64, false),
        (format!("{} pending, running (after setting them)", thousands(middle)), middle_running.rss as i64, false),
        (format!("{m} pending, running (after setting them)"), many_running.rss as i64, false),
        (format!("{m} − {f} pending, running"), running_delta, true),
        (format!("{f} pending, restarted on its data dir"), few_restarted.rss as i64, false),
        (format!("{m} pending, restarted on its data dir"), many_restarted.rss as i64, false),
        (format!("{m} − {f} pending, restarted"), restarted_delta, true),
    ];
    for (name, kib, difference) in readings {
        let mut memory = Memory::new("12d", &name, kib);
        memory.difference = difference;
        report.memory.push(memory);
    }
    let kinds = |s: &Settled| format!("anonymous {} + file-backed {} MiB", mib(s.anon), mib(s.file));
    report.facts.extend([
        (
            "12d: memory readings".to_string(),
            format!(
                "VmRSS median of 5 reads once wasmstate_timers_pending reads the count and {} s passed; \
                 VmHWM while setting {} was {} MiB",
                SETTLE.as_secs(),
                thousands(more),
                mib(peak)
            ),
        ),
        (
            "12d: restarts (SIGTERM, then a new process on the data dir)".to_string(),
            format!("with {f} pending: {few_start}; with {m}: {many_start}"),
        ),
        (
            "12d: RSS by kind, restarted with few → many".to_string(),
            format!("{} → {}", kinds(&few_restarted), kinds(&many_restarted)),
        ),
        (
            "12d: RSS by kind, running with few → many".to_string(),
            format!("{} → {}", kinds(&few_running), kinds(&many_running)),
        ),
    ]);
    for (goal, delta, few, many) in [
        (
            format!("12d: RSS, {m} pending ≤ {f} + {TOLERANCE_MIB} MiB, restarted"),
            restarted_delta,
            &few_restarted,
            &many_restarted,
        ),
        (
            format!("12d: RSS, {m} pending ≤ {f} + {TOLERANCE_MIB} MiB, running"),
            running_delta,
            &few_running,
            &many_running,
        ),
    ] {
        report.targets.push(Target {
            goal,
            measured: format!("{} MiB ({} → {} MiB)", signed_mib(delta), mib(few.rss), mib(many.rss)),
            met: delta as f64 <= TOLERANCE_MIB * 1024.0,
        });
    }

    // 12e: the 10,000 of 12a onto the counters that hold the pending timers.
    let addr = load::addr_of(server.base())?;
    let running = Running { dir, server, addr, journal_threads: "journal-writer" };
    let burst = Burst { key: "12e", spread_ms: 1000, entities: "p", pending: Some(many) };
    due_together(&running, report, &burst).await?;
    running.stop().await?;
    Ok(())
}

/// How a restart went: whether the host that stopped had closed its
/// journal, and how long the new one took to listen.
struct Start {
    clean: bool,
    listening: Duration,
}

impl std::fmt::Display for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let closed = if self.clean {
            "the journal was closed cleanly"
        } else {
            "the journal was left unclosed, so redb repaired it (read all of it) at the start"
        };
        write!(f, "{closed}, listening after {}", fmt_dur(self.listening))
    }
}

/// Starts a host on `dir` once the one before has stopped, noting whether
/// that one closed its journal: redb opens a file left unclosed only by
/// repairing it, which a read-only open declines to do.
async fn restart(dir: &Path, options: &Options) -> anyhow::Result<(Server, Start)> {
    let clean = redb::ReadOnlyDatabase::open(dir.join(wasmstate::bench_hooks::JOURNAL_FILE)).is_ok();
    let started = Instant::now();
    let server = Server::start_with(dir, &[], options.clone()).await?;
    Ok((server, Start { clean, listening: started.elapsed() }))
}

/// The settled memory of `server` once its pending-timer gauge reads `pending`.
async fn reading(server: &Server, pending: u64) -> anyhow::Result<Settled> {
    let mut client = Client::connect(load::addr_of(server.base())?).await?;
    let start = Instant::now();
    loop {
        let figures = TimerFigures::read(&mut client).await?;
        if figures.pending == pending {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "wasmstate_timers_pending reads {}, not {pending}",
            figures.pending
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(client);
    tokio::time::sleep(SETTLE).await;
    Ok(settled(server).await)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
