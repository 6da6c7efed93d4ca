//! Event-log consumers: an action deployed with subscriptions gets every
//! committed event of each source service, at least once, in seq order per
//! entity (in fact in commit order), from a durable per-subscriber offset
//! that survives restarts.
//!
//! Each delivery is an invocation like any other ([`Invocation::event`]):
//! it takes the one invocation path, with its limits and metrics, under an
//! idempotency key naming the event. A delivery repeated — after a crash,
//! or a retry — answers from its record, and its side effects run under
//! keys derived from it, so each of them changes its target once.
//!
//! An event the subscriber cannot take — it refuses it, traps, loops past
//! its time limit, or asks for a side effect that keeps failing — is tried
//! up to `--subscription-max-attempts` times, then kept as a dead letter
//! (`GET /v1/services/{subscriber}/dead-letters`, counted and logged at
//! WARN) and passed over, so one bad event never stalls a subscription.
//! Each subscription's lag is a gauge in `/metrics`.
//!
//! One host of the journal runs each subscription at a time, under the
//! lease `subscription/{subscriber}/{source}` ([`crate::leases`]): its
//! offsets and dead letters name the lease's epoch, so a host that lost
//! the lease stops at its next write, and the one that took it over goes
//! on from the last offset stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;

use crate::domain::SubscribedEvent;
use crate::invoke::{Invocation, Invoker};
use crate::journal::{DeadLetter, Journal, JournalError, Lease, ServiceLogEntry, now_ms};
use crate::leases::LeaseKeeper;
use crate::metrics::Metrics;
use crate::services::Services;

/// Events read from the journal at once.
const BATCH: usize = 256;
/// How often a source is looked at when no commit wakes the worker.
const POLL: Duration = Duration::from_secs(1);
/// The first retry's delay after a transient failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between two attempts to deliver one event.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The running subscription workers, one per (subscriber, source).
pub struct Subscriptions {
    leases: LeaseKeeper,
    invoker: Invoker,
    journal: Arc<dyn Journal>,
    services: Arc<Services>,
    metrics: Arc<Metrics>,
    /// How many times one event is tried before it becomes a dead letter.
    max_attempts: u32,
    running: Mutex<HashMap<(String, String), AbortHandle>>,
}

