//! Delivers asynchronous side effects from the durable outbox: at least once,
//! retried with exponential backoff, visible in metrics.
//!
//! Entries are committed in the same transaction as the command that asked
//! for them, so a crash after the commit still delivers them. Each delivery
//! of a command is an invocation like any other, under the idempotency key
//! of its entry ([`IdempotencyKey::outbox`]), so an entity that already
//! received it (before a crash, say) answers from its record instead of
//! running the command twice; it runs one hop deeper than the command that
//! asked for it, so a side effect that keeps asking for more ends at
//! `MAX_HOPS`.
//!
//! A webhook is an HTTP request ([`crate::outbound`]) to a host its
//! service's allow-list still names, with an `Idempotency-Key` header made
//! from the entry's id and a secret of the journal: the same for every
//! attempt, from any host, and told apart from any other journal's.
//!
//! Deliveries are fair across targets: at most one runs at a time for each
//! target entity (which runs its commands one at a time anyway), and at
//! most [`WEBHOOK_LANES`] for each webhook origin, so a slow target delays
//! only its own entries, in commit order (a webhook's, in the order of its
//! lane), while the other slots serve everyone else. Delivered
//! entries are removed in batches.
//!
//! One host of the journal delivers at a time, under the `outbox` lease
//! ([`crate::leases`]); the others' commits wake it. Its removals and
//! retries name the lease's epoch, so a host that lost the lease stops at
//! its next one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use sha2::{Digest, Sha256};

use crate::domain::{AsyncEffect, IdempotencyKey, Webhook};
use crate::invoke::{Cause, Invocation, Invoker};
use crate::journal::{Journal, JournalError, Lease, OutboxEntry, now_ms};
use crate::leases::LeaseKeeper;
use crate::metrics::{Delivery, Metrics, WebhookAttempt};
use crate::outbound::{AllowList, OutboundLimits, TlsRoots, WebhookOutcome};
use crate::services::Services;

/// How many entries are delivered at once.
const CONCURRENCY: usize = 32;
/// How many due entries one read of the outbox takes.
const SCAN: usize = 256;
/// The most entries waiting in memory for their target to be free.
const MAX_QUEUED: usize = 4096;
/// Delivered entries are removed once this many are done, or [`FLUSH_AFTER`] passed.
const FLUSH_EVERY: usize = 64;
/// The longest a delivered entry waits to be removed.
const FLUSH_AFTER: Duration = Duration::from_millis(100);
/// The first retry's delay; each further one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the outbox is looked at when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(1);

/// What the outbox worker delivers with.
pub struct Delivering {
    /// Runs the commands.
    pub invoker: Invoker,
    /// Holds the allow-list each webhook's service has now.
    pub services: Arc<Services>,
    /// The bounds on a webhook's request.
    pub outbound: OutboundLimits,
    /// The servers a webhook's TLS connection trusts.
    pub tls: TlsRoots,
    /// How many times an entry is tried before it is dropped.
    pub max_attempts: u32,
}

/// Starts the outbox worker, which delivers while this host holds the
/// outbox's lease.
pub fn spawn(leases: LeaseKeeper, delivering: Delivering, journal: Arc<dyn Journal>, metrics: Arc<Metrics>) {
    let Delivering { invoker, services, outbound, tls, max_attempts } = delivering;
    let work = move |lease| {
        let worker = Worker {
            invoker: invoker.clone(),
            services: services.clone(),
            outbound,
            tls: tls.clone(),
            webhook_secret: None,
            journal: journal.clone(),
            metrics: metrics.clone(),
            max_attempts,
            lease,
            lost: false,
            deliveries: JoinSet::new(),
            running: HashMap::new(),
            busy: HashSet::new(),
            known: HashSet::new(),
            first_read: HashMap::new(),
            queue: VecDeque::new(),
            cursor: 0,
            done: Vec::new(),
            oldest_done: None,
        };
        worker.run()
    };
    tokio::spawn(leases.run("outbox".into(), work));
}

