//! Work that runs on one host at a time however many share the journal:
//! the outbox, each subscription, the idempotency sweeper, compaction.
//!
//! Each piece of work has a lease in the journal ([`LeaseStore`]). Every
//! host runs a [`LeaseKeeper`] for it, which tries to take the lease while
//! another holds it, and does the work while it holds it, renewing the
//! lease every third of its time to live (`--host-timeout`). A holder that
//! dies stops renewing, and another host takes the lease once it expires,
//! with a new epoch. A holder that could not renew for two thirds of the
//! lease's time (the database was unreachable, the process was paused)
//! stops the work before anyone else may take it over; and should it still
//! write, its writes name its old epoch, and the journal refuses them
//! ([`JournalError::LeaseLost`]). The work itself is idempotent (every
//! delivery carries a deterministic idempotency key), so work a lost
//! holder did twice changes nothing.
//!
//! On a journal of one host, every lease is this host's, always.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::Membership;
use crate::journal::{Journal, JournalError, Lease};
use crate::metrics::Metrics;

/// The longest a keeper waits between two tries to take a lease another
/// host holds, so a lease let go is taken over within it.
const TAKE_EVERY: Duration = Duration::from_secs(1);

/// How long a keeper waits after a failed renewal before it tries again.
const RENEW_RETRY: Duration = Duration::from_millis(250);

/// Takes, holds and renews leases for this host.
#[derive(Clone)]
pub struct LeaseKeeper {
    journal: Arc<dyn Journal>,
    membership: Arc<Membership>,
    metrics: Arc<Metrics>,
    /// How long a lease lasts unless renewed.
    ttl: Duration,
    shutdown: watch::Receiver<bool>,
}

/// Why a host stopped doing the work of a lease it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Another host took the lease over, or it could not be renewed in time.
    Lost,
    /// The host is stopping.
    Stopping,
}

impl LeaseKeeper {
    /// Leases for `membership`'s host on `journal`, each lasting `ttl`
    /// unless renewed, until `shutdown` turns true.
    pub fn new(
        journal: Arc<dyn Journal>,
        membership: Arc<Membership>,
        metrics: Arc<Metrics>,
        ttl: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self { journal, membership, metrics, ttl, shutdown }
    }

    /// Does `work` whenever this host holds lease `name`, until the host
    /// stops (or this future is dropped: the work is no longer wanted):
    /// takes the lease when it is free, starts the work with it, and drops
    /// the work when the lease is lost. A lease this host stops holding
    /// for any other reason than losing it is let go, so another host may
    /// take it at once.
    pub async fn run<W, F>(self, name: String, mut work: W)
    where
        W: FnMut(Lease) -> F,
        F: Future<Output = ()>,
    {
        loop {
            let (lease, asked) = tokio::select! {
                taken = self.take(&name) => taken,
                () = stopping(self.shutdown.clone()) => return,
            };
            tracing::info!(lease = %name, epoch = lease.epoch, "took a lease: this host does its work");
            let mut holding = Holding::new(&self, lease.clone());
            let ended = self.hold(&lease, asked, work(lease.clone())).await;
            holding.lost = ended == Ended::Lost;
            drop(holding);
            if ended == Ended::Stopping {
                return;
            }
            tracing::warn!(lease = %name, epoch = lease.epoch, "lost a lease: this host stopped its work");
        }
    }

    /// Takes lease `name`, trying again every third of its time to live
    /// (at most [`TAKE_EVERY`]) while another host holds it (or the
    /// journal cannot be reached); answers it, and when it was asked for
    /// (its expiry in the journal is no earlier than that plus its time).
    async fn take(&self, name: &str) -> (Lease, Instant) {
        loop {
            let asked = Instant::now();
            let (journal, name, holder) = (self.journal.clone(), name.to_string(), self.membership.id().to_string());
            let ttl_ms = self.ttl.as_millis() as u64;
            match tokio::task::spawn_blocking(move || journal.take_lease(&name, &holder, ttl_ms)).await {
                Ok(Ok(Some(lease))) => return (lease, asked),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => tracing::debug!(%error, "cannot take a lease"),
                Err(error) => tracing::debug!(%error, "taking a lease stopped"),
            }
            tokio::time::sleep((self.ttl / 3).min(TAKE_EVERY)).await;
        }
    }

    /// Does `work` under `lease`, taken (or last renewed) as of `renewed`,
    /// renewing it, until the lease is lost, the work ends, or the host stops.
    async fn hold(&self, lease: &Lease, mut renewed: Instant, work: impl Future<Output = ()>) -> Ended {
        let renew_every = self.ttl / 3;
        let give_up_after = self.ttl * 2 / 3;
        let mut next = renewed + renew_every;
        let mut work = std::pin::pin!(work);
        loop {
            // Renewal first: a host that was paused must learn it lost its
            // lease before its work goes on.
            tokio::select! {
                biased;
                () = stopping(self.shutdown.clone()) => return Ended::Stopping,
                () = tokio::time::sleep_until(next) => {
                    if renewed.elapsed() >= give_up_after {
                        return Ended::Lost;
                    }
                    let asked = Instant::now();
                    match self.renew(lease).await {
                        Ok(true) => {
                            renewed = asked;
                            next = asked + renew_every;
                        }
                        Ok(false) => return Ended::Lost,
                        Err(error) => {
                            tracing::debug!(%error, lease = %lease.name, "cannot renew a lease");
                            next = Instant::now() + RENEW_RETRY.min(renew_every);
                        }
                    }
                    if renewed.elapsed() >= give_up_after {
                        return Ended::Lost;
                    }
                }
                // A write of it found the lease lost.
                () = &mut work => return Ended::Lost,
            }
        }
    }

    async fn renew(&self, lease: &Lease) -> Result<bool, JournalError> {
        let (journal, lease, ttl_ms) = (self.journal.clone(), lease.clone(), self.ttl.as_millis() as u64);
        tokio::task::spawn_blocking(move || journal.renew_lease(&lease, ttl_ms))
            .await
            .map_err(|e| JournalError::Unavailable(format!("renewing a lease stopped: {e}")))?
    }
}

/// A lease this host holds, in its books and metrics until dropped; let
/// go in the journal then, unless it was lost.
struct Holding<'a> {
    keeper: &'a LeaseKeeper,
    lease: Lease,
    lost: bool,
}

impl<'a> Holding<'a> {
    fn new(keeper: &'a LeaseKeeper, lease: Lease) -> Self {
        keeper.membership.holding(&lease);
        keeper.metrics.record_lease_taken();
        Self { keeper, lease, lost: false }
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.keeper.membership.let_go(&self.lease);
        self.keeper.metrics.record_lease_ended(self.lost);
        if !self.lost {
            let (journal, lease) = (self.keeper.journal.clone(), self.lease.clone());
            // Off the async threads; the host may be stopping, so best effort.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn_blocking(move || journal.release_lease(&lease));
            }
        }
    }
}

/// Resolves once `shutdown` turns true; never, if its sender is gone
/// without saying so (a host embedded without a way to stop).
async fn stopping(mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
