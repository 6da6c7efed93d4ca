//! The journal's tables in PostgreSQL, and their schema version.
//!
//! Everything lives in the `wasmstate` schema of the database the URL
//! names. The host creates and migrates it itself, in one transaction
//! under an advisory lock, so hosts that start at once wait for each other
//! and exactly one of them creates the tables.
//!
//! Rows hold the same checked records as the embedded journal
//! (`records.rs`), plus the columns the queries select and order by. Text
//! columns use the "C" collation: entities sort by their bytes, as they do
//! in redb.
//!
//! - **1**: the first PostgreSQL layout.
//! - **2**: `hosts`, the heartbeats of the hosts sharing the database.
//! - **3**: `leases`, on the work one host at a time does (the outbox,
//!   each subscription), with their epochs; `writer_marks`, the last batch
//!   each writer committed, read when a connection died during a `COMMIT`;
//!   the outbox's `due_ms`, so a read of the due entries reads only them.
//! - **4**: `timers`, durable timers by owner and name, indexed by due time.
//! - **5**: timer rows that may repeat on a cron schedule; a journal at 4
//!   has every timer row rewritten in the new layout.
//! - **6**: outbox entries that may be webhooks, and versions with the
//!   hosts their guests may reach over HTTP; every outbox and version row
//!   of an older journal is rewritten in the new layout.
//! - **7**: `crdt_replicas`, CRDT entities' rows per replica.

use tokio_postgres::Client;

use super::JournalError;
use crate::journal::OutboxEntry;
use crate::journal::SchemaStatus;
use crate::journal::records::{upgrade_outbox_row, upgrade_version_row};
use crate::journal::timers::upgrade_row as upgrade_timer_row;

/// The schema version of the PostgreSQL journal this build reads and writes.
pub const PG_SCHEMA_VERSION: i64 = 7;

/// What every connection runs first. A host's transactions send their
/// statements back to back, so one idle for seconds belongs to a host
/// that stalled (paused, or cut off mid-transaction): PostgreSQL ends its
/// session, and the rows it locked are free for the other hosts again.
pub const SESSION_SETUP: &str = "SET search_path TO wasmstate; SET synchronous_commit TO on; \
     SET idle_in_transaction_session_timeout TO '3s'";

/// The key of the advisory lock that serializes schema changes across hosts.
const SCHEMA_LOCK: i64 = 0x7761_736d_7374_6174;

/// The tables of version 1.
const TABLES_V1: &str = r#"
CREATE TABLE keys (name text COLLATE "C" PRIMARY KEY, key bytea NOT NULL);
CREATE TABLE components (digest text COLLATE "C" PRIMARY KEY, bytes bytea NOT NULL);
CREATE TABLE versions (
    service text COLLATE "C" NOT NULL, version integer NOT NULL, record bytea NOT NULL,
    PRIMARY KEY (service, version));
CREATE TABLE version_heads (service text COLLATE "C" PRIMARY KEY, last integer NOT NULL);
CREATE TABLE entity_heads (
    service text COLLATE "C" NOT NULL, entity text COLLATE "C" NOT NULL, last_seq bigint NOT NULL,
    PRIMARY KEY (service, entity));
CREATE TABLE events (
    service text COLLATE "C" NOT NULL, entity text COLLATE "C" NOT NULL, seq bigint NOT NULL,
    record bytea NOT NULL, PRIMARY KEY (service, entity, seq));
CREATE TABLE snapshots (
    service text COLLATE "C" NOT NULL, entity text COLLATE "C" NOT NULL, seq bigint NOT NULL,
    record bytea NOT NULL, PRIMARY KEY (service, entity));
CREATE TABLE snapshot_history (
    service text COLLATE "C" NOT NULL, entity text COLLATE "C" NOT NULL, seq bigint NOT NULL,
    record bytea NOT NULL, PRIMARY KEY (service, entity, seq));
