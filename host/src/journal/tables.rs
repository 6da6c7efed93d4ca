//! The redb tables of the journal. Every key starts with the service name, so
//! one service's records can never be read through another's keys.

use redb::TableDefinition;

/// Committed events: (service, entity, seq) → event payload.
pub const EVENTS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("events");

/// Per-entity log position: (service, entity) → (last seq, snapshot seq).
pub const ENTITIES: TableDefinition<(&str, &str), (u64, u64)> = TableDefinition::new("entities");

/// The latest snapshot per entity: (service, entity) → (seq, state).
pub const SNAPSHOTS: TableDefinition<(&str, &str), (u64, &[u8])> =
    TableDefinition::new("snapshots");

/// Deployed component bytes: (service, version) → component.
pub const COMPONENTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("components");

/// Deployed version metadata: (service, version) → JSON of `VersionMeta`.
pub const VERSIONS: TableDefinition<(&str, u32), &str> = TableDefinition::new("versions");
