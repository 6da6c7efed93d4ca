//! The migration from schema 1 (the layout before the journal kept a
//! version) to schema 2: the tables whose rows change are read whole,
//! deleted, and written again in the new encoding, inside the caller's
//! transaction. Counters and offsets keep their layout; component bytes
//! move to a table keyed by their digest.
//!
//! Events and values keep their tables but are rewritten as records with a
//! checksum, a chunk at a time.
//!
//! This file is also the one place that still knows schema 1: its table
//! types, its JSON version metadata and its tag format for idempotency
//! outcomes.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::Deserialize;

use super::JournalError;
use super::records::{
    self, EventRecord, KeyRecord, LogEntryRecord, OutboxRecord, SnapshotRecord, ValueRecord, VersionRecord,
};
use super::tables::{COMPONENTS, EVENTS, IDEMPOTENCY, OUTBOX, SERVICE_LOG, SNAPSHOTS, VALUES, VERSION_HEADS, VERSIONS};
use crate::domain::{AsyncEffect, Call, FollowUp, Reply};

const SNAPSHOTS_V1: TableDefinition<(&str, &str), (u64, &[u8])> = TableDefinition::new("snapshots");
pub(super) const VERSIONS_V1: TableDefinition<(&str, u32), &str> = TableDefinition::new("versions");
const COMPONENTS_V1: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("components");
/// Schema 1's outbox row: (service, entity, command, payload, attempts, next attempt at).
type OutboxRowV1 = (&'static str, &'static str, &'static str, &'static [u8], u32, u64);
pub(super) const OUTBOX_V1: TableDefinition<u64, OutboxRowV1> = TableDefinition::new("outbox");
const IDEMPOTENCY_V1: TableDefinition<(&str, &str, &str), (u64, &[u8])> = TableDefinition::new("idempotency");
const SERVICE_LOG_V1: TableDefinition<(&str, u64), (&str, u64)> = TableDefinition::new("service_log");

/// Schema 1's version metadata, stored as JSON.
#[derive(Deserialize)]
struct VersionV1 {
    digest: String,
    kind: String,
    size: u64,
    deployed_at_ms: u64,
    #[serde(default)]
    subscriptions: Vec<String>,
}

