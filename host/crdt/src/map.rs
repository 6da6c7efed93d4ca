//! An observed-remove map: keys are an observed-remove set, each value a
//! CRDT of its own (any type but a map).
//!
//! An update writes the key's whole value as the updater has it, under a
//! new dot that supersedes the dots of the key it has seen; so a value is
//! the join of what the surviving dots wrote. An update concurrent with a
//! remove of its key survives, with the value as the updater had it.

use serde::{Deserialize, Serialize};

use crate::causal::DotStore;
use crate::{Change, ChangeError, Crdt, ReplicaId};

/// Keys of bytes, each with a CRDT value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrMap {
    store: DotStore<Crdt>,
}

/// What one command does to an [`OrMap`], applied in this order: clear,
/// then remove, then update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrMapChange {
    /// Remove every key first.
    pub clear: bool,
    /// Then remove these keys.
    pub remove: Vec<Vec<u8>>,
    /// Then change these keys' values (a key not there starts from the
    /// empty value of the change's type).
    pub update: Vec<(Vec<u8>, Change)>,
}

impl OrMap {
    /// The keys, in byte order.
    pub fn keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.store.keys()
    }

    /// The value of `key`: the join of what its surviving dots wrote. Of
    /// values of different types (only a guest that changed a key's type
    /// makes them), the one written under the greatest dot.
    pub fn get(&self, key: &[u8]) -> Option<Crdt> {
        let mut merged: Option<Crdt> = None;
        for value in self.store.payloads(key) {
            match &mut merged {
                None => merged = Some(value.clone()),
                Some(current) => {
                    if current.join(value).is_err() {
                        *current = value.clone();
                    }
                }
            }
        }
        merged
    }

    /// Applies `change` as `replica` at `now_ms`: answers the delta.
    pub fn apply(&mut self, replica: &ReplicaId, change: &OrMapChange, now_ms: u64) -> Result<OrMap, ChangeError> {
        for (_, value_change) in &change.update {
            if matches!(value_change, Change::OrMap(_)) {
                return Err(ChangeError::NestedMap);
            }
        }
        let mut delta = DotStore::default();
        if change.clear {
            delta.join(&self.store.clear());
        }
        for key in &change.remove {
            delta.join(&self.store.remove(key));
        }
        for (key, value_change) in &change.update {
            let mut value = self.get(key).unwrap_or_else(|| Crdt::empty_for(value_change));
            value.apply(replica, value_change, now_ms)?;
            delta.join(&self.store.add(replica, key.clone(), value));
        }
        Ok(OrMap { store: delta })
    }

    /// Joins `other` in.
    pub fn join(&mut self, other: &OrMap) {
        self.store.join(&other.store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    fn update(key: &str, change: Change) -> OrMapChange {
        OrMapChange { update: vec![(key.as_bytes().to_vec(), change)], ..OrMapChange::default() }
    }

    #[test]
    fn values_merge_and_an_update_beats_a_concurrent_remove() {
        let (a, b) = (ReplicaId::from("a"), ReplicaId::from("b"));
        let mut left = OrMap::default();
        let first = left.apply(&a, &update("votes", Change::Increment(2)), 0).unwrap();
        let mut right = OrMap::default();
        right.join(&first);
        let more = right.apply(&b, &update("votes", Change::Increment(3)), 0).unwrap();
        let again = left.apply(&a, &update("votes", Change::Increment(1)), 0).unwrap();
        left.join(&more);
        right.join(&again);
        assert_eq!(left.get(b"votes").map(|v| v.value(&a)), Some(Value::GCounter(6)));
        assert_eq!(left, right);

        // a removes the key while b increments it.
        let removed =
            left.apply(&a, &OrMapChange { remove: vec![b"votes".to_vec()], ..Default::default() }, 0).unwrap();
        let bumped = right.apply(&b, &update("votes", Change::Increment(10)), 0).unwrap();
        left.join(&bumped);
        right.join(&removed);
        assert_eq!(left, right);
        assert_eq!(left.get(b"votes").map(|v| v.value(&a)), Some(Value::GCounter(16)), "as b had it");
    }

    #[test]
    fn a_map_in_a_map_is_refused() {
        let nested = update("inner", Change::OrMap(OrMapChange::default()));
        assert_eq!(OrMap::default().apply(&ReplicaId::from("a"), &nested, 0), Err(ChangeError::NestedMap));
    }
}
