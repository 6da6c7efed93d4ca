//! Group commit: one thread owns every command's writes. It takes all the
//! commits waiting at the moment it starts a transaction, writes them
//! together and commits once with immediate durability, then acknowledges
//! each of them. Under load one fsync serves many commands; alone, a command
//! waits for no one.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::Wakeups;
use redb::{Durability, ReadableTable, Table, WriteTransaction};

use super::CommitWatch;
use super::OutboxBook;
use super::RetentionBook;
use super::records::{self, EventRecord, KeyRecord, LogEntryRecord, OutboxRecord, SnapshotRecord, ValueRecord};
use super::schema::SCHEMA_VERSION;
use super::storage::Storage;
use super::tables::{
    COUNTERS, CRDT_REPLICAS, EVENTS, IDEMPOTENCY, OUTBOX, OUTBOX_COUNTER, SERVICE_LOG, SNAPSHOT_HISTORY, SNAPSHOTS,
    VALUE_REVISIONS, VALUES, idempotency_live,
};
use super::tables::{META, SCHEMA_VERSION_KEY};
use super::timers::TimerTables;
use super::{Commit, CommitStatus, EntityWrite, JournalError, announce, panic_message};
use crate::domain::AsyncEffect;
use crate::journal::commit_queue::{self, Queued, Run};
use crate::journal::contract::PendingCommit;
use crate::journal::crdt;
use crate::metrics::Metrics;

/// The most commits one transaction takes, so one commit's latency stays bounded.
const MAX_BATCH: usize = 1024;

