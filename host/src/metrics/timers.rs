//! The durable timers' metrics: how many wait, how many fired, failed and
//! were retried, how late they fired, and the cron slots passed over.

use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::histogram::{self, Histogram};

/// What became of one firing of a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// Its command ran.
    Fired,
    /// It failed in a way that may pass (overload, a journal outage, a
    /// time limit); it will be tried again.
    Retried,
    /// It failed for good (the command was refused or trapped, or its
    /// service is gone); the timer is removed.
    Failed,
}

/// The timers' metrics.
pub struct TimerMetrics {
    pending: AtomicU64,
    fired: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    /// Missed slots of cron schedules their policy did not fire.
    passed_over: AtomicU64,
    /// Seconds from when each timer was due to its first attempt.
    lateness: Histogram,
}

impl Default for TimerMetrics {
    fn default() -> Self {
        Self {
            pending: AtomicU64::new(0),
            fired: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            passed_over: AtomicU64::new(0),
            lateness: Histogram::seconds(histogram::SECONDS),
        }
    }
}

impl TimerMetrics {
    /// Sets how many timers wait.
    pub fn set_pending(&self, pending: u64) {
        self.pending.store(pending, Relaxed);
    }

    /// Times a timer's first attempt, `late` after it was due.
    pub fn record_late(&self, late: Duration) {
        self.lateness.observe_duration(late);
    }

    /// Counts `slots` missed slots of a cron schedule its policy passed over.
    pub fn record_passed_over(&self, slots: usize) {
        self.passed_over.fetch_add(slots as u64, Relaxed);
    }

    /// Counts one attempt.
    pub fn record(&self, firing: Firing) {
        let counter = match firing {
            Firing::Fired => &self.fired,
            Firing::Retried => &self.retried,
            Firing::Failed => &self.failed,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Appends them to `out` in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let name = "wasmstate_timer_lateness_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds from when a timer was due to its first firing.\n# TYPE {name} histogram"
        );
        self.lateness.render(out, name, "");
        let counters = [
            ("wasmstate_timers_fired_total", "Timers whose command ran.", &self.fired),
            ("wasmstate_timers_retried_total", "Timer firings that failed and will be tried again.", &self.retried),
            (
                "wasmstate_timers_failed_total",
                "Timers whose command failed for good (refused, trapped, or its service gone); removed.",
                &self.failed,
            ),
            (
                "wasmstate_timer_slots_passed_over_total",
                "Missed slots of cron schedules that their missed-firings policy did not fire.",
                &self.passed_over,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Relaxed));
        }
        let name = "wasmstate_timers_pending";
        let _ = writeln!(
            out,
            "# HELP {name} Timers waiting to fire.\n# TYPE {name} gauge\n{name} {}",
            self.pending.load(Relaxed)
        );
    }
}
