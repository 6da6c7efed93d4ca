//! What a journal keeps in memory beside its tables: the outbox entries
//! waiting per target service (for the quota) and the services that keep
//! only some history. Each journal fills them when it opens and keeps them
//! up to date as it writes; a journal other hosts write to also reads them
//! again every few seconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use super::Retention;

/// How many entries wait for each target service, and how many may.
#[derive(Debug)]
pub(super) struct OutboxBook {
    waiting: Mutex<HashMap<String, u64>>,
    quota: AtomicU64,
}

impl OutboxBook {
    /// A book of `waiting` entries per target service, with no quota.
    pub fn new(waiting: HashMap<String, u64>) -> Self {
        Self { waiting: Mutex::new(waiting), quota: AtomicU64::new(u64::MAX) }
    }

    /// Sets how many entries may wait for one target service.
    pub fn set_quota(&self, quota: u64) {
        self.quota.store(quota, Ordering::Relaxed);
    }

    /// Whether `adding` more entries (by target service) fit the quota;
    /// the first service that does not fit, if any.
    pub fn over_quota<'a>(&self, adding: &HashMap<&'a str, u64>) -> Option<&'a str> {
        let quota = self.quota.load(Ordering::Relaxed);
        let waiting = self.waiting.lock().unwrap();
        adding.iter().find(|(service, n)| waiting.get(**service).copied().unwrap_or(0) + **n > quota).map(|(s, _)| *s)
    }

    /// Replaces the counts with `waiting`, as the journal's tables have them.
    pub fn replace(&self, waiting: HashMap<String, u64>) {
        *self.waiting.lock().unwrap() = waiting;
    }

    /// Counts entries added to (`delta` > 0) or gone from the outbox.
    pub fn adjust(&self, service: &str, delta: i64) {
        let mut waiting = self.waiting.lock().unwrap();
        let count = waiting.entry(service.to_string()).or_default();
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            waiting.remove(service);
        }
    }
}

/// The services that keep only some history, in memory: the writer asks it
/// whether a snapshot must also go to the snapshot history.
#[derive(Debug, Default)]
pub(super) struct RetentionBook(RwLock<HashMap<String, u32>>);

impl RetentionBook {
    /// A book of the stored policies: service → K of `retain=snapshots:K`.
    pub fn new(policies: HashMap<String, u32>) -> Self {
        Self(RwLock::new(policies))
    }

    /// The policy of `service`.
    pub fn get(&self, service: &str) -> Retention {
        self.0.read().unwrap().get(service).map_or(Retention::All, |k| Retention::Snapshots(*k))
    }

    /// Replaces the policies with `policies`, as the journal's tables have them.
    pub fn replace(&self, policies: HashMap<String, u32>) {
        *self.0.write().unwrap() = policies;
    }

    /// Records `service`'s policy, once it is stored.
    pub fn set(&self, service: &str, retention: Retention) {
        let mut policies = self.0.write().unwrap();
        match retention {
            Retention::All => policies.remove(service),
            Retention::Snapshots(k) => policies.insert(service.to_string(), k),
        };
    }

    /// Whether `service` keeps a history of snapshots.
    pub fn keeps_snapshot_history(&self, service: &str) -> bool {
        self.0.read().unwrap().contains_key(service)
    }

    /// Every service that keeps only some history, with its K.
    pub fn compacted(&self) -> Vec<(String, u32)> {
        self.0.read().unwrap().iter().map(|(s, k)| (s.clone(), *k)).collect()
    }
}