/// How often a failed journal tries a write.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Handle to the journal's single writer thread.
pub(super) struct GroupCommitter {
    requests: mpsc::Sender<Run>,
    failed: Arc<AtomicBool>,
    /// The writer thread, which owns the database: joined when the journal
    /// goes, so the file is closed cleanly before the process exits (else
    /// the next start repairs it, reading all of it).
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for GroupCommitter {
    /// Ends the writer's queue and waits for it to finish what it took.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.requests, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the writer thread tells the rest of the host.
#[derive(Clone)]
pub(super) struct Signals {
    /// The waiters of commits that append events.
    pub committed: Arc<CommitWatch>,
    /// Woken after commits that added outbox entries or set timers.
    pub wake: Wakeups,
}

impl GroupCommitter {
    /// Starts the writer thread on `db`.
    pub fn start(
        db: Arc<Storage>,
        metrics: Arc<Metrics>,
        signals: Signals,
        outbox: Arc<OutboxBook>,
        retention: Arc<RetentionBook>,
    ) -> Result<Self, JournalError> {
        let (requests, rx) = mpsc::channel();
        let failed = Arc::new(AtomicBool::new(false));
        let writer = Writer { db, metrics, signals, outbox, retention, failed: failed.clone() };
        let thread = thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| JournalError::Storage(redb::StorageError::Io(e).into()))?;
        Ok(Self { requests, failed, thread: Some(thread) })
    }

    /// Queues a run of commits at once, in call order, and answers a future
    /// per commit that resolves when it is durable (or refused, or failed).
    pub fn submit_run(&self, commits: Vec<Commit>) -> Vec<PendingCommit> {
        commit_queue::submit_run(commits, |run| self.requests.send(run).is_ok())
    }

    /// Whether the storage failed (redb refuses every read and write after
    /// an I/O error): until the writer has reopened the database and a
    /// write went through again, every commit fails; nothing is
    /// acknowledged.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

struct Writer {
    db: Arc<Storage>,
    metrics: Arc<Metrics>,
    signals: Signals,
    outbox: Arc<OutboxBook>,
    retention: Arc<RetentionBook>,
    failed: Arc<AtomicBool>,
}

impl Writer {
    fn run(self, rx: mpsc::Receiver<Run>) {
        let mut batch: Vec<Queued> = Vec::new();
        let mut refusing: Option<String> = None;
        loop {
            if let Some(reason) = &refusing {
                // While the storage fails, commits are refused at once and
                // the storage is probed every so often: a write into a disk
                // that is still full would fail after the work was done.
                match rx.recv_timeout(PROBE_EVERY) {
                    Ok(run) => {
                        for request in std::iter::once(run).chain(rx.try_iter()).flatten() {
                            let _ = request.done.send(Err(JournalError::WritesRefused(reason.clone())));
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                if self.recover() {
                    refusing = None;
                }
                continue;
            }
            let Ok(first) = rx.recv() else { return };
            batch.extend(first);
            // Runs stay whole: a batch may pass the bound by one run.
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(run) => batch.extend(run),
                    Err(_) => break,
                }
            }
            let commits: Vec<(&Commit, bool)> = batch.iter().map(|r| (&r.commit, r.follows)).collect();
            // A damaged file can make redb panic mid-transaction: the
            // transaction is dropped (so nothing of it is written), the
            // journal is marked failed, and the writer goes on answering.
            let started = Instant::now();
            let written = std::panic::catch_unwind(AssertUnwindSafe(|| self.write_batch(&commits)));
            let (error, storage_failed) = match written {
                Ok(Ok(statuses)) => {
                    self.acknowledge(&mut batch, statuses, started.elapsed());
                    continue;
                }
                Ok(Err(error)) => {
                    let failed = matches!(error, JournalError::Storage(redb::Error::Io(_) | redb::Error::PreviousIo));
                    (error.to_string(), failed)
                }
                Err(panic) => (format!("the storage engine panicked: {}", panic_message(&panic)), true),
            };
            // Each invocation logs its own failure too, in its own span.
            tracing::error!(%error, commits = batch.len(), healthy = !storage_failed, "a journal transaction failed");
            self.metrics.record_commit_failure();
            if storage_failed {
                // Before anyone hears of the failure: health says it, and
                // reads after it wait for the database opened again.
                self.failed.store(true, Ordering::Relaxed);
                self.reopen();
            }
            for request in batch.drain(..) {
                let _ = request.done.send(Err(JournalError::CommitFailed(error.clone())));
            }
            if storage_failed {
                refusing = Some(error);
            }
        }
    }

    /// Opens the database again, so reads work on what was committed.
    fn reopen(&self) {
        if !self.db.can_reopen() {
            return;
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.db.reopen())) {
            Ok(Ok(())) => tracing::info!("the journal's database was reopened after a storage failure"),
            Ok(Err(error)) => tracing::error!(%error, "cannot reopen the journal's database"),
            Err(panic) => tracing::error!(panic = %panic_message(&panic), "reopening the journal's database panicked"),
        }
    }

    /// While failed: tries a small durable write; if it lands, the journal
    /// takes commits again (answers true), else the database is reopened
    /// for the next try.
    fn recover(&self) -> bool {
        let probe = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<(), JournalError> {
            let db = self.db.current().ok_or(JournalError::Reopening)?;
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.open_table(META)?.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
            txn.commit()?;
            Ok(())
        }));
        if let Ok(Ok(())) = probe {
            self.failed.store(false, Ordering::Relaxed);
            tracing::info!("the journal's storage takes writes again");
            return true;
        }
        self.reopen();
        false
    }

    fn acknowledge(&self, batch: &mut Vec<Queued>, statuses: Vec<CommitStatus>, elapsed: Duration) {
        let written = batch.iter().map(|r| &r.commit).zip(&statuses);
        announce(written, &self.signals.committed, &self.signals.wake, &self.metrics, elapsed);
        for (request, status) in batch.drain(..).zip(statuses) {
            let _ = request.done.send(Ok(status));
        }
    }

    /// Writes every commit in one transaction. A commit refused for a stale
    /// seq or a recorded key writes nothing on its own; a storage error
    /// aborts the whole transaction.
    fn write_batch(&self, commits: &[(&Commit, bool)]) -> Result<Vec<CommitStatus>, JournalError> {
        let mut txn = self.db.get()?.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let (statuses, added) = {
            let mut tables = Tables::open(&txn, &self.outbox, &self.retention)?;
            let statuses = commit_queue::decide_in_order(commits.iter().copied(), |commit| tables.write(commit))?;
            (statuses, std::mem::take(&mut tables.outbox_added))
        };
        txn.commit()?;
        for (service, count) in added {
            self.outbox.adjust(&service, count as i64);
        }
        Ok(statuses)
    }
}