impl Subscriptions {
    /// Starts a worker for every subscription the newest versions declare,
    /// and from then on follows every deploy and delete: starts the workers
    /// of new subscriptions and stops those no longer declared.
    pub fn start(
        leases: LeaseKeeper,
        invoker: Invoker,
        journal: Arc<dyn Journal>,
        services: Arc<Services>,
        metrics: Arc<Metrics>,
        max_attempts: u32,
    ) -> Arc<Self> {
        let running = Mutex::default();
        let this = Arc::new(Self { leases, invoker, journal, services, metrics, max_attempts, running });
        let mut changes = this.services.changes();
        changes.mark_changed();
        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(this) = weak.upgrade() else { return };
                this.sync();
            }
        });
        this
    }

    /// Makes the running workers those the newest versions declare.
    fn sync(self: &Arc<Self>) {
        let mut running = self.running.lock().unwrap();
        let wanted = self.services.subscriptions();
        running.retain(|pair, handle| {
            let keep = wanted.contains(pair);
            if !keep {
                handle.abort();
                self.metrics.set_subscription_lag(&pair.0, &pair.1, None);
            }
            keep
        });
        for pair in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(pair) {
                let (subscriber, source) = slot.key().clone();
                let lease = format!("subscription/{subscriber}/{source}");
                let this = self.clone();
                let work = move |lease| this.clone().run(subscriber.clone(), source.clone(), lease);
                slot.insert(tokio::spawn(self.leases.clone().run(lease, work)).abort_handle());
            }
        }
    }

    /// Delivers `source`'s events to `subscriber` while this host holds
    /// `lease`; returns once a write found it lost.
    async fn run(self: Arc<Self>, subscriber: String, source: String, lease: Lease) {
        tracing::info!(%subscriber, %source, epoch = lease.epoch, "subscription started");
        // Only the host running a subscription says how far behind it is.
        let _lag = LagGauge { metrics: &self.metrics, subscriber: &subscriber, source: &source };
        let mut commits = self.journal.commits().service(&source);
        loop {
            let batch = {
                let (journal, sub, src) = (self.journal.clone(), subscriber.clone(), source.clone());
                tokio::task::spawn_blocking(move || {
                    let offset = journal.offset(&sub, &src)?;
                    let head = journal.service_log_head(&src)?;
                    Ok::<_, crate::journal::JournalError>((
                        head.saturating_sub(offset),
                        journal.service_log(&src, offset, BATCH)?,
                    ))
                })
                .await
            };
            let batch = match batch {
                Ok(Ok((lag, batch))) => {
                    self.metrics.set_subscription_lag(&subscriber, &source, Some(lag));
                    batch
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, %subscriber, %source, "cannot read the service log");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                Err(_) => return,
            };
            if batch.is_empty() {
                let _ = tokio::time::timeout(POLL, commits.changed()).await;
                continue;
            }
            let last = batch.last().map_or(0, |e| e.position);
            let read = Instant::now();
            for entry in batch {
                if !self.deliver_until_done(&subscriber, &source, entry, &lease).await {
                    return;
                }
                self.metrics.record_event_done(read.elapsed());
            }
            let (journal, sub, src, held) = (self.journal.clone(), subscriber.clone(), source.clone(), lease.clone());
            match tokio::task::spawn_blocking(move || journal.set_offset(&sub, &src, last, &held)).await {
                Ok(Err(JournalError::LeaseLost(_))) => return,
                Ok(Err(error)) => tracing::error!(%error, %subscriber, %source, "cannot store the subscription offset"),
                _ => {}
            }
        }
    }

    /// Delivers one event, retrying transient failures with backoff, up to
    /// `max_attempts` attempts in all; a permanent failure (the subscriber
    /// refused or trapped, or asked for more than the limits allow) ends
    /// the attempts at once. An event given up on becomes a dead letter. A
    /// retry answers from the delivery's record, so the side effects that
    /// ran before do not run again. False when the lease was found lost.
    async fn deliver_until_done(&self, subscriber: &str, source: &str, entry: ServiceLogEntry, lease: &Lease) -> bool {
        let (position, trace) = (entry.position, entry.trace);
        let event = SubscribedEvent {
            source: source.to_string(),
            entity: entry.entity,
            seq: entry.event.seq,
            version: entry.event.version,
            payload: entry.event.payload,
        };
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1.. {
            let delivery = Invocation::event(subscriber.to_string(), event.clone(), trace.as_ref());
            let error = match self.invoker.invoke(delivery).await {
                Ok(_) => {
                    self.metrics.record_event_delivery(true);
                    return true;
                }
                Err(error) => error,
            };
            self.metrics.record_event_delivery(false);
            if !error.is_transient() || attempt >= self.max_attempts {
                let letter = DeadLetter {
                    entity: event.entity.clone(),
                    seq: event.seq,
                    attempts: attempt,
                    error: error.to_string(),
                    at_ms: now_ms(),
                };
                return self.give_up(subscriber, source, position, letter, lease).await;
            }
            tracing::debug!(%subscriber, %source, attempt, %error, "event delivery will be retried");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        unreachable!("the attempts end in a delivery or a dead letter")
    }

    /// Keeps an event the subscriber could not take as a dead letter, and
    /// passes over it. False when the lease was found lost (the host that
    /// took it over tries the event again).
    async fn give_up(&self, subscriber: &str, source: &str, position: u64, letter: DeadLetter, lease: &Lease) -> bool {
        let (entity, seq, attempts, error) = (&letter.entity, letter.seq, letter.attempts, &letter.error);
        tracing::warn!(%subscriber, %source, %entity, seq, attempts, %error, "a subscriber could not take an event; it is kept as a dead letter and passed over");
        let (journal, sub, src, held) =
            (self.journal.clone(), subscriber.to_string(), source.to_string(), lease.clone());
        match tokio::task::spawn_blocking(move || journal.add_dead_letter(&sub, &src, position, &letter, &held)).await {
            Ok(Err(JournalError::LeaseLost(_))) => return false,
            Ok(Err(error)) => tracing::error!(%error, %subscriber, %source, position, "cannot store a dead letter"),
            _ => self.metrics.record_dead_letter(),
        }
        true
    }
}

/// Clears a subscription's lag gauge when its host stops running it.
struct LagGauge<'a> {
    metrics: &'a Metrics,
    subscriber: &'a str,
    source: &'a str,
}

impl Drop for LagGauge<'_> {
    fn drop(&mut self) {
        self.metrics.set_subscription_lag(self.subscriber, self.source, None);
    }
}
