//! Event-log consumers: an action deployed with subscriptions gets every
//! committed event of each source service, at least once, in seq order per
//! entity (in fact in commit order), from a durable per-subscriber offset
//! that survives restarts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::AbortHandle;

use crate::entities::{Entities, InvokeError};
use crate::journal::{Journal, ServiceLogEntry};
use crate::metrics::Metrics;
use crate::runtime::{Runtime, SideEffect, SubscribedEvent};
use crate::services::Services;

/// Events read from the journal at once.
const BATCH: usize = 256;
/// How often a source is looked at when no commit wakes the worker.
const POLL: Duration = Duration::from_secs(1);
/// The first retry's delay after a transient failure; it doubles up to 30 s.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The running subscription workers, one per (subscriber, source).
pub struct Subscriptions {
    entities: Entities,
    journal: Arc<Journal>,
    services: Arc<Services>,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    running: Mutex<HashMap<(String, String), AbortHandle>>,
}

impl Subscriptions {
    /// Creates the manager; call [`sync`](Self::sync) to start the workers.
    pub fn new(
        entities: Entities,
        journal: Arc<Journal>,
        services: Arc<Services>,
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self { entities, journal, services, runtime, metrics, running: Mutex::default() })
    }

    /// Starts a worker for every subscription the newest versions declare
    /// and stops the workers of subscriptions no longer declared.
    pub fn sync(self: &Arc<Self>) {
        // Read under the lock: two syncs at once (a deploy and a delete)
        // apply their readings in the order they took them.
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
                self.deliver_until_done(&subscriber, &source, &entry).await;
            }
            let (journal, sub, src) = (self.journal.clone(), subscriber.clone(), source.clone());
            if let Ok(Err(error)) = tokio::task::spawn_blocking(move || journal.set_offset(&sub, &src, last)).await {
                tracing::error!(%error, %subscriber, %source, "cannot store the subscription offset");
            }
        }
    }

    /// Delivers one event, retrying transient failures with backoff; a
    /// permanent failure (the subscriber refused or trapped) is logged and
    /// counted, and the event is passed over. A retry goes on from the
    /// first side effect that has not run: the ones before it do not run
    /// again (unless the host restarts in between: delivery is at least
    /// once).
    async fn deliver_until_done(&self, subscriber: &str, source: &str, entry: &ServiceLogEntry) {
        let mut backoff = FIRST_BACKOFF;
        let mut pending = None;
        loop {
            match self.deliver(subscriber, source, entry, &mut pending).await {
                Ok(()) => {
                    self.metrics.record_event_delivery(true);
                    return;
                }
                Err(error) => {
                    self.metrics.record_event_delivery(false);
                    if !error.is_transient() {
                        tracing::warn!(%subscriber, %source, entity = %entry.entity, seq = entry.event.seq, %error, "subscriber failed an event; passing over it");
                        return;
                    }
                    tracing::debug!(%subscriber, %source, %error, "event delivery will be retried");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Hands the event to the subscriber (unless an earlier attempt did:
    /// then `pending` holds the side effects it returned that have not run)
    /// and runs its side effects in order.
    async fn deliver(
        &self,
        subscriber: &str,
        source: &str,
        entry: &ServiceLogEntry,
        pending: &mut Option<VecDeque<SideEffect>>,
    ) -> Result<(), InvokeError> {
        let effects = match pending {
            Some(effects) => effects,
            None => {
                let service =
                    self.services.get(subscriber).ok_or_else(|| InvokeError::UnknownService(subscriber.to_string()))?;
                let event = SubscribedEvent {
                    service: source.to_string(),
                    entity_id: entry.entity.clone(),
                    seq: entry.event.seq,
                    payload: entry.event.payload.clone(),
                };
                let effects = self.runtime.on_event(&service.entity, &event).await?.map_err(InvokeError::Failed)?;
                pending.insert(effects.into())
            }
        };
        while let Some(effect) = effects.front() {
            self.entities.run_subscriber_effect(effect.clone()).await?;
            effects.pop_front();
        }
        Ok(())
    }
}

/// Waits until `source` commits events (or a while passes).
async fn wait_for_commit(commits: &mut tokio::sync::broadcast::Receiver<crate::journal::Committed>, source: &str) {
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
