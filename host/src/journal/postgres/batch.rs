//! One batch of commits in one PostgreSQL transaction: lock the head rows
//! of its entities and services, decide each commit against them (the
//! compare-and-set), and write what the durable ones produced, a few
//! statements for the whole batch (arrays, `unnest`), then `COMMIT`.
//!
//! With the `COMMIT` goes the batch's mark, its number in `writer_marks`:
//! when the connection dies before the `COMMIT` is answered, the writer
//! reads the mark on a new connection to learn whether the batch landed,
//! instead of writing it again (its commands would then conflict with
//! themselves and run twice).

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio_postgres::error::SqlState;

use super::notify;
use super::pool::Conn;
use super::writer::Shared;
use super::{Commit, CommitStatus, EntityWrite, JournalError, db_int};
use crate::journal::records::{self, EventRecord, KeyRecord, OutboxRecord, SnapshotRecord, ValueRecord};
use crate::journal::{commit_queue, now_ms};

/// Why a batch was not written.
pub(super) enum WriteError {
    /// Another writer made the database abort it; it may be tried again.
    Retry(JournalError),
    /// It failed for good (or the database is gone).
    Failed(JournalError),
    /// The connection died during the `COMMIT`: the batch may have landed
    /// (see [`committed`]), with these statuses.
    Unknown {
        /// What each commit's status is if the batch landed.
        statuses: Vec<CommitStatus>,
        /// The outbox entries it added, per target service.
        outbox_added: HashMap<String, u64>,
        /// How the connection died.
        error: JournalError,
    },
}

impl From<JournalError> for WriteError {
    fn from(error: JournalError) -> Self {
        WriteError::Failed(error)
    }
}

impl From<tokio_postgres::Error> for WriteError {
    /// Retryable when another writer caused it.
    fn from(error: tokio_postgres::Error) -> Self {
        let retry = error
            .code()
            .is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE);
        if retry { WriteError::Retry(error.into()) } else { WriteError::Failed(error.into()) }
    }
}

