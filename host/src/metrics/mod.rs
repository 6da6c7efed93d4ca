//! Counters, gauges and histograms, rendered in the Prometheus text format
//! at `/metrics`.
//!
//! # Layout
//!
//! - `histogram`: a histogram with fixed buckets;
//! - `invocations`: invocations counted and timed per service, kind and
//!   outcome;
//! - `outbound`: guests' HTTP requests and webhook deliveries;
//! - `timers`: the durable timers'.

mod histogram;
mod invocations;
mod outbound;
mod timers;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::domain::ServiceKind;
use histogram::Histogram;
use invocations::Invocations;
pub use outbound::{OutboundMetrics, WebhookAttempt};
pub use timers::{Firing, TimerMetrics};

/// How an invocation ended, as counted in `wasmstate_invocations_total`
/// and recorded in its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationOutcome {
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

impl InvocationOutcome {
    /// Every outcome, in the order of the series.
    const ALL: [InvocationOutcome; 5] = [
        InvocationOutcome::Ok,
        InvocationOutcome::Failed,
        InvocationOutcome::Trapped,
        InvocationOutcome::TimedOut,
        InvocationOutcome::Refused,
    ];

    /// The label of the outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationOutcome::Ok => "ok",
            InvocationOutcome::Failed => "failed",
            InvocationOutcome::Trapped => "trapped",
            InvocationOutcome::TimedOut => "timed_out",
            InvocationOutcome::Refused => "refused",
        }
    }
}

/// The host's metrics. Cheap to update from any thread.
#[derive(Default)]
pub struct Metrics {
    invocations: Invocations,
    histograms: Histograms,
    /// The durable timers'.
    pub timers: TimerMetrics,
    /// Outbound HTTP: guests' requests and webhooks.
    pub outbound: OutboundMetrics,
    commits: AtomicU64,
    commit_failures: AtomicU64,
    committed_appends: AtomicU64,
    committed_events: AtomicU64,
    active_entities: AtomicI64,
    cached_state_bytes: AtomicI64,
    cold_loads: AtomicU64,
    conflict_retries: AtomicU64,
    leases_held: AtomicI64,
    leases_taken: AtomicU64,
    leases_lost: AtomicU64,
    forwarded: AtomicU64,
    forward_fallbacks: AtomicU64,
    deploys: AtomicU64,
    dry_runs: AtomicU64,
    compacted_events: AtomicU64,
    compacted_snapshots: AtomicU64,
    compacted_bytes: AtomicU64,
    verified_entities: AtomicU64,
    rejected_upgrades: AtomicU64,
    outbox_pending: AtomicI64,
    outbox_delivered: AtomicU64,
    outbox_retries: AtomicU64,
    outbox_dropped: AtomicU64,
    events_delivered: AtomicU64,
    event_delivery_failures: AtomicU64,
    dead_letters: AtomicU64,
    /// Per (subscriber, source): the source's events not yet delivered.
    subscription_lag: Mutex<BTreeMap<(String, String), u64>>,
    open_connections: AtomicI64,
    /// Reads the linear memory the guests hold, once the runtime exists.
    guest_memory: OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
    refused_connections: AtomicU64,
    connection_timeouts: AtomicU64,
    accept_errors: AtomicU64,
}

/// The histograms without labels.
struct Histograms {
    /// Seconds each journal write transaction took.
    commit_duration: Histogram,
    /// Commands each journal write transaction held.
    commit_batch: Histogram,
    /// Seconds from an outbox entry's first read to its delivery.
    outbox_delivery: Histogram,
    /// Seconds from an event's read off its service log to its delivery.
    subscription_delivery: Histogram,
}

impl Default for Histograms {
    fn default() -> Self {
        Self {
            commit_duration: Histogram::seconds(histogram::SECONDS),
            commit_batch: Histogram::counts(histogram::SIZES),
            outbox_delivery: Histogram::seconds(histogram::SECONDS),
            subscription_delivery: Histogram::seconds(histogram::SECONDS),
        }
    }
}

