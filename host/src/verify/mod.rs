//! Verified deploys: before a new version of a service takes traffic, the
//! host rebuilds the service's stored entities with it and, given a probe
//! command, compares the old and the new version's replies. Nothing the
//! check runs is committed or sent.
//!
//! ```text
//! verify ─► entity ids (all, or a deterministic sample) ─► workers, one per core
//!   each entity ─► its whole history, read once ─► entity_check::run
//!     ─► rebuild from the latest snapshot, and from event 1 (event-sourced)
//!        or decode the stored state (value) ─► probe: old vs new reply
//!   ─► Report {checked, failed, differences}
//! ```
//!
//! The check reads the journal as it is when each entity is read; commands
//! the old version runs meanwhile keep committing. It works for components
//! of every WIT version (see `runtime/replay.rs`).

mod entity_check;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::ServiceKind;
use crate::journal::Journal;
use crate::runtime::{CompiledService, Runtime};
pub use entity_check::{CheckError, EntityFailure, NotChecked, ReplyDifference, StateDifference};

/// The most failures, and the most differences, a report lists (it counts
/// them all).
const MAX_LISTED: usize = 100;

/// How often a running check logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What to check besides rebuilding every entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// A read-only command to run on the old and the new version against
    /// every entity checked, comparing the replies.
    pub probe: Option<String>,
    /// Check a deterministic sample of this many entities instead of all.
    pub limit: Option<usize>,
    /// Refuse the deploy when a probe's replies differ, too.
    pub strict: bool,
}

/// What a check found: `{"checked", "failed", "differences"}`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Report {
    /// How many entities were checked.
    pub checked: usize,
    /// How many entities the service has stored.
    pub stored: usize,
    /// The entities the new version could not rebuild (the first
    /// [`MAX_LISTED`]).
    pub failed: Vec<EntityFailure>,
    /// How many rebuilds failed in all.
    pub failed_total: usize,
    /// The entities a fold from event 1 could not finish within the
    /// guest's limits (the first [`MAX_LISTED`]): they do not refuse the
    /// version, as a cold load starts from the latest snapshot.
    pub not_checked: Vec<NotChecked>,
    /// How many were not checked in all.
    pub not_checked_total: usize,
    /// The entities whose probe replies differ (the first [`MAX_LISTED`]).
    pub differences: Vec<ReplyDifference>,
    /// How many probe replies differed in all.
    pub differences_total: usize,
    /// The entities the new version folds to another state from event 1
    /// than from their latest snapshot (0.2.0 components; the first
    /// [`MAX_LISTED`]).
    pub state_differences: Vec<StateDifference>,
    /// How many there were in all.
    pub state_differences_total: usize,
    /// How long the check took, in ms.
    pub elapsed_ms: u64,
}

impl Report {
    /// Whether the new version may take traffic: every entity rebuilt, and
    /// under `strict`, every probe answered the same and every entity
    /// folded to the same state from its snapshot and from event 1.
    pub fn passes(&self, options: &VerifyOptions) -> bool {
        let same = self.differences_total == 0 && self.state_differences_total == 0;
        self.failed_total == 0 && (!options.strict || same)
    }
}

/// How far a running check is.
#[derive(Debug, Default)]
pub struct Progress {
    /// Entities to check.
    pub total: AtomicUsize,
    /// Entities checked so far.
    pub checked: AtomicUsize,
}

/// What a check runs with.
pub struct Check<'a> {
    /// The runtime the versions run on.
    pub runtime: &'a Arc<Runtime>,
    /// Where the entities are stored.
    pub journal: &'a Arc<dyn Journal>,
    /// The service's name.
    pub service: &'a str,
    /// Its kind.
    pub kind: ServiceKind,
    /// The version to check.
    pub new: &'a CompiledService,
    /// The version serving now, which the probe compares with.
    pub old: Option<&'a CompiledService>,
    /// What to check.
    pub options: &'a VerifyOptions,
    /// Updated as entities are checked.
    pub progress: &'a Arc<Progress>,
}