/// Rewrites every schema-1 row of `txn`'s database in schema 2.
pub(super) fn to_v2(txn: &WriteTransaction) -> Result<(), JournalError> {
    type Snapshot = ((String, String), (u64, Vec<u8>));
    let snapshots: Vec<Snapshot> = read_all(txn, SNAPSHOTS_V1, |k, v| {
        let (service, entity) = k;
        let (seq, state) = v;
        Ok(((service.to_string(), entity.to_string()), (seq, state.to_vec())))
    })?;
    txn.delete_table(SNAPSHOTS_V1)?;
    let mut table = txn.open_table(SNAPSHOTS)?;
    for ((service, entity), (seq, state)) in &snapshots {
        let record = SnapshotRecord::new(service, entity, *seq, UNKNOWN_VERSION, state);
        table.insert((service.as_str(), entity.as_str()), records::encode(&record)?.as_slice())?;
    }
    drop(table);
    rewrite_events(txn)?;
    rewrite_values(txn)?;

    let versions: Vec<((String, u32), VersionV1)> = read_all(txn, VERSIONS_V1, |(service, version), json| {
        let meta = serde_json::from_str(json)
            .map_err(|e| JournalError::Corrupt(format!("version {version} of {service}: {e}")))?;
        Ok(((service.to_string(), version), meta))
    })?;
    txn.delete_table(VERSIONS_V1)?;
    let mut table = txn.open_table(VERSIONS)?;
    let mut heads: BTreeMap<&str, u32> = BTreeMap::new();
    for ((service, version), v1) in versions.iter() {
        let record = VersionRecord {
            digest: v1.digest.clone(),
            kind: v1.kind.clone(),
            size: v1.size,
            deployed_at_ms: v1.deployed_at_ms,
            subscriptions: v1.subscriptions.clone(),
            allow_http: Vec::new(),
        };
        table.insert((service.as_str(), *version), records::encode(&record)?.as_slice())?;
        let head = heads.entry(service).or_default();
        *head = (*head).max(*version);
    }
    drop(table);
    let mut table = txn.open_table(VERSION_HEADS)?;
    for (service, head) in heads {
        table.insert(service, head)?;
    }
    drop(table);

    // Component bytes move from (service, version) to their digest, once.
    let digests: BTreeMap<(&str, u32), &str> =
        versions.iter().map(|((service, version), v1)| ((service.as_str(), *version), v1.digest.as_str())).collect();
    let mut table = txn.open_table(COMPONENTS)?;
    {
        let old = txn.open_table(COMPONENTS_V1)?;
        for row in old.iter()? {
            let (key, bytes) = row?;
            if let Some(digest) = digests.get(&key.value())
                && table.get(*digest)?.is_none()
            {
                table.insert(*digest, bytes.value())?;
            }
        }
    }
    txn.delete_table(COMPONENTS_V1)?;
    drop(table);

    let outbox: Vec<(u64, OutboxRecord<AsyncEffect>)> = read_all(txn, OUTBOX_V1, |id, row| {
        let (service, entity, command, payload, attempts, next_attempt_ms) = row;
        let call =
            Call { service: service.into(), entity: entity.into(), command: command.into(), payload: payload.to_vec() };
        Ok((id, OutboxRecord { effect: AsyncEffect::Command(call), hops: 0, attempts, next_attempt_ms }))
    })?;
    txn.delete_table(OUTBOX_V1)?;
    let mut table = txn.open_table(OUTBOX)?;
    for (id, record) in &outbox {
        table.insert(*id, records::encode(record)?.as_slice())?;
    }
    drop(table);

    let keys: Vec<((String, String, String), KeyRecord<FollowUp>)> = read_all(txn, IDEMPOTENCY_V1, |k, v| {
        let (service, entity, key) = k;
        let (expires_at_ms, encoded) = v;
        let follow_up = decode_outcome(encoded)
            .ok_or_else(|| JournalError::Corrupt(format!("idempotency record {key:?} of {service}/{entity}")))?;
        Ok(((service.into(), entity.into(), key.into()), KeyRecord { expires_at_ms, fingerprint: None, follow_up }))
    })?;
    txn.delete_table(IDEMPOTENCY_V1)?;
    let mut table = txn.open_table(IDEMPOTENCY)?;
    for ((service, entity, key), record) in &keys {
        let record = KeyRecord { expires_at_ms: record.expires_at_ms, fingerprint: None, follow_up: &record.follow_up };
        table.insert((service.as_str(), entity.as_str(), key.as_str()), records::encode(&record)?.as_slice())?;
    }
    drop(table);

    let log: Vec<((String, u64), (String, u64))> =
        read_all(txn, SERVICE_LOG_V1, |(service, position), (entity, seq)| {
            Ok(((service.to_string(), position), (entity.to_string(), seq)))
        })?;
    txn.delete_table(SERVICE_LOG_V1)?;
    let mut table = txn.open_table(SERVICE_LOG)?;
    for ((service, position), (entity, seq)) in &log {
        table.insert(
            (service.as_str(), *position),
            records::encode(&LogEntryRecord { entity, seq: *seq })?.as_slice(),
        )?;
    }
    Ok(())
}

/// The version recorded with rows from schema 1, which kept none.
const UNKNOWN_VERSION: u32 = 0;

/// How many rows the in-place rewrites read at once, so a large table is
/// never held in memory whole.
const REWRITE_CHUNK: usize = 4096;

