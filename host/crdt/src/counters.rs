//! Counters: a grow-only counter (each replica counts its own increments;
//! the value is their sum) and a positive-negative one (two of them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ReplicaId;

/// A counter that only grows: per replica, the sum of its increments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GCounter {
    counts: BTreeMap<ReplicaId, u64>,
}

impl GCounter {
    /// The sum of every replica's count.
    pub fn value(&self) -> u64 {
        self.counts.values().fold(0u64, |sum, count| sum.saturating_add(*count))
    }

    /// Adds `by` as `replica`: answers the delta, that replica's new count.
    pub fn increment(&mut self, replica: &ReplicaId, by: u64) -> GCounter {
        let count = self.counts.entry(replica.clone()).or_insert(0);
        *count = count.saturating_add(by);
        GCounter { counts: BTreeMap::from([(replica.clone(), *count)]) }
    }

    /// Keeps the higher count of each replica.
    pub fn join(&mut self, other: &GCounter) {
        for (replica, &count) in &other.counts {
            let mine = self.counts.entry(replica.clone()).or_insert(0);
            *mine = (*mine).max(count);
        }
    }
}

/// A counter that goes up and down: its increments and its decrements,
/// each a grow-only counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PNCounter {
    increments: GCounter,
    decrements: GCounter,
}

impl PNCounter {
    /// Increments less decrements.
    pub fn value(&self) -> i64 {
        let (up, down) = (i128::from(self.increments.value()), i128::from(self.decrements.value()));
        (up - down).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Changes the value by `by` as `replica`: answers the delta.
    pub fn change(&mut self, replica: &ReplicaId, by: i64) -> PNCounter {
        let mut delta = PNCounter::default();
        if by >= 0 {
            delta.increments = self.increments.increment(replica, by.unsigned_abs());
        } else {
            delta.decrements = self.decrements.increment(replica, by.unsigned_abs());
        }
        delta
    }

    /// Joins both halves.
    pub fn join(&mut self, other: &PNCounter) {
        self.increments.join(&other.increments);
        self.decrements.join(&other.decrements);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_per_replica() {
        let (a, b) = (ReplicaId::from("a"), ReplicaId::from("b"));
        let mut left = GCounter::default();
        let mut right = GCounter::default();
        let d1 = left.increment(&a, 2);
        let d2 = left.increment(&a, 3);
        let d3 = right.increment(&b, 4);
        right.join(&d2);
        right.join(&d1);
        right.join(&d1);
        left.join(&d3);
        assert_eq!((left.value(), right.value()), (9, 9));
        assert_eq!(left, right);

        let mut pn = PNCounter::default();
        pn.change(&a, 5);
        let down = pn.change(&b, -7);
        assert_eq!(pn.value(), -2);
        let mut other = PNCounter::default();
        other.join(&down);
        assert_eq!(other.value(), -7);
    }
}
