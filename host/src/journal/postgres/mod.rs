//! The journal on PostgreSQL (`--journal postgres://…`).
//!
//! The same records as the embedded journal, in tables of the `wasmstate`
//! schema (`schema.rs`). Commands' commits go to a group-committing writer
//! (`writer.rs`) that writes a batch of many commands in one transaction,
//! each a compare-and-set on its entity's head row, so a stale writer gets
//! a conflict, never a fork of the log. Everything else runs on a small
//! pool of connections (`pool.rs`).
//!
//! The journal owns a small tokio runtime for its connections, so its
//! blocking methods can be called from any thread.

mod batch;
mod batch_rows;
mod bookkeeping;
mod history;
mod import;
mod leases;
mod notify;
mod outbox;
mod pool;
mod retention;
mod schema;
mod timers;
mod versions;
mod writer;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_postgres::Config;
use tokio_postgres::error::SqlState;

use super::books::{OutboxBook, RetentionBook};
use super::commit::{Wakeups, announce};
use super::contract::{
    Bookkeeping, EntityStore, HistoryStore, OutboxStore, PendingCommit, RetentionStore, VersionStore,
};
use super::{
    AsOf, Commit, CommitStatus, CommitWatch, Compacted, DeadLetter, EntityHistory, EntityPosition, EntityWrite, Forked,
    HostRecord, IdempotencyRecord, JournalError, Lease, NewVersion, NotKept, OutboxEntry, Retention, SchemaStatus,
    ServiceLogEntry, StoredCrdt, StoredSnapshot, StoredValue, VersionMeta, crdt, records,
};
use crate::domain::Event;
use crate::metrics::Metrics;
use pool::{Pool, block_on};
use writer::Writer;

/// How many connections the journal's reads and bookkeeping share.
const POOL_SIZE: usize = 8;

