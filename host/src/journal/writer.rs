//! Group commit: one thread owns every event write. It takes all the appends
//! waiting at the moment it starts a transaction, writes them together and
//! commits once with immediate durability, then acknowledges each of them.
//! Under load one fsync serves many commands; alone, a command waits for no one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::{mpsc, oneshot};

use super::tables::{ENTITIES, EVENTS, SNAPSHOTS};
use super::{JournalError, StoredSnapshot};
use crate::metrics::Metrics;

/// The most appends one transaction takes, so one commit's latency stays bounded.
const MAX_BATCH: usize = 1024;

/// The events one command emitted, to be committed atomically.
#[derive(Debug, Clone)]
pub struct Append {
    /// The entity's service.
    pub service: Arc<str>,
    /// The entity's id.
    pub entity: Arc<str>,
    /// The last seq the command ran against; the events get the seqs after it.
    pub expected_last_seq: u64,
    /// The emitted events, in order.
    pub events: Vec<Vec<u8>>,
    /// A snapshot to store with the events, replacing the previous one.
    pub snapshot: Option<StoredSnapshot>,
}

struct Request {
    append: Append,
    done: oneshot::Sender<Result<(), JournalError>>,
}

/// Handle to the journal's single writer thread.
pub struct GroupCommitter {
    requests: mpsc::UnboundedSender<Request>,
    failed: Arc<AtomicBool>,
}

impl GroupCommitter {
    /// Starts the writer thread on `db`.
    pub fn start(db: Arc<Database>, metrics: Arc<Metrics>) -> Result<Self, JournalError> {
        let (requests, rx) = mpsc::unbounded_channel();
        let failed = Arc::new(AtomicBool::new(false));
        let writer_failed = failed.clone();
        thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || run(&db, &metrics, &writer_failed, rx))
            .map_err(|e| JournalError::Storage(redb::StorageError::Io(e).into()))?;
        Ok(Self { requests, failed })
    }

    /// Whether the storage failed in a way that needs the database reopened
    /// (redb refuses every write after an I/O error). Until the host restarts
    /// and redb repairs the file, every append fails; nothing is acknowledged.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Queues an append and waits until it is durable (or failed).
    pub async fn append(&self, append: Append) -> Result<(), JournalError> {
        let (done, wait) = oneshot::channel();
        self.requests.send(Request { append, done }).map_err(|_| JournalError::WriterStopped)?;
        wait.await.map_err(|_| JournalError::WriterStopped)?
    }
}

fn run(db: &Database, metrics: &Metrics, failed: &AtomicBool, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let appends: Vec<&Append> = batch.iter().map(|r| &r.append).collect();
        match commit(db, &appends) {
            Ok(outcomes) => {
                let events: usize = batch
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| o.is_ok())
                    .map(|(r, _)| r.append.events.len())
                    .sum();
                metrics.record_commit(batch.len(), events);
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = request.done.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(%error, appends = batch.len(), "journal commit failed");
                metrics.record_commit_failure();
                if matches!(error, JournalError::Storage(redb::Error::Io(_) | redb::Error::PreviousIo)) {
                    failed.store(true, Ordering::Relaxed);
                }
                for request in batch.drain(..) {
                    let _ = request.done.send(Err(JournalError::CommitFailed(error.to_string())));
                }
            }
        }
    }
}

/// Writes every append in one transaction. An append whose expected seq does
/// not match is refused on its own without writing anything; a storage error
/// aborts the whole transaction.
fn commit(db: &Database, appends: &[&Append]) -> Result<Vec<Result<(), JournalError>>, JournalError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| JournalError::Corrupt(e.to_string()))?;
    let mut outcomes = Vec::with_capacity(appends.len());
    {
        let mut events = txn.open_table(EVENTS)?;
        let mut entities = txn.open_table(ENTITIES)?;
        let mut snapshots = txn.open_table(SNAPSHOTS)?;
        for append in appends {
            outcomes.push(write_append(append, &mut events, &mut entities, &mut snapshots)?);
        }
    }
    txn.commit()?;
    Ok(outcomes)
}

type Outcome = Result<(), JournalError>;

fn write_append(
    append: &Append,
    events: &mut Table<(&str, &str, u64), &[u8]>,
    entities: &mut Table<(&str, &str), (u64, u64)>,
    snapshots: &mut Table<(&str, &str), (u64, &[u8])>,
) -> Result<Outcome, JournalError> {
    let key = (&*append.service, &*append.entity);
    let (last_seq, mut snapshot_seq) = entities.get(key)?.map(|v| v.value()).unwrap_or((0, 0));
    if last_seq != append.expected_last_seq {
        return Ok(Err(JournalError::Conflict {
            service: append.service.to_string(),
            entity: append.entity.to_string(),
            expected: append.expected_last_seq,
            found: last_seq,
        }));
    }
    let mut seq = last_seq;
    for payload in &append.events {
        seq += 1;
        events.insert((key.0, key.1, seq), payload.as_slice())?;
    }
    if let Some(snapshot) = &append.snapshot {
        snapshots.insert(key, (snapshot.seq, snapshot.state.as_slice()))?;
        snapshot_seq = snapshot.seq;
    }
    entities.insert(key, (seq, snapshot_seq))?;
    Ok(Ok(()))
}
