//! 12: durable timers. 12a sets 10,000 delayed calls over HTTP, from 64
//! connections onto 1,000 counters, all due within one second a few
//! seconds ahead (`?at=`, spread evenly over the second), then reads the
//! host's fired-timer counter every 10 ms as they come due: how late each
//! fired, and how long until all had. 12b does the same with all 10,000
//! due at the same millisecond, which measures how fast the host fires
//! them. 12c then times single timers on the idle host, from when each
//! was due to when its event reached a live event stream.
//! `timer_memory.rs` has 12d, and 12e: 12a again on the counters that
//! hold 12d's million pending timers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use wasmstate_tests::sse::EventStream;
use wasmstate_tests::{JournalKind, Options};

use crate::load::{Client, CpuProbe};
use crate::memory::thousands;
use crate::report::{Report, Row, Samples, Target, Timing, fmt_dur};
use crate::servers::{CONNECTIONS, Guests, Running, counters};

/// Delayed calls due within the same second in 12a and 12b.
const DUE_TOGETHER: u64 = 10_000;
/// The counters they are spread over.
const ENTITIES: u64 = 1_000;
/// The least time from the start of the scheduling to the due second: the
/// scheduling must be over before the first timer is due.
const LEAD: Duration = Duration::from_secs(4);
/// How often the fired-timer counter is read while the timers fire: the
/// resolution of 12a's and 12b's lateness.
const SCRAPE_EVERY: Duration = Duration::from_millis(10);
/// The longest 12a and 12b wait for all their timers to fire.
const FIRE_BOUND: Duration = Duration::from_secs(60);
/// How far ahead each of 12c's timers is set.
const IDLE_AHEAD: Duration = Duration::from_millis(300);
/// The targets: all of 12a's and 12b's fired within this of their
/// second's start, and each of 12c's within this of its due time.
const ALL_FIRED_WITHIN: Duration = Duration::from_secs(2);
const IDLE_WITHIN: Duration = Duration::from_millis(50);

/// The journal's counters read around 12a's and 12b's firings.
const JOURNAL: [&str; 2] = ["wasmstate_journal_commits_total", "wasmstate_journal_appends_total"];

/// The path of the `n`th delayed call to set.
pub type NextCall = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// What setting delayed calls measured.
pub struct Scheduling {
    /// The latency of each 202.
    pub latencies: Samples,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Each timer's `due_at_ms`, in the order answered (when kept).
    pub due: Vec<u64>,
    /// CPU used by each watched process, in cores.
    pub cpu: Vec<f64>,
}

impl Scheduling {
    /// This run followed by `next`, as one.
    pub fn and(mut self, next: Scheduling) -> Scheduling {
        let elapsed = self.elapsed + next.elapsed;
        let weight = |d: Duration| d.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
        let (w1, w2) = (weight(self.elapsed), weight(next.elapsed));
        self.cpu = self.cpu.iter().zip(&next.cpu).map(|(a, b)| a * w1 + b * w2).collect();
        self.latencies.merge(next.latencies);
        self.due.extend(next.due);
        self.elapsed = elapsed;
        self
    }
}

