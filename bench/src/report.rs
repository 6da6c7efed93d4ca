//! Latency samples, result rows, and their rendering as a table and as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

/// Durations of individual operations, in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    nanos: Vec<u64>,
    sorted: bool,
}

impl Samples {
    /// An empty set with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Self { nanos: Vec::with_capacity(n), sorted: true }
    }

    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.nanos.push(d.as_nanos().min(u64::MAX as u128) as u64);
        self.sorted = false;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
        self.sorted = false;
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.nanos.sort_unstable();
            self.sorted = true;
        }
    }

    /// The `q` quantile (0..=1), nearest-rank; zero when empty.
    pub fn quantile(&mut self, q: f64) -> Duration {
        self.sort();
        if self.nanos.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.nanos.len() as f64).ceil() as usize).clamp(1, self.nanos.len());
        Duration::from_nanos(self.nanos[rank - 1])
    }

    /// The smallest sample.
    pub fn min(&mut self) -> Duration {
        self.quantile(0.0)
    }

    /// The largest sample.
    pub fn max(&mut self) -> Duration {
        self.quantile(1.0)
    }

    /// The arithmetic mean.
    pub fn mean(&self) -> Duration {
        if self.nanos.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_nanos((self.nanos.iter().map(|&n| n as u128).sum::<u128>() / self.nanos.len() as u128) as u64)
    }
}

/// One line of a throughput table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Short key, e.g. `2`, `6a-journal`.
    pub key: String,
    /// What was measured.
    pub name: String,
    /// Completed operations per second.
    pub rate: f64,
    /// Median, p99 and p99.9 of one operation.
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    /// Operations measured.
    pub count: u64,
    /// Failed operations (non-200 answers, errors).
    pub errors: u64,
    /// CPU used by the server process and by the load generator during the
    /// measured window, in cores (1.0 = one core busy all the time).
    pub server_cpu: Option<f64>,
    pub load_cpu: Option<f64>,
    /// Anything worth knowing next to the figures.
    pub note: String,
    /// A reference figure rather than a ceiling of scenario 2.
    pub reference: bool,
}

impl Row {
    /// A row from samples taken over `elapsed`.
    pub fn new(key: &str, name: &str, samples: &mut Samples, elapsed: Duration) -> Self {
        let count = samples.len() as u64;
        Row {
            key: key.to_string(),
            name: name.to_string(),
            rate: count as f64 / elapsed.as_secs_f64().max(1e-9),
            p50: samples.quantile(0.50),
            p99: samples.quantile(0.99),
            p999: samples.quantile(0.999),
            count,
            errors: 0,
            server_cpu: None,
            load_cpu: None,
            note: String::new(),
            reference: false,
        }
    }

    /// The measured side's CPU time per operation (`srv cpu` / rate).
    pub fn cpu_per_op(&self) -> Option<Duration> {
        self.server_cpu.map(|cores| Duration::from_secs_f64(cores / self.rate.max(1e-9)))
    }

    fn json(&self) -> Value {
        json!({
            "key": self.key,
            "name": self.name,
            "per_second": round(self.rate, 1),
            "p50_us": micros(self.p50),
            "p99_us": micros(self.p99),
            "p999_us": micros(self.p999),
            "count": self.count,
            "errors": self.errors,
            "server_cpu_cores": self.server_cpu.map(|c| round(c, 2)),
            "load_cpu_cores": self.load_cpu.map(|c| round(c, 2)),
            "cpu_per_op_us": self.cpu_per_op().map(micros),
            "reference": self.reference,
            "note": self.note,
        })
    }
}

/// Repeated one-shot timings (cold paths, micro-benchmarks).
#[derive(Debug, Clone)]
pub struct Timing {
    /// Short key, e.g. `4a`.
    pub key: String,
    /// What was timed.
    pub name: String,
    /// Every sample.
    pub samples: Samples,
    /// Anything worth knowing next to the figures.
    pub note: String,
}

impl Timing {
    /// A timing from its samples.
    pub fn new(key: &str, name: &str, samples: Samples) -> Self {
        Timing { key: key.to_string(), name: name.to_string(), samples, note: String::new() }
    }

    /// The median.
    pub fn median(&self) -> Duration {
        self.samples.clone().quantile(0.5)
    }

    fn json(&self) -> Value {
        let mut s = self.samples.clone();
        json!({
            "key": self.key,
            "name": self.name,
            "n": s.len(),
            "median_us": micros(s.quantile(0.5)),
            "p99_us": micros(s.quantile(0.99)),
            "min_us": micros(s.min()),
            "max_us": micros(s.max()),
            "mean_us": micros(s.mean()),
            "note": self.note,
        })
    }
}

/// A reading of the server's resident memory (VmRSS), or a difference of two.
#[derive(Debug, Clone)]
pub struct Memory {
    /// Short key, e.g. `7`.
    pub key: String,
    /// What was read.
    pub name: String,
    /// The reading in KiB.
    pub kib: i64,
    /// A difference of two readings (shown with its sign).
    pub difference: bool,
}

impl Memory {
    /// A reading of `kib` KiB.
    pub fn new(key: &str, name: &str, kib: i64) -> Self {
        Memory { key: key.to_string(), name: name.to_string(), kib, difference: false }
    }

    fn json(&self) -> Value {
        json!({
            "key": self.key,
            "name": self.name,
            "kib": self.kib,
            "mib": round(self.kib as f64 / 1024.0, 1),
            "difference": self.difference,
        })
    }
}

