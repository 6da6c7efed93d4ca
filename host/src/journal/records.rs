//! The host's records as the journal stores them (redb schema version 6,
//! PostgreSQL 7; CRDT rows in `crdt.rs`).
//!
//! Every record is encoded with postcard: a serde format with a documented,
//! stable wire format (postcard 1.x), compact (varints, no field names), and
//! fast, so it costs nothing on the commit path. It does not describe
//! itself — a reader must know the layout — which is what the schema
//! version (`schema.rs`) is for: a change to any record below, or to the
//! domain types they hold, takes a new version and a migration. The tests
//! at the end pin the bytes, so such a change cannot pass unnoticed.
//!
//! Records that borrow on write and own on read are generic over the part
//! they hold, so both directions share one layout.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::JournalError;
use crate::domain::{AsyncEffect, Fingerprint, FollowUp, IdempotencyKey};
use crate::trace_context::TraceContext;

/// Encodes a record.
pub(super) fn encode<T: Serialize + ?Sized>(record: &T) -> Result<Vec<u8>, JournalError> {
    postcard::to_allocvec(record).map_err(|e| JournalError::Encode(e.to_string()))
}

/// The tag of a [`TraceContext`] kept after a record.
const TRACE_TAG: u8 = 1;

/// Encodes a record followed, when there is one, by the trace of the
/// command that wrote it: [`TRACE_TAG`], then the context.
///
/// The trace comes after the record, so a record without one is the same
/// bytes as before traces were kept, and a reader that does not know it
/// stops where the record ends (postcard ignores what follows): keeping
/// traces changes no stored layout, and needs no schema version.
pub(super) fn encode_traced<T: Serialize + ?Sized>(
    record: &T,
    trace: Option<&TraceContext>,
) -> Result<Vec<u8>, JournalError> {
    let mut bytes = encode(record)?;
    if let Some(trace) = trace {
        bytes.push(TRACE_TAG);
        bytes.extend(encode(trace)?);
    }
    Ok(bytes)
}

/// The trace kept after a record of type `T` in `bytes`, if any. Only an
/// observation: a trace that does not decode is no trace.
pub(super) fn trace_after<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<TraceContext> {
    let (_, rest) = postcard::take_from_bytes::<T>(bytes).ok()?;
    match rest.split_first() {
        Some((&TRACE_TAG, trace)) => postcard::from_bytes(trace).ok(),
        _ => None,
    }
}

/// Decodes a record, owning its data.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, JournalError> {
    postcard::from_bytes(bytes).map_err(|e| JournalError::Corrupt(format!("{what}: {e}")))
}

/// Decodes a record that borrows from `bytes`.
pub(super) fn decode_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, JournalError> {
    postcard::from_bytes(bytes).map_err(|e| JournalError::Corrupt(format!("{what}: {e}")))
}

/// The CRC-32 of a record's key and contents: a record changed, damaged
/// or moved under another key no longer matches it.
pub(super) fn checksum(key: &[&[u8]], version: u32, data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in key {
        hasher.update(&(part.len() as u32).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(&version.to_le_bytes());
    hasher.update(data);
    hasher.finalize()
}

/// Checks a record against its checksum; `what` names it in the error.
fn verified(
    expected: u32,
    key: &[&[u8]],
    version: u32,
    data: &[u8],
    what: impl FnOnce() -> String,
) -> Result<(), JournalError> {
    if checksum(key, version, data) == expected { Ok(()) } else { Err(JournalError::CorruptRecord(what())) }
}

/// An `EVENTS` row: the event as the guest encoded it, the version of the
/// service that emitted it, and the checksum of both and of the row's key.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct EventRecord<'a> {
    pub version: u32,
    pub checksum: u32,
    #[serde(with = "serde_bytes", borrow)]
    pub payload: &'a [u8],
}

impl<'a> EventRecord<'a> {
    /// The row of event `seq` of `service/entity`.
    pub fn new(service: &str, entity: &str, seq: u64, version: u32, payload: &'a [u8]) -> Self {
        let checksum = checksum(&[service.as_bytes(), entity.as_bytes(), &seq.to_le_bytes()], version, payload);
        Self { version, checksum, payload }
    }

    /// Decodes the row of event `seq` of `service/entity` and checks it.
    pub fn read(service: &str, entity: &str, seq: u64, bytes: &'a [u8]) -> Result<Self, JournalError> {
        let what = || format!("event {seq} of {service}/{entity}");
        let record: Self = decode_borrowed(bytes, &what())?;
        let key: [&[u8]; 3] = [service.as_bytes(), entity.as_bytes(), &seq.to_le_bytes()];
        verified(record.checksum, &key, record.version, record.payload, what)?;
        Ok(record)
    }
}

/// A `SNAPSHOTS` row: the state as of event `seq`, the version of the
/// service that folded it, and its checksum.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SnapshotRecord<'a> {
    pub seq: u64,
    pub version: u32,
    pub checksum: u32,
    #[serde(with = "serde_bytes", borrow)]
    pub state: &'a [u8],
}

