//! The redb tables of the journal. Every key starts with the service name, so
//! one service's records can never be read through another's keys.

use redb::TableDefinition;

use super::Invocation;

/// Committed events: (service, entity, seq) → event payload. An entity's
/// last key is where its log stands (events are never deleted); nothing else
/// records it, so a commit writes one row per event and none per entity.
pub const EVENTS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("events");

/// The latest snapshot per entity: (service, entity) → (seq, state).
pub const SNAPSHOTS: TableDefinition<(&str, &str), (u64, &[u8])> = TableDefinition::new("snapshots");

/// Deployed component bytes: (service, version) → component.
pub const COMPONENTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("components");

/// Deployed version metadata: (service, version) → JSON of `VersionMeta`.
pub const VERSIONS: TableDefinition<(&str, u32), &str> = TableDefinition::new("versions");

/// Value entities' states: (service, entity) → state.
pub const VALUES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("values");

/// Asynchronous side effects not yet delivered: id → [`OutboxRow`].
pub const OUTBOX: TableDefinition<u64, OutboxRow> = TableDefinition::new("outbox");

/// An undelivered side effect: (service, entity, command, payload, attempts
/// so far, next attempt at, in ms since the epoch).
pub type OutboxRow = (&'static str, &'static str, &'static str, &'static [u8], u32, u64);

/// The `OUTBOX` row of a side effect to deliver.
pub fn outbox_row(effect: &Invocation, attempts: u32, next_attempt_ms: u64) -> (&str, &str, &str, &[u8], u32, u64) {
    let Invocation { service, entity, command, payload } = effect;
    (service, entity, command, payload, attempts, next_attempt_ms)
}

/// Idempotency records: (service, entity, key) → (expires at in ms since the
/// epoch, what the command left to do encoded by `RecordedOutcome::encode`).
pub const IDEMPOTENCY: TableDefinition<(&str, &str, &str), (u64, &[u8])> = TableDefinition::new("idempotency");

/// Whether an `IDEMPOTENCY` record expiring at `expires_at_ms` still holds
/// its key at `now_ms`: the one rule for replays, the writer and the sweep.
pub fn idempotency_live(expires_at_ms: u64, now_ms: u64) -> bool {
    expires_at_ms > now_ms
}

/// Every event of a service in commit order: (service, position) → (entity, seq).
/// Subscribers read it to see all of a service's events. A service's last
/// key is its log's head, so the log must never lose its last entry.
pub const SERVICE_LOG: TableDefinition<(&str, u64), (&str, u64)> = TableDefinition::new("service_log");

/// Counters: the last outbox id under `outbox`.
pub const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Subscription offsets: (subscriber, source service) → the last `SERVICE_LOG`
/// position delivered.
pub const OFFSETS: TableDefinition<(&str, &str), u64> = TableDefinition::new("offsets");
