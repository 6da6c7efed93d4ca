//! Delivers asynchronous side effects from the durable outbox: at least once,
//! retried with exponential backoff, visible in metrics.
//!
//! Entries are committed in the same transaction as the command that asked
//! for them, so a crash after the commit still delivers them. Each delivery
//! is an invocation like any other, under the idempotency key of its entry
//! ([`IdempotencyKey::outbox`]), so an entity that already received it
//! (before a crash, say) answers from its record instead of running the
//! command twice.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::domain::IdempotencyKey;
use crate::invoke::{Invocation, Invoker};
use crate::journal::{Journal, OutboxEntry, now_ms};
use crate::metrics::{Delivery, Metrics};

/// How many entries are delivered at once.
const CONCURRENCY: usize = 32;
/// The first retry's delay; each further one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the outbox is looked at when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(1);

/// Starts the outbox worker.
pub fn spawn(invoker: Invoker, journal: Arc<Journal>, metrics: Arc<Metrics>, max_attempts: u32) {
    tokio::spawn(async move {
        let wake = journal.outbox_signal();
        loop {
            let j = journal.clone();
            let due = tokio::task::spawn_blocking(move || j.outbox_due(now_ms(), CONCURRENCY)).await;
            let due = match due {
                Ok(Ok((due, pending))) => {
                    metrics.set_outbox_pending(pending);
                    due
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "cannot read the outbox");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
            if due.is_empty() {
                let _ = tokio::time::timeout(POLL, wake.notified()).await;
                continue;
            }
            let mut deliveries = JoinSet::new();
            for entry in due {
                let invoker = invoker.clone();
                deliveries.spawn(async move {
                    let delivery = Invocation::command(entry.call.clone(), Some(IdempotencyKey::outbox(entry.id)));
                    let result = invoker.invoke(delivery).await;
                    (entry, result)
                });
            }
            let mut done = Vec::new();
            while let Some(joined) = deliveries.join_next().await {
                // A delivery that panicked stays in the outbox, due again.
                let Ok((mut entry, result)) = joined else { continue };
                let id = entry.id;
                let delivery = match result {
                    Ok(_) => Delivery::Delivered,
                    Err(error) if error.is_transient() && entry.attempts + 1 < max_attempts => {
                        entry.attempts += 1;
                        entry.next_attempt_ms = now_ms() + backoff(entry.attempts).as_millis() as u64;
                        tracing::debug!(id = entry.id, attempts = entry.attempts, %error, "side effect will be retried");
                        retry(&journal, entry).await;
                        Delivery::Retried
                    }
                    Err(error) => {
                        let call = &entry.call;
                        tracing::warn!(id = entry.id, service = %call.service, entity = %call.entity, command = %call.command, %error, "dropping side effect");
                        Delivery::Dropped
                    }
                };
                if delivery != Delivery::Retried {
                    done.push(id);
                }
                metrics.record_outbox(delivery);
            }
            let j = journal.clone();
            if let Ok(Err(error)) = tokio::task::spawn_blocking(move || j.outbox_remove(&done)).await {
                tracing::error!(%error, "cannot remove delivered side effects from the outbox");
            }
        }
    });
}

async fn retry(journal: &Arc<Journal>, entry: OutboxEntry) {
    let j = journal.clone();
    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || j.outbox_retry(&entry)).await {
        tracing::error!(%error, "cannot record a side effect's failed attempt");
    }
}

/// The delay before attempt `attempts + 1`.
fn backoff(attempts: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempts.min(16)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
