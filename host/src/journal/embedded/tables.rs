//! The redb tables of the journal, schema version 6 (see `schema.rs`).
//! Every key starts with the service name, so one service's records can
//! never be read through another's keys.
//!
//! Keys are redb's own tuples, which sort as the reads need. Values are
//! either bytes a guest or user made (events, states, components), stored
//! as they are, or one of the host's records (`records.rs`), stored in one
//! encoding, postcard.

use redb::TableDefinition;

/// The journal's own facts: [`SCHEMA_VERSION_KEY`] → the schema version.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The `META` key of the schema version.
pub const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Committed events: (service, entity, seq) → `EventRecord`: the event as
/// the guest encoded it, the version that emitted it, a checksum. An
/// entity's last key is where its log stands (compaction deletes old
/// events, never the last one); nothing else records it, so a commit writes
/// one row per event and none per entity.
pub const EVENTS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("events");

/// The latest snapshot per entity: (service, entity) → `SnapshotRecord`.
pub const SNAPSHOTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("snapshots");

/// Every snapshot kept of the entities of services that retain only their
/// latest snapshots' history (`retain=snapshots:K`): (service, entity,
/// seq) → `SnapshotRecord`. The latest is in `SNAPSHOTS` too.
pub const SNAPSHOT_HISTORY: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("snapshot_history");

/// The history each service keeps: service → K of `retain=snapshots:K`
/// (no row: every event).
pub const RETENTION: TableDefinition<&str, u32> = TableDefinition::new("retention");

/// Deployed component bytes, once per digest: SHA-256 (lowercase hex) →
/// component.
pub const COMPONENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("component_bytes");

/// Deployed versions: (service, version) → `VersionRecord`.
pub const VERSIONS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("versions");

/// The last version number given to each service: service → number. It
/// stays when the service is deleted, so a number never names two
/// components.
pub const VERSION_HEADS: TableDefinition<&str, u32> = TableDefinition::new("version_heads");

/// Value entities' states: (service, entity) → `ValueRecord`: the state as
/// the guest encoded it, the version that wrote it, a checksum.
pub const VALUES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("values");

/// Each value entity's revision: how many commits have written it (no row:
/// none). A write must expect it ([`crate::journal::EntityWrite::Value`]).
pub const VALUE_REVISIONS: TableDefinition<(&str, &str), u64> = TableDefinition::new("value_revisions");

/// CRDT entities: (service, entity, replica) → (revision, `CrdtRecord`):
/// each replica's state (`journal/crdt.rs`). Schema version 6.
pub const CRDT_REPLICAS: TableDefinition<(&str, &str, &str), (u64, &[u8])> = TableDefinition::new("crdt_replicas");

/// Asynchronous side effects not yet delivered: id → `OutboxRecord`.
pub const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");

/// Idempotency records: (service, entity, key) → `IdempotencyRecordV2`.
pub const IDEMPOTENCY: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("idempotency");

/// Every event of a service in commit order: (service, position) →
/// `LogEntryRecord` naming the entity and seq. Subscribers read it to see
/// all of a service's events. A service's last key is its log's head, so
/// the log must never lose its last entry.
pub const SERVICE_LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("service_log");

/// Durable timers: (owner service, owner entity, name) → a `Timer` row
/// (`journal/timers.rs`). Schema version 3.
pub const TIMERS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("timers");

/// The timers by when they are due: (due ms, timer id) → (owner service,
/// owner entity, name). Schema version 3.
pub const TIMERS_DUE: TableDefinition<(u64, u64), (&str, &str, &str)> = TableDefinition::new("timers_due");

/// Counters: the last outbox id under [`OUTBOX_COUNTER`].
pub const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// The `COUNTERS` key of the last outbox id.
pub const OUTBOX_COUNTER: &str = "outbox";

/// Subscription offsets: (subscriber, source service) → the last
/// `SERVICE_LOG` position delivered.
pub const OFFSETS: TableDefinition<(&str, &str), u64> = TableDefinition::new("offsets");

/// Events subscribers could not take: (subscriber, source service,
/// `SERVICE_LOG` position) → `DeadLetter`.
pub const DEAD_LETTERS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("dead_letters");

/// Secrets the host keeps for itself: [`COMPILED_CACHE_KEY`] → the key of
/// the compiled-code cache's checksums.
pub const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");

/// The `KEYS` key of the compiled-code cache's key.
pub const COMPILED_CACHE_KEY: &str = "compiled_cache";

/// Whether an idempotency record expiring at `expires_at_ms` still holds
/// its key at `now_ms`: the one rule for replays, the writer and the sweep.
pub fn idempotency_live(expires_at_ms: u64, now_ms: u64) -> bool {
    expires_at_ms > now_ms
}
