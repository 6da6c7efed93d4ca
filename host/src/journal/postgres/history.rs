//! Reads across a service's entities and along one entity's whole history
//! on PostgreSQL, and forks. A read that must see one point in time runs
//! in a repeatable-read transaction.

use super::pool::Conn;
use super::{
    AsOf, Event, Forked, HistoryStore, JournalError, NotKept, PgJournal, StoredSnapshot, db_int, event_of,
    latest_snapshot, read_events, seq_bounds, snapshot_of,
};
use crate::domain::ServiceKind;
use crate::journal::EntityHead;
use crate::journal::records;

/// The most bytes of events a fork copies from the oldest kept event; past
/// them, it copies from the latest snapshot as of the fork's event.
const MAX_FORK_BYTES: usize = 16 << 20;

/// The events of an entity with seqs in `from..=to`.
async fn read_range(
    conn: &mut Conn,
    service: &str,
    entity: &str,
    from: u64,
    to: u64,
) -> Result<Vec<Event>, JournalError> {
    if from > to {
        return Ok(Vec::new());
    }
    let statement = conn
        .statement(
            "SELECT seq, record FROM events WHERE service = $1 AND entity = $2 AND seq BETWEEN $3 AND $4 ORDER BY seq",
        )
        .await?;
    let rows = conn.client.query(&statement, &[&service, &entity, &db_int(from), &db_int(to)]).await?;
    rows.iter().map(|row| event_of(service, entity, row.get(0), row.get(1))).collect()
}

/// The latest kept snapshot of an entity in its history with a seq in `from..=to`.
async fn history_snapshot(
    conn: &mut Conn,
    service: &str,
    entity: &str,
    (from, to): (u64, u64),
    latest_first: bool,
) -> Result<Option<StoredSnapshot>, JournalError> {
    let sql = if latest_first {
        "SELECT seq, record FROM snapshot_history WHERE service = $1 AND entity = $2 AND seq BETWEEN $3 AND $4 \
         ORDER BY seq DESC LIMIT 1"
    } else {
        "SELECT seq, record FROM snapshot_history WHERE service = $1 AND entity = $2 AND seq BETWEEN $3 AND $4 \
         ORDER BY seq LIMIT 1"
    };
    let statement = conn.statement(sql).await?;
    let row = conn.client.query_opt(&statement, &[&service, &entity, &db_int(from), &db_int(to)]).await?;
    row.map(|row| snapshot_of(service, entity, row.get(0), row.get(1))).transpose()
}

async fn oldest_state(
    conn: &mut Conn,
    service: &str,
    entity: &str,
) -> Result<(Option<StoredSnapshot>, u64), JournalError> {
    let (first, _) = seq_bounds(conn, service, entity).await?;
    if first <= 1 {
        return Ok((None, first));
    }
    let snapshot = match history_snapshot(conn, service, entity, (first - 1, u64::MAX >> 1), false).await? {
        Some(snapshot) => Some(snapshot),
        None => latest_snapshot(conn, service, entity).await?.filter(|s| s.seq + 1 >= first),
    };
    Ok((snapshot, first))
}

async fn as_of(
    conn: &mut Conn,
    service: &str,
    entity: &str,
    at: Option<u64>,
) -> Result<Result<AsOf, NotKept>, JournalError> {
    let latest = latest_snapshot(conn, service, entity).await?;
    let (_, last) = seq_bounds(conn, service, entity).await?;
    let last_seq = last.max(latest.as_ref().map_or(0, |s| s.seq));
    let at = at.unwrap_or(last_seq);
    if at > last_seq {
        return Ok(Err(NotKept::Beyond { last_seq }));
    }
    let snapshot = match latest.filter(|s| s.seq <= at) {
        Some(latest) => Some(latest),
        None => history_snapshot(conn, service, entity, (0, at), true).await?,
    };
    let from = snapshot.as_ref().map_or(0, |s| s.seq);
    let folded = read_range(conn, service, entity, from + 1, at).await?;
    if from < at && folded.first().is_none_or(|e| e.seq != from + 1) {
        let oldest = oldest_state(conn, service, entity).await?.0.map_or(0, |s| s.seq);
        return Ok(Err(NotKept::Compacted { oldest }));
    }
    Ok(Ok(AsOf { snapshot, events: folded }))
}

