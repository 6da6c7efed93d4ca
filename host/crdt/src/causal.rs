//! Causality for the observed-remove types: dots (one event of one
//! replica), the causal context of everything a state has seen, and the
//! dot store of an observed-remove set or map.
//!
//! A dot store maps each key to the dots that added it, each with a
//! payload (nothing for a set's element; the value written, for a map's
//! key). Joining two stores keeps a dot both have, and a dot one has that
//! the other has not seen; a dot one has seen and no longer has was
//! removed. An add concurrent with a remove of the same key therefore
//! survives: the remover had not seen the adder's dot.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ReplicaId;

/// One event of one replica: its `counter`-th.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The replica whose event it is.
    pub replica: ReplicaId,
    /// Its number among that replica's events, from 1.
    pub counter: u64,
}

/// The dots a state has seen: every dot up to `clock[replica]` of each
/// replica, and the `cloud` of those seen out of order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CausalContext {
    clock: BTreeMap<ReplicaId, u64>,
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    /// A context of exactly `dots`.
    pub fn of(dots: impl IntoIterator<Item = Dot>) -> Self {
        let mut context = Self::default();
        context.cloud.extend(dots);
        context.compact();
        context
    }

    /// Whether the context has seen `dot`.
    pub fn contains(&self, dot: &Dot) -> bool {
        self.clock.get(&dot.replica).is_some_and(|&seen| dot.counter <= seen) || self.cloud.contains(dot)
    }

    /// A new dot of `replica`, seen from now on.
    pub fn next(&mut self, replica: &ReplicaId) -> Dot {
        let counter = self.clock.get(replica).copied().unwrap_or(0) + 1;
        let dot = Dot { replica: replica.clone(), counter };
        self.clock.insert(replica.clone(), counter);
        self.compact();
        dot
    }

    /// Everything `other` has seen, seen too.
    pub fn join(&mut self, other: &CausalContext) {
        for (replica, &seen) in &other.clock {
            let mine = self.clock.entry(replica.clone()).or_insert(0);
            *mine = (*mine).max(seen);
        }
        self.cloud.extend(other.cloud.iter().cloned());
        self.compact();
    }

    /// Folds the cloud's dots that follow a replica's clock into it, and
    /// drops those it already covers.
    fn compact(&mut self) {
        let mut changed = true;
        while changed {
            changed = false;
            let cloud = std::mem::take(&mut self.cloud);
            for dot in cloud {
                let seen = self.clock.get(&dot.replica).copied().unwrap_or(0);
                if dot.counter == seen + 1 {
                    self.clock.insert(dot.replica.clone(), dot.counter);
                    changed = true;
                } else if dot.counter > seen {
                    self.cloud.insert(dot);
                }
            }
        }
    }
}

/// Keys, each with the dots that added it and what each wrote, and the
/// causal context of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DotStore<P> {
    entries: BTreeMap<Vec<u8>, BTreeMap<Dot, P>>,
    context: CausalContext,
}

impl<P> Default for DotStore<P> {
    fn default() -> Self {
        Self { entries: BTreeMap::new(), context: CausalContext::default() }
    }
}

impl<P: Clone + PartialEq> DotStore<P> {
    /// The keys present, in byte order.
    pub fn keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.entries.keys()
    }

    /// The payloads `key` was written with by its surviving dots.
    pub fn payloads(&self, key: &[u8]) -> impl Iterator<Item = &P> {
        self.entries.get(key).into_iter().flat_map(|dots| dots.values())
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.entries.contains_key(key)
    }

    /// Adds `key` with `payload` as `replica`, superseding every dot of it
    /// this store has: answers the delta that does the same elsewhere.
    pub fn add(&mut self, replica: &ReplicaId, key: Vec<u8>, payload: P) -> DotStore<P> {
        let dot = self.context.next(replica);
        let superseded: Vec<Dot> =
            self.entries.get(&key).map(|dots| dots.keys().cloned().collect()).unwrap_or_default();
        let entry = BTreeMap::from([(dot.clone(), payload)]);
        self.entries.insert(key.clone(), entry.clone());
        let context = CausalContext::of(superseded.into_iter().chain([dot]));
        DotStore { entries: BTreeMap::from([(key, entry)]), context }
    }

    /// Removes `key` (if present): answers the delta that removes the dots
    /// seen here elsewhere.
    pub fn remove(&mut self, key: &[u8]) -> DotStore<P> {
        let removed = self.entries.remove(key).map(|dots| dots.into_keys().collect::<Vec<_>>()).unwrap_or_default();
        DotStore { entries: BTreeMap::new(), context: CausalContext::of(removed) }
    }

    /// Removes every key: answers the delta that does the same elsewhere
    /// (to what this store has seen).
    pub fn clear(&mut self) -> DotStore<P> {
        let removed: Vec<Dot> =
            std::mem::take(&mut self.entries).into_values().flat_map(|dots| dots.into_keys()).collect();
        DotStore { entries: BTreeMap::new(), context: CausalContext::of(removed) }
    }

    /// Joins `other` in: a dot survives if both have it, or if one has it
    /// and the other has not seen it.
    pub fn join(&mut self, other: &DotStore<P>) {
        let keys: BTreeSet<Vec<u8>> = self.entries.keys().chain(other.entries.keys()).cloned().collect();
        for key in keys {
            let mine = self.entries.remove(&key).unwrap_or_default();
            let theirs = other.entries.get(&key);
            let mut kept = BTreeMap::new();
            for (dot, payload) in &mine {
                let they_have = theirs.is_some_and(|dots| dots.contains_key(dot));
                if they_have || !other.context.contains(dot) {
                    kept.insert(dot.clone(), payload.clone());
                }
            }
            for (dot, payload) in theirs.into_iter().flatten() {
                if !mine.contains_key(dot) && !self.context.contains(dot) {
                    kept.insert(dot.clone(), payload.clone());
                }
            }
            if !kept.is_empty() {
                self.entries.insert(key, kept);
            }
        }
        self.context.join(&other.context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(replica: &str, counter: u64) -> Dot {
        Dot { replica: replica.into(), counter }
    }

    #[test]
    fn a_context_compacts_what_follows_its_clock() {
        let context = CausalContext::of([dot("a", 2), dot("a", 1), dot("b", 3)]);
        assert!(context.contains(&dot("a", 1)) && context.contains(&dot("a", 2)));
        assert!(!context.contains(&dot("a", 3)) && !context.contains(&dot("b", 2)));
        assert!(context.contains(&dot("b", 3)));
        assert_eq!(context.clock.get("a"), Some(&2));
        assert_eq!(context.cloud.len(), 1, "b's third dot waits for its first two");
    }

    #[test]
    fn an_add_concurrent_with_a_remove_survives() {
        let (a, b) = (ReplicaId::from("a"), ReplicaId::from("b"));
        let mut left: DotStore<()> = DotStore::default();
        let added = left.add(&a, b"x".to_vec(), ());
        let mut right = DotStore::default();
        right.join(&added);
        // a removes x while b adds it again, neither seeing the other.
        let removed = left.remove(b"x");
        let readded = right.add(&b, b"x".to_vec(), ());
        left.join(&readded);
        right.join(&removed);
        assert!(left.contains(b"x") && right.contains(b"x"));
        assert_eq!(left, right);
    }
}
