//! The journal's schema version, checked when a journal opens.
//!
//! The version lives in the `meta` table. A journal written by a newer
//! wasmstate than this one is refused with a clear message, before anything
//! is written to it; an older one is migrated in one write transaction, so
//! a crash mid-migration leaves it as it was.
//!
//! - **1**: the layout before the `meta` table existed: no version row,
//!   outbox rows and snapshots as redb tuples, version metadata as JSON,
//!   idempotency outcomes in a hand-made tag format.
//! - **2**: every host record in one encoding (`records.rs`); events,
//!   snapshots and values with the version that wrote them and a checksum;
//!   idempotency records with the fingerprint of their command; outbox
//!   entries with their depth; version numbers that are never given twice
//!   (`version_heads`); dead letters; the compiled-code cache's key. Later
//!   builds of version 2 added two tables, which start empty where a
//!   journal lacks them: `retention` and `snapshot_history`.
//! - **3**: durable timers, `timers` and `timers_due`; a journal at 2 is
//!   migrated by creating them, empty.
//! - **4**: timer rows that may repeat on a cron schedule; a journal at 3
//!   has every timer row rewritten in the new layout.
//! - **5**: outbox entries that may be webhooks, and versions with the
//!   hosts their guests may reach over HTTP; a journal at 2, 3 or 4 has
//!   every outbox and version row rewritten in the new layout. (Version 1
//!   migrates straight to the current layout.)
//! - **6**: CRDT entities, `crdt_replicas`; a journal at 5 is migrated by
//!   creating it, empty.

use redb::{Database, ReadableTable, TableHandle, WriteTransaction};

use super::migrate_v1;
use super::tables::{
    COMPILED_CACHE_KEY, COMPONENTS, COUNTERS, CRDT_REPLICAS, DEAD_LETTERS, EVENTS, IDEMPOTENCY, KEYS, META, OFFSETS,
    OUTBOX, RETENTION, SCHEMA_VERSION_KEY, SERVICE_LOG, SNAPSHOT_HISTORY, SNAPSHOTS, TIMERS, TIMERS_DUE,
    VALUE_REVISIONS, VALUES, VERSION_HEADS, VERSIONS,
};
use super::{JournalError, SchemaStatus};
use crate::journal::records;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u64 = 6;

/// Brings `db` to [`SCHEMA_VERSION`], creating every table: checks the
/// stored version and migrates an older journal, all in one transaction.
pub(super) fn open(db: &Database) -> Result<SchemaStatus, JournalError> {
    let txn = db.begin_write()?;
    let opened = match stored_version(&txn)? {
        Some(SCHEMA_VERSION) => SchemaStatus::Current,
        Some(found) if found > SCHEMA_VERSION => {
            return Err(JournalError::SchemaTooNew { found, supported: SCHEMA_VERSION });
        }
        Some(1) => {
            migrate_v1::to_v2(&txn)?;
            SchemaStatus::Migrated { from: 1, to: SCHEMA_VERSION }
        }
        // Version 3 only adds tables, which `create_tables` makes.
        Some(from @ 2..=5) => {
            if from == 3 {
                upgrade_timer_rows(&txn)?;
            }
            if from <= 4 {
                upgrade_outbox_and_version_rows(&txn)?;
            }
            // 6 adds CRDT entities' table, which `create_tables` creates.
            SchemaStatus::Migrated { from, to: SCHEMA_VERSION }
        }
        Some(found) => return Err(JournalError::Corrupt(format!("unknown journal schema version {found}"))),
        None if txn.list_tables()?.next().is_none() => SchemaStatus::Created,
        // Tables but no version: the layout from before versions were kept.
        None => {
            migrate_v1::to_v2(&txn)?;
            SchemaStatus::Migrated { from: 1, to: SCHEMA_VERSION }
        }
    };
    create_tables(&txn)?;
    ensure_keys(&txn)?;
    txn.open_table(META)?.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
    txn.commit()?;
    Ok(opened)
}

/// Rewrites every timer row of schema 3 in the layout of 4.
fn upgrade_timer_rows(txn: &WriteTransaction) -> Result<(), JournalError> {
    let mut timers = txn.open_table(TIMERS)?;
    let mut rows = Vec::new();
    for row in timers.iter()? {
        let (key, record) = row?;
        let (service, entity, name) = key.value();
        let what = format!("timer {name:?} of {service}/{entity}");
        let upgraded = crate::journal::timers::upgrade_row(record.value(), &what)?;
        rows.push(((service.to_string(), entity.to_string(), name.to_string()), upgraded));
    }
    for ((service, entity, name), record) in rows {
        timers.insert((service.as_str(), entity.as_str(), name.as_str()), record.as_slice())?;
    }
    Ok(())
}

/// Rewrites every outbox and version row of schema 2 to 4 in the layout of 5.
fn upgrade_outbox_and_version_rows(txn: &WriteTransaction) -> Result<(), JournalError> {
    let mut outbox = txn.open_table(OUTBOX)?;
    let mut rows = Vec::new();
    for row in outbox.iter()? {
        let (id, record) = row?;
        let what = format!("outbox entry {}", id.value());
        rows.push((id.value(), records::upgrade_outbox_row(record.value(), &what)?));
    }
    for (id, record) in rows {
        outbox.insert(id, record.as_slice())?;
    }
    let mut versions = txn.open_table(VERSIONS)?;
    let mut rows = Vec::new();
    for row in versions.iter()? {
        let (key, record) = row?;
        let (service, version) = key.value();
        let what = format!("version {version} of {service}");
        rows.push(((service.to_string(), version), records::upgrade_version_row(record.value(), &what)?));
    }
    for ((service, version), record) in rows {
        versions.insert((service.as_str(), version), record.as_slice())?;
    }
    Ok(())
}

/// The stored schema version, if the `meta` table holds one.
fn stored_version(txn: &WriteTransaction) -> Result<Option<u64>, JournalError> {
    let has_meta = txn.list_tables()?.any(|table| table.name() == META.name());
    if !has_meta {
        return Ok(None);
    }
    Ok(txn.open_table(META)?.get(SCHEMA_VERSION_KEY)?.map(|v| v.value()))
}

/// Makes the host's secrets that the journal lacks: the compiled-code
/// cache's key, 32 random bytes, made once per journal.
fn ensure_keys(txn: &WriteTransaction) -> Result<(), JournalError> {
    let mut keys = txn.open_table(KEYS)?;
    if keys.get(COMPILED_CACHE_KEY)?.is_none() {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| {
            JournalError::Storage(redb::StorageError::Io(std::io::Error::other(format!("no random bytes: {e}"))).into())
        })?;
        keys.insert(COMPILED_CACHE_KEY, &key[..])?;
    }
    Ok(())
}

fn create_tables(txn: &WriteTransaction) -> Result<(), JournalError> {
    txn.open_table(EVENTS)?;
    txn.open_table(SNAPSHOTS)?;
    txn.open_table(SNAPSHOT_HISTORY)?;
    txn.open_table(RETENTION)?;
    txn.open_table(COMPONENTS)?;
    txn.open_table(VERSIONS)?;
    txn.open_table(VERSION_HEADS)?;
    txn.open_table(VALUES)?;
    txn.open_table(VALUE_REVISIONS)?;
    txn.open_table(CRDT_REPLICAS)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(SERVICE_LOG)?;
    txn.open_table(COUNTERS)?;
    txn.open_table(OFFSETS)?;
    txn.open_table(DEAD_LETTERS)?;
    txn.open_table(KEYS)?;
    txn.open_table(TIMERS)?;
    txn.open_table(TIMERS_DUE)?;
    Ok(())
}