/// The state of the outbox worker.
struct Worker {
    invoker: Invoker,
    services: Arc<Services>,
    outbound: OutboundLimits,
    tls: TlsRoots,
    /// What webhooks' idempotency keys are made with, read once from the
    /// journal.
    webhook_secret: Option<[u8; 32]>,
    journal: Arc<dyn Journal>,
    metrics: Arc<Metrics>,
    max_attempts: u32,
    /// The outbox's lease, which this host holds while it delivers.
    lease: Lease,
    /// Whether a write found the lease taken over: the worker stops.
    lost: bool,
    deliveries: JoinSet<(OutboxEntry, Attempt)>,
    /// What each running delivery task delivers: (entry id, its lane).
    running: HashMap<tokio::task::Id, (u64, LaneKey)>,
    /// The lanes (target entities, webhook origins' lanes) with a delivery running.
    busy: HashSet<LaneKey>,
    /// The ids queued or being delivered.
    known: HashSet<u64>,
    /// When each entry not yet delivered or dropped was first read.
    first_read: HashMap<u64, Instant>,
    /// Due entries waiting for their target, in id order, with their lanes.
    queue: VecDeque<(LaneKey, OutboxEntry)>,
    /// The id the next read of the outbox starts after (0: from the start).
    cursor: u64,
    /// Entries delivered (or dropped) and not yet removed.
    done: Vec<u64>,
    oldest_done: Option<Instant>,
}

impl Worker {
    async fn run(mut self) {
        let wake = self.journal.outbox_signal();
        while !self.lost {
            if self.webhook_secret.is_none() {
                self.read_webhook_secret().await;
            }
            if self.deliveries.len() < CONCURRENCY {
                self.read_due().await;
                self.dispatch();
            }
            if self.done.len() >= FLUSH_EVERY
                || self.deliveries.is_empty()
                || self.oldest_done.is_some_and(|at| at.elapsed() >= FLUSH_AFTER)
            {
                self.flush().await;
            }
            if self.deliveries.is_empty() {
                let _ = tokio::time::timeout(POLL, wake.notified()).await;
                continue;
            }
            tokio::select! {
                Some(joined) = self.deliveries.join_next_with_id() => match joined {
                    Ok((task, (entry, result))) => {
                        if let Some((_, lane)) = self.running.remove(&task) {
                            self.busy.remove(&lane);
                        }
                        self.finished(entry, result).await;
                    }
                    // A delivery that panicked stays in the outbox: forget it
                    // here, and it is read again.
                    Err(error) => self.forget(error.id()),
                },
                () = wake.notified() => {}
                () = tokio::time::sleep(FLUSH_AFTER) => {}
            }
        }
    }

    /// Reads the secret of webhooks' idempotency keys off the journal's key.
    async fn read_webhook_secret(&mut self) {
        let journal = self.journal.clone();
        match tokio::task::spawn_blocking(move || journal.compiled_cache_key()).await {
            Ok(Ok(key)) => self.webhook_secret = Some(webhook_secret(&key)),
            Ok(Err(error)) => tracing::error!(%error, "cannot read the journal's key; webhooks wait"),
            Err(_) => {}
        }
    }

    /// Reads due entries past the cursor into the queue (from the start
    /// again once the end was reached).
    async fn read_due(&mut self) {
        if self.queue.len() >= MAX_QUEUED {
            return;
        }
        let (journal, cursor) = (self.journal.clone(), self.cursor);
        let read = tokio::task::spawn_blocking(move || journal.outbox_due(now_ms(), cursor, SCAN)).await;
        let due = match read {
            Ok(Ok((due, pending))) => {
                self.metrics.set_outbox_pending(pending);
                due
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the outbox");
                return;
            }
            Err(_) => return,
        };
        self.cursor = if due.len() < SCAN { 0 } else { due.last().map_or(0, |e| e.id) };
        for entry in due {
            if self.known.insert(entry.id) {
                // A retried entry keeps the time it was first read.
                self.first_read.entry(entry.id).or_insert_with(Instant::now);
                self.queue.push_back((lane(&entry), entry));
            }
        }
    }

