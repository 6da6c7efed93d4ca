//! Group commit on PostgreSQL: one task owns every command's writes. It
//! takes all the commits waiting when it starts a transaction and writes
//! them together, one `COMMIT` (one WAL flush, `synchronous_commit` on) for
//! the batch, then acknowledges each.
//!
//! Safety lives in the database: the transaction first locks the head row
//! of every entity in the batch (in one order, so writers on several hosts
//! cannot deadlock) and decides each commit against what it finds there, a
//! compare-and-set on the entity's last seq. A writer with a stale view
//! gets a conflict, never a duplicate or a gap. The service log's next
//! positions come from each service's head row, locked the same way, so the
//! log is gap-free and in commit order: a position is only visible once
//! every smaller one is.
//!
//! A connection that dies during a `COMMIT` leaves the batch's fate
//! unknown: the writer learns it from the batch's mark on a new connection
//! and acknowledges the batch if it landed; until it knows, the batch's
//! commands answer that the database is unavailable, and nothing of the
//! batch is written again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Wakeups;

use super::batch::{WriteError, added_to_outbox, committed, write_batch};
use super::pool::{Conn, Pool};
use super::{Commit, CommitStatus, CommitWatch, JournalError, OutboxBook, RetentionBook, announce};
use crate::journal::commit_queue::{self, Queued, Run};
use crate::journal::contract::PendingCommit;
use crate::metrics::Metrics;

/// The most commits one transaction takes, so one commit's latency stays bounded.
const MAX_BATCH: usize = 1024;

/// How often a failed journal checks whether the database is back.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How many times a batch is tried again after the database aborted it
/// for a conflict with another writer (a deadlock or a serialization failure).
const RETRIES: usize = 3;

/// How many times the writer tries to learn whether a batch whose `COMMIT`
/// went unanswered landed, a little apart, before it gives up.
const RESOLVE_TRIES: u32 = 3;

/// Why a batch was not written.
enum Unwritten {
    /// Nothing of it was written: writing it again is safe.
    Failed(JournalError),
    /// It may have landed, and the database cannot tell yet.
    Unknown(JournalError),
}

/// What the writer shares with the rest of the journal.
pub(super) struct Shared {
    /// This host's tag in the commit notifications it sends.
    pub host: u64,
    pub metrics: Arc<Metrics>,
    pub committed: Arc<CommitWatch>,
    pub wake: Wakeups,
    pub outbox: Arc<OutboxBook>,
    pub retention: Arc<RetentionBook>,
}

/// Handle to the journal's writer task.
pub(super) struct Writer {
    requests: mpsc::UnboundedSender<Run>,
    failed: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer task on `runtime`, writing on `conn`.
    pub fn start(runtime: &tokio::runtime::Handle, pool: Arc<Pool>, conn: Conn, shared: Shared) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        let failed = Arc::new(AtomicBool::new(false));
        runtime.spawn(run(rx, pool, Some(conn), shared, failed.clone()));
        Self { requests, failed }
    }

    /// Queues a run of commits at once, in call order, and answers a future
    /// per commit that resolves when it is durable (or refused, or failed).
    pub fn submit_run(&self, commits: Vec<Commit>) -> Vec<PendingCommit> {
        commit_queue::submit_run(commits, |run| self.requests.send(run).is_ok())
    }

    /// Whether the database could not be reached the last time the writer
    /// tried: until a write goes through again, commits fail.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Run>,
    pool: Arc<Pool>,
    mut conn: Option<Conn>,
    shared: Shared,
    failed: Arc<AtomicBool>,
) {
    let mut batch: Vec<Queued> = Vec::new();
    let mut marks = 0;
    loop {
        let first = if failed.load(Ordering::Relaxed) {
            match tokio::time::timeout(PROBE_EVERY, rx.recv()).await {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(_) => {
                    if probe(&pool, &mut conn).await {
                        failed.store(false, Ordering::Relaxed);
                        tracing::info!("the journal's database takes writes again");
                    }
                    continue;
                }
            }
        } else {
            match rx.recv().await {
                Some(request) => request,
                None => return,
            }
        };
        batch.extend(first);
        // Runs stay whole: a batch may pass the bound by one run.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(run) => batch.extend(run),
                Err(_) => break,
            }
        }
        let commits: Vec<(&Commit, bool)> = batch.iter().map(|r| (&r.commit, r.follows)).collect();
        let started = Instant::now();
        let mut written = write_with_retries(&pool, &mut conn, &commits, &shared, &mut marks).await;
        if let Err(Unwritten::Failed(JournalError::Unavailable(_))) = written
            && !failed.load(Ordering::Relaxed)
        {
            // The connection may have gone while idle: once more, on a new one.
            written = write_with_retries(&pool, &mut conn, &commits, &shared, &mut marks).await;
        }
        let written = written.map_err(|unwritten| match unwritten {
            Unwritten::Failed(error) => error,
            Unwritten::Unknown(error) => JournalError::Unavailable(format!("{error}; the batch may have been written")),
        });
        match written {
            Ok(statuses) => {
                failed.store(false, Ordering::Relaxed);
                acknowledge(&shared, &mut batch, statuses, started.elapsed());
            }
            Err(error) => {
                let unavailable = matches!(error, JournalError::Unavailable(_));
                if unavailable {
                    failed.store(true, Ordering::Relaxed);
                }
                tracing::error!(%error, commits = batch.len(), "a journal transaction failed");
                shared.metrics.record_commit_failure();
                let message = match &error {
                    JournalError::Unavailable(message) => message.clone(),
                    other => other.to_string(),
                };
                for request in batch.drain(..) {
                    let error = if unavailable {
                        JournalError::Unavailable(message.clone())
                    } else {
                        JournalError::CommitFailed(message.clone())
                    };
                    let _ = request.done.send(Err(error));
                }
            }
        }
    }
}