/// Writes `commits` in one transaction, marked `mark`; answers each one's status.
pub(super) async fn write_batch(
    conn: &mut Conn,
    commits: &[(&Commit, bool)],
    shared: &Shared,
    mark: i64,
) -> Result<Vec<CommitStatus>, WriteError> {
    conn.client.batch_execute("BEGIN").await?;
    match write_in_transaction(conn, commits, shared).await {
        Ok((statuses, outbox_added)) => {
            let marking = conn.statement(sql::MARK_BATCH).await?;
            let writer = writer_name(shared);
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&writer, &mark];
            let committing = futures_util::future::try_join(
                conn.client.execute(&marking, &params),
                conn.client.batch_execute("COMMIT"),
            );
            if let Err(error) = committing.await {
                return Err(match JournalError::from(error) {
                    error @ JournalError::Unavailable(_) => WriteError::Unknown { statuses, outbox_added, error },
                    error => WriteError::Failed(error),
                });
            }
            added_to_outbox(shared, outbox_added);
            Ok(statuses)
        }
        Err(error) => {
            let _ = conn.client.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}

/// Counts the outbox entries a batch that landed added.
pub(super) fn added_to_outbox(shared: &Shared, outbox_added: HashMap<String, u64>) {
    for (service, count) in outbox_added {
        shared.outbox.adjust(&service, count as i64);
    }
}

/// Whether the batch marked `mark` landed, read on a new connection.
pub(super) async fn committed(conn: &mut Conn, shared: &Shared, mark: i64) -> Result<bool, JournalError> {
    let statement = conn.statement(sql::READ_MARK).await?;
    let row = conn.client.query_opt(&statement, &[&writer_name(shared)]).await?;
    Ok(row.is_some_and(|row| row.get::<_, i64>(0) == mark))
}

/// Adds this writer's row to `writer_marks`, before its first batch (so a
/// batch updates it, and [`committed`] waits for one that holds it).
pub(super) async fn add_mark(conn: &mut Conn, host: u64) -> Result<(), JournalError> {
    let statement = conn.statement(sql::ADD_MARK).await?;
    conn.client.execute(&statement, &[&format!("{host:016x}")]).await?;
    Ok(())
}

/// This writer's row in `writer_marks`.
fn writer_name(shared: &Shared) -> String {
    format!("{:016x}", shared.host)
}

/// The rows one batch writes, gathered while its commits are decided.
#[derive(Default)]
struct Rows<'a> {
    /// `events`: service, entity, seq, record.
    events: Vec<(&'a str, &'a str, i64, Vec<u8>)>,
    /// `service_log`: service, position, entity, seq.
    log: Vec<(&'a str, i64, &'a str, i64)>,
    /// The latest snapshot per entity: (seq, record).
    snapshots: BTreeMap<(&'a str, &'a str), (i64, Vec<u8>)>,
    /// Snapshots for the history of services that keep one.
    history: BTreeMap<(&'a str, &'a str, i64), Vec<u8>>,
    /// Each value entity's last state in the batch (`None`: deleted).
    values: BTreeMap<(&'a str, &'a str), Option<Vec<u8>>>,
    /// Outbox entries: target service, record (ids are given at the end).
    outbox: Vec<(String, Vec<u8>)>,
    /// Idempotency records: (service, entity, key) → (expiry, record).
    keys: BTreeMap<(&'a str, &'a str, &'a str), (i64, Vec<u8>)>,
}

async fn write_in_transaction(
    conn: &mut Conn,
    batch: &[(&Commit, bool)],
    shared: &Shared,
) -> Result<(Vec<CommitStatus>, HashMap<String, u64>), WriteError> {
    let commits: Vec<&Commit> = batch.iter().map(|(commit, _)| *commit).collect();
    // Lock every entity's head row, in one order.
    let mut entities: Vec<(&str, &str)> = commits.iter().map(|c| (&*c.service, &*c.entity)).collect();
    entities.sort_unstable();
    entities.dedup();
    let (services, ids): (Vec<&str>, Vec<&str>) = entities.iter().copied().unzip();
    let ensure = conn.statement(sql::ENSURE_HEADS).await?;
    conn.client.execute(&ensure, &[&services, &ids]).await?;
    let lock = conn.statement(sql::LOCK_HEADS).await?;
    let mut heads: HashMap<(&str, &str), u64> = HashMap::new();
    for row in conn.client.query(&lock, &[&services, &ids]).await? {
        let (service, entity): (&str, &str) = (row.get(0), row.get(1));
        let key = entities.iter().copied().find(|k| *k == (service, entity)).expect("locked rows are the batch's");
        heads.insert(key, row.get::<_, i64>(2) as u64);
    }
    // The keys already recorded, read under the entities' locks.
    let keyed: Vec<(&str, &str, &str)> = commits
        .iter()
        .filter_map(|c| c.idempotency.as_ref().map(|r| (&*c.service, &*c.entity, r.key.as_str())))
        .collect();
    let mut recorded: HashSet<(String, String, String)> = HashSet::new();
    if !keyed.is_empty() {
        let find = conn.statement(sql::FIND_KEYS).await?;
        let (s, e, k): (Vec<&str>, Vec<&str>, Vec<&str>) =
            keyed.iter().fold((vec![], vec![], vec![]), |(mut s, mut e, mut k), (a, b, c)| {
                s.push(*a);
                e.push(*b);
                k.push(*c);
                (s, e, k)
            });
        let now = db_int(now_ms());
        for row in conn.client.query(&find, &[&s, &e, &k, &now]).await? {
            recorded.insert((row.get(0), row.get(1), row.get(2)));
        }
    }
    // Lock the log heads of the services that get events.
    let mut logged: Vec<&str> = commits
        .iter()
        .filter(|c| matches!(&c.write, EntityWrite::Events { events, .. } if !events.is_empty()))
        .map(|c| &*c.service)
        .collect();
    logged.sort_unstable();
    logged.dedup();
    let mut log_heads: HashMap<&str, u64> = HashMap::new();
    if !logged.is_empty() {
        let ensure = conn.statement(sql::ENSURE_LOGS).await?;
        conn.client.execute(&ensure, &[&logged]).await?;
        let lock = conn.statement(sql::LOCK_LOGS).await?;
        for row in conn.client.query(&lock, &[&logged]).await? {
            let service: &str = row.get(0);
            let key = logged.iter().copied().find(|s| *s == service).expect("locked rows are the batch's");
            log_heads.insert(key, row.get::<_, i64>(1) as u64);
        }
    }

    let mut rows = Rows::default();
    let mut outbox_added: HashMap<String, u64> = HashMap::new();
    let mut moved: HashSet<(&str, &str)> = HashSet::new();
    let statuses = commit_queue::decide_in_order(batch.iter().copied(), |commit| {
        let status = decide(commit, shared, &mut heads, &mut log_heads, &mut recorded, &mut outbox_added, &mut rows)?;
        if status.is_durable() {
            moved.insert((&commit.service, &commit.entity));
        }
        Ok::<_, JournalError>(status)
    })?;
    write_rows(conn, rows, &heads, &log_heads, &moved, shared).await?;
    Ok((statuses, outbox_added))
}

/// Decides one commit against the locked heads, adding its rows.
fn decide<'a>(
    commit: &'a Commit,
    shared: &Shared,
    heads: &mut HashMap<(&'a str, &'a str), u64>,
    log_heads: &mut HashMap<&'a str, u64>,
    recorded: &mut HashSet<(String, String, String)>,
    outbox_added: &mut HashMap<String, u64>,
    rows: &mut Rows<'a>,
) -> Result<CommitStatus, JournalError> {
    let key = (&*commit.service, &*commit.entity);
    if let Some(record) = &commit.idempotency
        && recorded.contains(&(key.0.to_string(), key.1.to_string(), record.key.as_str().to_string()))
    {
        return Ok(CommitStatus::KeyRecorded);
    }
    if !commit.outbox.is_empty() {
        let mut adding: HashMap<&str, u64> = HashMap::new();
        for call in &commit.outbox {
            *adding
                .entry(call.service.as_str())
                .or_insert_with(|| outbox_added.get(&call.service).copied().unwrap_or(0)) += 1;
        }
        if let Some(service) = shared.outbox.over_quota(&adding) {
            return Ok(CommitStatus::OutboxFull { service: service.to_string() });
        }
    }
    let found = heads.get(&key).copied().unwrap_or(0);
    let mut last_seq = 0;
    match &commit.write {
        EntityWrite::Events { expected_last_seq, events, snapshot } => {
            if found != *expected_last_seq {
                return Ok(CommitStatus::Conflict { expected: *expected_last_seq, found });
            }
            last_seq = found;
            if !events.is_empty() {
                let head = log_heads.get_mut(key.0).expect("services with events are locked");
                for payload in events {
                    last_seq += 1;
                    *head += 1;
                    let record = records::encode(&EventRecord::new(key.0, key.1, last_seq, commit.version, payload))?;
                    rows.events.push((key.0, key.1, db_int(last_seq), record));
                    rows.log.push((key.0, db_int(*head), key.1, db_int(last_seq)));
                }
                heads.insert(key, last_seq);
            }
            if let Some(snapshot) = snapshot {
                let record = SnapshotRecord::new(key.0, key.1, snapshot.seq, snapshot.version, &snapshot.state);
                let record = records::encode(&record)?;
                if shared.retention.keeps_snapshot_history(key.0) {
                    rows.history.insert((key.0, key.1, db_int(snapshot.seq)), record.clone());
                }
                rows.snapshots.insert(key, (db_int(snapshot.seq), record));
            }
        }
        EntityWrite::Value { expected_revision, state } => {
            // A value entity's head row holds its revision.
            if found != *expected_revision {
                return Ok(CommitStatus::Conflict { expected: *expected_revision, found });
            }
            heads.insert(key, found + 1);
            let record = match state {
                Some(state) => Some(records::encode(&ValueRecord::new(key.0, key.1, commit.version, state))?),
                None => None,
            };
            rows.values.insert(key, record);
        }
        EntityWrite::Nothing => {}
    }
    for call in &commit.outbox {
        let record = records::encode(&OutboxRecord { call, hops: commit.hops + 1, attempts: 0, next_attempt_ms: 0 })?;
        rows.outbox.push((call.service.clone(), record));
        *outbox_added.entry(call.service.clone()).or_default() += 1;
    }
    if let Some(record) = &commit.idempotency {
        let stored = KeyRecord {
            expires_at_ms: record.expires_at_ms,
            fingerprint: record.fingerprint,
            follow_up: &record.follow_up,
        };
        rows.keys
            .insert((key.0, key.1, record.key.as_str()), (db_int(record.expires_at_ms), records::encode(&stored)?));
        recorded.insert((key.0.to_string(), key.1.to_string(), record.key.as_str().to_string()));
    }
    Ok(CommitStatus::Durable { last_seq })
}