    /// Starts deliveries of queued entries whose lane is free, in order.
    /// Each delivery's end calls it again, so it costs one hash lookup per
    /// queued entry, and stops once every slot is taken.
    fn dispatch(&mut self) {
        let mut waiting = VecDeque::with_capacity(self.queue.len());
        while let Some((target, entry)) = self.queue.pop_front() {
            if self.deliveries.len() >= CONCURRENCY {
                waiting.push_back((target, entry));
                waiting.append(&mut self.queue);
                break;
            }
            if self.busy.contains(&target) {
                waiting.push_back((target, entry));
                continue;
            }
            self.busy.insert(target);
            let id = entry.id;
            let task = match &entry.effect {
                AsyncEffect::Command(_) => {
                    let invoker = self.invoker.clone();
                    self.deliveries.spawn(async move {
                        let attempt = run_command(&invoker, &entry).await;
                        (entry, attempt)
                    })
                }
                AsyncEffect::Webhook(webhook) => {
                    // Without the journal's key, or the allow-list of the
                    // version that asked, it waits (as a failed attempt).
                    let key = self.webhook_secret.as_ref().map(|secret| webhook_key(secret, entry.id));
                    let allow = self.services.webhook_allow_list(&webhook.service, webhook.version);
                    let (outbound, tls, metrics) = (self.outbound, self.tls.clone(), self.metrics.clone());
                    self.deliveries.spawn(async move {
                        let attempt = match (key, allow) {
                            (Some(key), Ok(allow)) => {
                                send_webhook(&entry, &key, &allow, (&tls, &outbound), &metrics).await
                            }
                            (None, _) => {
                                Attempt::Failed { transient: true, error: "the journal's key is not read yet".into() }
                            }
                            (_, Err(why)) => Attempt::Failed { transient: true, error: why },
                        };
                        (entry, attempt)
                    })
                }
            };
            self.running.insert(task.id(), (id, target));
        }
        self.queue = waiting;
    }

    /// Records how one delivery went: done, to be retried, or dropped.
    async fn finished(&mut self, mut entry: OutboxEntry, attempt: Attempt) {
        let id = entry.id;
        let delivery = match attempt {
            Attempt::Delivered => Delivery::Delivered,
            Attempt::Failed { transient: true, error } if entry.attempts + 1 < self.max_attempts => {
                entry.attempts += 1;
                entry.next_attempt_ms = now_ms() + backoff(entry.attempts).as_millis() as u64;
                tracing::debug!(id = entry.id, attempts = entry.attempts, %error, "side effect will be retried");
                if let AsyncEffect::Webhook(webhook) = &entry.effect {
                    let host = crate::outbound::authority_of(&webhook.url);
                    self.metrics.outbound.record_webhook(&host, WebhookAttempt::Retried);
                    let Webhook { service, url, .. } = webhook;
                    tracing::warn!(id, %service, %url, attempts = entry.attempts, %error, "a webhook's delivery failed; it will be tried again");
                }
                let (journal, retry, lease) = (self.journal.clone(), entry.clone(), self.lease.clone());
                match tokio::task::spawn_blocking(move || journal.outbox_retry(&retry, &lease)).await {
                    Ok(Err(JournalError::LeaseLost(_))) => self.lost = true,
                    Ok(Err(error)) => tracing::error!(%error, "cannot record a side effect's failed attempt"),
                    _ => {}
                }
                // Not due again until its next attempt: reading it may queue it.
                self.known.remove(&id);
                Delivery::Retried
            }
            Attempt::Failed { error, .. } => {
                let attempts = entry.attempts + 1;
                match &entry.effect {
                    AsyncEffect::Command(call) => {
                        tracing::warn!(id, service = %call.service, entity = %call.entity, command = %call.command, attempts, %error, "dropping side effect")
                    }
                    AsyncEffect::Webhook(webhook) => {
                        let host = crate::outbound::authority_of(&webhook.url);
                        self.metrics.outbound.record_webhook(&host, WebhookAttempt::Dropped);
                        tracing::warn!(id, service = %webhook.service, url = %webhook.url, attempts, %error, "dropping webhook")
                    }
                }
                Delivery::Dropped
            }
        };
        if delivery != Delivery::Retried {
            if let Some(read) = self.first_read.remove(&id) {
                self.metrics.record_outbox_done(read.elapsed());
            }
            // Known until it is removed, so a read before then skips it.
            self.done.push(id);
            self.oldest_done.get_or_insert_with(Instant::now);
        }
        self.metrics.record_outbox(delivery);
    }

    /// Frees the target of a delivery task that panicked.
    fn forget(&mut self, task: tokio::task::Id) {
        if let Some((id, target)) = self.running.remove(&task) {
            tracing::error!(id, "a side effect's delivery panicked; it stays in the outbox");
            self.busy.remove(&target);
            self.known.remove(&id);
        }
    }