struct Tables<'txn> {
    events: Table<'txn, (&'static str, &'static str, u64), &'static [u8]>,
    snapshots: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    snapshot_history: Table<'txn, (&'static str, &'static str, u64), &'static [u8]>,
    values: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    value_revisions: Table<'txn, (&'static str, &'static str), u64>,
    crdt_replicas: Table<'txn, (&'static str, &'static str, &'static str), (u64, &'static [u8])>,
    outbox: Table<'txn, u64, &'static [u8]>,
    idempotency: Table<'txn, (&'static str, &'static str, &'static str), &'static [u8]>,
    service_log: Table<'txn, (&'static str, u64), &'static [u8]>,
    counters: Table<'txn, &'static str, u64>,
    timers: TimerTables<'txn>,
    /// The last service-log position of each service this transaction
    /// appended to, read once and then kept here.
    log_heads: HashMap<Arc<str>, u64>,
    /// The time of the transaction, in ms since the Unix epoch: idempotency
    /// records that expire before it no longer count.
    now_ms: u64,
    /// The outbox entries waiting per target service, before this transaction.
    outbox_book: &'txn OutboxBook,
    /// The outbox entries this transaction added, per target service.
    outbox_added: HashMap<String, u64>,
    /// Which services keep a history of snapshots.
    retention: &'txn RetentionBook,
}

impl<'txn> Tables<'txn> {
    fn open(
        txn: &'txn WriteTransaction,
        outbox_book: &'txn OutboxBook,
        retention: &'txn RetentionBook,
    ) -> Result<Self, JournalError> {
        Ok(Self {
            events: txn.open_table(EVENTS)?,
            snapshots: txn.open_table(SNAPSHOTS)?,
            snapshot_history: txn.open_table(SNAPSHOT_HISTORY)?,
            values: txn.open_table(VALUES)?,
            value_revisions: txn.open_table(VALUE_REVISIONS)?,
            crdt_replicas: txn.open_table(CRDT_REPLICAS)?,
            outbox: txn.open_table(OUTBOX)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            service_log: txn.open_table(SERVICE_LOG)?,
            counters: txn.open_table(COUNTERS)?,
            timers: TimerTables::open(txn)?,
            log_heads: HashMap::new(),
            now_ms: super::now_ms(),
            outbox_book,
            outbox_added: HashMap::new(),
            retention,
        })
    }

    /// The last service-log position of `service`, as this transaction has it.
    fn log_head(&mut self, service: &Arc<str>) -> Result<&mut u64, JournalError> {
        if !self.log_heads.contains_key(service) {
            let head = super::log_head(&self.service_log, service)?;
            self.log_heads.insert(service.clone(), head);
        }
        Ok(self.log_heads.get_mut(service).expect("just inserted"))
    }