CREATE TABLE retention (service text COLLATE "C" PRIMARY KEY, k integer NOT NULL);
CREATE TABLE entity_values (
    service text COLLATE "C" NOT NULL, entity text COLLATE "C" NOT NULL, record bytea NOT NULL,
    PRIMARY KEY (service, entity));
CREATE TABLE outbox (id bigint PRIMARY KEY, target text COLLATE "C" NOT NULL, record bytea NOT NULL);
CREATE INDEX outbox_by_target ON outbox (target);
CREATE TABLE counters (name text COLLATE "C" PRIMARY KEY, value bigint NOT NULL);
INSERT INTO counters (name, value) VALUES ('outbox', 0);
CREATE TABLE idempotency (
    service text COLLATE "C" NOT NULL, entity text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL,
    expires_at_ms bigint NOT NULL, record bytea NOT NULL, PRIMARY KEY (service, entity, key));
CREATE INDEX idempotency_by_expiry ON idempotency (expires_at_ms);
CREATE TABLE service_log (
    service text COLLATE "C" NOT NULL, position bigint NOT NULL,
    entity text COLLATE "C" NOT NULL, seq bigint NOT NULL, PRIMARY KEY (service, position));
CREATE TABLE log_heads (service text COLLATE "C" PRIMARY KEY, head bigint NOT NULL);
CREATE TABLE offsets (
    subscriber text COLLATE "C" NOT NULL, source text COLLATE "C" NOT NULL, position bigint NOT NULL,
    PRIMARY KEY (subscriber, source));
CREATE TABLE dead_letters (
    subscriber text COLLATE "C" NOT NULL, source text COLLATE "C" NOT NULL, position bigint NOT NULL,
    record bytea NOT NULL, PRIMARY KEY (subscriber, source, position));
"#;

/// What version 2 adds to version 1.
const TABLES_V2: &str = r#"
CREATE TABLE hosts (id text COLLATE "C" PRIMARY KEY, url text NOT NULL, last_seen_ms bigint NOT NULL);
"#;

/// What version 3 adds to version 2.
const TABLES_V3: &str = r#"
CREATE TABLE leases (
    name text COLLATE "C" PRIMARY KEY, holder text COLLATE "C" NOT NULL, epoch bigint NOT NULL,
    expires_at_ms bigint NOT NULL);
CREATE TABLE writer_marks (writer text COLLATE "C" PRIMARY KEY, batch bigint NOT NULL);
ALTER TABLE outbox ADD COLUMN due_ms bigint NOT NULL DEFAULT 0;
CREATE INDEX outbox_due ON outbox (due_ms, id);
"#;

/// What version 4 adds to version 3.
const TABLES_V4: &str = r#"
CREATE TABLE timers (
    service text COLLATE "C" NOT NULL, entity text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL,
    id bigint NOT NULL, due_ms bigint NOT NULL, record bytea NOT NULL, PRIMARY KEY (service, entity, name));
CREATE INDEX timers_due ON timers (due_ms, id);
"#;

/// The table version 7 adds: each CRDT entity's row per replica, its
/// revision a column of its own.
const TABLES_V7: &str = r#"
CREATE TABLE crdt_replicas (
    service text COLLATE "C" NOT NULL, entity text COLLATE "C" NOT NULL, replica text COLLATE "C" NOT NULL,
    revision bigint NOT NULL, record bytea NOT NULL, PRIMARY KEY (service, entity, replica));
"#;