/// Runs the reads of `op` in one repeatable-read snapshot of the database.
async fn at_one_time<T>(
    conn: &mut Conn,
    op: impl AsyncFnOnce(&mut Conn) -> Result<T, JournalError>,
) -> Result<T, JournalError> {
    conn.client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    let result = op(conn).await;
    let end = conn.client.batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" }).await;
    let value = result?;
    end?;
    Ok(value)
}

impl HistoryStore for PgJournal {
    fn entity_page(
        &self,
        service: &str,
        kind: ServiceKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntityHead>, JournalError> {
        // `entity > $2` with $2 = '' starts at the first id: no id is empty.
        let sql = match kind {
            ServiceKind::EventSourced => {
                "SELECT entity, max(seq) FROM events WHERE service = $1 AND entity > $2 \
                 GROUP BY entity ORDER BY entity LIMIT $3"
            }
            // A value copied in by `journal copy` has no head row: revision 0.
            ServiceKind::Value => {
                "SELECT v.entity, COALESCE(h.last_seq, 0) FROM entity_values v \
                 LEFT JOIN entity_heads h ON h.service = v.service AND h.entity = v.entity \
                 WHERE v.service = $1 AND v.entity > $2 ORDER BY v.entity LIMIT $3"
            }
            // A CRDT entity's head: how many commits all its replicas made.
            ServiceKind::Crdt => {
                "SELECT entity, sum(revision)::int8 FROM crdt_replicas \
                 WHERE service = $1 AND entity > $2 AND revision > 0 GROUP BY entity ORDER BY entity LIMIT $3"
            }
            ServiceKind::Action => return Ok(Vec::new()),
        };
        let (after, limit) = (after.unwrap_or(""), i64::try_from(limit).unwrap_or(i64::MAX));
        self.run(async |conn| {
            let rows = conn.client.query(sql, &[&service, &after, &limit]).await?;
            Ok(rows
                .iter()
                .map(|row| EntityHead { entity: row.get(0), last_seq: row.get::<_, i64>(1) as u64 })
                .collect())
        })
    }

    fn has_entities(&self, service: &str, kind: ServiceKind) -> Result<bool, JournalError> {
        let sql = match kind {
            ServiceKind::EventSourced => "SELECT EXISTS (SELECT 1 FROM events WHERE service = $1)",
            ServiceKind::Value => "SELECT EXISTS (SELECT 1 FROM entity_values WHERE service = $1)",
            ServiceKind::Crdt => "SELECT EXISTS (SELECT 1 FROM crdt_replicas WHERE service = $1 AND revision > 0)",
            ServiceKind::Action => return Ok(false),
        };
        self.run(async |conn| Ok(conn.client.query_one(sql, &[&service]).await?.get(0)))
    }

    fn as_of(&self, service: &str, entity: &str, at: Option<u64>) -> Result<Result<AsOf, NotKept>, JournalError> {
        self.run(async |conn| at_one_time(conn, async |conn| as_of(conn, service, entity, at).await).await)
    }

    fn oldest_state(&self, service: &str, entity: &str) -> Result<(Option<StoredSnapshot>, u64), JournalError> {
        self.run(async |conn| at_one_time(conn, async |conn| oldest_state(conn, service, entity).await).await)
    }

    fn fork(&self, service: &str, from: &str, to: &str, at: Option<u64>) -> Result<Forked, JournalError> {
        let keeps_history = self.retention.keeps_snapshot_history(service);
        let forked = self.run(async |conn| {
            let plan = at_one_time(conn, async |conn| {
                let base = match as_of(conn, service, from, at).await? {
                    Ok(base) => base,
                    Err(not_kept) => return Ok(Err(Forked::NotKept(not_kept))),
                };
                let at = base.seq();
                if at == 0 {
                    return Ok(Err(Forked::NotKept(NotKept::Beyond { last_seq: 0 })));
                }
                let (oldest, first) = oldest_state(conn, service, from).await?;
                let all = read_events(conn, service, from, first.max(1), usize::MAX, MAX_FORK_BYTES).await?;
                let complete = all.last().is_some_and(|e| e.seq >= at) || base.events.is_empty() && all.is_empty();
                let plan = if complete && all.iter().map(|e| e.payload.len()).sum::<usize>() <= MAX_FORK_BYTES {
                    let events: Vec<Event> = all.into_iter().filter(|e| e.seq <= at).collect();
                    (at, base.snapshot.or(oldest), events, None)
                } else {
                    let from_snapshot = base.snapshot.as_ref().map(|s| s.seq);
                    (at, base.snapshot, base.events, from_snapshot)
                };
                Ok(Ok(plan))
            })
            .await?;
            let (at, snapshot, events, from_snapshot) = match plan {
                Ok(plan) => plan,
                Err(refused) => return Ok(refused),
            };
            conn.client.batch_execute("BEGIN").await?;
            let written = write_fork(conn, service, to, &events, snapshot.as_ref(), at, keeps_history).await;
            match written {
                Ok(true) => {
                    conn.client.batch_execute("COMMIT").await?;
                    Ok(Forked::Done { last_seq: at, from_snapshot })
                }
                Ok(false) => {
                    conn.client.batch_execute("ROLLBACK").await?;
                    Ok(Forked::TargetExists)
                }
                Err(error) => {
                    let _ = conn.client.batch_execute("ROLLBACK").await;
                    Err(error)
                }
            }
        })?;
        if let Forked::Done { last_seq, .. } = forked {
            self.committed.committed(&service.into(), &to.into(), last_seq);
        }
        Ok(forked)
    }
}

/// Writes a fork's copies under `to`'s locked head; false when `to`
/// already has history.
async fn write_fork(
    conn: &mut Conn,
    service: &str,
    to: &str,
    events: &[Event],
    snapshot: Option<&StoredSnapshot>,
    last_seq: u64,
    keeps_history: bool,
) -> Result<bool, JournalError> {
    conn.client
        .execute(
            "INSERT INTO entity_heads (service, entity, last_seq) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
            &[&service, &to],
        )
        .await?;
    let head: i64 = conn
        .client
        .query_one("SELECT last_seq FROM entity_heads WHERE service = $1 AND entity = $2 FOR UPDATE", &[&service, &to])
        .await?
        .get(0);
    let has_snapshot = conn
        .client
        .query_opt("SELECT 1 FROM snapshots WHERE service = $1 AND entity = $2", &[&service, &to])
        .await?
        .is_some();
    if head > 0 || has_snapshot {
        return Ok(false);
    }
    for event in events {
        let record =
            records::encode(&records::EventRecord::new(service, to, event.seq, event.version, &event.payload))?;
        conn.client
            .execute(
                "INSERT INTO events (service, entity, seq, record) VALUES ($1, $2, $3, $4)",
                &[&service, &to, &db_int(event.seq), &record],
            )
            .await?;
    }
    if let Some(snapshot) = snapshot {
        let record = records::encode(&records::SnapshotRecord::new(
            service,
            to,
            snapshot.seq,
            snapshot.version,
            &snapshot.state,
        ))?;
        conn.client
            .execute(
                "INSERT INTO snapshots (service, entity, seq, record) VALUES ($1, $2, $3, $4)",
                &[&service, &to, &db_int(snapshot.seq), &record],
            )
            .await?;
        if keeps_history {
            conn.client
                .execute(
                    "INSERT INTO snapshot_history (service, entity, seq, record) VALUES ($1, $2, $3, $4)",
                    &[&service, &to, &db_int(snapshot.seq), &record],
                )
                .await?;
        }
    }
    conn.client
        .execute(
            "UPDATE entity_heads SET last_seq = $3 WHERE service = $1 AND entity = $2",
            &[&service, &to, &db_int(last_seq)],
        )
        .await?;
    Ok(true)
}