/// A target the team wants to reach, and whether this run reached it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The goal, e.g. `scenario 2 ≥ 15,000 req/s`.
    pub goal: String,
    /// What was measured.
    pub measured: String,
    /// Whether the goal is met.
    pub met: bool,
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Report {
    /// Load scenarios (1–3, 9, 10).
    pub rows: Vec<Row>,
    /// Ceilings of scenario 2 (6a–6c).
    pub ceilings: Vec<Row>,
    /// Cold paths and micro-benchmarks (4, 5).
    pub timings: Vec<Timing>,
    /// The server's resident memory (7).
    pub memory: Vec<Memory>,
    /// Other facts: batch sizes, build times, ...
    pub facts: Vec<(String, String)>,
    /// The team's targets.
    pub targets: Vec<Target>,
}

impl Report {
    /// The row with `key`, among the scenarios and the ceilings.
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().chain(&self.ceilings).find(|r| r.key == key)
    }

    /// Renders the whole report as a text table.
    pub fn table(&self, cores: usize, wall: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\nwasmstate bench — {cores} cores ({} s of measuring)", wall.as_secs());
        let header = format!(
            "{:<48} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>6}",
            "scenario", "req/s", "p50", "p99", "p99.9", "srv cpu", "gen cpu", "cpu/op", "errors"
        );
        let _ = writeln!(out, "{header}");
        let _ = writeln!(
            out,
            "(srv cpu: cores used by the server, or by the measured part of an in-process ceiling; \
             gen cpu: by the load generator; cpu/op: srv cpu per operation)"
        );
        for row in &self.rows {
            let _ = writeln!(out, "{}", row_line(row));
        }
        if !self.ceilings.is_empty() {
            let _ = writeln!(out, "\nceilings of scenario 2 (same run)                  ops/s");
            for row in &self.ceilings {
                let _ = writeln!(out, "{}", row_line(row));
            }
            if let Some(headline) = self.row("2") {
                for ceiling in self.ceilings.iter().filter(|c| !c.reference) {
                    let _ = writeln!(
                        out,
                        "  scenario 2 / {:<48} {:>5.1} %",
                        format!("{} {}", ceiling.key, ceiling.name),
                        100.0 * headline.rate / ceiling.rate.max(1e-9)
                    );
                }
            }
        }
        if !self.timings.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<58} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "cold paths and micro-benchmarks", "n", "median", "mean", "p99", "min", "max"
            );
            for timing in &self.timings {
                let mut s = timing.samples.clone();
                let label = format!("{} {}", timing.key, timing.name);
                let _ = writeln!(
                    out,
                    "{:<58} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    clip(&label, 58),
                    s.len(),
                    fmt_dur(s.quantile(0.5)),
                    fmt_dur(s.mean()),
                    fmt_dur(s.quantile(0.99)),
                    fmt_dur(s.min()),
                    fmt_dur(s.max())
                );
            }
        }
        if !self.memory.is_empty() {
            let _ = writeln!(out, "\n{:<58} {:>9}", "server memory (VmRSS)", "MiB");
            for memory in &self.memory {
                let label = format!("{} {}", memory.key, memory.name);
                let mib = memory.kib as f64 / 1024.0;
                let value = if memory.difference { format!("{mib:+.1}") } else { format!("{mib:.1}") };
                let _ = writeln!(out, "{:<58} {:>9}", clip(&label, 58), value);
            }
        }
        let notes: Vec<String> = self
            .rows
            .iter()
            .chain(&self.ceilings)
            .filter(|r| !r.note.is_empty())
            .map(|r| format!("  {}: {}", r.key, r.note))
            .chain(self.timings.iter().filter(|t| !t.note.is_empty()).map(|t| format!("  {}: {}", t.key, t.note)))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(out, "\nnotes");
            for note in notes {
                let _ = writeln!(out, "{note}");
            }
        }
        if !self.facts.is_empty() {
            let _ = writeln!(out, "\nfacts");
            for (k, v) in &self.facts {
                let _ = writeln!(out, "  {k}: {v}");
            }
        }
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\ntargets");
            for t in &self.targets {
                let verdict = if t.met { "met   " } else { "MISSED" };
                let _ = writeln!(out, "  {verdict} {:<52} measured {}", t.goal, t.measured);
            }
        }
        out
    }

    /// Renders the whole report as JSON.
    pub fn json(&self, cores: usize, wall: Duration) -> Value {
        json!({
            "cores": cores,
            "measuring_seconds": round(wall.as_secs_f64(), 1),
            "scenarios": self.rows.iter().map(Row::json).collect::<Vec<_>>(),
            "ceilings": self.ceilings.iter().map(Row::json).collect::<Vec<_>>(),
            "timings": self.timings.iter().map(Timing::json).collect::<Vec<_>>(),
            "memory": self.memory.iter().map(Memory::json).collect::<Vec<_>>(),
            "facts": self.facts.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
            "targets": self.targets.iter().map(|t| json!({"goal": t.goal, "measured": t.measured, "met": t.met})).collect::<Vec<_>>(),
        })
    }
}

fn row_line(row: &Row) -> String {
    let cpu = |c: Option<f64>| c.map_or_else(|| "-".to_string(), |c| format!("{c:.2}"));
    let label = format!("{} {}", row.key, row.name);
    format!(
        "{:<48} {:>9.0} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>6}",
        clip(&label, 48),
        row.rate,
        fmt_dur(row.p50),
        fmt_dur(row.p99),
        fmt_dur(row.p999),
        cpu(row.server_cpu),
        cpu(row.load_cpu),
        row.cpu_per_op().map_or_else(|| "-".to_string(), fmt_dur),
        row.errors
    )
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(width - 1).collect();
        s.push('…');
        s
    }
}

/// A duration in the unit that suits it: `840 ns`, `12.3 µs`, `1.24 ms`, `2.51 s`.
pub fn fmt_dur(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 100_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1_000_000.0 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn micros(d: Duration) -> f64 {
    round(d.as_nanos() as f64 / 1e3, 2)
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}