    fn write(&mut self, commit: &Commit) -> Result<CommitStatus, JournalError> {
        let key = (&*commit.service, &*commit.entity);
        if let Some(guard) = &commit.fires
            && !self.timers.holds(guard)?
        {
            return Ok(CommitStatus::TimerGone);
        }
        if let Some(record) = &commit.idempotency
            && let Some(existing) = self.idempotency.get((key.0, key.1, record.key.as_str()))?
            && idempotency_live(records::expiry(existing.value())?, self.now_ms)
        {
            return Ok(CommitStatus::KeyRecorded);
        }
        if !commit.outbox.is_empty() {
            let targets: Vec<String> = commit.outbox.iter().map(AsyncEffect::target).collect();
            let mut adding: HashMap<&str, u64> = HashMap::new();
            for target in &targets {
                *adding
                    .entry(target.as_str())
                    .or_insert_with(|| self.outbox_added.get(target).copied().unwrap_or(0)) += 1;
            }
            if let Some(service) = self.outbox_book.over_quota(&adding) {
                return Ok(CommitStatus::OutboxFull { service: service.to_string() });
            }
        }
        let mut last_seq = 0;
        match &commit.write {
            EntityWrite::Events { expected_last_seq, events, snapshot } => {
                let found = super::last_seq(&self.events, key.0, key.1)?;
                if found != *expected_last_seq {
                    return Ok(CommitStatus::Conflict { expected: *expected_last_seq, found });
                }
                last_seq = found;
                // A commit of side effects or a key alone, checked against
                // the seq, appends nothing to the service log.
                if !events.is_empty() {
                    let mut head = *self.log_head(&commit.service)?;
                    for payload in events {
                        last_seq += 1;
                        head += 1;
                        let record = records::encode_traced(
                            &EventRecord::new(key.0, key.1, last_seq, commit.version, payload),
                            commit.trace.as_ref(),
                        )?;
                        self.events.insert((key.0, key.1, last_seq), record.as_slice())?;
                        let entry = records::encode(&LogEntryRecord { entity: key.1, seq: last_seq })?;
                        self.service_log.insert((key.0, head), entry.as_slice())?;
                    }
                    *self.log_head(&commit.service)? = head;
                }
                if let Some(snapshot) = snapshot {
                    let record = SnapshotRecord::new(key.0, key.1, snapshot.seq, snapshot.version, &snapshot.state);
                    let record = records::encode(&record)?;
                    self.snapshots.insert(key, record.as_slice())?;
                    if self.retention.keeps_snapshot_history(key.0) {
                        self.snapshot_history.insert((key.0, key.1, snapshot.seq), record.as_slice())?;
                    }
                }
            }
            EntityWrite::Value { expected_revision, state } => {
                let found = self.value_revisions.get(key)?.map_or(0, |v| v.value());
                if found != *expected_revision {
                    return Ok(CommitStatus::Conflict { expected: *expected_revision, found });
                }
                self.value_revisions.insert(key, found + 1)?;
                match state {
                    Some(state) => {
                        let record = records::encode(&ValueRecord::new(key.0, key.1, commit.version, state))?;
                        self.values.insert(key, record.as_slice())?;
                    }
                    None => {
                        self.values.remove(key)?;
                    }
                }
            }
            EntityWrite::Crdt { replica, expected_revision, state, .. } => {
                let at = (key.0, key.1, replica.as_str());
                let found = self.crdt_replicas.get(at)?.map_or(0, |row| row.value().0);
                if found != *expected_revision {
                    return Ok(CommitStatus::Conflict { expected: *expected_revision, found });
                }
                let record = crdt::encode_row(key.0, key.1, replica, commit.version, state.as_ref())?;
                self.crdt_replicas.insert(at, (found + 1, record.as_slice()))?;
            }
            EntityWrite::Nothing => {}
        }
        if !commit.outbox.is_empty() {
            let mut id = self.counters.get(OUTBOX_COUNTER)?.map_or(0, |v| v.value());
            for effect in &commit.outbox {
                id += 1;
                let hops = commit.hops + 1;
                let record = OutboxRecord { effect, hops, attempts: 0, next_attempt_ms: 0 };
                let record = records::encode_traced(&record, commit.trace.as_ref())?;
                self.outbox.insert(id, record.as_slice())?;
                *self.outbox_added.entry(effect.target()).or_default() += 1;
            }
            self.counters.insert(OUTBOX_COUNTER, id)?;
        }
        if let Some(record) = &commit.idempotency {
            let stored = KeyRecord {
                expires_at_ms: record.expires_at_ms,
                fingerprint: record.fingerprint,
                follow_up: &record.follow_up,
            };
            self.idempotency.insert((key.0, key.1, record.key.as_str()), records::encode(&stored)?.as_slice())?;
        }
        self.timers.apply(key.0, key.1, &commit.timers)?;
        Ok(CommitStatus::Durable { last_seq })
    }
}