impl<'a> SnapshotRecord<'a> {
    /// The snapshot row of `service/entity`.
    pub fn new(service: &str, entity: &str, seq: u64, version: u32, state: &'a [u8]) -> Self {
        let checksum = checksum(&[service.as_bytes(), entity.as_bytes(), &seq.to_le_bytes()], version, state);
        Self { seq, version, checksum, state }
    }

    /// Decodes the snapshot row of `service/entity` and checks it.
    pub fn read(service: &str, entity: &str, bytes: &'a [u8]) -> Result<Self, JournalError> {
        let what = || format!("the snapshot of {service}/{entity}");
        let record: Self = decode_borrowed(bytes, &what())?;
        let key: [&[u8]; 3] = [service.as_bytes(), entity.as_bytes(), &record.seq.to_le_bytes()];
        verified(record.checksum, &key, record.version, record.state, what)?;
        Ok(record)
    }
}

/// A `VALUES` row: a value entity's state as the guest encoded it, the
/// version of the service that wrote it, and its checksum.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ValueRecord<'a> {
    pub version: u32,
    pub checksum: u32,
    #[serde(with = "serde_bytes", borrow)]
    pub state: &'a [u8],
}

impl<'a> ValueRecord<'a> {
    /// The value row of `service/entity`.
    pub fn new(service: &str, entity: &str, version: u32, state: &'a [u8]) -> Self {
        let checksum = checksum(&[service.as_bytes(), entity.as_bytes()], version, state);
        Self { version, checksum, state }
    }

    /// Decodes the value row of `service/entity` and checks it.
    pub fn read(service: &str, entity: &str, bytes: &'a [u8]) -> Result<Self, JournalError> {
        let what = || format!("the value of {service}/{entity}");
        let record: Self = decode_borrowed(bytes, &what())?;
        verified(record.checksum, &[service.as_bytes(), entity.as_bytes()], record.version, record.state, what)?;
        Ok(record)
    }
}

/// A `VERSIONS` row: a deployed version's metadata (its service and number
/// are the row's key).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct VersionRecord {
    /// SHA-256 of the component bytes, lowercase hex.
    pub digest: String,
    /// The kind's name, e.g. `event-sourced`: a name, so the record does
    /// not depend on the order of an enum.
    pub kind: String,
    pub size: u64,
    pub deployed_at_ms: u64,
    pub subscriptions: Vec<String>,
    /// The hosts its guests may send HTTP requests to (schema 5 and 6).
    pub allow_http: Vec<String>,
}

/// A `VERSIONS` row of redb schema 4 or PostgreSQL 5 in the layout of
/// 5 and 6: with an empty allow-list after it.
pub(super) fn upgrade_version_row(bytes: &[u8], what: &str) -> Result<Vec<u8>, JournalError> {
    let mut upgraded = bytes.to_vec();
    upgraded.push(0);
    decode::<VersionRecord>(&upgraded, what)?;
    Ok(upgraded)
}

/// An `OUTBOX` row of redb schema 4 or PostgreSQL 5 (a command, then its
/// trace, if any) in the layout of 5 and 6: the command as the first kind
/// of [`AsyncEffect`].
pub(super) fn upgrade_outbox_row(bytes: &[u8], what: &str) -> Result<Vec<u8>, JournalError> {
    let mut upgraded = Vec::with_capacity(bytes.len() + 1);
    upgraded.push(0);
    upgraded.extend_from_slice(bytes);
    decode::<OutboxRecord<AsyncEffect>>(&upgraded, what)?;
    Ok(upgraded)
}