/// Brings the database to [`PG_SCHEMA_VERSION`]: creates the schema and
/// its tables on an empty database, refuses one written by a newer
/// wasmstate, all in one transaction.
pub(super) async fn open(client: &mut Client) -> Result<SchemaStatus, JournalError> {
    let txn = client.transaction().await?;
    // A migration may take its time between statements.
    txn.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0").await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await?;
    txn.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS wasmstate;
         CREATE TABLE IF NOT EXISTS wasmstate.meta (key text COLLATE \"C\" PRIMARY KEY, value bigint NOT NULL);",
    )
    .await?;
    let stored = txn.query_opt("SELECT value FROM wasmstate.meta WHERE key = 'schema_version'", &[]).await?;
    let status = match stored.map(|row| row.get::<_, i64>(0)) {
        None => {
            txn.batch_execute(TABLES_V1).await?;
            txn.batch_execute(TABLES_V2).await?;
            txn.batch_execute(TABLES_V3).await?;
            txn.batch_execute(TABLES_V4).await?;
            txn.batch_execute(TABLES_V7).await?;
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| JournalError::Database(format!("no random bytes: {e}")))?;
            txn.execute("INSERT INTO keys (name, key) VALUES ('compiled_cache', $1)", &[&&key[..]]).await?;
            txn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', $1)", &[&PG_SCHEMA_VERSION]).await?;
            SchemaStatus::Created
        }
        Some(PG_SCHEMA_VERSION) => SchemaStatus::Current,
        Some(from @ (1..=6)) => {
            if from < 6 {
                upgrade_outbox_and_version_rows(&txn).await?;
            }
            if from < 2 {
                txn.batch_execute(TABLES_V2).await?;
            }
            if from < 3 {
                txn.batch_execute(TABLES_V3).await?;
                // Entries waiting for a retry stay waiting.
                for row in txn.query("SELECT id, record FROM outbox", &[]).await? {
                    let entry = OutboxEntry::read(row.get::<_, i64>(0) as u64, row.get(1))?;
                    if entry.next_attempt_ms > 0 {
                        let due = i64::try_from(entry.next_attempt_ms).unwrap_or(i64::MAX);
                        txn.execute("UPDATE outbox SET due_ms = $2 WHERE id = $1", &[&row.get::<_, i64>(0), &due])
                            .await?;
                    }
                }
            }
            if from < 4 {
                txn.batch_execute(TABLES_V4).await?;
            } else if from == 4 {
                for row in txn.query("SELECT service, entity, name, record FROM timers", &[]).await? {
                    let (service, entity, name): (&str, &str, &str) = (row.get(0), row.get(1), row.get(2));
                    let what = format!("timer {name:?} of {service}/{entity}");
                    let record = upgrade_timer_row(row.get(3), &what)?;
                    txn.execute(
                        "UPDATE timers SET record = $4 WHERE service = $1 AND entity = $2 AND name = $3",
                        &[&service, &entity, &name, &record],
                    )
                    .await?;
                }
            }
            txn.batch_execute(TABLES_V7).await?;
            txn.execute("UPDATE meta SET value = $1 WHERE key = 'schema_version'", &[&PG_SCHEMA_VERSION]).await?;
            SchemaStatus::Migrated { from: from as u64, to: PG_SCHEMA_VERSION as u64 }
        }
        Some(found) if found > PG_SCHEMA_VERSION => {
            return Err(JournalError::SchemaTooNew { found: found as u64, supported: PG_SCHEMA_VERSION as u64 });
        }
        Some(found) => return Err(JournalError::Corrupt(format!("unknown journal schema version {found}"))),
    };
    txn.commit().await?;
    Ok(status)
}

/// Rewrites every outbox and version row of schema 1 to 5 in the layout of 6.
async fn upgrade_outbox_and_version_rows(txn: &tokio_postgres::Transaction<'_>) -> Result<(), JournalError> {
    for row in txn.query("SELECT id, record FROM outbox", &[]).await? {
        let id: i64 = row.get(0);
        let record = upgrade_outbox_row(row.get(1), &format!("outbox entry {id}"))?;
        txn.execute("UPDATE outbox SET record = $2 WHERE id = $1", &[&id, &record]).await?;
    }
    for row in txn.query("SELECT service, version, record FROM versions", &[]).await? {
        let (service, version): (&str, i32) = (row.get(0), row.get(1));
        let record = upgrade_version_row(row.get(2), &format!("version {version} of {service}"))?;
        txn.execute(
            "UPDATE versions SET record = $3 WHERE service = $1 AND version = $2",
            &[&service, &version, &record],
        )
        .await?;
    }
    Ok(())
}
