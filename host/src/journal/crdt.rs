//! CRDT entities in the journal: one row per entity and replica (a host),
//! holding that replica's state — every change it made and every delta it
//! merged — as of its last commit, under a revision only that replica
//! moves. Hosts never write each other's rows, so their commits never
//! conflict; an entity's state is the join of its rows, in any order.
//! Delete is a tombstone row: one is enough to delete the entity for good.

use serde::{Deserialize, Serialize};
use wasmstate_crdt::{Crdt, ReplicaId};

use super::JournalError;
use super::records::{self, checksum};

/// One replica's row of a CRDT entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdtReplica {
    /// The replica (host) that wrote it.
    pub replica: ReplicaId,
    /// How many commits of that replica wrote it.
    pub revision: u64,
    /// The version of the service that last wrote it.
    pub version: u32,
    /// Its state; `None`: a tombstone, the entity is deleted.
    pub state: Option<Crdt>,
}

/// A CRDT entity as the journal holds it: every replica's row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredCrdt {
    /// The rows, one per replica that wrote the entity.
    pub replicas: Vec<CrdtReplica>,
}

/// What a stored CRDT entity comes to: the join of its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedCrdt {
    /// The joined state; `None` while no replica changed the entity.
    pub state: Option<Crdt>,
    /// Whether a replica deleted it.
    pub deleted: bool,
}

impl StoredCrdt {
    /// The join of every replica's state. Rows of different types (which no
    /// commit makes) are unreadable data.
    pub fn merged(&self, service: &str, entity: &str) -> Result<MergedCrdt, JournalError> {
        let mut merged = MergedCrdt::default();
        for row in &self.replicas {
            match (&row.state, &mut merged.state) {
                (None, _) => merged.deleted = true,
                (Some(state), None) => merged.state = Some(state.clone()),
                (Some(state), Some(into)) => into.join(state).map_err(|e| {
                    JournalError::Corrupt(format!("the replicas of {service}/{entity} do not merge: {e}"))
                })?,
            }
        }
        Ok(merged)
    }

    /// The revision of `replica`'s row (0: it has none), which its next
    /// write must expect.
    pub fn revision_of(&self, replica: &str) -> u64 {
        self.replicas.iter().find(|row| row.replica == replica).map_or(0, |row| row.revision)
    }
}

/// A `CRDT_REPLICAS` row: the replica's state (postcard of [`Crdt`]) or a
/// tombstone, the version that wrote it, and a checksum of both and of the
/// row's key. Its revision is kept beside it, as a column of its own.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CrdtRecord<'a> {
    pub version: u32,
    pub checksum: u32,
    pub deleted: bool,
    #[serde(with = "serde_bytes", borrow)]
    pub state: &'a [u8],
}

/// Encodes `replica`'s row of `service/entity`: `state`, or a tombstone.
pub(super) fn encode_row(
    service: &str,
    entity: &str,
    replica: &str,
    version: u32,
    state: Option<&Crdt>,
) -> Result<Vec<u8>, JournalError> {
    let bytes = match state {
        Some(state) => records::encode(state)?,
        None => Vec::new(),
    };
    let key: [&[u8]; 3] = [service.as_bytes(), entity.as_bytes(), replica.as_bytes()];
    let checksum = checksum(&key, version, &bytes);
    records::encode(&CrdtRecord { version, checksum, deleted: state.is_none(), state: &bytes })
}

/// Decodes `replica`'s row of `service/entity`, at `revision`, and checks it.
pub(super) fn decode_row(
    service: &str,
    entity: &str,
    replica: &str,
    revision: u64,
    bytes: &[u8],
) -> Result<CrdtReplica, JournalError> {
    let what = || format!("replica {replica} of {service}/{entity}");
    let record: CrdtRecord<'_> = records::decode_borrowed(bytes, &what())?;
    let key: [&[u8]; 3] = [service.as_bytes(), entity.as_bytes(), replica.as_bytes()];
    if checksum(&key, record.version, record.state) != record.checksum {
        return Err(JournalError::CorruptRecord(what()));
    }
    let state = match record.deleted {
        true => None,
        false => Some(records::decode::<Crdt>(record.state, &what())?),
    };
    Ok(CrdtReplica { replica: replica.to_string(), revision, version: record.version, state })
}

#[cfg(test)]
mod tests {
    use wasmstate_crdt::{Change, Crdt};

    use super::*;

    fn counter(replica: &str, by: u64) -> Crdt {
        let mut state = Crdt::empty_for(&Change::Increment(by));
        state.apply(&replica.to_string(), &Change::Increment(by), 0).unwrap();
        state
    }

    #[test]
    fn a_row_reads_back_and_a_changed_one_is_refused() {
        let state = counter("a", 3);
        let bytes = encode_row("s", "e", "a", 2, Some(&state)).unwrap();
        let row = decode_row("s", "e", "a", 7, &bytes).unwrap();
        assert_eq!(row, CrdtReplica { replica: "a".into(), revision: 7, version: 2, state: Some(state) });
        let tombstone = encode_row("s", "e", "a", 2, None).unwrap();
        assert_eq!(decode_row("s", "e", "a", 1, &tombstone).unwrap().state, None);
        // Under another key, the row does not match its checksum.
        assert!(matches!(decode_row("s", "e", "b", 7, &bytes), Err(JournalError::CorruptRecord(_))));
    }

    #[test]
    fn the_entity_is_the_join_of_its_rows_and_one_tombstone_deletes_it() {
        let row = |replica: &str, state| CrdtReplica { replica: replica.into(), revision: 1, version: 1, state };
        let mut stored =
            StoredCrdt { replicas: vec![row("a", Some(counter("a", 3))), row("b", Some(counter("b", 4)))] };
        let merged = stored.merged("s", "e").unwrap();
        assert_eq!(merged.state.unwrap().value(&"a".into()), wasmstate_crdt::Value::GCounter(7));
        assert!(!merged.deleted);
        assert_eq!((stored.revision_of("a"), stored.revision_of("c")), (1, 0));
        stored.replicas.push(row("c", None));
        assert!(stored.merged("s", "e").unwrap().deleted);
    }
}