/// Rewrites every event row (schema 1: the payload alone) as an
/// `EventRecord`, a chunk at a time.
fn rewrite_events(txn: &WriteTransaction) -> Result<(), JournalError> {
    let mut table = txn.open_table(EVENTS)?;
    let mut after: Option<(String, String, u64)> = None;
    loop {
        let chunk: Vec<((String, String, u64), Vec<u8>)> = {
            let rows = match &after {
                Some((s, e, seq)) => table.range((s.as_str(), e.as_str(), *seq)..)?,
                None => table.range::<(&str, &str, u64)>(..)?,
            };
            let mut chunk = Vec::with_capacity(REWRITE_CHUNK);
            for row in rows {
                let (key, value) = row?;
                let (service, entity, seq) = key.value();
                if after.as_ref().is_some_and(|(s, e, q)| (s.as_str(), e.as_str(), *q) == (service, entity, seq)) {
                    continue;
                }
                chunk.push(((service.to_string(), entity.to_string(), seq), value.value().to_vec()));
                if chunk.len() == REWRITE_CHUNK {
                    break;
                }
            }
            chunk
        };
        let Some((last, _)) = chunk.last() else { return Ok(()) };
        after = Some(last.clone());
        for ((service, entity, seq), payload) in &chunk {
            let record = EventRecord::new(service, entity, *seq, UNKNOWN_VERSION, payload);
            table.insert((service.as_str(), entity.as_str(), *seq), records::encode(&record)?.as_slice())?;
        }
    }
}

/// Rewrites every value row (schema 1: the state alone) as a `ValueRecord`,
/// a chunk at a time.
fn rewrite_values(txn: &WriteTransaction) -> Result<(), JournalError> {
    let mut table = txn.open_table(VALUES)?;
    let mut after: Option<(String, String)> = None;
    loop {
        let chunk: Vec<((String, String), Vec<u8>)> = {
            let rows = match &after {
                Some((s, e)) => table.range((s.as_str(), e.as_str())..)?,
                None => table.range::<(&str, &str)>(..)?,
            };
            let mut chunk = Vec::with_capacity(REWRITE_CHUNK);
            for row in rows {
                let (key, value) = row?;
                let (service, entity) = key.value();
                if after.as_ref().is_some_and(|(s, e)| (s.as_str(), e.as_str()) == (service, entity)) {
                    continue;
                }
                chunk.push(((service.to_string(), entity.to_string()), value.value().to_vec()));
                if chunk.len() == REWRITE_CHUNK {
                    break;
                }
            }
            chunk
        };
        let Some((last, _)) = chunk.last() else { return Ok(()) };
        after = Some(last.clone());
        for ((service, entity), state) in &chunk {
            let record = ValueRecord::new(service, entity, UNKNOWN_VERSION, state);
            table.insert((service.as_str(), entity.as_str()), records::encode(&record)?.as_slice())?;
        }
    }
}

/// Reads every row of a schema-1 table (creating it, empty, if it is missing).
fn read_all<K, V, T>(
    txn: &WriteTransaction,
    table: TableDefinition<K, V>,
    mut row: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> Result<T, JournalError>,
) -> Result<Vec<T>, JournalError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let table = txn.open_table(table)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        out.push(row(key.value(), value.value())?);
    }
    Ok(out)
}

/// Schema 1's tags of an encoded idempotency outcome: a reply message or a
/// forward (with no synchronous side effects), or side effects followed by
/// either.
const TAG_MESSAGE: u8 = 0;
const TAG_FORWARD: u8 = 1;
const TAG_SIDE_EFFECTS: u8 = 2;

/// Decodes a schema-1 idempotency outcome: a tag byte and length-prefixed
/// fields; the reply's own bytes (a message, or a forward's payload) last,
/// unprefixed.
fn decode_outcome(mut bytes: &[u8]) -> Option<FollowUp> {
    let mut synchronous = Vec::new();
    if bytes.first() == Some(&TAG_SIDE_EFFECTS) {
        bytes = &bytes[1..];
        let count = take_len(&mut bytes)?;
        for _ in 0..count {
            let (service, entity, command) = take_target(&mut bytes)?;
            let len = take_len(&mut bytes)?;
            let payload = take(&mut bytes, len)?.to_vec();
            synchronous.push(Call { service, entity, command, payload });
        }
    }
    let (&tag, mut rest) = bytes.split_first()?;
    let reply = match tag {
        TAG_MESSAGE => Reply::Message(rest.to_vec()),
        TAG_FORWARD => {
            let (service, entity, command) = take_target(&mut rest)?;
            Reply::Forward(Call { service, entity, command, payload: rest.to_vec() })
        }
        _ => return None,
    };
    Some(FollowUp { synchronous, reply })
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let taken = bytes.get(..len)?;
    *bytes = &bytes[len..];
    Some(taken)
}