/// Sets `count` delayed calls `Increase {"value": 1}` (the `n`th at
/// `path(n)`) from `connections` keep-alive connections, each with one
/// request in flight; fails on the first answer other than 202.
pub async fn schedule(
    addr: SocketAddr,
    connections: usize,
    count: u64,
    path: NextCall,
    keep_due: bool,
    watch: &[CpuProbe],
) -> anyhow::Result<Scheduling> {
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(Client::connect(addr).await?);
    }
    let counter = Arc::new(AtomicU64::new(0));
    let before: Vec<Duration> = watch.iter().map(|probe| probe()).collect();
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let (path, counter) = (path.clone(), counter.clone());
            tokio::spawn(async move {
                let body = Bytes::from_static(br#"{"value":1}"#);
                let (mut latencies, mut due) = (Samples::with_capacity(1 << 12), Vec::new());
                loop {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        return anyhow::Ok((latencies, due));
                    }
                    let path = path(n);
                    let sent = Instant::now();
                    let (status, reply) = client.send(Method::POST, path.parse()?, body.clone()).await?;
                    latencies.push(sent.elapsed());
                    anyhow::ensure!(
                        status == StatusCode::ACCEPTED,
                        "POST {path} answered {status}: {}",
                        String::from_utf8_lossy(&reply)
                    );
                    if keep_due {
                        let reply: serde_json::Value = serde_json::from_slice(&reply)?;
                        due.push(reply["due_at_ms"].as_u64().context("a 202 without due_at_ms")?);
                    }
                }
            })
        })
        .collect();
    let mut result =
        Scheduling { latencies: Samples::default(), elapsed: Duration::ZERO, due: Vec::new(), cpu: Vec::new() };
    for task in tasks {
        let (latencies, due) = task.await??;
        result.latencies.merge(latencies);
        result.due.extend(due);
    }
    result.elapsed = start.elapsed();
    result.cpu = watch
        .iter()
        .zip(&before)
        .map(|(probe, before)| probe().saturating_sub(*before).as_secs_f64() / result.elapsed.as_secs_f64().max(1e-9))
        .collect();
    Ok(result)
}

/// 12a, 12b and 12c, one after the other on one host.
pub async fn timers(guests: &Guests, report: &mut Report, idle_rounds: usize) -> anyhow::Result<()> {
    // Named, not left to $WASMSTATE_TEST_JOURNAL: the embedded journal's figures.
    let options = Options { journal: Some(JournalKind::Redb), ..Default::default() };
    let running = Running::start_with(&[], &[("counter", &guests.counter)], options).await?;
    due_together(&running, report, &Burst { key: "12a", spread_ms: 1000, entities: "12a", pending: None }).await?;
    due_together(&running, report, &Burst { key: "12b", spread_ms: 1, entities: "12b", pending: None }).await?;
    idle(&running, report, idle_rounds).await?;
    running.stop().await?;
    Ok(())
}

/// 10,000 delayed calls due together, as row and timing `key`.
pub struct Burst<'a> {
    /// The scenario's key: `12a`, ...
    pub key: &'a str,
    /// They are due evenly over the first `spread_ms` of a second.
    pub spread_ms: u64,
    /// Onto counters `{entities}-0000` to `{entities}-0999`, which must not
    /// have run a command yet.
    pub entities: &'a str,
    /// How many other timers the host holds (due later), when it matters.
    pub pending: Option<u64>,
}