/// Writes what the batch's durable commits produced.
async fn write_rows(
    conn: &mut Conn,
    rows: Rows<'_>,
    heads: &HashMap<(&str, &str), u64>,
    log_heads: &HashMap<&str, u64>,
    moved: &HashSet<(&str, &str)>,
    shared: &Shared,
) -> Result<(), WriteError> {
    if !rows.events.is_empty() {
        let events: Vec<(&str, &str, i64, &[u8])> =
            rows.events.iter().map(|(s, e, q, r)| (*s, *e, *q, r.as_slice())).collect();
        let (s, e, q, r) = columns4(&events);
        let statement = conn.statement(sql::INSERT_EVENTS).await?;
        conn.client.execute(&statement, &[&s, &e, &q, &r]).await?;
        let (s, p, e, q) = columns4(&rows.log);
        let statement = conn.statement(sql::INSERT_LOG).await?;
        conn.client.execute(&statement, &[&s, &p, &e, &q]).await?;
        let (s, p): (Vec<&str>, Vec<i64>) = log_heads.iter().map(|(s, p)| (*s, db_int(*p))).unzip();
        let statement = conn.statement(sql::UPDATE_LOGS).await?;
        conn.client.execute(&statement, &[&s, &p]).await?;
    }
    if !rows.events.is_empty() || !rows.values.is_empty() {
        let mut moved: Vec<(&str, &str, i64)> =
            moved.iter().filter_map(|k| heads.get(k).map(|seq| (k.0, k.1, db_int(*seq)))).collect();
        moved.sort_unstable();
        let (s, e, q) = columns3(&moved);
        let update = conn.statement(sql::UPDATE_HEADS).await?;
        if rows.events.is_empty() {
            conn.client.execute(&update, &[&s, &e, &q]).await?;
        } else {
            // Other hosts hear of the events when the batch commits; sent
            // with the heads' update, in one round trip.
            let mut appended: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for (service, entity, seq, _) in &rows.events {
                appended.insert((service, entity), *seq as u64);
            }
            let outbox = !rows.outbox.is_empty();
            let payload = notify::payload(shared.host, outbox, appended.iter().map(|((s, e), seq)| (*s, *e, *seq)));
            let announce = conn.statement(sql::NOTIFY).await?;
            let channel = notify::CHANNEL;
            futures_util::future::try_join(
                conn.client.execute(&update, &[&s, &e, &q]),
                conn.client.execute(&announce, &[&channel, &payload]),
            )
            .await?;
        }
    }
    if !rows.snapshots.is_empty() {
        let snapshots: Vec<(&str, &str, i64, &[u8])> =
            rows.snapshots.iter().map(|((s, e), (q, r))| (*s, *e, *q, r.as_slice())).collect();
        let (s, e, q, r) = columns4(&snapshots);
        let statement = conn.statement(sql::UPSERT_SNAPSHOTS).await?;
        conn.client.execute(&statement, &[&s, &e, &q, &r]).await?;
    }
    if !rows.history.is_empty() {
        let history: Vec<(&str, &str, i64, &[u8])> =
            rows.history.iter().map(|((s, e, q), r)| (*s, *e, *q, r.as_slice())).collect();
        let (s, e, q, r) = columns4(&history);
        let statement = conn.statement(sql::UPSERT_HISTORY).await?;
        conn.client.execute(&statement, &[&s, &e, &q, &r]).await?;
    }
    let set: Vec<(&str, &str, &[u8])> =
        rows.values.iter().filter_map(|((s, e), state)| Some((*s, *e, state.as_deref()?))).collect();
    let deleted: Vec<(&str, &str)> =
        rows.values.iter().filter(|(_, state)| state.is_none()).map(|((s, e), _)| (*s, *e)).collect();
    if !set.is_empty() {
        let (s, e, r) = columns3(&set);
        let statement = conn.statement(sql::UPSERT_VALUES).await?;
        conn.client.execute(&statement, &[&s, &e, &r]).await?;
    }
    if !deleted.is_empty() {
        let (s, e): (Vec<&str>, Vec<&str>) = deleted.into_iter().unzip();
        let statement = conn.statement(sql::DELETE_VALUES).await?;
        conn.client.execute(&statement, &[&s, &e]).await?;
    }
    if !rows.outbox.is_empty() {
        let statement = conn.statement(sql::TAKE_OUTBOX_IDS).await?;
        let count = rows.outbox.len() as i64;
        let last: i64 = conn.client.query_one(&statement, &[&count]).await?.get(0);
        let ids: Vec<i64> = (last - count + 1..=last).collect();
        let targets: Vec<&str> = rows.outbox.iter().map(|(t, _)| t.as_str()).collect();
        let records: Vec<&[u8]> = rows.outbox.iter().map(|(_, r)| r.as_slice()).collect();
        let statement = conn.statement(sql::INSERT_OUTBOX).await?;
        if rows.events.is_empty() {
            // The hosts hear of the entries when the batch commits (with
            // events, the notification said so already).
            let payload = notify::payload(shared.host, true, []);
            let announce = conn.statement(sql::NOTIFY).await?;
            let channel = notify::CHANNEL;
            futures_util::future::try_join(
                conn.client.execute(&statement, &[&ids, &targets, &records]),
                conn.client.execute(&announce, &[&channel, &payload]),
            )
            .await?;
        } else {
            conn.client.execute(&statement, &[&ids, &targets, &records]).await?;
        }
    }
    if !rows.keys.is_empty() {
        let keys: Vec<(&str, &str, &str, i64, &[u8])> =
            rows.keys.iter().map(|((s, e, k), (x, r))| (*s, *e, *k, *x, r.as_slice())).collect();
        let s: Vec<&str> = keys.iter().map(|k| k.0).collect();
        let e: Vec<&str> = keys.iter().map(|k| k.1).collect();
        let k: Vec<&str> = keys.iter().map(|k| k.2).collect();
        let x: Vec<i64> = keys.iter().map(|k| k.3).collect();
        let r: Vec<&[u8]> = keys.iter().map(|k| k.4).collect();
        let statement = conn.statement(sql::UPSERT_KEYS).await?;
        conn.client.execute(&statement, &[&s, &e, &k, &x, &r]).await?;
    }
    Ok(())
}