impl From<tokio_postgres::Error> for JournalError {
    fn from(error: tokio_postgres::Error) -> Self {
        let io = std::error::Error::source(&error).is_some_and(|source| source.is::<std::io::Error>());
        let lost = error.is_closed()
            || io
            || error.code().is_some_and(|code| {
                // The server is going away or refuses connections for now.
                [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(code)
                    || code.code().starts_with("08")
            });
        // tokio-postgres says "db error" and keeps what the server said in its source.
        let message = match std::error::Error::source(&error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        };
        if lost { JournalError::Unavailable(message) } else { JournalError::Database(message) }
    }
}

/// The journal in a PostgreSQL database.
pub struct PgJournal {
    runtime: Option<tokio::runtime::Runtime>,
    pool: Arc<Pool>,
    writer: Writer,
    committed: Arc<CommitWatch>,
    wake: Wakeups,
    outbox: Arc<OutboxBook>,
    retention: Arc<RetentionBook>,
    schema: SchemaStatus,
}

impl PgJournal {
    /// Connects to the database `url` names (`postgres://user:pass@host/db`),
    /// creates or checks its schema, and starts the writer. Blocks: call it
    /// from a blocking task.
    pub fn connect(url: &str, metrics: Arc<Metrics>) -> Result<Self, JournalError> {
        let config = Config::from_str(url).map_err(|e| JournalError::Database(format!("bad journal URL: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("journal-pg")
            .enable_all()
            .build()
            .map_err(|e| JournalError::Database(format!("cannot start the journal's runtime: {e}")))?;
        let pool = Arc::new(Pool::new(config.clone(), runtime.handle().clone(), POOL_SIZE));
        let schema = block_on(async { schema::open(&mut pool.connect().await?.client).await })?;
        let (waiting, policies) = pool.run(read_books)?;
        let outbox = Arc::new(OutboxBook::new(waiting));
        let retention = Arc::new(RetentionBook::new(policies));
        let committed = Arc::new(CommitWatch::default());
        let wake = Wakeups::default();
        let mut writer_conn = block_on(pool.connect_as(writer::WRITER))?;
        let host = crate::journal::host_tag();
        block_on(batch::add_mark(&mut writer_conn, host))?;
        notify::spawn_listener(runtime.handle(), config.clone(), host, committed.clone(), wake.clone());
        let writer = Writer::start(
            runtime.handle(),
            pool.clone(),
            writer_conn,
            writer::Shared {
                host,
                metrics,
                committed: committed.clone(),
                wake: wake.clone(),
                outbox: outbox.clone(),
                retention: retention.clone(),
            },
        );
        Ok(Self { runtime: Some(runtime), pool, writer, committed, wake, outbox, retention, schema })
    }

    /// Reads the books again: other hosts add and deliver outbox entries
    /// and set retention policies too.
    pub(super) fn reread_books(&self) -> Result<(), JournalError> {
        let (waiting, policies) = self.pool.run(read_books)?;
        self.outbox.replace(waiting);
        self.retention.replace(policies);
        Ok(())
    }

    /// Runs `op` on a pooled connection, blocking.
    fn run<T>(&self, op: impl AsyncFnOnce(&mut pool::Conn) -> Result<T, JournalError>) -> Result<T, JournalError> {
        self.pool.run(op)
    }
}

/// The outbox entries waiting per target service, and the retention
/// policies, as the database has them.
async fn read_books(conn: &mut pool::Conn) -> Result<(HashMap<String, u64>, HashMap<String, u32>), JournalError> {
    let mut waiting: HashMap<String, u64> = HashMap::new();
    for row in conn.client.query("SELECT target, count(*) FROM outbox GROUP BY target", &[]).await? {
        waiting.insert(row.get(0), row.get::<_, i64>(1) as u64);
    }
    let mut policies = HashMap::new();
    for row in conn.client.query("SELECT service, k FROM retention", &[]).await? {
        policies.insert(row.get::<_, String>(0), row.get::<_, i32>(1) as u32);
    }
    Ok((waiting, policies))
}

impl Drop for PgJournal {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The i64 PostgreSQL stores for a seq, position or id.
fn db_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Decodes an `events` row's record: `(seq, record)`.
fn event_of(service: &str, entity: &str, seq: i64, bytes: &[u8]) -> Result<Event, JournalError> {
    let seq = seq as u64;
    let record = records::EventRecord::read(service, entity, seq, bytes)?;
    Ok(Event { seq, version: record.version, payload: record.payload.to_vec() })
}

/// Decodes a snapshot row's record, checking it is the one as of `seq`.
fn snapshot_of(service: &str, entity: &str, seq: i64, bytes: &[u8]) -> Result<StoredSnapshot, JournalError> {
    let record = records::SnapshotRecord::read(service, entity, bytes)?;
    if record.seq != seq as u64 {
        return Err(JournalError::CorruptRecord(format!("the snapshot of {service}/{entity} as of {seq}")));
    }
    Ok(StoredSnapshot { seq: record.seq, version: record.version, state: record.state.to_vec() })
}

/// Reads events of an entity from `from` on, as [`EntityStore::events_page`] does.
async fn read_events(
    conn: &mut pool::Conn,
    service: &str,
    entity: &str,
    from: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<Event>, JournalError> {
    let statement = conn
        .statement(
            "SELECT seq, record FROM events WHERE service = $1 AND entity = $2 AND seq >= $3 \
             ORDER BY seq LIMIT $4",
        )
        .await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn.client.query(&statement, &[&service, &entity, &db_int(from.max(1)), &limit]).await?;
    let mut out = Vec::new();
    let mut bytes = 0;
    for row in rows {
        if bytes >= max_bytes {
            break;
        }
        let event = event_of(service, entity, row.get(0), row.get(1))?;
        bytes += event.payload.len();
        out.push(event);
    }
    Ok(out)
}

/// The latest snapshot of an entity, if one was taken.
async fn latest_snapshot(
    conn: &mut pool::Conn,
    service: &str,
    entity: &str,
) -> Result<Option<StoredSnapshot>, JournalError> {
    let statement = conn.statement("SELECT seq, record FROM snapshots WHERE service = $1 AND entity = $2").await?;
    match conn.client.query_opt(&statement, &[&service, &entity]).await? {
        Some(row) => Ok(Some(snapshot_of(service, entity, row.get(0), row.get(1))?)),
        None => Ok(None),
    }
}

/// The seqs of an entity's first and last kept events (0, 0 with none).
async fn seq_bounds(conn: &mut pool::Conn, service: &str, entity: &str) -> Result<(u64, u64), JournalError> {
    let statement = conn.statement("SELECT min(seq), max(seq) FROM events WHERE service = $1 AND entity = $2").await?;
    let row = conn.client.query_one(&statement, &[&service, &entity]).await?;
    let (first, last): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
    Ok((first.unwrap_or(0) as u64, last.unwrap_or(0) as u64))
}

impl EntityStore for PgJournal {
    fn schema_status(&self) -> SchemaStatus {
        self.schema
    }

    fn is_healthy(&self) -> bool {
        !self.writer.has_failed() && !self.pool.is_unavailable()
    }

    fn commit_run(&self, commits: Vec<Commit>) -> Vec<PendingCommit> {
        self.writer.submit_run(commits)
    }

    fn commits(&self) -> &Arc<CommitWatch> {
        &self.committed
    }

    /// Every host on the database writes to it.
    fn has_other_writers(&self) -> bool {
        true
    }

    fn reread_books(&self) -> Result<(), JournalError> {
        PgJournal::reread_books(self)
    }

    /// From the entity's head row, which every commit of events, or of a
    /// value, moves.
    fn head(&self, service: &str, entity: &str) -> Result<u64, JournalError> {
        self.run(async |conn| {
            let statement =
                conn.statement("SELECT last_seq FROM entity_heads WHERE service = $1 AND entity = $2").await?;
            let row = conn.client.query_opt(&statement, &[&service, &entity]).await?;
            Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
        })
    }

    fn outbox_signal(&self) -> Arc<Notify> {
        self.wake.outbox.clone()
    }

    fn timer_signal(&self) -> Arc<Notify> {
        self.wake.timers.clone()
    }

    fn position(&self, service: &str, entity: &str) -> Result<EntityPosition, JournalError> {
        self.run(async |conn| {
            let (_, last_seq) = seq_bounds(conn, service, entity).await?;
            let statement = conn.statement("SELECT seq FROM snapshots WHERE service = $1 AND entity = $2").await?;
            let snapshot = conn.client.query_opt(&statement, &[&service, &entity]).await?;
            Ok(EntityPosition { last_seq, snapshot_seq: snapshot.map_or(0, |row| row.get::<_, i64>(0) as u64) })
        })
    }

    fn load_entity(&self, service: &str, entity: &str) -> Result<EntityHistory, JournalError> {
        self.run(async |conn| {
            let snapshot = latest_snapshot(conn, service, entity).await?;
            let from = snapshot.as_ref().map_or(1, |s| s.seq + 1);
            let events = read_events(conn, service, entity, from, usize::MAX, usize::MAX).await?;
            Ok(EntityHistory::new(snapshot, events))
        })
    }

    fn load_value(&self, service: &str, entity: &str) -> Result<StoredValue, JournalError> {
        self.run(async |conn| {
            // A value copied in by `journal copy` has no head row: revision 0.
            let statement = conn
                .statement(
                    "SELECT (SELECT record FROM entity_values WHERE service = $1 AND entity = $2), \
                     (SELECT last_seq FROM entity_heads WHERE service = $1 AND entity = $2)",
                )
                .await?;
            let row = conn.client.query_one(&statement, &[&service, &entity]).await?;
            let record: Option<&[u8]> = row.get(0);
            let state = match record {
                Some(record) => Some(records::ValueRecord::read(service, entity, record)?.state.to_vec()),
                None => None,
            };
            let revision: Option<i64> = row.get(1);
            Ok(StoredValue { state, revision: revision.unwrap_or(0) as u64 })
        })
    }

    fn load_crdt(&self, service: &str, entity: &str) -> Result<StoredCrdt, JournalError> {
        self.run(async |conn| {
            let statement = conn
                .statement(
                    "SELECT replica, revision, record FROM crdt_replicas \
                     WHERE service = $1 AND entity = $2 AND revision > 0 ORDER BY replica",
                )
                .await?;
            let rows = conn.client.query(&statement, &[&service, &entity]).await?;
            let replicas = rows
                .iter()
                .map(|row| crdt::decode_row(service, entity, row.get(0), row.get::<_, i64>(1) as u64, row.get(2)))
                .collect::<Result<_, _>>()?;
            Ok(StoredCrdt { replicas })
        })
    }

    fn events_page(
        &self,
        service: &str,
        entity: &str,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Event>, JournalError> {
        self.run(async |conn| read_events(conn, service, entity, from, limit, max_bytes).await)
    }

    fn compiled_cache_key(&self) -> Result<[u8; 32], JournalError> {
        self.run(async |conn| {
            let row = conn.client.query_opt("SELECT key FROM keys WHERE name = 'compiled_cache'", &[]).await?;
            let key: Vec<u8> = row.map(|row| row.get(0)).unwrap_or_default();
            key.try_into().map_err(|_| JournalError::Corrupt("the compiled-code cache's key".into()))
        })
    }
}
