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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::AbortHandle;

use crate::domain::SubscribedEvent;
use crate::invoke::{Invocation, Invoker};
use crate::journal::{Committed, Journal, ServiceLogEntry};
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
    invoker: Invoker,
    journal: Arc<Journal>,
    services: Arc<Services>,
    metrics: Arc<Metrics>,
    running: Mutex<HashMap<(String, String), AbortHandle>>,
}

impl Subscriptions {
    /// Starts a worker for every subscription the newest versions declare,
    /// and from then on follows every deploy and delete: starts the workers
    /// of new subscriptions and stops those no longer declared.
    pub fn start(invoker: Invoker, journal: Arc<Journal>, services: Arc<Services>, metrics: Arc<Metrics>) -> Arc<Self> {
        let this = Arc::new(Self { invoker, journal, services, metrics, running: Mutex::default() });
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
            }
            keep
        });
        for pair in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(pair) {
                let (subscriber, source) = slot.key().clone();
                slot.insert(tokio::spawn(self.clone().run(subscriber, source)).abort_handle());
            }
        }
    }

    async fn run(self: Arc<Self>, subscriber: String, source: String) {
        tracing::info!(%subscriber, %source, "subscription started");
        let mut commits = self.journal.subscribe();
        loop {
            let batch = {
                let (journal, sub, src) = (self.journal.clone(), subscriber.clone(), source.clone());
                tokio::task::spawn_blocking(move || {
                    let offset = journal.offset(&sub, &src)?;
                    journal.service_log(&src, offset, BATCH)
                })
                .await
            };
            let batch = match batch {
                Ok(Ok(batch)) => batch,
                Ok(Err(error)) => {
                    tracing::error!(%error, %subscriber, %source, "cannot read the service log");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                Err(_) => return,
            };
            if batch.is_empty() {
                wait_for_commit(&mut commits, &source).await;
                continue;
            }
            let last = batch.last().map_or(0, |e| e.position);
            for entry in batch {
                self.deliver_until_done(&subscriber, &source, entry).await;
            }
            let (journal, sub, src) = (self.journal.clone(), subscriber.clone(), source.clone());
            if let Ok(Err(error)) = tokio::task::spawn_blocking(move || journal.set_offset(&sub, &src, last)).await {
                tracing::error!(%error, %subscriber, %source, "cannot store the subscription offset");
            }
        }
    }

    /// Delivers one event, retrying transient failures with backoff; a
    /// permanent failure (the subscriber refused or trapped, or asked for
    /// more than the limits allow) is logged and counted, and the event is
    /// passed over. A retry answers from the delivery's record, so the side
    /// effects that ran before do not run again.
    async fn deliver_until_done(&self, subscriber: &str, source: &str, entry: ServiceLogEntry) {
        let event = SubscribedEvent {
            source: source.to_string(),
            entity: entry.entity,
            seq: entry.event.seq,
            payload: entry.event.payload,
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            let delivery = Invocation::event(subscriber.to_string(), event.clone());
            match self.invoker.invoke(delivery).await {
                Ok(_) => {
                    self.metrics.record_event_delivery(true);
                    return;
                }
                Err(error) => {
                    self.metrics.record_event_delivery(false);
                    if !error.is_transient() {
                        tracing::warn!(%subscriber, %source, entity = %event.entity, seq = event.seq, %error, "subscriber failed an event; passing over it");
                        return;
                    }
                    tracing::debug!(%subscriber, %source, %error, "event delivery will be retried");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Waits until `source` commits events (or a while passes).
async fn wait_for_commit(commits: &mut tokio::sync::broadcast::Receiver<Committed>, source: &str) {
    let _ = tokio::time::timeout(POLL, async {
        loop {
            match commits.recv().await {
                Ok(c) if &*c.service == source => return,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => return,
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    })
    .await;
}
