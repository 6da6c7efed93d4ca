//! 7: the host's memory with many passivated entities. A server passivating
//! after 1 s of idleness gets one `Increase` on each of 100,000 new counters
//! from 64 connections; once every one of them is passivated again, its
//! resident memory should be back where it was with none. A second round
//! on 100,000 more shows what each passivated entity keeps, apart from
//! what a load's peak leaves behind once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hyper::{Method, Uri};
use wasmstate_tests::Server;

use crate::load::{self, Client, Load};
use crate::report::{Memory, Report, Row, Target};
use crate::servers::{CONNECTIONS, Guests, Running};

/// How long an idle entity stays in memory in this scenario.
const PASSIVATE_AFTER: &str = "1s";
/// How long the warm-up load lasts.
const WARMUP: Duration = Duration::from_secs(1);
/// The longest wait for every entity to be passivated (1 s idle each).
const PASSIVATION_BOUND: Duration = Duration::from_secs(15);
/// How often the server's RSS (and its active-entity gauge) is sampled under load.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Quiet time between the last entity's passivation and the memory readings:
/// longer than the host's 2 s keep-alive of idle blocking-pool threads, so
/// the threads the load started (and their allocator caches) have gone, and
/// than its 1 s between returns of freed memory.
const SETTLE: Duration = Duration::from_secs(3);
/// Readings of a settled server's RSS; their median counts.
const READS: usize = 5;
/// How far above the baseline the settled RSS may end and the target still
/// be met. Some freed memory stays resident whatever the host does: the
/// allocator keeps pages that still hold a live block, and the journal's
/// page cache (`--journal-cache`) may be fuller than at the baseline. 8 MiB
/// allows for that residue, while a leak of 84 bytes or more per entity (a
/// mailbox, a task, a cached state are each larger) exceeds it, and so does
/// keeping the memory the load's peak took.
pub const TOLERANCE_MIB: f64 = 8.0;

/// How far the settled RSS may rise over a second round of new counters
/// and the target still be met: the first round already left what a
/// peak's load leaves, so the second adds only what passivated entities
/// keep, which should be nothing; 2 MiB allows for the noise of the
/// readings (about 1 MiB), while 21 bytes or more kept per entity (less
/// than any map entry) exceeds it.
pub const SECOND_ROUND_TOLERANCE_MIB: f64 = 2.0;

