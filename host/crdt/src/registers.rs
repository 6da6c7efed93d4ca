//! One value each: a last-writer-wins register, a flag that stays on once
//! enabled, and a vote of each replica.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ReplicaId;

/// How a write to a register is ordered against the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clock {
    /// The write's time: the latest write wins (and a later write by the
    /// same replica always follows the one before).
    Default,
    /// The reverse of its time: the first write wins.
    Reverse,
    /// This value, the caller's own clock: the highest wins.
    Custom(i64),
}

/// A value; of two concurrent writes the one with the higher clock wins,
/// ties going to the higher replica id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwRegister {
    value: Option<Vec<u8>>,
    clock: i64,
    replica: ReplicaId,
}

impl LwwRegister {
    /// The value, if one was ever written.
    pub fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }

    /// Writes `value` as `replica` at `now_ms`, ordered by `clock`:
    /// answers the delta (the register as written).
    pub fn set(&mut self, replica: &ReplicaId, value: Vec<u8>, clock: Clock, now_ms: u64) -> LwwRegister {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let clock = match (clock, self.value.is_some()) {
            (Clock::Default, true) => now.max(self.clock.saturating_add(1)),
            (Clock::Default, false) => now,
            (Clock::Reverse, true) => (-now).min(self.clock.saturating_sub(1)),
            (Clock::Reverse, false) => -now,
            (Clock::Custom(clock), _) => clock,
        };
        let written = LwwRegister { value: Some(value), clock, replica: replica.clone() };
        self.join(&written);
        written
    }

    /// Keeps the write with the higher (clock, replica, value).
    pub fn join(&mut self, other: &LwwRegister) {
        let rank = |r: &LwwRegister| (r.value.is_some(), r.clock, r.replica.clone(), r.value.clone());
        if rank(other) > rank(self) {
            *self = other.clone();
        }
    }
}

/// A flag that, once enabled anywhere, stays enabled everywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    enabled: bool,
}

impl Flag {
    /// Whether it is enabled.
    pub fn value(&self) -> bool {
        self.enabled
    }

    /// Enables it: answers the delta.
    pub fn enable(&mut self) -> Flag {
        self.enabled = true;
        Flag { enabled: true }
    }

    /// Enabled if either is.
    pub fn join(&mut self, other: &Flag) {
        self.enabled |= other.enabled;
    }
}

/// Each replica's vote: yes or no, the latest of its own counting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Per replica: how many times it voted, and its latest vote.
    votes: BTreeMap<ReplicaId, (u64, bool)>,
}

impl Vote {
    /// `replica`'s vote (no, if it never voted), the yes votes and the voters.
    pub fn value(&self, replica: &ReplicaId) -> (bool, u32, u32) {
        let own = self.votes.get(replica).is_some_and(|(_, vote)| *vote);
        let yes = self.votes.values().filter(|(_, vote)| *vote).count();
        (own, yes as u32, self.votes.len() as u32)
    }

    /// Votes `vote` as `replica`: answers the delta.
    pub fn vote(&mut self, replica: &ReplicaId, vote: bool) -> Vote {
        let entry = self.votes.entry(replica.clone()).or_insert((0, false));
        *entry = (entry.0 + 1, vote);
        Vote { votes: BTreeMap::from([(replica.clone(), *entry)]) }
    }

    /// Keeps each replica's latest vote.
    pub fn join(&mut self, other: &Vote) {
        for (replica, theirs) in &other.votes {
            let mine = self.votes.entry(replica.clone()).or_insert(*theirs);
            if *theirs > *mine {
                *mine = *theirs;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_write_wins_and_a_reverse_clock_keeps_the_first() {
        let (a, b) = (ReplicaId::from("a"), ReplicaId::from("b"));
        let mut register = LwwRegister::default();
        register.set(&a, b"one".to_vec(), Clock::Default, 100);
        let later = register.set(&a, b"two".to_vec(), Clock::Default, 50);
        assert_eq!(register.value(), Some(&b"two"[..]), "a replica's next write follows its last");
        let mut other = LwwRegister::default();
        other.set(&b, b"old".to_vec(), Clock::Default, 90);
        other.join(&later);
        assert_eq!(other.value(), Some(&b"two"[..]));

        let mut first = LwwRegister::default();
        first.set(&a, b"first".to_vec(), Clock::Reverse, 100);
        first.set(&a, b"second".to_vec(), Clock::Reverse, 200);
        assert_eq!(first.value(), Some(&b"first"[..]));

        let mut custom = LwwRegister::default();
        custom.set(&a, b"v5".to_vec(), Clock::Custom(5), 0);
        custom.set(&b, b"v3".to_vec(), Clock::Custom(3), 0);
        assert_eq!(custom.value(), Some(&b"v5"[..]));
    }

    #[test]
    fn votes_are_per_replica() {
        let (a, b) = (ReplicaId::from("a"), ReplicaId::from("b"));
        let mut vote = Vote::default();
        vote.vote(&a, true);
        let theirs = Vote::default().vote(&b, true);
        vote.join(&theirs);
        assert_eq!(vote.value(&a), (true, 2, 2));
        vote.vote(&a, false);
        assert_eq!(vote.value(&a), (false, 1, 2));
        let mut flag = Flag::default();
        flag.join(&Flag::default().enable());
        assert!(flag.value());
    }
}