/// An `OUTBOX` row: a side effect to deliver and how its delivery went.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct OutboxRecord<E> {
    /// The side effect: a command or a webhook.
    pub effect: E,
    /// How many forwards and side effects deep its delivery runs.
    pub hops: u32,
    /// Delivery attempts that failed so far.
    pub attempts: u32,
    /// When the next attempt is due, in ms since the Unix epoch.
    pub next_attempt_ms: u64,
}

/// An `IDEMPOTENCY` row. `expires_at_ms` comes first so the sweep reads it
/// alone (see [`expiry`]).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct KeyRecord<F> {
    pub expires_at_ms: u64,
    /// `None` for records written before fingerprints were (schema 1).
    pub fingerprint: Option<Fingerprint>,
    pub follow_up: F,
}

/// When an encoded [`KeyRecord`] expires, reading nothing after it.
pub(super) fn expiry(bytes: &[u8]) -> Result<u64, JournalError> {
    postcard::take_from_bytes::<u64>(bytes)
        .map(|(expires_at_ms, _)| expires_at_ms)
        .map_err(|e| JournalError::Corrupt(format!("idempotency record: {e}")))
}

/// A `SERVICE_LOG` row: which entity's event sits at this position.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LogEntryRecord<'a> {
    #[serde(borrow)]
    pub entity: &'a str,
    pub seq: u64,
}

/// A `DEAD_LETTERS` row: an event a subscriber could not take, after its
/// last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The entity whose event it is.
    pub entity: String,
    /// The event's seq in that entity's log.
    pub seq: u64,
    /// How many deliveries were tried.
    pub attempts: u32,
    /// Why the last one failed.
    pub error: String,
    /// When it was given up on, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// An idempotency record, written with a command's effects and read back
/// when its key comes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The command's idempotency key.
    pub key: IdempotencyKey,
    /// When the record stops counting, in ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// What the command asked; `None` for a record from before
    /// fingerprints were kept, which any repeat matches.
    pub fingerprint: Option<Fingerprint>,
    /// What the command left to do.
    pub follow_up: FollowUp,
}

/// An outbox entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its id, in the order entries were committed.
    pub id: u64,
    /// What to deliver: a command or a webhook.
    pub effect: AsyncEffect,
    /// How many forwards and side effects deep its delivery runs: one more
    /// than the command that asked for it.
    pub hops: u32,
    /// Delivery attempts that failed so far.
    pub attempts: u32,
    /// When the next attempt is due, in ms since the Unix epoch.
    pub next_attempt_ms: u64,
    /// The span of the command that asked for it, when its trace is sampled.
    pub trace: Option<TraceContext>,
}

impl OutboxEntry {
    /// Decodes the outbox row stored under `id`.
    pub(super) fn read(id: u64, bytes: &[u8]) -> Result<Self, JournalError> {
        let record: OutboxRecord<AsyncEffect> = decode(bytes, "outbox entry")?;
        let OutboxRecord { effect, hops, attempts, next_attempt_ms } = record;
        let trace = trace_after::<OutboxRecord<AsyncEffect>>(bytes);
        Ok(Self { id, effect, hops, attempts, next_attempt_ms, trace })
    }