/// Runs the scenario: two rounds of `entities` new counters each.
pub async fn passivated_memory(guests: &Guests, report: &mut Report, entities: u64) -> anyhow::Result<()> {
    let running = Running::start(&["--passivate-after", PASSIVATE_AFTER], &[("counter", &guests.counter)]).await?;
    let server = &running.server;
    let mut metrics = Client::connect(running.addr).await?;

    // Warm the server up with the same 64 connections on 64 counters, so the
    // baseline already holds what concurrent load leaves behind whatever the
    // number of entities (worker and blocking-pool threads, connection
    // buffers, guest instance slots); then let those counters passivate.
    let warm: load::NextRequest = Arc::new(|n| increase(&format!("warm-{:02}", n % CONNECTIONS as u64)));
    let load = Load { connections: CONNECTIONS, warmup: Duration::ZERO, duration: WARMUP, requests: None };
    let warmed = load::run(running.addr, load, warm, &[]).await?;
    anyhow::ensure!(warmed.errors == 0, "warm-up: {}", warmed.first_error.unwrap_or_default());
    let (_, left) = wait_passivated(&mut metrics).await?;
    anyhow::ensure!(left == 0, "the warm-up's {CONNECTIONS} counters were not passivated within {PASSIVATION_BOUND:?}");
    tokio::time::sleep(SETTLE).await;
    let baseline = settled(server).await;

    let name = format!("64 conns, Increase on {} new counters", thousands(entities));
    let first = round(&running, &mut metrics, entities, "c", &name).await?;
    let name = format!("the same on {} more new counters", thousands(entities));
    let second = round(&running, &mut metrics, entities, "d", &name).await?;
    let hwm = status_kib(server, "VmHWM");
    let journal =
        std::fs::metadata(running.dir.path().join(wasmstate::bench_hooks::JOURNAL_FILE)).map_or(0, |m| m.len());

    let delta = first.settled.rss as i64 - baseline.rss as i64;
    let second_delta = second.settled.rss as i64 - first.settled.rss as i64;
    let notes = [
        format!(
            "RSS {} MiB baseline → {} MiB peak under load (at most {} active) → {} MiB with all passivated: {} MiB vs baseline",
            mib(baseline.rss),
            mib(first.peak_rss),
            thousands(first.peak_active.max(0) as u64),
            mib(first.settled.rss),
            signed_mib(delta)
        ),
        format!(
            "RSS {} MiB with both rounds passivated: {} MiB vs the first round",
            mib(second.settled.rss),
            signed_mib(second_delta)
        ),
    ];
    for (round, note) in [&first, &second].into_iter().zip(notes) {
        let mut row = round.row.clone();
        row.note = if row.note.is_empty() { note } else { format!("{note}; {}", row.note) };
        report.rows.push(row);
    }

    let readings = [
        ("baseline: warm, no entity active or passivated".to_string(), baseline.rss as i64, false),
        (
            format!("peak under load ({} entities active at most)", thousands(first.peak_active.max(0) as u64)),
            first.peak_rss as i64,
            false,
        ),
        (format!("after all {} are passivated again", thousands(first.requests)), first.settled.rss as i64, false),
        ("after − baseline".to_string(), delta, true),
        (format!("after {} more are passivated", thousands(second.requests)), second.settled.rss as i64, false),
        ("second round − first round".to_string(), second_delta, true),
    ];
    for (name, kib, difference) in readings {
        let mut memory = Memory::new("7", &name, kib);
        memory.difference = difference;
        report.memory.push(memory);
    }

    let facts = [
        (
            "7: server settings".to_string(),
            format!(
                "--passivate-after {PASSIVATE_AFTER}, default --max-active-entities; {} s of 64 conns on 64 counters to warm up",
                WARMUP.as_secs()
            ),
        ),
        (
            "7: memory readings".to_string(),
            format!(
                "VmRSS median of {READS} reads {} ms after the active-entity gauge reads 0; peak VmRSS every {} ms under load (VmHWM {} MiB)",
                SETTLE.as_millis(),
                SAMPLE_EVERY.as_millis(),
                mib(hwm)
            ),
        ),
        (
            "7: passivation".to_string(),
            format!("first round: {}; second round: {}", first.passivation(), second.passivation()),
        ),
        (
            "7: RSS baseline → first round → second round, by kind".to_string(),
            format!(
                "anonymous {} → {} → {} MiB, file-backed {} → {} → {} MiB; threads {} → {} → {}",
                mib(baseline.anon),
                mib(first.settled.anon),
                mib(second.settled.anon),
                mib(baseline.file),
                mib(first.settled.file),
                mib(second.settled.file),
                baseline.threads,
                first.settled.threads,
                second.settled.threads
            ),
        ),
        (
            "7: memory given back once all were passivated".to_string(),
            format!(
                "{} of the {} MiB the first round's peak took",
                mib(first.peak_rss.saturating_sub(first.settled.rss)),
                mib(first.peak_rss.saturating_sub(baseline.rss))
            ),
        ),
        ("7: journal file after both rounds".to_string(), format!("{:.1} MiB", journal as f64 / (1024.0 * 1024.0))),
        (
            "7: target tolerances".to_string(),
            format!(
                "the first round may end {TOLERANCE_MIB} MiB above the baseline (84 bytes per entity) for what stays resident \
                 whatever the host frees: allocator pages that still hold a live block, a fuller journal page cache; \
                 the second round {SECOND_ROUND_TOLERANCE_MIB} MiB above the first (21 bytes per entity)"
            ),
        ),
    ];
    report.facts.extend(facts);
    let goals = [
        format!("7: RSS, {} passivated ≤ none + {TOLERANCE_MIB} MiB", thousands(first.requests)),
        format!("7: RSS, {} more passivated ≤ first + {SECOND_ROUND_TOLERANCE_MIB} MiB", thousands(second.requests)),
    ];
    for (goal, round, tolerance, delta, reference) in [
        (&goals[0], &first, TOLERANCE_MIB, delta, &baseline),
        (&goals[1], &second, SECOND_ROUND_TOLERANCE_MIB, second_delta, &first.settled),
    ] {
        let mut measured =
            format!("{} MiB ({} → {} MiB)", signed_mib(delta), mib(reference.rss), mib(round.settled.rss));
        if round.left != 0 {
            measured.push_str(&format!(
                "; {} still active {} s after the load",
                round.left,
                PASSIVATION_BOUND.as_secs()
            ));
        }
        report.targets.push(Target {
            goal: goal.clone(),
            measured,
            met: round.left == 0 && delta as f64 <= tolerance * 1024.0,
        });
    }
    running.stop().await?;
    Ok(())
}

/// One round of the scenario and what was read during and after it.
struct Round {
    /// The load's figures.
    row: Row,
    /// How many requests were answered.
    requests: u64,
    /// The highest RSS read under load.
    peak_rss: u64,
    /// The most entities active at once.
    peak_active: i64,
    /// Entities active when the load ended.
    active_at_end: i64,
    /// How long passivating all of them took, and how many were left.
    passivated_in: Duration,
    left: i64,
    /// The server's memory once all were passivated and it settled.
    settled: Settled,
}

