//! Sets of byte strings: a grow-only set, and an observed-remove set in
//! which an add concurrent with a remove of the same element wins.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ReplicaId;
use crate::causal::DotStore;

/// A set elements are only ever added to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GSet {
    elements: BTreeSet<Vec<u8>>,
}

impl GSet {
    /// The elements, in byte order.
    pub fn elements(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.elements.iter()
    }

    /// Adds `elements`: answers the delta, those not there before.
    pub fn add(&mut self, elements: impl IntoIterator<Item = Vec<u8>>) -> GSet {
        let mut delta = GSet::default();
        for element in elements {
            if self.elements.insert(element.clone()) {
                delta.elements.insert(element);
            }
        }
        delta
    }

    /// The union.
    pub fn join(&mut self, other: &GSet) {
        self.elements.extend(other.elements.iter().cloned());
    }
}

/// A set whose elements are added and removed; an add concurrent with a
/// remove of the same element wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet {
    store: DotStore<()>,
}

/// What one command does to an [`OrSet`], applied in this order: clear,
/// then remove, then add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSetChange {
    /// Remove every element first.
    pub clear: bool,
    /// Then remove these.
    pub remove: Vec<Vec<u8>>,
    /// Then add these.
    pub add: Vec<Vec<u8>>,
}

impl OrSet {
    /// The elements, in byte order.
    pub fn elements(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.store.keys()
    }

    /// Whether `element` is in the set.
    pub fn contains(&self, element: &[u8]) -> bool {
        self.store.contains(element)
    }

    /// Applies `change` as `replica`: answers the delta.
    pub fn apply(&mut self, replica: &ReplicaId, change: &OrSetChange) -> OrSet {
        let mut delta = DotStore::default();
        if change.clear {
            delta.join(&self.store.clear());
        }
        for element in &change.remove {
            delta.join(&self.store.remove(element));
        }
        for element in &change.add {
            delta.join(&self.store.add(replica, element.clone(), ()));
        }
        OrSet { store: delta }
    }

    /// Joins `other` in: elements added where the other had not seen them
    /// stay, elements the other removed after seeing them go.
    pub fn join(&mut self, other: &OrSet) {
        self.store.join(&other.store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(clear: bool, remove: &[&str], add: &[&str]) -> OrSetChange {
        let bytes = |items: &[&str]| items.iter().map(|item| item.as_bytes().to_vec()).collect();
        OrSetChange { clear, remove: bytes(remove), add: bytes(add) }
    }

    fn elements(set: &OrSet) -> Vec<String> {
        set.elements().map(|e| String::from_utf8(e.clone()).unwrap()).collect()
    }

    #[test]
    fn a_change_clears_then_removes_then_adds() {
        let a = ReplicaId::from("a");
        let mut set = OrSet::default();
        set.apply(&a, &change(false, &[], &["x", "y", "z"]));
        let delta = set.apply(&a, &change(true, &["w"], &["y"]));
        assert_eq!(elements(&set), ["y"]);
        let mut other = OrSet::default();
        other.apply(&ReplicaId::from("b"), &change(false, &[], &["q"]));
        let mut seen = OrSet::default();
        seen.join(&set);
        seen.join(&delta);
        assert_eq!(elements(&seen), ["y"]);
        // A remove then an add of one element in one change: it stays.
        set.apply(&a, &change(false, &["y"], &["y"]));
        assert!(set.contains(b"y"));
    }

    #[test]
    fn grow_only_sets_unite() {
        let mut left = GSet::default();
        let delta = left.add([b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(left.add([b"a".to_vec()]), GSet::default(), "nothing new, nothing to send");
        let mut right = GSet::default();
        right.add([b"c".to_vec()]);
        right.join(&delta);
        assert_eq!(right.elements().count(), 3);
    }
}