fn take_len(bytes: &mut &[u8]) -> Option<usize> {
    Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize)
}

fn take_target(bytes: &mut &[u8]) -> Option<(String, String, String)> {
    let mut field = || -> Option<String> {
        let len = take_len(bytes)?;
        Some(std::str::from_utf8(take(bytes, len)?).ok()?.to_string())
    };
    Some((field()?, field()?, field()?))
}

/// Writes a schema-1 journal as the host before schema versions wrote it:
/// a deployed version, a snapshot, an outbox entry, two idempotency records
/// and a service-log entry, for the migration's tests.
#[cfg(test)]
pub(super) fn write_v1_fixture(db: &redb::Database) -> Result<(), JournalError> {
    let txn = db.begin_write()?;
    {
        let json =
            r#"{"service":"cart","version":3,"digest":"ab12","kind":"event-sourced","size":9,"deployed_at_ms":5}"#;
        txn.open_table(VERSIONS_V1)?.insert(("cart", 3), json)?;
        let json = r#"{"service":"proj","version":1,"digest":"cd","kind":"action","size":4,"deployed_at_ms":6,"subscriptions":["cart"]}"#;
        txn.open_table(VERSIONS_V1)?.insert(("proj", 1), json)?;
        txn.open_table(COMPONENTS_V1)?.insert(("cart", 3), &b"component"[..])?;
        txn.open_table(super::tables::EVENTS)?.insert(("cart", "c1", 1), &b"{\"e\":1}"[..])?;
        txn.open_table(super::tables::VALUES)?.insert(("profile", "ada"), &b"{\"name\":\"Ada\"}"[..])?;
        txn.open_table(SNAPSHOTS_V1)?.insert(("cart", "c1"), (1, &b"{\"s\":1}"[..]))?;
        let row: (&str, &str, &str, &[u8], u32, u64) = ("counter", "orders", "Increase", b"{\"value\":1}", 2, 77);
        txn.open_table(OUTBOX_V1)?.insert(4, row)?;
        txn.open_table(super::tables::COUNTERS)?.insert(super::tables::OUTBOX_COUNTER, 4)?;
        let message = [&[TAG_MESSAGE][..], b"{\"ok\":1}"].concat();
        let mut forward = vec![TAG_SIDE_EFFECTS, 1, 0, 0, 0];
        for field in [&b"audit"[..], b"a1", b"Log", b"{}"] {
            forward.extend_from_slice(&(field.len() as u32).to_le_bytes());
            forward.extend_from_slice(field);
        }
        forward.push(TAG_FORWARD);
        for field in [&b"cart"[..], b"c1", b"AddItem"] {
            forward.extend_from_slice(&(field.len() as u32).to_le_bytes());
            forward.extend_from_slice(field);
        }
        forward.extend_from_slice(b"{\"q\":2}");
        let mut keys = txn.open_table(IDEMPOTENCY_V1)?;
        keys.insert(("cart", "c1", "k1"), (u64::MAX, message.as_slice()))?;
        keys.insert(("proj", "any", "k2"), (u64::MAX, forward.as_slice()))?;
        drop(keys);
        txn.open_table(SERVICE_LOG_V1)?.insert(("cart", 1), ("c1", 1))?;
        txn.open_table(super::tables::OFFSETS)?.insert(("proj", "cart"), 1)?;
    }
    txn.commit()?;
    Ok(())
}
