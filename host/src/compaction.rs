//! Compaction in the background: every so often, each service that keeps
//! only its entities' latest snapshots' history (`retain=snapshots:K`)
//! drops the events and snapshots before them. A round waits while a
//! subscriber of the service has not been given every event yet. One host
//! of the journal compacts at a time, under the `compaction` lease.

use std::sync::Arc;
use std::time::Duration;

use crate::journal::Journal;
use crate::leases::LeaseKeeper;
use crate::metrics::Metrics;
use crate::services::Services;

/// Starts the compaction rounds, one every `every`, on one host of the
/// journal at a time.
pub fn spawn(
    leases: LeaseKeeper,
    journal: Arc<dyn Journal>,
    services: Arc<Services>,
    metrics: Arc<Metrics>,
    every: Duration,
) {
    let rounds = move |_| {
        let (journal, services, metrics) = (journal.clone(), services.clone(), metrics.clone());
        async move {
            loop {
                tokio::time::sleep(every).await;
                round(&journal, &services, &metrics).await;
            }
        }
    };
    tokio::spawn(leases.run("compaction".into(), rounds));
}

/// Compacts every service that keeps only some history.
async fn round(journal: &Arc<dyn Journal>, services: &Services, metrics: &Metrics) {
    for (service, k) in journal.compacted_services() {
        let subscribers: Vec<String> = services
            .subscriptions()
            .into_iter()
            .filter(|(_, source)| *source == service)
            .map(|(subscriber, _)| subscriber)
            .collect();
        let (j, s) = (journal.clone(), service.clone());
        match tokio::task::spawn_blocking(move || j.compact(&s, k, &subscribers)).await {
            Ok(Ok(done)) => {
                metrics.record_compaction(done.events, done.snapshots, done.bytes);
                if done.events > 0 || done.snapshots > 0 {
                    tracing::debug!(%service, events = done.events, snapshots = done.snapshots, bytes = done.bytes, "compacted");
                }
                if done.waiting_for_subscribers {
                    tracing::debug!(%service, "compaction waits for the service's subscribers");
                }
            }
            Ok(Err(error)) => tracing::warn!(%service, %error, "cannot compact the service's history"),
            Err(error) => tracing::warn!(%service, %error, "the compaction task failed"),
        }
    }
}