    /// The row of the entry as it stands (its attempts so far), with its trace.
    pub(super) fn encode(&self) -> Result<Vec<u8>, JournalError> {
        let record = OutboxRecord {
            effect: &self.effect,
            hops: self.hops,
            attempts: self.attempts,
            next_attempt_ms: self.next_attempt_ms,
        };
        encode_traced(&record, self.trace.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Call, Reply, Webhook};

    fn call(payload: &[u8]) -> Call {
        Call { service: "s".into(), entity: "e".into(), command: "C".into(), payload: payload.to_vec() }
    }

    /// The stored layout of every record, byte for byte: a change here is a
    /// change of the schema, which needs a new version and a migration.
    #[test]
    fn the_stored_layout_is_pinned() {
        let snapshot = SnapshotRecord { seq: 300, version: 2, checksum: 5, state: b"st" };
        assert_eq!(encode(&snapshot).unwrap(), [0xac, 0x02, 2, 5, 2, b's', b't']);
        let event = EventRecord { version: 3, checksum: 0x81, payload: b"{}" };
        assert_eq!(encode(&event).unwrap(), [3, 0x81, 0x01, 2, b'{', b'}']);
        let value = ValueRecord { version: 1, checksum: 9, state: b"v" };
        assert_eq!(encode(&value).unwrap(), [1, 9, 1, b'v']);
        let dead = DeadLetter { entity: "e".into(), seq: 4, attempts: 10, error: "no".into(), at_ms: 6 };
        assert_eq!(encode(&dead).unwrap(), b"\x01e\x04\x0a\x02no\x06");

        let version = VersionRecord {
            digest: "ab".into(),
            kind: "value".into(),
            size: 5,
            deployed_at_ms: 1,
            subscriptions: vec!["x".into()],
            allow_http: vec!["h".into()],
        };
        assert_eq!(encode(&version).unwrap(), b"\x02ab\x05value\x05\x01\x01\x01x\x01\x01h");

        let command = AsyncEffect::Command(call(b"{}"));
        let outbox = OutboxRecord { effect: &command, hops: 1, attempts: 2, next_attempt_ms: 3 };
        assert_eq!(encode(&outbox).unwrap(), b"\x00\x01s\x01e\x01C\x02{}\x01\x02\x03");
        let webhook = AsyncEffect::Webhook(Webhook {
            service: "s".into(),
            version: 2,
            url: "u".into(),
            method: "M".into(),
            headers: vec![("k".into(), "v".into())],
            content_type: "t".into(),
            body: b"b".to_vec(),
        });
        let outbox = OutboxRecord { effect: &webhook, hops: 1, attempts: 2, next_attempt_ms: 3 };
        assert_eq!(encode(&outbox).unwrap(), b"\x01\x01s\x02\x01u\x01M\x01\x01k\x01v\x01t\x01b\x01\x02\x03");

        let follow_up = FollowUp { synchronous: vec![call(b"p")], reply: Reply::Forward(call(b"q")) };
        let key = KeyRecord { expires_at_ms: 7, fingerprint: None, follow_up: &follow_up };
        assert_eq!(encode(&key).unwrap(), b"\x07\x00\x01\x01s\x01e\x01C\x01p\x01\x01s\x01e\x01C\x01q");
        let message = FollowUp { synchronous: vec![], reply: Reply::Message(b"hi".to_vec()) };
        let key = KeyRecord { expires_at_ms: 7, fingerprint: Some(Fingerprint::of("C", b"")), follow_up: &message };
        let bytes = encode(&key).unwrap();
        assert_eq!((&bytes[..2], &bytes[18..]), (&b"\x07\x01"[..], &b"\x00\x00\x02hi"[..]));

        let entry = LogEntryRecord { entity: "cart-1", seq: 2 };
        assert_eq!(encode(&entry).unwrap(), b"\x06cart-1\x02");
    }

    /// A trace follows a record: without one the bytes are the record's
    /// alone, and a reader of the record alone reads it as before.
    #[test]
    fn a_trace_follows_the_record_it_belongs_to() {
        let trace = TraceContext { trace_id: [7; 16], span_id: [9; 8], parent_span_id: Some([3; 8]), sampled: true };
        let event = EventRecord { version: 3, checksum: 0x81, payload: b"{}" };
        assert_eq!(encode_traced(&event, None).unwrap(), encode(&event).unwrap());
        let traced = encode_traced(&event, Some(&trace)).unwrap();
        let mut pinned = encode(&event).unwrap();
        pinned.push(1);
        pinned.extend([7; 16]);
        pinned.extend([9; 8]);
        pinned.push(1);
        pinned.extend([3; 8]);
        pinned.push(1);
        assert_eq!(traced, pinned);
        assert_eq!(trace_after::<EventRecord<'_>>(&traced), Some(trace));
        assert_eq!(trace_after::<EventRecord<'_>>(&encode(&event).unwrap()), None);
        let back: EventRecord<'_> = decode_borrowed(&traced, "test").unwrap();
        assert_eq!(back.payload, b"{}");

        let entry = OutboxEntry {
            id: 4,
            effect: AsyncEffect::Command(call(b"p")),
            hops: 1,
            attempts: 2,
            next_attempt_ms: 3,
            trace: Some(trace),
        };
        let bytes = entry.encode().unwrap();
        assert_eq!(OutboxEntry::read(4, &bytes).unwrap(), entry);
        let untraced = OutboxEntry { trace: None, ..entry };
        assert_eq!(OutboxEntry::read(4, &untraced.encode().unwrap()).unwrap(), untraced);
        // A damaged trace is no trace; the record still reads.
        let mut damaged = bytes.clone();
        damaged.truncate(bytes.len() - 3);
        assert_eq!(OutboxEntry::read(4, &damaged).unwrap().trace, None);
    }

    /// Rows of the layout before webhooks and allow-lists read, upgraded,
    /// as what they held.
    #[test]
    fn rows_from_before_webhooks_are_upgraded() {
        let trace = TraceContext { trace_id: [7; 16], span_id: [9; 8], parent_span_id: None, sampled: true };
        #[derive(Serialize)]
        struct OldOutbox<'a> {
            call: &'a Call,
            hops: u32,
            attempts: u32,
            next_attempt_ms: u64,
        }
        let old =
            encode_traced(&OldOutbox { call: &call(b"p"), hops: 1, attempts: 2, next_attempt_ms: 3 }, Some(&trace))
                .unwrap();
        let entry = OutboxEntry::read(9, &upgrade_outbox_row(&old, "test").unwrap()).unwrap();
        let expected = OutboxEntry {
            id: 9,
            effect: AsyncEffect::Command(call(b"p")),
            hops: 1,
            attempts: 2,
            next_attempt_ms: 3,
            trace: Some(trace),
        };
        assert_eq!(entry, expected);

        let old_version = b"\x02ab\x05value\x05\x01\x01\x01x";
        let upgraded = upgrade_version_row(old_version, "test").unwrap();
        let version: VersionRecord = decode(&upgraded, "test").unwrap();
        assert_eq!((version.subscriptions, version.allow_http), (vec!["x".to_string()], Vec::<String>::new()));
        assert!(upgrade_version_row(b"\x09ab", "test").is_err());
    }

    #[test]
    fn records_round_trip() {
        let follow_up = FollowUp { synchronous: vec![call(&[0, 255]), call(b"")], reply: Reply::Message(vec![1; 300]) };
        let bytes = encode(&KeyRecord {
            expires_at_ms: u64::MAX,
            fingerprint: Some(Fingerprint::of("x", b"y")),
            follow_up: &follow_up,
        })
        .unwrap();
        let back: KeyRecord<FollowUp> = decode(&bytes, "test").unwrap();
        assert_eq!((back.expires_at_ms, back.follow_up), (u64::MAX, follow_up));
        assert_eq!(expiry(&bytes).unwrap(), u64::MAX);

        let bytes = encode(&LogEntryRecord { entity: "ü/..", seq: 9 }).unwrap();
        let back: LogEntryRecord<'_> = decode_borrowed(&bytes, "test").unwrap();
        assert_eq!((back.entity, back.seq), ("ü/..", 9));

        assert!(
            matches!(decode::<VersionRecord>(b"\x09ab", "version"), Err(JournalError::Corrupt(m)) if m.starts_with("version"))
        );
        assert!(expiry(&[]).is_err());

        // A checked record read under its own key passes; changed, or read
        // under another key, it does not.
        let bytes = encode(&EventRecord::new("s", "e", 7, 2, b"payload")).unwrap();
        assert_eq!(EventRecord::read("s", "e", 7, &bytes).unwrap().payload, b"payload");
        assert!(
            matches!(EventRecord::read("s", "e", 8, &bytes), Err(JournalError::CorruptRecord(m)) if m == "event 8 of s/e")
        );
        assert!(EventRecord::read("s", "f", 7, &bytes).is_err());
        let mut edited = bytes.clone();
        *edited.last_mut().unwrap() ^= 1;
        assert!(EventRecord::read("s", "e", 7, &edited).is_err());
        let bytes = encode(&SnapshotRecord::new("s", "e", 3, 1, b"state")).unwrap();
        assert_eq!(SnapshotRecord::read("s", "e", &bytes).unwrap().seq, 3);
        assert!(SnapshotRecord::read("t", "e", &bytes).is_err());
        let bytes = encode(&ValueRecord::new("s", "e", 1, b"v")).unwrap();
        assert_eq!(ValueRecord::read("s", "e", &bytes).unwrap().state, b"v");
        assert!(ValueRecord::read("s", "x", &bytes).is_err());
    }
}
