//! Writes a whole journal read from redb into this empty one, in one
//! transaction: the target side of `journal copy`.

use std::sync::mpsc;

use super::pool::Conn;
use super::{JournalError, PgJournal, db_int};
use crate::journal::OutboxEntry;
use crate::journal::copy::{Copied, CopyError, Rows};

/// The tables `journal copy` fills, by the name it reports them under.
const TABLES: [(&str, &str); 16] = [
    ("components", "components"),
    ("versions", "versions"),
    ("version_heads", "version_heads"),
    ("events", "events"),
    ("snapshots", "snapshots"),
    ("snapshot_history", "snapshot_history"),
    ("values", "entity_values"),
    ("crdt_replicas", "crdt_replicas"),
    ("outbox", "outbox"),
    ("idempotency", "idempotency"),
    ("service_log", "service_log"),
    ("offsets", "offsets"),
    ("dead_letters", "dead_letters"),
    ("retention", "retention"),
    ("keys", "keys"),
    ("timers", "timers"),
];

impl PgJournal {
    /// Writes every chunk `chunks` brings, in one transaction that commits
    /// only once the source says it was read whole (a `None`); refuses a
    /// journal that holds anything. Answers the rows per table it then holds.
    pub(in crate::journal) fn import(&self, chunks: mpsc::Receiver<Option<Rows>>) -> Result<Copied, CopyError> {
        self.run(async |conn| {
            // The source may take its time between two chunks.
            conn.client.batch_execute("BEGIN; SET LOCAL idle_in_transaction_session_timeout = 0").await?;
            let result = import_in_transaction(conn, &chunks).await;
            match result {
                Ok(Ok(())) => conn.client.batch_execute("COMMIT").await?,
                _ => conn.client.batch_execute("ROLLBACK").await?,
            }
            match result? {
                Ok(()) => Ok(Ok(count(conn).await?)),
                Err(refused) => Ok(Err(refused)),
            }
        })?
    }
}

async fn import_in_transaction(
    conn: &mut Conn,
    chunks: &mpsc::Receiver<Option<Rows>>,
) -> Result<Result<(), CopyError>, JournalError> {
    let held = count(conn).await?;
    let holding: Vec<String> =
        held.iter().filter(|(table, n)| **table != "keys" && **n > 0).map(|(t, n)| format!("{n} {t}")).collect();
    if !holding.is_empty() {
        return Ok(Err(CopyError::TargetNotEmpty(holding.join(", "))));
    }
    loop {
        match chunks.recv() {
            Ok(Some(rows)) => insert(conn, rows).await?,
            Ok(None) => break,
            Err(_) => return Err(JournalError::Database("the source journal could not be read whole".into())),
        }
    }
    // What the writer keeps beside the rows: where each entity's log and
    // each service's log stand.
    conn.client
        .batch_execute(
            "INSERT INTO entity_heads (service, entity, last_seq) \
               SELECT service, entity, max(seq) FROM \
                 (SELECT service, entity, seq FROM events UNION ALL SELECT service, entity, seq FROM snapshots) t \
               GROUP BY service, entity \
             ON CONFLICT (service, entity) DO UPDATE SET last_seq = EXCLUDED.last_seq; \
             INSERT INTO log_heads (service, head) SELECT service, max(position) FROM service_log GROUP BY service \
             ON CONFLICT (service) DO UPDATE SET head = EXCLUDED.head;",
        )
        .await?;
    Ok(Ok(()))
}

/// The rows each table holds.
async fn count(conn: &mut Conn) -> Result<Copied, JournalError> {
    let mut counted = Copied::new();
    for (name, table) in TABLES {
        let rows: i64 = conn.client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await?.get(0);
        counted.insert(name, rows as u64);
    }
    Ok(counted)
}

fn ints(values: impl Iterator<Item = u64>) -> Vec<i64> {
    values.map(db_int).collect()
}