/// What happened to one attempt to deliver an asynchronous side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered.
    Delivered,
    /// Failed; it will be retried.
    Retried,
    /// Failed for good (refused, or out of attempts); dropped.
    Dropped,
}

impl Metrics {
    /// Counts one finished invocation of `service` (`None`: the name it
    /// gave is not a deployed service) and the time it took.
    pub fn record_invocation(
        &self,
        service: Option<(&str, ServiceKind)>,
        outcome: InvocationOutcome,
        elapsed: Duration,
    ) {
        self.invocations.record(service, outcome, elapsed);
    }

    /// Counts one committed journal transaction holding `appends` commands'
    /// writes, which took `elapsed`.
    pub fn record_commit(&self, appends: usize, events: usize, elapsed: Duration) {
        self.histograms.commit_duration.observe_duration(elapsed);
        self.histograms.commit_batch.observe(appends as f64);
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

    /// Adjusts the bytes of state the active entities hold.
    pub fn add_cached_state_bytes(&self, delta: i64) {
        self.cached_state_bytes.fetch_add(delta, Relaxed);
    }

    /// The number of entities held in memory.
    pub fn active_entities(&self) -> i64 {
        self.active_entities.load(Relaxed)
    }

    /// Counts one entity rebuilt from the journal.
    pub fn record_cold_load(&self) {
        self.cold_loads.fetch_add(1, Relaxed);
    }

    /// Counts a command sent on to its entity's owner host (`answered`), or
    /// run here because the owner could not be reached.
    pub fn record_forwarded(&self, answered: bool) {
        let counter = if answered { &self.forwarded } else { &self.forward_fallbacks };
        counter.fetch_add(1, Relaxed);
    }

    /// Counts a run of commands started again because their entity's log
    /// had moved on under its cached state (another host wrote to it).
    pub fn record_conflict_retry(&self) {
        self.conflict_retries.fetch_add(1, Relaxed);
    }

    /// Counts a lease this host took, for work it then does for the cluster.
    pub fn record_lease_taken(&self) {
        self.leases_taken.fetch_add(1, Relaxed);
        self.leases_held.fetch_add(1, Relaxed);
    }

    /// Counts a lease this host no longer holds: it let it go (`lost`:
    /// another host took it over, or it could not be renewed in time).
    pub fn record_lease_ended(&self, lost: bool) {
        self.leases_held.fetch_sub(1, Relaxed);
        if lost {
            self.leases_lost.fetch_add(1, Relaxed);
        }
    }

    /// Counts what one compaction round deleted.
    pub fn record_compaction(&self, events: u64, snapshots: u64, bytes: u64) {
        self.compacted_events.fetch_add(events, Relaxed);
        self.compacted_snapshots.fetch_add(snapshots, Relaxed);
        self.compacted_bytes.fetch_add(bytes, Relaxed);
    }

    /// Counts one dry run.
    pub fn record_dry_run(&self) {
        self.dry_runs.fetch_add(1, Relaxed);
    }

    /// Counts a verification of a new version: the entities it checked, and
    /// whether it refused the version.
    pub fn record_verification(&self, entities: usize, rejected: bool) {
        self.verified_entities.fetch_add(entities as u64, Relaxed);
        if rejected {
            self.rejected_upgrades.fetch_add(1, Relaxed);
        }
    }

    /// Counts one deployed version.
    pub fn record_deploy(&self) {
        self.deploys.fetch_add(1, Relaxed);
    }

    /// Times an outbox entry delivered (or dropped) `waited` after the
    /// relay first read it.
    pub fn record_outbox_done(&self, waited: Duration) {
        self.histograms.outbox_delivery.observe_duration(waited);
    }

    /// Counts one outbox delivery attempt.
    pub fn record_outbox(&self, delivery: Delivery) {
        match delivery {
            Delivery::Delivered => &self.outbox_delivered,
            Delivery::Retried => &self.outbox_retries,
            Delivery::Dropped => &self.outbox_dropped,
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts side effects dropped without a delivery attempt (their target
    /// was deleted).
    pub fn record_outbox_dropped(&self, count: u64) {
        self.outbox_dropped.fetch_add(count, Relaxed);
    }

    /// Sets the number of side effects waiting in the outbox.
    pub fn set_outbox_pending(&self, pending: u64) {
        self.outbox_pending.store(pending as i64, Relaxed);
    }

    /// Counts one event delivered to a subscriber, or one failed attempt.
    pub fn record_event_delivery(&self, ok: bool) {
        if ok { &self.events_delivered } else { &self.event_delivery_failures }.fetch_add(1, Relaxed);
    }

    /// Times an event delivered (or given up on) `waited` after it was read
    /// off its service log.
    pub fn record_event_done(&self, waited: Duration) {
        self.histograms.subscription_delivery.observe_duration(waited);
    }

    /// Counts one event a subscriber gave up on.
    pub fn record_dead_letter(&self) {
        self.dead_letters.fetch_add(1, Relaxed);
    }

    /// Sets how many of `source`'s events `subscriber` has yet to take
    /// (`None`: the subscription stopped).
    pub fn set_subscription_lag(&self, subscriber: &str, source: &str, lag: Option<u64>) {
        let mut lags = self.subscription_lag.lock().unwrap();
        let key = (subscriber.to_string(), source.to_string());
        match lag {
            Some(lag) => lags.insert(key, lag),
            None => lags.remove(&key),
        };
    }

    /// Where `wasmstate_guest_memory_bytes` reads the guests' memory.
    pub fn watch_guest_memory(&self, read: impl Fn() -> usize + Send + Sync + 'static) {
        let _ = self.guest_memory.set(Box::new(read));
    }

    /// Adjusts the number of connections being served.
    pub fn add_open_connections(&self, delta: i64) {
        self.open_connections.fetch_add(delta, Relaxed);
    }

    /// Counts one connection past the cap, answered 503 or closed.
    pub fn record_refused_connection(&self) {
        self.refused_connections.fetch_add(1, Relaxed);
    }

    /// Counts one connection closed for not sending a header in time.
    pub fn record_connection_timeout(&self) {
        self.connection_timeouts.fetch_add(1, Relaxed);
    }

    /// Counts one failed accept.
    pub fn record_accept_error(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.invocations.render(&mut out);
        self.timers.render(&mut out);
        self.outbound.render(&mut out);
        let histograms = [
            (
                "wasmstate_journal_commit_duration_seconds",
                "Seconds each journal write transaction took.",
                &self.histograms.commit_duration,
            ),
            (
                "wasmstate_journal_commit_batch_size",
                "Commands each journal write transaction held.",
                &self.histograms.commit_batch,
            ),
            (
                "wasmstate_outbox_delivery_seconds",
                "Seconds from the outbox relay's first read of a side effect to its delivery (or drop), retries included.",
                &self.histograms.outbox_delivery,
            ),
            (
                "wasmstate_subscription_delivery_seconds",
                "Seconds from an event's read off its service log to its delivery to a subscriber (or dead letter).",
                &self.histograms.subscription_delivery,
            ),
        ];
        for (name, help, histogram) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            histogram.render(&mut out, name, "");
        }
        let counters = [
            ("wasmstate_journal_commits_total", "Journal write transactions committed.", &self.commits),
            (
                "wasmstate_journal_commit_failures_total",
                "Journal write transactions that failed.",
                &self.commit_failures,
            ),
            ("wasmstate_journal_appends_total", "Commands whose events were committed.", &self.committed_appends),
            ("wasmstate_journal_events_total", "Events committed.", &self.committed_events),
            ("wasmstate_entity_cold_loads_total", "Entities rebuilt from the journal.", &self.cold_loads),
            ("wasmstate_forwarded_total", "Commands sent on to the host that owns their entity.", &self.forwarded),
            (
                "wasmstate_forward_fallbacks_total",
                "Commands run here because their entity's owner host could not be reached.",
                &self.forward_fallbacks,
            ),
            (
                "wasmstate_conflict_retries_total",
                "Entity command runs retried on reloaded state after another host wrote first.",
                &self.conflict_retries,
            ),
            (
                "wasmstate_leases_taken_total",
                "Leases on cluster-wide work (the outbox, subscriptions) this host took.",
                &self.leases_taken,
            ),
            (
                "wasmstate_leases_lost_total",
                "Leases this host lost: taken over by another host, or not renewed in time.",
                &self.leases_lost,
            ),
            ("wasmstate_deploys_total", "Service versions deployed.", &self.deploys),
            ("wasmstate_dry_runs_total", "Commands run as dry runs, committing nothing.", &self.dry_runs),
            (
                "wasmstate_compacted_events_total",
                "Events deleted by compaction (retain=snapshots:K).",
                &self.compacted_events,
            ),
            (
                "wasmstate_compacted_snapshots_total",
                "Old snapshots deleted by compaction (retain=snapshots:K).",
                &self.compacted_snapshots,
            ),
            (
                "wasmstate_compacted_bytes_total",
                "Bytes of records deleted by compaction (retain=snapshots:K).",
                &self.compacted_bytes,
            ),
            (
                "wasmstate_verified_entities_total",
                "Stored entities checked against new versions before they took traffic.",
                &self.verified_entities,
            ),
            (
                "wasmstate_rejected_upgrades_total",
                "New versions refused because they could not rebuild stored entities.",
                &self.rejected_upgrades,
            ),
            ("wasmstate_outbox_delivered_total", "Asynchronous side effects delivered.", &self.outbox_delivered),
            (
                "wasmstate_outbox_retries_total",
                "Failed side-effect deliveries that will be retried.",
                &self.outbox_retries,
            ),
            (
                "wasmstate_outbox_dropped_total",
                "Side effects dropped: refused, or out of attempts.",
                &self.outbox_dropped,
            ),
            (
                "wasmstate_subscription_events_delivered_total",
                "Events delivered to subscribers.",
                &self.events_delivered,
            ),
            (
                "wasmstate_subscription_failures_total",
                "Failed event deliveries to subscribers.",
                &self.event_delivery_failures,
            ),
            (
                "wasmstate_subscription_dead_letters_total",
                "Events subscribers gave up on, kept as dead letters.",
                &self.dead_letters,
            ),
            (
                "wasmstate_connections_refused_total",
                "Connections past --max-connections, answered 503 or closed.",
                &self.refused_connections,
            ),
            (
                "wasmstate_connections_timed_out_total",
                "Connections closed for not sending a header within --header-read-timeout.",
                &self.connection_timeouts,
            ),
            (
                "wasmstate_accept_errors_total",
                "Connections that could not be accepted (out of file descriptors, say).",
                &self.accept_errors,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Relaxed));
        }
        let gauges = [
            ("wasmstate_active_entities", "Entities held in memory.", self.active_entities()),
            (
                "wasmstate_cached_state_bytes",
                "Bytes of state the active entities hold (--max-cached-state-bytes bounds it).",
                self.cached_state_bytes.load(Relaxed),
            ),
            (
                "wasmstate_outbox_pending",
                "Asynchronous side effects waiting in the outbox.",
                self.outbox_pending.load(Relaxed),
            ),
            ("wasmstate_connections_open", "Connections being served.", self.open_connections.load(Relaxed)),
            ("wasmstate_leases_held", "Leases on cluster-wide work this host holds.", self.leases_held.load(Relaxed)),
            (
                "wasmstate_guest_memory_bytes",
                "Linear memory the guest instances hold (--max-total-guest-memory bounds it).",
                self.guest_memory.get().map_or(0, |read| read() as i64),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let name = "wasmstate_subscription_lag";
        let _ = writeln!(out, "# HELP {name} Events of the source a subscriber has yet to take.\n# TYPE {name} gauge");
        // Service names are [A-Za-z0-9._-]: nothing to escape in a label.
        for ((subscriber, source), lag) in self.subscription_lag.lock().unwrap().iter() {
            let _ = writeln!(out, "{name}{{subscriber=\"{subscriber}\",source=\"{source}\"}} {lag}");
        }
        out
    }
}