impl Round {
    fn passivation(&self) -> String {
        format!(
            "{} active when the load ended, {} after {:.1} s{}",
            thousands(self.active_at_end.max(0) as u64),
            self.left,
            self.passivated_in.as_secs_f64(),
            if self.left == 0 { "" } else { " (gave up waiting)" }
        )
    }
}

/// One `Increase` on each of `entities` new counters (`{prefix}-000000`
/// ...) from 64 connections, sampling RSS and the active entities; then the
/// wait until all are passivated and the server has settled.
async fn round(
    running: &Running,
    metrics: &mut Client,
    entities: u64,
    prefix: &'static str,
    name: &str,
) -> anyhow::Result<Round> {
    let server = &running.server;
    let fresh: load::NextRequest = Arc::new(move |n| increase(&format!("{prefix}-{n:06}")));
    let load = Load {
        connections: CONNECTIONS,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(300),
        requests: Some(entities),
    };
    let watched = running.watched();
    let run = load::run(running.addr, load, fresh, &watched);
    tokio::pin!(run);
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut peak_rss, mut peak_active) = (0u64, 0i64);
    let mut result = loop {
        tokio::select! {
            result = &mut run => break result?,
            _ = tick.tick() => {
                peak_rss = peak_rss.max(server.rss_kib());
                peak_active = peak_active.max(active_entities(metrics).await?);
            }
        }
    };
    peak_rss = peak_rss.max(server.rss_kib());
    let active_at_end = active_entities(metrics).await?;
    peak_active = peak_active.max(active_at_end);
    let (passivated_in, left) = wait_passivated(metrics).await?;
    tokio::time::sleep(SETTLE).await;
    let settled = settled(server).await;

    let requests = result.latencies.len() as u64;
    let mut row = Row::new("7", name, &mut result.latencies, result.elapsed);
    row.errors = result.errors;
    row.server_cpu = result.cpu.first().copied();
    row.load_cpu = result.cpu.get(1).copied();
    if let Some(error) = result.first_error.take() {
        row.note = format!("first error: {error}");
    }
    Ok(Round { row, requests, peak_rss, peak_active, active_at_end, passivated_in, left, settled })
}

/// The request of one `Increase {"value": 1}` on counter `entity`.
fn increase(entity: &str) -> (Uri, Bytes) {
    let uri = format!("/v1/services/counter/entities/{entity}/Increase").parse().expect("a valid path");
    (uri, Bytes::from_static(br#"{"value":1}"#))
}

/// The `wasmstate_active_entities` gauge.
async fn active_entities(client: &mut Client) -> anyhow::Result<i64> {
    let text = client.expect(Method::GET, "/metrics", Bytes::new(), 200).await?;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .find_map(|line| line.strip_prefix("wasmstate_active_entities ")?.trim().parse().ok())
        .context("no wasmstate_active_entities in /metrics")
}

/// Polls the gauge until no entity is active or [`PASSIVATION_BOUND`]
/// passes; answers how long that took and how many were still active.
async fn wait_passivated(client: &mut Client) -> anyhow::Result<(Duration, i64)> {
    let start = Instant::now();
    loop {
        let active = active_entities(client).await?;
        if active == 0 || start.elapsed() >= PASSIVATION_BOUND {
            return Ok((start.elapsed(), active));
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// The memory of a settled server.
pub struct Settled {
    /// VmRSS, the median of [`READS`] reads.
    pub rss: u64,
    /// RssAnon and RssFile at the last read.
    pub anon: u64,
    pub file: u64,
    /// Threads at the last read.
    pub threads: u64,
}

/// Reads the memory of a settled server: VmRSS [`READS`] times, 100 ms apart.
pub async fn settled(server: &Server) -> Settled {
    let mut reads = Vec::with_capacity(READS);
    for i in 0..READS {
        if i > 0 {
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        reads.push(server.rss_kib());
    }
    reads.sort_unstable();
    Settled {
        rss: reads[READS / 2],
        anon: status_kib(server, "RssAnon"),
        file: status_kib(server, "RssFile"),
        threads: status_kib(server, "Threads"),
    }
}

/// A field of the server's `/proc/<pid>/status` (kB, or a plain count); 0 if unreadable.
pub fn status_kib(server: &Server, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// A difference in KiB as signed MiB with one decimal.
pub fn signed_mib(kib: i64) -> String {
    format!("{:+.1}", kib as f64 / 1024.0)
}

/// `100000` as `100,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