async fn insert(conn: &mut Conn, rows: Rows) -> Result<(), JournalError> {
    let client = &conn.client;
    match rows {
        Rows::Components(rows) => {
            let (d, b): (Vec<&str>, Vec<&[u8]>) = rows.iter().map(|(d, b)| (d.as_str(), b.as_slice())).unzip();
            client.execute("INSERT INTO components SELECT * FROM unnest($1::text[], $2::bytea[])", &[&d, &b]).await?;
        }
        Rows::Versions(rows) => {
            let s: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let v: Vec<i32> = rows.iter().map(|r| r.1 as i32).collect();
            let r: Vec<&[u8]> = rows.iter().map(|r| r.2.as_slice()).collect();
            client
                .execute(
                    "INSERT INTO versions SELECT * FROM unnest($1::text[], $2::int4[], $3::bytea[])",
                    &[&s, &v, &r],
                )
                .await?;
        }
        Rows::VersionHeads(rows) => {
            let (s, v): (Vec<&str>, Vec<i32>) = rows.iter().map(|(s, v)| (s.as_str(), *v as i32)).unzip();
            client.execute("INSERT INTO version_heads SELECT * FROM unnest($1::text[], $2::int4[])", &[&s, &v]).await?;
        }
        Rows::Events(rows) | Rows::Snapshots(rows) | Rows::SnapshotHistory(rows) | Rows::DeadLetters(rows)
            if rows.is_empty() => {}
        Rows::Events(rows) => insert4(client, "events", &rows).await?,
        Rows::Snapshots(rows) => insert4(client, "snapshots", &rows).await?,
        Rows::SnapshotHistory(rows) => insert4(client, "snapshot_history", &rows).await?,
        Rows::DeadLetters(rows) => insert4(client, "dead_letters", &rows).await?,
        Rows::Values(rows) => {
            let s: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let e: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            let r: Vec<&[u8]> = rows.iter().map(|r| r.2.as_slice()).collect();
            client
                .execute(
                    "INSERT INTO entity_values SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])",
                    &[&s, &e, &r],
                )
                .await?;
        }
        Rows::CrdtReplicas(rows) => {
            let s: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let e: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            let p: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
            let v = ints(rows.iter().map(|r| r.3));
            let r: Vec<&[u8]> = rows.iter().map(|r| r.4.as_slice()).collect();
            client
                .execute(
                    "INSERT INTO crdt_replicas (service, entity, replica, revision, record) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[])",
                    &[&s, &e, &p, &v, &r],
                )
                .await?;
        }
        Rows::Outbox(rows) => {
            let i = ints(rows.iter().map(|r| r.0));
            let t: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            let r: Vec<&[u8]> = rows.iter().map(|r| r.2.as_slice()).collect();
            // Entries waiting for a retry stay waiting.
            let due = rows
                .iter()
                .map(|r| OutboxEntry::read(r.0, &r.2).map(|entry| db_int(entry.next_attempt_ms)))
                .collect::<Result<Vec<i64>, _>>()?;
            client
                .execute(
                    "INSERT INTO outbox (id, target, record, due_ms) \
                     SELECT * FROM unnest($1::int8[], $2::text[], $3::bytea[], $4::int8[])",
                    &[&i, &t, &r, &due],
                )
                .await?;
        }
        Rows::OutboxCounter(last) => {
            client.execute("UPDATE counters SET value = $1 WHERE name = 'outbox'", &[&db_int(last)]).await?;
        }
        Rows::Idempotency(rows) => {
            let s: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let e: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            let k: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
            let x = ints(rows.iter().map(|r| r.3));
            let r: Vec<&[u8]> = rows.iter().map(|r| r.4.as_slice()).collect();
            client
                .execute(
                    "INSERT INTO idempotency \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[])",
                    &[&s, &e, &k, &x, &r],
                )
                .await?;
        }
        Rows::ServiceLog(rows) => {
            let s: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let p = ints(rows.iter().map(|r| r.1));
            let e: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
            let q = ints(rows.iter().map(|r| r.3));
            client
                .execute(
                    "INSERT INTO service_log SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[])",
                    &[&s, &p, &e, &q],
                )
                .await?;
        }
        Rows::Offsets(rows) => {
            let s: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let o: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            let p = ints(rows.iter().map(|r| r.2));
            client
                .execute("INSERT INTO offsets SELECT * FROM unnest($1::text[], $2::text[], $3::int8[])", &[&s, &o, &p])
                .await?;
        }
        Rows::Retention(rows) => {
            let (s, k): (Vec<&str>, Vec<i32>) = rows.iter().map(|(s, k)| (s.as_str(), *k as i32)).unzip();
            client.execute("INSERT INTO retention SELECT * FROM unnest($1::text[], $2::int4[])", &[&s, &k]).await?;
        }
        Rows::Timers(rows) => {
            let s: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let e: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            let n: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
            let i: Vec<i64> = rows.iter().map(|r| r.3 as i64).collect();
            let d = ints(rows.iter().map(|r| r.4));
            let r: Vec<&[u8]> = rows.iter().map(|r| r.5.as_slice()).collect();
            client
                .execute(
                    "INSERT INTO timers SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], \
                     $5::int8[], $6::bytea[])",
                    &[&s, &e, &n, &i, &d, &r],
                )
                .await?;
        }
        Rows::Keys(rows) => {
            // The source's keys replace the new journal's own, so the
            // compiled-code cache made for the source stays good.
            let (n, k): (Vec<&str>, Vec<&[u8]>) = rows.iter().map(|(n, k)| (n.as_str(), k.as_slice())).unzip();
            client
                .execute(
                    "INSERT INTO keys SELECT * FROM unnest($1::text[], $2::bytea[]) \
                     ON CONFLICT (name) DO UPDATE SET key = EXCLUDED.key",
                    &[&n, &k],
                )
                .await?;
        }
    }
    Ok(())
}

/// Inserts (text, text, int8, bytea) rows into `table`'s columns in order.
async fn insert4(
    client: &tokio_postgres::Client,
    table: &str,
    rows: &[(String, String, u64, Vec<u8>)],
) -> Result<(), JournalError> {
    let a: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let b: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let c = ints(rows.iter().map(|r| r.2));
    let d: Vec<&[u8]> = rows.iter().map(|r| r.3.as_slice()).collect();
    let sql = format!("INSERT INTO {table} SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[])");
    client.execute(&sql, &[&a, &b, &c, &d]).await?;
    Ok(())
}