impl Check<'_> {
    /// Checks the stored entities of the service with the new version.
    pub async fn run(self) -> Result<Report, CheckError> {
        let started = Instant::now();
        let (journal, name, kind) = (self.journal.clone(), self.service.to_string(), self.kind);
        let ids = tokio::task::spawn_blocking(move || journal.entity_ids(&name, kind))
            .await
            .map_err(|e| CheckError::Internal(e.to_string()))??;
        let stored = ids.len();
        let ids = Arc::new(sample(self.service, ids, self.options.limit));
        self.progress.total.store(ids.len(), Ordering::Relaxed);
        tracing::info!(service = self.service, entities = ids.len(), stored, "verifying the new version");

        let next = Arc::new(AtomicUsize::new(0));
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers.min(ids.len()) {
            let worker = entity_check::Worker {
                runtime: self.runtime.clone(),
                journal: self.journal.clone(),
                service: self.service.to_string(),
                kind: self.kind,
                new: self.new.clone(),
                old: self.old.cloned(),
                probe: self.options.probe.clone(),
            };
            let (ids, next, progress) = (ids.clone(), next.clone(), self.progress.clone());
            tasks.spawn(async move {
                let mut found = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(index) else { break };
                    found.push(worker.check(id).await);
                    progress.checked.fetch_add(1, Ordering::Relaxed);
                }
                found
            });
        }
        let mut report = Report { stored, ..Report::default() };
        let mut last_log = Instant::now();
        loop {
            let joined = tokio::select! {
                joined = tasks.join_next() => joined,
                () = tokio::time::sleep_until((last_log + PROGRESS_EVERY).into()) => {
                    last_log = Instant::now();
                    let checked = self.progress.checked.load(Ordering::Relaxed);
                    tracing::info!(service = self.service, checked, of = ids.len(), "verifying the new version");
                    continue;
                }
            };
            let Some(found) = joined else { break };
            for outcome in found.map_err(|e| CheckError::Internal(e.to_string()))? {
                report.add(outcome?);
            }
        }
        report.failed.sort_by(|a, b| a.entity.cmp(&b.entity));
        report.differences.sort_by(|a, b| a.entity.cmp(&b.entity));
        report.state_differences.sort_by(|a, b| a.entity.cmp(&b.entity));
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            service = self.service,
            checked = report.checked,
            failed = report.failed_total,
            differences = report.differences_total,
            elapsed_ms = report.elapsed_ms,
            "verified the new version"
        );
        Ok(report)
    }
}

impl Report {
    fn add(&mut self, outcome: entity_check::Outcome) {
        self.checked += 1;
        self.not_checked_total += outcome.not_checked.len();
        for not_checked in outcome.not_checked {
            if self.not_checked.len() < MAX_LISTED {
                self.not_checked.push(not_checked);
            }
        }
        self.failed_total += outcome.failures.len();
        for failure in outcome.failures {
            if self.failed.len() < MAX_LISTED {
                self.failed.push(failure);
            }
        }
        if let Some(difference) = outcome.state_difference {
            self.state_differences_total += 1;
            if self.state_differences.len() < MAX_LISTED {
                self.state_differences.push(difference);
            }
        }
        if let Some(difference) = outcome.difference {
            self.differences_total += 1;
            if self.differences.len() < MAX_LISTED {
                self.differences.push(difference);
            }
        }
    }
}

/// `limit` of `ids`, the same ones every time for the same service and
/// entities: those whose hash with the service name is smallest, so the
/// sample spreads over the id space rather than taking its first ids.
fn sample(service: &str, mut ids: Vec<String>, limit: Option<usize>) -> Vec<String> {
    let Some(limit) = limit.filter(|limit| *limit < ids.len()) else { return ids };
    let rank = |id: &str| {
        let digest = Sha256::new().chain_update(service).chain_update([0]).chain_update(id).finalize();
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    };
    ids.sort_by_cached_key(|id| rank(id));
    ids.truncate(limit);
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_deterministic_and_spread() {
        let ids: Vec<String> = (0..1000).map(|n| format!("cart-{n:04}")).collect();
        let first = sample("cart", ids.clone(), Some(10));
        assert_eq!(first, sample("cart", ids.clone(), Some(10)));
        assert_eq!(first.len(), 10);
        assert!(first.windows(2).all(|w| w[0] < w[1]));
        // Not simply the first ids, and another service samples others.
        assert_ne!(first, ids[..10]);
        assert_ne!(first, sample("other", ids.clone(), Some(10)));
        assert_eq!(sample("cart", ids.clone(), Some(5000)), ids);
        assert_eq!(sample("cart", ids.clone(), None), ids);
    }
}
