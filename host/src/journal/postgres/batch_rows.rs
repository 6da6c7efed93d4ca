//! What one batch writes once its commits are decided: every kind of row
//! in a statement or two for the whole batch (arrays, `unnest`), all sent
//! at once (pipelined), so the batch costs one round trip here whatever it
//! holds. PostgreSQL runs them in the order sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::batch::WriteError;
use super::db_int;
use super::notify;
use super::pool::Conn;
use super::writer::Shared;

/// The rows one batch writes, gathered while its commits are decided.
#[derive(Default)]
pub(super) struct Rows<'a> {
    /// `events`: service, entity, seq, record.
    pub events: Vec<(&'a str, &'a str, i64, Vec<u8>)>,
    /// `service_log`: service, position, entity, seq.
    pub log: Vec<(&'a str, i64, &'a str, i64)>,
    /// The latest snapshot per entity: (seq, record).
    pub snapshots: BTreeMap<(&'a str, &'a str), (i64, Vec<u8>)>,
    /// Snapshots for the history of services that keep one.
    pub history: BTreeMap<(&'a str, &'a str, i64), Vec<u8>>,
    /// Each value entity's last state in the batch (`None`: deleted).
    pub values: BTreeMap<(&'a str, &'a str), Option<Vec<u8>>>,
    /// Each CRDT replica's last row in the batch: (service, entity,
    /// replica) → (revision, record).
    pub crdt: BTreeMap<(&'a str, &'a str, &'a str), (i64, Vec<u8>)>,
    /// Each change of a CRDT entity, for the other hosts: service, entity,
    /// the delta (postcard; `None`: a delete).
    pub crdt_changes: Vec<(&'a str, &'a str, Option<Vec<u8>>)>,
    /// Outbox entries: target service, record (ids are given at the end).
    pub outbox: Vec<(String, Vec<u8>)>,
    /// Idempotency records: (service, entity, key) → (expiry, record).
    pub keys: BTreeMap<(&'a str, &'a str, &'a str), (i64, Vec<u8>)>,
    /// Each timer's last change in the batch: (service, entity, name) →
    /// (id, due ms, record), or `None` for a cancel.
    pub timers: BTreeMap<(&'a str, &'a str, &'a str), Option<TimerRow>>,
}

/// A timer's row but its key: id, due ms, record.
pub(super) type TimerRow = (i64, i64, Vec<u8>);

/// A statement on its way, as the pipeline holds it.
type Sent<'a> = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// Writes what the batch's durable commits produced: `heads` are the
/// entities' last seqs (or revisions) after it, `moved` the entities it
/// wrote, `log_heads` the services' log heads.
pub(super) async fn write_rows(
    conn: &mut Conn,
    rows: Rows<'_>,
    heads: &HashMap<(&str, &str), u64>,
    log_heads: &HashMap<&str, u64>,
    moved: &HashSet<(&str, &str)>,
    shared: &Shared,
) -> Result<(), WriteError> {
    let mut statements = HashMap::new();
    for sql in [
        sql::INSERT_EVENTS,
        sql::INSERT_LOG,
        sql::UPDATE_LOGS,
        sql::UPDATE_HEADS,
        sql::NOTIFY,
        sql::UPSERT_SNAPSHOTS,
        sql::UPSERT_HISTORY,
        sql::UPSERT_VALUES,
        sql::DELETE_VALUES,
        sql::UPSERT_CRDT,
        sql::INSERT_OUTBOX,
        sql::UPSERT_KEYS,
        sql::UPSERT_TIMERS,
        sql::DELETE_TIMERS,
    ] {
        statements.insert(sql, conn.statement(sql).await?);
    }
    let events: Vec<(&str, &str, i64, &[u8])> =
        rows.events.iter().map(|(s, e, q, r)| (*s, *e, *q, r.as_slice())).collect();
    let events = columns4(&events);
    let log = columns4(&rows.log);
    let logs: (Vec<&str>, Vec<i64>) = log_heads.iter().map(|(s, p)| (*s, db_int(*p))).unzip();
    let mut moved: Vec<(&str, &str, i64)> =
        moved.iter().filter_map(|k| heads.get(k).map(|seq| (k.0, k.1, db_int(*seq)))).collect();
    moved.sort_unstable();
    let moved = columns3(&moved);
    // Other hosts hear of the events and outbox entries when the batch commits.
    let mut appended: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (service, entity, seq, _) in &rows.events {
        appended.insert((service, entity), *seq as u64);
    }
    let sets_timers = rows.timers.values().any(Option::is_some);
    let announced = !rows.events.is_empty() || !rows.outbox.is_empty() || sets_timers || !rows.crdt.is_empty();
    let said = (!rows.outbox.is_empty(), sets_timers);
    let changed = rows.crdt_changes.iter().map(|(s, e, delta)| (*s, *e, delta.as_deref()));
    let payload = notify::payload(shared.host, said, appended.iter().map(|((s, e), q)| (*s, *e, *q)), changed);
    let snapshots: Vec<(&str, &str, i64, &[u8])> =
        rows.snapshots.iter().map(|((s, e), (q, r))| (*s, *e, *q, r.as_slice())).collect();
    let snapshots = columns4(&snapshots);
    let history: Vec<(&str, &str, i64, &[u8])> =
        rows.history.iter().map(|((s, e, q), r)| (*s, *e, *q, r.as_slice())).collect();
    let history = columns4(&history);
    let set: Vec<(&str, &str, &[u8])> =
        rows.values.iter().filter_map(|((s, e), state)| Some((*s, *e, state.as_deref()?))).collect();
    let set = columns3(&set);
    let deleted: (Vec<&str>, Vec<&str>) =
        rows.values.iter().filter(|(_, state)| state.is_none()).map(|((s, e), _)| (*s, *e)).unzip();
    let crdt: Vec<(&str, &str, &str, i64, &[u8])> =
        rows.crdt.iter().map(|((s, e, r), (v, rec))| (*s, *e, *r, *v, rec.as_slice())).collect();
    let (c_s, c_e, c_r, c_v, c_rec) = (
        crdt.iter().map(|c| c.0).collect::<Vec<_>>(),
        crdt.iter().map(|c| c.1).collect::<Vec<_>>(),
        crdt.iter().map(|c| c.2).collect::<Vec<_>>(),
        crdt.iter().map(|c| c.3).collect::<Vec<_>>(),
        crdt.iter().map(|c| c.4).collect::<Vec<_>>(),
    );
    let outbox: (Vec<&str>, Vec<&[u8]>) = rows.outbox.iter().map(|(t, r)| (t.as_str(), r.as_slice())).unzip();
    let keys: Vec<(&str, &str, &str, i64, &[u8])> =
        rows.keys.iter().map(|((s, e, k), (x, r))| (*s, *e, *k, *x, r.as_slice())).collect();
    let (k_s, k_e, k_k, k_x, k_r) = (
        keys.iter().map(|k| k.0).collect::<Vec<_>>(),
        keys.iter().map(|k| k.1).collect::<Vec<_>>(),
        keys.iter().map(|k| k.2).collect::<Vec<_>>(),
        keys.iter().map(|k| k.3).collect::<Vec<_>>(),
        keys.iter().map(|k| k.4).collect::<Vec<_>>(),
    );
    let set_timers = || rows.timers.iter().filter_map(|(key, set)| Some((key, set.as_ref()?)));
    let (t_s, t_e, t_n, t_i, t_d, t_r) = (
        set_timers().map(|(k, _)| k.0).collect::<Vec<_>>(),
        set_timers().map(|(k, _)| k.1).collect::<Vec<_>>(),
        set_timers().map(|(k, _)| k.2).collect::<Vec<_>>(),
        set_timers().map(|(_, t)| t.0).collect::<Vec<_>>(),
        set_timers().map(|(_, t)| t.1).collect::<Vec<_>>(),
        set_timers().map(|(_, t)| t.2.as_slice()).collect::<Vec<_>>(),
    );
    let cancelled: Vec<(&str, &str, &str)> =
        rows.timers.iter().filter(|(_, set)| set.is_none()).map(|((s, e, n), _)| (*s, *e, *n)).collect();
    let cancelled = columns3(&cancelled);
    let channel = notify::CHANNEL;

    let client = &conn.client;
    let st = |sql: &str| &statements[sql];
    let mut sent: Vec<Sent<'_>> = Vec::new();
    if !rows.events.is_empty() {
        sent.push(send(client, st(sql::INSERT_EVENTS), [&events.0, &events.1, &events.2, &events.3]));
        sent.push(send(client, st(sql::INSERT_LOG), [&log.0, &log.1, &log.2, &log.3]));
        sent.push(send(client, st(sql::UPDATE_LOGS), [&logs.0, &logs.1]));
    }
    if !rows.events.is_empty() || !rows.values.is_empty() {
        sent.push(send(client, st(sql::UPDATE_HEADS), [&moved.0, &moved.1, &moved.2]));
    }
    if !rows.snapshots.is_empty() {
        sent.push(send(client, st(sql::UPSERT_SNAPSHOTS), [&snapshots.0, &snapshots.1, &snapshots.2, &snapshots.3]));
    }
    if !rows.history.is_empty() {
        sent.push(send(client, st(sql::UPSERT_HISTORY), [&history.0, &history.1, &history.2, &history.3]));
    }
    if !set.0.is_empty() {
        sent.push(send(client, st(sql::UPSERT_VALUES), [&set.0, &set.1, &set.2]));
    }
    if !deleted.0.is_empty() {
        sent.push(send(client, st(sql::DELETE_VALUES), [&deleted.0, &deleted.1]));
    }
    if !crdt.is_empty() {
        sent.push(send(client, st(sql::UPSERT_CRDT), [&c_s, &c_e, &c_r, &c_v, &c_rec]));
    }
    if !rows.outbox.is_empty() {
        sent.push(send(client, st(sql::INSERT_OUTBOX), [&outbox.0, &outbox.1]));
    }
    if !keys.is_empty() {
        sent.push(send(client, st(sql::UPSERT_KEYS), [&k_s, &k_e, &k_k, &k_x, &k_r]));
    }
    if !cancelled.0.is_empty() {
        sent.push(send(client, st(sql::DELETE_TIMERS), [&cancelled.0, &cancelled.1, &cancelled.2]));
    }
    if !t_s.is_empty() {
        sent.push(send(client, st(sql::UPSERT_TIMERS), [&t_s, &t_e, &t_n, &t_i, &t_d, &t_r]));
    }
    if announced {
        sent.push(send(client, st(sql::NOTIFY), [&channel, &payload]));
    }
    // Polled in order (at most 10 futures; `try_join_all` keeps the order
    // past 30 too), so sent in this order.
    futures_util::future::try_join_all(sent).await?;
    Ok(())
}

/// Sends `statement` with `params` down the pipeline.
fn send<'a, const N: usize>(
    client: &'a Client,
    statement: &'a Statement,
    params: [&'a (dyn ToSql + Sync); N],
) -> Sent<'a> {
    Box::pin(client.execute_raw(statement, params))
}

fn columns3<A: Copy, B: Copy, C: Copy>(rows: &[(A, B, C)]) -> (Vec<A>, Vec<B>, Vec<C>) {
    (rows.iter().map(|r| r.0).collect(), rows.iter().map(|r| r.1).collect(), rows.iter().map(|r| r.2).collect())
}

fn columns4<A: Copy, B: Copy, C: Copy, D: Copy>(rows: &[(A, B, C, D)]) -> (Vec<A>, Vec<B>, Vec<C>, Vec<D>) {
    let (a, b, c) = columns3(&rows.iter().map(|r| (r.0, r.1, r.2)).collect::<Vec<_>>());
    (a, b, c, rows.iter().map(|r| r.3).collect())
}

/// The writer's statements.
pub(super) mod sql {
    pub const ENSURE_HEADS: &str = "INSERT INTO entity_heads (service, entity, last_seq) \
        SELECT s, e, 0 FROM unnest($1::text[], $2::text[]) AS t(s, e) \
        ORDER BY s COLLATE \"C\", e COLLATE \"C\" ON CONFLICT DO NOTHING";
    pub const LOCK_HEADS: &str = "SELECT h.service, h.entity, h.last_seq FROM entity_heads h \
        JOIN unnest($1::text[], $2::text[]) AS t(s, e) ON h.service = t.s AND h.entity = t.e \
        ORDER BY h.service, h.entity FOR UPDATE OF h";
    pub const FIND_KEYS: &str = "SELECT k.service, k.entity, k.key FROM idempotency k \
        JOIN unnest($1::text[], $2::text[], $3::text[]) AS t(s, e, k) \
        ON k.service = t.s AND k.entity = t.e AND k.key = t.k WHERE k.expires_at_ms > $4";
    /// The stored settings of the timers the batch's firings fire, locked
    /// against a cancel until the batch commits.
    pub const LOCK_FIRED_TIMERS: &str = "SELECT t.service, t.entity, t.name, t.id FROM timers t \
        JOIN unnest($1::text[], $2::text[], $3::text[]) AS g(s, e, n) \
        ON t.service = g.s AND t.entity = g.e AND t.name = g.n \
        ORDER BY t.service, t.entity, t.name FOR SHARE OF t";
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
    /// Makes the rows the batch's CRDT replicas write where there are none:
    /// at revision 0, with no record, which reads take for no row.
    pub const ENSURE_CRDT: &str = "INSERT INTO crdt_replicas (service, entity, replica, revision, record) \
        SELECT s, e, r, 0, ''::bytea FROM unnest($1::text[], $2::text[], $3::text[]) AS t(s, e, r) \
        ORDER BY s COLLATE \"C\", e COLLATE \"C\", r COLLATE \"C\" ON CONFLICT DO NOTHING";
    /// Locks the rows the batch's CRDT replicas write, and reads their revisions.
    pub const LOCK_CRDT: &str = "SELECT c.service, c.entity, c.replica, c.revision FROM crdt_replicas c \
        JOIN unnest($1::text[], $2::text[], $3::text[]) AS t(s, e, r) \
        ON c.service = t.s AND c.entity = t.e AND c.replica = t.r \
        ORDER BY c.service, c.entity, c.replica FOR UPDATE OF c";
    /// Writes CRDT replicas' rows.
    pub const UPSERT_CRDT: &str = "INSERT INTO crdt_replicas (service, entity, replica, revision, record) \
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[]) \
        ON CONFLICT (service, entity, replica) DO UPDATE SET revision = EXCLUDED.revision, record = EXCLUDED.record";
    pub const NOTIFY: &str = "SELECT pg_notify($1, $2)";
    pub const MARK_BATCH: &str = "UPDATE writer_marks SET batch = $2 WHERE writer = $1";
    /// Waits for a transaction of the old connection still holding the row.
    pub const READ_MARK: &str = "SELECT batch FROM writer_marks WHERE writer = $1 FOR SHARE";
    pub const ADD_MARK: &str = "INSERT INTO writer_marks (writer, batch) VALUES ($1, 0) ON CONFLICT DO NOTHING";
    /// Takes the next ids from the outbox's counter as it inserts.
    pub const INSERT_OUTBOX: &str = "WITH taken AS (UPDATE counters SET value = value + cardinality($1::text[]) \
        WHERE name = 'outbox' RETURNING value) \
        INSERT INTO outbox (id, target, record) \
        SELECT taken.value - cardinality($1::text[]) + t.n, t.target, t.record \
        FROM taken, unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS t(target, record, n)";
    /// Sets timers, replacing those of the same owner and name.
    pub const UPSERT_TIMERS: &str = "INSERT INTO timers (service, entity, name, id, due_ms, record) \
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::bytea[]) \
        ON CONFLICT (service, entity, name) DO UPDATE SET id = EXCLUDED.id, due_ms = EXCLUDED.due_ms, \
        record = EXCLUDED.record";
    /// Cancels timers.
    pub const DELETE_TIMERS: &str = "DELETE FROM timers t USING unnest($1::text[], $2::text[], $3::text[]) \
        AS d(s, e, n) WHERE t.service = d.s AND t.entity = d.e AND t.name = d.n";
    pub const UPSERT_KEYS: &str = "INSERT INTO idempotency (service, entity, key, expires_at_ms, record) \
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[]) \
        ON CONFLICT (service, entity, key) DO UPDATE SET expires_at_ms = EXCLUDED.expires_at_ms, \
        record = EXCLUDED.record";
}
