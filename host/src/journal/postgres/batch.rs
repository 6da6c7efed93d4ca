//! One batch of commits in one PostgreSQL transaction, in three round
//! trips: lock the head rows of its entities and services (and read the
//! idempotency keys already recorded), all statements sent at once; decide
//! each commit against them (the compare-and-set) and write what the
//! durable ones produced (`batch_rows.rs`); then `COMMIT`.
//!
//! With the `COMMIT` goes the batch's mark, its number in `writer_marks`:
//! when the connection dies before the `COMMIT` is answered, the writer
//! reads the mark on a new connection to learn whether the batch landed,
//! instead of writing it again (its commands would then conflict with
//! themselves and run twice).

use std::collections::{HashMap, HashSet};

use tokio_postgres::error::SqlState;

use super::batch_rows::{Rows, sql, write_rows};
use super::pool::Conn;
use super::writer::Shared;
use super::{Commit, CommitStatus, EntityWrite, JournalError, db_int};
use crate::domain::AsyncEffect;
use crate::journal::records::{self, EventRecord, KeyRecord, OutboxRecord, SnapshotRecord, ValueRecord};
use crate::journal::{TimerChange, commit_queue, crdt, now_ms};

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
    // Prepared before the transaction, so nothing can fail between its
    // writes and its COMMIT but the COMMIT itself.
    let marking = conn.statement(sql::MARK_BATCH).await?;
    match write_in_transaction(conn, commits, shared).await {
        Ok((statuses, outbox_added)) => {
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

/// Whether the batch marked `mark` landed, read on a new connection once
/// the old one's backend (`old`) is gone: a backend whose client lost it
/// may still have the `COMMIT` to run.
pub(super) async fn committed(conn: &mut Conn, shared: &Shared, old: i32, mark: i64) -> Result<bool, JournalError> {
    conn.client.execute("SELECT pg_terminate_backend($1)", &[&old]).await?;
    let mut gone = false;
    for _ in 0..100 {
        let left = conn.client.query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&old]).await?;
        if left.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if !gone {
        return Err(JournalError::Unavailable(format!("the backend {old} of a lost connection does not end")));
    }
    let statement = conn.statement(sql::READ_MARK).await?;
    let row = conn.client.query_opt(&statement, &[&writer_name(shared)]).await?;
    match row {
        Some(row) => Ok(row.get::<_, i64>(0) == mark),
        None => Err(JournalError::Corrupt("this writer's row in writer_marks is gone".into())),
    }
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

async fn write_in_transaction(
    conn: &mut Conn,
    batch: &[(&Commit, bool)],
    shared: &Shared,
) -> Result<(Vec<CommitStatus>, HashMap<String, u64>), WriteError> {
    let commits: Vec<&Commit> = batch.iter().map(|(commit, _)| *commit).collect();
    // Every entity's head row, locked in one order: but a CRDT entity's,
    // which hosts write each through its own replica's row, unless the
    // commit records an idempotency key (looked up under the lock).
    let mut entities: Vec<(&str, &str)> = commits
        .iter()
        .filter(|c| !matches!(c.write, EntityWrite::Crdt { .. }) || c.idempotency.is_some())
        .map(|c| (&*c.service, &*c.entity))
        .collect();
    entities.sort_unstable();
    entities.dedup();
    let (services, ids): (Vec<&str>, Vec<&str>) = entities.iter().copied().unzip();
    // The keys already recorded, read under the entities' locks.
    let keyed: Vec<(&str, &str, &str)> = commits
        .iter()
        .filter_map(|c| c.idempotency.as_ref().map(|r| (&*c.service, &*c.entity, r.key.as_str())))
        .collect();
    let (keyed_s, keyed_e, keyed_k): (Vec<&str>, Vec<&str>, Vec<&str>) =
        keyed.iter().fold((vec![], vec![], vec![]), |(mut s, mut e, mut k), (a, b, c)| {
            s.push(*a);
            e.push(*b);
            k.push(*c);
            (s, e, k)
        });
    // The log heads of the services that get events, locked after them.
    let mut logged: Vec<&str> = commits
        .iter()
        .filter(|c| matches!(&c.write, EntityWrite::Events { events, .. } if !events.is_empty()))
        .map(|c| &*c.service)
        .collect();
    logged.sort_unstable();
    logged.dedup();
    // The timers the batch's firings fire, locked last.
    let fired: (Vec<&str>, Vec<&str>, Vec<&str>) = commits
        .iter()
        .filter_map(|c| c.fires.as_ref())
        .map(|g| (g.service.as_str(), g.entity.as_str(), g.name.as_str()))
        .fold((vec![], vec![], vec![]), |(mut s, mut e, mut n), (a, b, c)| {
            s.push(a);
            e.push(b);
            n.push(c);
            (s, e, n)
        });
    // The rows of the replicas the batch's CRDT commits write, locked in
    // one order after the rest (made first, empty, where there is none).
    let mut replicas: Vec<(&str, &str, &str)> = commits
        .iter()
        .filter_map(|c| match &c.write {
            EntityWrite::Crdt { replica, .. } => Some((&*c.service, &*c.entity, replica.as_str())),
            _ => None,
        })
        .collect();
    replicas.sort_unstable();
    replicas.dedup();
    let crdt: (Vec<&str>, Vec<&str>, Vec<&str>) =
        replicas.into_iter().fold((vec![], vec![], vec![]), |(mut s, mut e, mut r), (a, b, c)| {
            s.push(a);
            e.push(b);
            r.push(c);
            (s, e, r)
        });
    let lock_fired = conn.statement(sql::LOCK_FIRED_TIMERS).await?;
    let (ensure_crdt, lock_crdt) = (conn.statement(sql::ENSURE_CRDT).await?, conn.statement(sql::LOCK_CRDT).await?);
    let (ensure, lock) = (conn.statement(sql::ENSURE_HEADS).await?, conn.statement(sql::LOCK_HEADS).await?);
    let find = conn.statement(sql::FIND_KEYS).await?;
    let (ensure_logs, lock_logs) = (conn.statement(sql::ENSURE_LOGS).await?, conn.statement(sql::LOCK_LOGS).await?);
    let now = db_int(now_ms());
    let client = &conn.client;
    // All sent at once, after the BEGIN; PostgreSQL takes the locks in the order sent.
    let begin = client.batch_execute("BEGIN");
    let ((), (_, locked, found, _, logs), timers, replicas) = futures_util::future::try_join4(
        begin,
        futures_util::future::try_join5(
            client.execute(&ensure, &[&services, &ids]),
            client.query(&lock, &[&services, &ids]),
            async {
                match keyed.is_empty() {
                    true => Ok(Vec::new()),
                    false => client.query(&find, &[&keyed_s, &keyed_e, &keyed_k, &now]).await,
                }
            },
            async { if logged.is_empty() { Ok(0) } else { client.execute(&ensure_logs, &[&logged]).await } },
            async { if logged.is_empty() { Ok(Vec::new()) } else { client.query(&lock_logs, &[&logged]).await } },
        ),
        async {
            match fired.0.is_empty() {
                true => Ok(Vec::new()),
                false => client.query(&lock_fired, &[&fired.0, &fired.1, &fired.2]).await,
            }
        },
        async {
            if crdt.0.is_empty() {
                return Ok(Vec::new());
            }
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&crdt.0, &crdt.1, &crdt.2];
            let (_, locked) = futures_util::future::try_join(
                client.execute(&ensure_crdt, &params),
                client.query(&lock_crdt, &params),
            )
            .await?;
            Ok(locked)
        },
    )
    .await?;
    let mut heads: HashMap<(&str, &str), u64> = HashMap::new();
    for row in locked {
        let (service, entity): (&str, &str) = (row.get(0), row.get(1));
        let key = entities.iter().copied().find(|k| *k == (service, entity)).expect("locked rows are the batch's");
        heads.insert(key, row.get::<_, i64>(2) as u64);
    }
    let mut found = Found {
        keys: found.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect(),
        timers: timers.iter().map(|row| ((row.get(0), row.get(1), row.get(2)), row.get::<_, i64>(3) as u64)).collect(),
        crdt: replicas.iter().map(|row| ((row.get(0), row.get(1), row.get(2)), row.get::<_, i64>(3) as u64)).collect(),
    };
    let mut log_heads: HashMap<&str, u64> = HashMap::new();
    for row in logs {
        let service: &str = row.get(0);
        let key = logged.iter().copied().find(|s| *s == service).expect("locked rows are the batch's");
        log_heads.insert(key, row.get::<_, i64>(1) as u64);
    }

    let mut rows = Rows::default();
    let mut outbox_added: HashMap<String, u64> = HashMap::new();
    let mut moved: HashSet<(&str, &str)> = HashSet::new();
    let statuses = commit_queue::decide_in_order(batch.iter().copied(), |commit| {
        let status = decide(commit, shared, &mut heads, &mut log_heads, &mut found, &mut outbox_added, &mut rows)?;
        if status.is_durable() {
            moved.insert((&commit.service, &commit.entity));
        }
        Ok::<_, JournalError>(status)
    })?;
    write_rows(conn, rows, &heads, &log_heads, &moved, shared).await?;
    Ok((statuses, outbox_added))
}

/// What the batch found stored, under its locks: the idempotency keys
/// already recorded (and those its commits record), the settings of the
/// timers its firings fire, and the revisions of the CRDT replicas' rows
/// it writes (as its commits leave them).
struct Found {
    keys: HashSet<(String, String, String)>,
    timers: HashMap<(String, String, String), u64>,
    crdt: HashMap<(String, String, String), u64>,
}

/// Decides one commit against the locked heads, adding its rows.
fn decide<'a>(
    commit: &'a Commit,
    shared: &Shared,
    heads: &mut HashMap<(&'a str, &'a str), u64>,
    log_heads: &mut HashMap<&'a str, u64>,
    stored: &mut Found,
    outbox_added: &mut HashMap<String, u64>,
    rows: &mut Rows<'a>,
) -> Result<CommitStatus, JournalError> {
    let key = (&*commit.service, &*commit.entity);
    if let Some(guard) = &commit.fires {
        // As the batch leaves it so far, else as stored.
        let at = (guard.service.as_str(), guard.entity.as_str(), guard.name.as_str());
        let current = match rows.timers.get(&at) {
            Some(set) => set.as_ref().map(|row| row.0 as u64),
            None => stored.timers.get(&(at.0.to_string(), at.1.to_string(), at.2.to_string())).copied(),
        };
        if current != Some(guard.id) {
            return Ok(CommitStatus::TimerGone);
        }
    }
    if let Some(record) = &commit.idempotency
        && stored.keys.contains(&(key.0.to_string(), key.1.to_string(), record.key.as_str().to_string()))
    {
        return Ok(CommitStatus::KeyRecorded);
    }
    if !commit.outbox.is_empty() {
        let targets: Vec<String> = commit.outbox.iter().map(AsyncEffect::target).collect();
        let mut adding: HashMap<&str, u64> = HashMap::new();
        for target in &targets {
            *adding.entry(target.as_str()).or_insert_with(|| outbox_added.get(target).copied().unwrap_or(0)) += 1;
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
                    let record = records::encode_traced(
                        &EventRecord::new(key.0, key.1, last_seq, commit.version, payload),
                        commit.trace.as_ref(),
                    )?;
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
        EntityWrite::Crdt { replica, expected_revision, state, delta } => {
            let at = (key.0.to_string(), key.1.to_string(), replica.clone());
            let found = stored.crdt.get(&at).copied().unwrap_or(0);
            if found != *expected_revision {
                return Ok(CommitStatus::Conflict { expected: *expected_revision, found });
            }
            stored.crdt.insert(at, found + 1);
            let record = crdt::encode_row(key.0, key.1, replica, commit.version, state.as_ref())?;
            rows.crdt.insert((key.0, key.1, replica.as_str()), (db_int(found + 1), record));
            let delta = match (state, delta) {
                (Some(_), Some(delta)) => Some(records::encode(delta)?),
                _ => None,
            };
            rows.crdt_changes.push((key.0, key.1, delta));
        }
        EntityWrite::Nothing => {}
    }
    for effect in &commit.outbox {
        let record = OutboxRecord { effect, hops: commit.hops + 1, attempts: 0, next_attempt_ms: 0 };
        let record = records::encode_traced(&record, commit.trace.as_ref())?;
        let target = effect.target();
        *outbox_added.entry(target.clone()).or_default() += 1;
        rows.outbox.push((target, record));
    }
    if let Some(record) = &commit.idempotency {
        let kept = KeyRecord {
            expires_at_ms: record.expires_at_ms,
            fingerprint: record.fingerprint,
            follow_up: &record.follow_up,
        };
        rows.keys.insert((key.0, key.1, record.key.as_str()), (db_int(record.expires_at_ms), records::encode(&kept)?));
        stored.keys.insert((key.0.to_string(), key.1.to_string(), record.key.as_str().to_string()));
    }
    for change in &commit.timers {
        match change {
            TimerChange::Set(timer) => {
                let row = (timer.id as i64, db_int(timer.due_ms), timer.encode()?);
                rows.timers.insert((&timer.service, &timer.entity, &timer.name), Some(row));
            }
            TimerChange::Cancel(name) => {
                rows.timers.insert((key.0, key.1, name), None);
            }
        }
    }
    Ok(CommitStatus::Durable { last_seq })
}