fn columns3<A: Copy, B: Copy, C: Copy>(rows: &[(A, B, C)]) -> (Vec<A>, Vec<B>, Vec<C>) {
    (rows.iter().map(|r| r.0).collect(), rows.iter().map(|r| r.1).collect(), rows.iter().map(|r| r.2).collect())
}

fn columns4<A: Copy, B: Copy, C: Copy, D: Copy>(rows: &[(A, B, C, D)]) -> (Vec<A>, Vec<B>, Vec<C>, Vec<D>) {
    let (a, b, c) = columns3(&rows.iter().map(|r| (r.0, r.1, r.2)).collect::<Vec<_>>());
    (a, b, c, rows.iter().map(|r| r.3).collect())
}

/// The writer's statements.
mod sql {
    pub const ENSURE_HEADS: &str = "INSERT INTO entity_heads (service, entity, last_seq) \
        SELECT s, e, 0 FROM unnest($1::text[], $2::text[]) AS t(s, e) \
        ORDER BY s COLLATE \"C\", e COLLATE \"C\" ON CONFLICT DO NOTHING";
    pub const LOCK_HEADS: &str = "SELECT h.service, h.entity, h.last_seq FROM entity_heads h \
        JOIN unnest($1::text[], $2::text[]) AS t(s, e) ON h.service = t.s AND h.entity = t.e \
        ORDER BY h.service, h.entity FOR UPDATE OF h";
    pub const FIND_KEYS: &str = "SELECT k.service, k.entity, k.key FROM idempotency k \
        JOIN unnest($1::text[], $2::text[], $3::text[]) AS t(s, e, k) \
        ON k.service = t.s AND k.entity = t.e AND k.key = t.k WHERE k.expires_at_ms > $4";
    pub const ENSURE_LOGS: &str = "INSERT INTO log_heads (service, head) \
        SELECT s, 0 FROM unnest($1::text[]) AS t(s) ORDER BY s COLLATE \"C\" ON CONFLICT DO NOTHING";
    pub const LOCK_LOGS: &str =
        "SELECT service, head FROM log_heads WHERE service = ANY($1::text[]) ORDER BY service FOR UPDATE";
    pub const INSERT_EVENTS: &str = "INSERT INTO events (service, entity, seq, record) \
        SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[])";
    pub const INSERT_LOG: &str = "INSERT INTO service_log (service, position, entity, seq) \
        SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[])";
    pub const UPDATE_LOGS: &str = "UPDATE log_heads h SET head = t.p \
        FROM unnest($1::text[], $2::int8[]) AS t(s, p) WHERE h.service = t.s";
    pub const UPDATE_HEADS: &str = "UPDATE entity_heads h SET last_seq = t.q \
        FROM unnest($1::text[], $2::text[], $3::int8[]) AS t(s, e, q) WHERE h.service = t.s AND h.entity = t.e";
    pub const UPSERT_SNAPSHOTS: &str = "INSERT INTO snapshots (service, entity, seq, record) \
        SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[]) \
        ON CONFLICT (service, entity) DO UPDATE SET seq = EXCLUDED.seq, record = EXCLUDED.record";
    pub const UPSERT_HISTORY: &str = "INSERT INTO snapshot_history (service, entity, seq, record) \
        SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[]) \
        ON CONFLICT (service, entity, seq) DO UPDATE SET record = EXCLUDED.record";
    pub const UPSERT_VALUES: &str = "INSERT INTO entity_values (service, entity, record) \
        SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
        ON CONFLICT (service, entity) DO UPDATE SET record = EXCLUDED.record";
    pub const DELETE_VALUES: &str = "DELETE FROM entity_values v USING unnest($1::text[], $2::text[]) AS t(s, e) \
        WHERE v.service = t.s AND v.entity = t.e";
    pub const NOTIFY: &str = "SELECT pg_notify($1, $2)";
    pub const MARK_BATCH: &str = "UPDATE writer_marks SET batch = $2 WHERE writer = $1";
    /// Waits for a transaction of the old connection still holding the row.
    pub const READ_MARK: &str = "SELECT batch FROM writer_marks WHERE writer = $1 FOR SHARE";
    pub const ADD_MARK: &str = "INSERT INTO writer_marks (writer, batch) VALUES ($1, 0) ON CONFLICT DO NOTHING";
    pub const TAKE_OUTBOX_IDS: &str = "UPDATE counters SET value = value + $1 WHERE name = 'outbox' RETURNING value";
    pub const INSERT_OUTBOX: &str = "INSERT INTO outbox (id, target, record) \
        SELECT * FROM unnest($1::int8[], $2::text[], $3::bytea[])";
    pub const UPSERT_KEYS: &str = "INSERT INTO idempotency (service, entity, key, expires_at_ms, record) \
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[]) \
        ON CONFLICT (service, entity, key) DO UPDATE SET expires_at_ms = EXCLUDED.expires_at_ms, \
        record = EXCLUDED.record";
}
