//! Counters and gauges, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Outcomes of an invocation, as counted in `wasmstate_invocations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command succeeded and its events are durable.
    Ok,
    /// The guest refused the command (a failure it reported).
    Failed,
    /// The guest trapped or exceeded a resource limit.
    Trapped,
    /// The guest ran past the invocation time limit.
    TimedOut,
    /// The command was refused before it ran (overload, bad input, storage).
    Refused,
}

const OUTCOMES: [(Outcome, &str); 5] = [
    (Outcome::Ok, "ok"),
    (Outcome::Failed, "failed"),
    (Outcome::Trapped, "trapped"),
    (Outcome::TimedOut, "timed_out"),
    (Outcome::Refused, "refused"),
];

/// The host's metrics. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct Metrics {
    invocations: [AtomicU64; 5],
    commits: AtomicU64,
    commit_failures: AtomicU64,
    committed_appends: AtomicU64,
    committed_events: AtomicU64,
    active_entities: AtomicI64,
    cold_loads: AtomicU64,
    deploys: AtomicU64,
}

impl Metrics {
    /// Counts one finished invocation.
    pub fn record_invocation(&self, outcome: Outcome) {
        self.invocations[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Counts one committed journal transaction holding `appends` commands' events.
    pub fn record_commit(&self, appends: usize, events: usize) {
        self.commits.fetch_add(1, Relaxed);
        self.committed_appends.fetch_add(appends as u64, Relaxed);
        self.committed_events.fetch_add(events as u64, Relaxed);
    }

    /// Counts one journal transaction that failed to commit.
    pub fn record_commit_failure(&self) {
        self.commit_failures.fetch_add(1, Relaxed);
    }

    /// Adjusts the number of entities held in memory.
    pub fn add_active_entities(&self, delta: i64) {
        self.active_entities.fetch_add(delta, Relaxed);
    }

    /// The number of entities held in memory.
    pub fn active_entities(&self) -> i64 {
        self.active_entities.load(Relaxed)
    }

    /// Counts one entity rebuilt from the journal.
    pub fn record_cold_load(&self) {
        self.cold_loads.fetch_add(1, Relaxed);
    }

    /// Counts one deployed version.
    pub fn record_deploy(&self) {
        self.deploys.fetch_add(1, Relaxed);
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP wasmstate_invocations_total Invocations by outcome.");
        let _ = writeln!(out, "# TYPE wasmstate_invocations_total counter");
        for (outcome, label) in OUTCOMES {
            let n = self.invocations[outcome as usize].load(Relaxed);
            let _ = writeln!(out, "wasmstate_invocations_total{{outcome=\"{label}\"}} {n}");
        }
        let counters = [
            ("wasmstate_journal_commits_total", "Journal write transactions committed.", &self.commits),
            ("wasmstate_journal_commit_failures_total", "Journal write transactions that failed.", &self.commit_failures),
            ("wasmstate_journal_appends_total", "Commands whose events were committed.", &self.committed_appends),
            ("wasmstate_journal_events_total", "Events committed.", &self.committed_events),
            ("wasmstate_entity_cold_loads_total", "Entities rebuilt from the journal.", &self.cold_loads),
            ("wasmstate_deploys_total", "Service versions deployed.", &self.deploys),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP wasmstate_active_entities Entities held in memory.\n# TYPE wasmstate_active_entities gauge\nwasmstate_active_entities {}",
            self.active_entities()
        );
        out
    }
}