/// 12a (due over one second), 12b (at one instant) and 12e (over one
/// second, with a million pending on the same counters): 10,000 delayed
/// calls due together, set, then watched as they fire.
pub async fn due_together(running: &Running, report: &mut Report, burst: &Burst<'_>) -> anyhow::Result<()> {
    let Burst { key, spread_ms, entities, pending } = *burst;
    let second = (now_ms() + LEAD.as_millis() as u64).div_ceil(1000) * 1000;
    let ats: Arc<Vec<String>> = Arc::new((0..spread_ms).map(|ms| rfc3339(second + ms)).collect());
    let prefix = entities.to_string();
    let path: NextCall = Arc::new(move |n| {
        let at = &ats[(n * spread_ms / DUE_TOGETHER) as usize];
        format!("/v1/services/counter/entities/{prefix}-{:04}/Increase?at={at}", n % ENTITIES)
    });
    let last_due = second + spread_ms - 1;
    let set = schedule(running.addr, CONNECTIONS, DUE_TOGETHER, path, true, &running.watched()).await?;
    let ahead = second.saturating_sub(now_ms());
    anyhow::ensure!(
        ahead >= 100,
        "setting {DUE_TOGETHER} timers took {:?}: they came due before it was over",
        set.elapsed
    );
    let mut due = set.due;
    due.sort_unstable();
    anyhow::ensure!(
        due.first() == Some(&second) && due.last() == Some(&last_due),
        "the timers are not due within {spread_ms} ms of {second}"
    );
    let mut when = if spread_ms == 1 { "due at the same ms" } else { "due within one second" }.to_string();
    if let Some(pending) = pending {
        when.push_str(&format!(", with {} more pending on them", thousands(pending)));
    }
    let mut row = Row::new(
        key,
        &format!("64 conns, {} delayed calls, {when}", thousands(DUE_TOGETHER)),
        &mut { set.latencies },
        set.elapsed,
    );
    row.server_cpu = set.cpu.first().copied();
    row.load_cpu = set.cpu.get(1).copied();
    row.note = format!("202 once durable, over 1,000 counters; {when}, {ahead} ms after the last 202");
    report.rows.push(row);

    // Read the fired-timer counter from before the second until all fired.
    let mut metrics = Client::connect(running.addr).await?;
    let before = TimerFigures::read(&mut metrics).await?;
    tokio::time::sleep(Duration::from_millis(ahead.saturating_sub(100))).await;
    let probes = running.watched();
    let cpu_before: Vec<Duration> = probes.iter().map(|probe| probe()).collect();
    let journal_before = counters(running.addr, JOURNAL).await?;
    let watching = Instant::now();
    let mut tick = tokio::time::interval(SCRAPE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // (when read, in ms since the epoch; how many had fired by then)
    let mut readings: Vec<(f64, u64)> = Vec::new();
    loop {
        tick.tick().await;
        let fired = TimerFigures::read(&mut metrics).await?.fired - before.fired;
        readings.push((now_ms_f64(), fired));
        if fired >= DUE_TOGETHER {
            break;
        }
        anyhow::ensure!(
            watching.elapsed() < FIRE_BOUND,
            "{fired} of {DUE_TOGETHER} timers fired within {FIRE_BOUND:?} of their second"
        );
    }
    let window = watching.elapsed();
    let cpu: Vec<f64> = probes
        .iter()
        .zip(&cpu_before)
        .map(|(probe, before)| probe().saturating_sub(*before).as_secs_f64() / window.as_secs_f64())
        .collect();
    let after = TimerFigures::read(&mut metrics).await?;
    let journal_after = counters(running.addr, JOURNAL).await?;
    let [commits, appends] = [0, 1].map(|i| journal_after[i] - journal_before[i]);

    // Timers fire earliest first (64 at a time), so the k-th to fire is
    // taken for the k-th due; it fired by the first reading that counts it.
    let mut lateness = Samples::with_capacity(due.len());
    let mut reading = readings.iter().peekable();
    for (k, due) in due.iter().enumerate() {
        while reading.next_if(|(_, fired)| *fired < k as u64 + 1).is_some() {}
        let (at, _) = reading.peek().context("a timer fired after the last reading")?;
        lateness.push(Duration::from_secs_f64(((at - *due as f64) / 1000.0).max(0.0)));
    }
    let last = readings.last().map_or(0.0, |(at, _)| *at);
    let all_fired = Duration::from_secs_f64(((last - second as f64) / 1000.0).max(0.0));
    let after_last_due = Duration::from_secs_f64(((last - last_due as f64) / 1000.0).max(0.0));
    let first = readings.iter().find(|(_, fired)| *fired > 0).map_or(0.0, |(at, _)| *at);
    let first_fired = Duration::from_secs_f64(((first - second as f64) / 1000.0).max(0.0));

    // Each counter got its 10 increments, no more, no fewer.
    let per_entity = DUE_TOGETHER / ENTITIES;
    for e in 0..ENTITIES {
        let path = format!("/v1/services/counter/entities/{entities}-{e:04}/Get");
        let reply: serde_json::Value = serde_json::from_slice(&metrics.post_ok(&path, "{}").await?)?;
        anyhow::ensure!(
            reply["value"] == per_entity,
            "counter {entities}-{e:04} reads {reply} after its {per_entity} timers"
        );
    }

    let name = format!("lateness, {} {when} (fired − due)", thousands(DUE_TOGETHER));
    let mut timing = Timing::new(key, &name, lateness.clone());
    timing.note = format!(
        "fired = the host's wasmstate_timers_fired_total counts it (its command committed), read every {} ms; \
         the k-th to fire is matched with the k-th due",
        SCRAPE_EVERY.as_millis()
    );
    report.timings.push(timing);
    let host_histogram = after.lateness_minus(&before);
    report.facts.extend([
        (
            format!("{key}: from the due second's start"),
            format!(
                "first fired after {}, all {} after {} ({} after the last was due); {:.0} firings/s",
                fmt_dur(first_fired),
                thousands(DUE_TOGETHER),
                fmt_dur(all_fired),
                fmt_dur(after_last_due),
                DUE_TOGETHER as f64 / (all_fired.saturating_sub(first_fired)).as_secs_f64().max(1e-3)
            ),
        ),
        (
            format!("{key}: the host's own lateness histogram (due → firing's start)"),
            format!(
                "p50 ≤ {}, p99 ≤ {} (bucket bounds); retried {}, failed {}",
                host_histogram.quantile_bound(0.5),
                host_histogram.quantile_bound(0.99),
                after.retried - before.retried,
                after.failed - before.failed
            ),
        ),
        (
            format!("{key}: CPU while they fired, in cores"),
            format!(
                "host {:.2} (journal writer {:.2}), bench {:.2} (reading /metrics every {} ms)",
                cpu.first().copied().unwrap_or(0.0),
                cpu.get(2).copied().unwrap_or(0.0),
                cpu.get(1).copied().unwrap_or(0.0),
                SCRAPE_EVERY.as_millis()
            ),
        ),
        (
            format!("{key}: journal while they fired"),
            format!(
                "{commits} group commits for {appends} appends ({:.1} per commit); the fired timers' removals \
                 are write transactions of their own besides",
                appends as f64 / commits.max(1) as f64
            ),
        ),
        (
            format!("{key}: effects"),
            format!("each of the {ENTITIES} counters reads {per_entity}: every timer ran once"),
        ),
    ]);
    report.targets.push(Target {
        goal: format!("{key}: {} {when} all fire within 2 s", thousands(DUE_TOGETHER)),
        measured: format!(
            "all fired {} after the second began ({} after it ended), p99 late {}",
            fmt_dur(all_fired),
            fmt_dur(after_last_due),
            fmt_dur(lateness.quantile(0.99))
        ),
        met: all_fired <= ALL_FIRED_WITHIN,
    });
    Ok(())
}

/// 12c: single timers on the idle host, each on a new counter whose events
/// a live stream follows; late = when its event arrived − when it was due.
async fn idle(running: &Running, report: &mut Report, rounds: usize) -> anyhow::Result<()> {
    let mut client = Client::connect(running.addr).await?;
    // Idle: nothing pending, nothing firing.
    let settle = Instant::now();
    while TimerFigures::read(&mut client).await?.pending != 0 {
        anyhow::ensure!(settle.elapsed() < Duration::from_secs(10), "12b's timers are still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = TimerFigures::read(&mut client).await?;
    let base = format!("http://{}", running.addr);
    let mut lateness = Samples::with_capacity(rounds);
    for round in 0..rounds {
        let entity = format!("idle-{round:02}");
        let mut stream =
            EventStream::open(&format!("{base}/v1/services/counter/entities/{entity}/events?from=1&follow=true"))
                .await?;
        let due = now_ms() + IDLE_AHEAD.as_millis() as u64;
        let path = format!("/v1/services/counter/entities/{entity}/Increase?at={}", rfc3339(due));
        let reply = client.expect(Method::POST, &path, Bytes::from_static(br#"{"value":1}"#), 202).await?;
        let reply: serde_json::Value = serde_json::from_slice(&reply)?;
        anyhow::ensure!(reply["due_at_ms"] == due, "{path} answered {reply}");
        stream.next(Duration::from_secs(10)).await.with_context(|| format!("the event of {entity}'s timer"))?;
        lateness.push(Duration::from_secs_f64(((now_ms_f64() - due as f64) / 1000.0).max(0.0)));
        // Apart, so each is alone.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = TimerFigures::read(&mut client).await?;
    let name = "idle host: one timer, due → its event on a live stream";
    let mut timing = Timing::new("12c", name, lateness.clone());
    timing.note = format!(
        "each on a new counter, set {} ms ahead; the host's histogram (due → firing's start): all ≤ {}",
        IDLE_AHEAD.as_millis(),
        after.lateness_minus(&before).quantile_bound(1.0)
    );
    report.timings.push(timing);
    let worst = lateness.max();
    report.targets.push(Target {
        goal: "12c: a timer fires within 50 ms of its due time on an idle host".into(),
        measured: format!("max {} of {rounds}, median {}", fmt_dur(worst), fmt_dur(lateness.quantile(0.5))),
        met: worst <= IDLE_WITHIN,
    });
    Ok(())
}

/// The timer metrics of one read of `/metrics`.
pub struct TimerFigures {
    /// `wasmstate_timers_fired_total`, `_retried_total`, `_failed_total`.
    pub fired: u64,
    pub retried: u64,
    pub failed: u64,
    /// `wasmstate_timers_pending`.
    pub pending: u64,
    /// The lateness histogram's cumulative buckets: (upper bound, count).
    lateness: Vec<(String, u64)>,
}

impl TimerFigures {
    /// Reads them from the server `client` talks to.
    pub async fn read(client: &mut Client) -> anyhow::Result<Self> {
        let text = client.expect(Method::GET, "/metrics", Bytes::new(), 200).await?;
        let text = String::from_utf8_lossy(&text);
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
                .map(|v| v as u64)
                .with_context(|| format!("no {name} in /metrics"))
        };
        let lateness = text
            .lines()
            .filter_map(|line| line.strip_prefix("wasmstate_timer_lateness_seconds_bucket{le=\""))
            .filter_map(|rest| {
                let (bound, count) = rest.split_once("\"} ")?;
                Some((bound.to_string(), count.trim().parse().ok()?))
            })
            .collect();
        Ok(Self {
            fired: value("wasmstate_timers_fired_total")?,
            retried: value("wasmstate_timers_retried_total")?,
            failed: value("wasmstate_timers_failed_total")?,
            pending: value("wasmstate_timers_pending")?,
            lateness,
        })
    }

    /// The lateness histogram's observations since `before`.
    fn lateness_minus(&self, before: &TimerFigures) -> Buckets {
        Buckets(
            self.lateness
                .iter()
                .map(|(bound, count)| {
                    let was = before.lateness.iter().find(|(b, _)| b == bound).map_or(0, |(_, c)| *c);
                    (bound.clone(), count - was)
                })
                .collect(),
        )
    }
}

/// Cumulative histogram buckets: (upper bound in seconds, count).
struct Buckets(Vec<(String, u64)>);

impl Buckets {
    /// The upper bound of the bucket holding the `q` quantile, e.g. `250 ms`.
    fn quantile_bound(&self, q: f64) -> String {
        let total = self.0.last().map_or(0, |(_, count)| *count);
        if total == 0 {
            return "-".into();
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        match self.0.iter().find(|(_, count)| *count >= rank) {
            Some((bound, _)) => match bound.parse::<f64>() {
                Ok(seconds) if seconds.is_finite() => fmt_dur(Duration::from_secs_f64(seconds)),
                _ => bound.clone(),
            },
            None => "?".into(),
        }
    }
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn now_ms_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `ms` since the epoch as RFC 3339 with milliseconds, e.g. `2030-01-01T00:00:00.250Z`.
fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