/// How the writer's connection is named in `pg_stat_activity`.
pub(super) const WRITER: &str = "wasmstate writer";

/// Whether the database answers again, on a fresh connection.
async fn probe(pool: &Pool, conn: &mut Option<Conn>) -> bool {
    *conn = None;
    match pool.connect_as(WRITER).await {
        Ok(fresh) => {
            let answered = fresh.client.simple_query("SELECT 1").await.is_ok();
            *conn = answered.then_some(fresh);
            answered
        }
        Err(_) => false,
    }
}

/// Writes a batch, again when the database aborted it for a conflict with
/// another writer; `marks` numbers the attempts.
async fn write_with_retries(
    pool: &Pool,
    conn: &mut Option<Conn>,
    commits: &[(&Commit, bool)],
    shared: &Shared,
    marks: &mut i64,
) -> Result<Vec<CommitStatus>, Unwritten> {
    let mut attempt = 0;
    loop {
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            *conn = Some(pool.connect_as(WRITER).await.map_err(Unwritten::Failed)?);
        }
        let c = conn.as_mut().expect("just connected");
        *marks += 1;
        match write_batch(c, commits, shared, *marks).await {
            Err(WriteError::Unknown { statuses, outbox_added, error }) => {
                let old = c.backend;
                *conn = None;
                match resolve(pool, conn, shared, old, *marks).await {
                    Some(true) => {
                        tracing::info!(%error, "a batch whose COMMIT went unanswered had landed");
                        added_to_outbox(shared, outbox_added);
                        return Ok(statuses);
                    }
                    Some(false) if attempt < RETRIES => attempt += 1,
                    Some(false) => return Err(Unwritten::Failed(error)),
                    None => return Err(Unwritten::Unknown(error)),
                }
            }
            Err(WriteError::Retry(error)) if attempt < RETRIES => {
                attempt += 1;
                tracing::debug!(%error, attempt, "a journal batch conflicted with another writer; trying again");
                tokio::time::sleep(Duration::from_millis(2 << attempt)).await;
            }
            Err(WriteError::Retry(error) | WriteError::Failed(error)) => {
                if matches!(error, JournalError::Unavailable(_)) {
                    *conn = None;
                }
                return Err(Unwritten::Failed(error));
            }
            Ok(statuses) => return Ok(statuses),
        }
    }
}

/// Whether the batch marked `mark` landed, on a new connection, once the
/// backend `old` of the lost one is gone; `None` when the database cannot
/// tell.
async fn resolve(pool: &Pool, conn: &mut Option<Conn>, shared: &Shared, old: i32, mark: i64) -> Option<bool> {
    for tries in 1..=RESOLVE_TRIES {
        if let Ok(mut fresh) = pool.connect_as(WRITER).await
            && let Ok(landed) = committed(&mut fresh, shared, old, mark).await
        {
            *conn = Some(fresh);
            return Some(landed);
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(tries))).await;
    }
    None
}

fn acknowledge(shared: &Shared, batch: &mut Vec<Queued>, statuses: Vec<CommitStatus>, elapsed: Duration) {
    let written = batch.iter().map(|r| &r.commit).zip(&statuses);
    announce(written, &shared.committed, &shared.wake, &shared.metrics, elapsed);
    for (request, status) in batch.drain(..).zip(statuses) {
        let _ = request.done.send(Ok(status));
    }
}