    /// Removes the delivered entries from the outbox.
    async fn flush(&mut self) {
        self.oldest_done = None;
        if self.done.is_empty() {
            return;
        }
        let (journal, done, lease) = (self.journal.clone(), std::mem::take(&mut self.done), self.lease.clone());
        let removed = tokio::task::spawn_blocking(move || journal.outbox_remove(&done, &lease).map(|()| done)).await;
        match removed {
            Ok(Ok(done)) => {
                for id in done {
                    self.known.remove(&id);
                    self.first_read.remove(&id);
                }
            }
            // The host that took the lease over removes them.
            Ok(Err(JournalError::LeaseLost(_))) => self.lost = true,
            // Still known, so not delivered again; removed at the next start.
            Ok(Err(error)) => tracing::error!(%error, "cannot remove delivered side effects from the outbox"),
            Err(_) => {}
        }
    }
}

/// How one attempt at an entry went.
enum Attempt {
    /// Delivered.
    Delivered,
    /// Not delivered; a `transient` failure is tried again (while attempts remain).
    Failed { transient: bool, error: String },
}

/// How many webhooks to one origin are delivered at once.
const WEBHOOK_LANES: u64 = 8;

/// A lane, hashed: two lanes that hash alike merely take turns.
type LaneKey = u64;

/// What runs one at a time: a command's target entity, or one of the
/// [`WEBHOOK_LANES`] of a webhook's origin (entries spread by id, so one
/// slow receiver holds at most that many slots). Worked out once, as an
/// entry is read.
fn lane(entry: &OutboxEntry) -> LaneKey {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match &entry.effect {
        AsyncEffect::Command(call) => (0u8, &call.service, &call.entity).hash(&mut hasher),
        AsyncEffect::Webhook(webhook) => {
            (1u8, crate::outbound::origin_of(&webhook.url), entry.id % WEBHOOK_LANES).hash(&mut hasher)
        }
    }
    hasher.finish()
}

/// Delivers a command entry as an invocation under the entry's key.
async fn run_command(invoker: &Invoker, entry: &OutboxEntry) -> Attempt {
    let AsyncEffect::Command(call) = &entry.effect else { unreachable!("a command entry") };
    let key = Some(IdempotencyKey::outbox(entry.id));
    let delivery =
        Invocation::command(call.clone(), key).at_hops(entry.hops).child_of(entry.trace.as_ref(), Cause::Outbox);
    match invoker.invoke(delivery).await {
        Ok(_) => Attempt::Delivered,
        Err(error) => Attempt::Failed { transient: error.is_transient(), error: error.to_string() },
    }
}

/// Sends a webhook entry once, counting it if delivered (the worker counts
/// and logs the rest, knowing whether it will be tried again).
async fn send_webhook(
    entry: &OutboxEntry,
    key: &str,
    allow: &AllowList,
    (tls, limits): (&TlsRoots, &OutboundLimits),
    metrics: &Metrics,
) -> Attempt {
    let AsyncEffect::Webhook(webhook) = &entry.effect else { unreachable!("a webhook entry") };
    let host = crate::outbound::authority_of(&webhook.url);
    match crate::outbound::deliver(webhook, key, allow, tls, limits).await {
        WebhookOutcome::Delivered => {
            metrics.outbound.record_webhook(&host, WebhookAttempt::Delivered);
            Attempt::Delivered
        }
        WebhookOutcome::Retry(error) => Attempt::Failed { transient: true, error },
        WebhookOutcome::Drop(error) => Attempt::Failed { transient: false, error },
    }
}

/// The secret webhooks' idempotency keys are made with, from the journal's
/// own key (which it does not reveal).
fn webhook_secret(journal_key: &[u8; 32]) -> [u8; 32] {
    Sha256::new().chain_update(b"wasmstate webhook idempotency keys").chain_update(journal_key).finalize().into()
}

/// The `Idempotency-Key` of every attempt at outbox entry `id`: 32 hex digits.
fn webhook_key(secret: &[u8; 32], id: u64) -> String {
    let digest = Sha256::new().chain_update(secret).chain_update(id.to_le_bytes()).finalize();
    digest[..16].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The delay before attempt `attempts + 1`.
fn backoff(attempts: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempts.min(16)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_keys_are_stable_and_differ_by_entry_and_journal() {
        let secret = webhook_secret(&[1; 32]);
        let key = webhook_key(&secret, 7);
        assert_eq!(key.len(), 32);
        assert_eq!(key, webhook_key(&secret, 7), "the same for every attempt");
        assert_ne!(key, webhook_key(&secret, 8));
        assert_ne!(key, webhook_key(&webhook_secret(&[2; 32]), 7), "another journal's differ");
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
