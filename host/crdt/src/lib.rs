//! The replicated data types of wasmstate's CRDT entities: their states,
//! the changes guests ask for, and the join that makes replicas converge.
//!
//! Each host is a replica ([`ReplicaId`]). A command's change is applied
//! to the local state ([`Crdt::apply`]), which answers a *delta*: a small
//! state whose join into any replica's state has the same effect there.
//! Deltas are stored and passed to the other replicas, which join them in
//! ([`Crdt::join`]) in any order, any number of times: the join is
//! commutative, associative and idempotent, so replicas that have seen the
//! same deltas hold the same state. Guests see only [`Value`]s and ask for
//! [`Change`]s; they never merge anything.
//!
//! | type | changes | join |
//! |---|---|---|
//! | [`GCounter`] | increment | per replica max; value = sum |
//! | [`PNCounter`] | increment, decrement | two grow-only counters; value = P − N |
//! | [`GSet`] | add | union |
//! | [`OrSet`] | clear, remove, add (in that order) | an add concurrent with a remove wins |
//! | [`LwwRegister`] | set, by the time, the reverse time or a custom clock | highest clock wins, ties by replica |
//! | [`Flag`] | enable | or |
//! | [`OrMap`] | clear, remove, update a key's value (any type but a map) | keys as an [`OrSet`], values by their type |
//! | [`Vote`] | vote yes or no as this replica | per replica, the latest |
//!
//! # Layout
//!
//! - `causal`: dots, causal contexts and the dot store the observed-remove
//!   types are made of;
//! - `counters`, `sets`, `registers` (the register, the flag, the vote) and
//!   `map`: the types.

mod causal;
mod counters;
mod map;
mod registers;
mod sets;

use serde::{Deserialize, Serialize};

pub use causal::{CausalContext, Dot, DotStore};
pub use counters::{GCounter, PNCounter};
pub use map::{OrMap, OrMapChange};
pub use registers::{Clock, Flag, LwwRegister, Vote};
pub use sets::{GSet, OrSet, OrSetChange};

/// A replica: a host of the journal. Ties between replicas go to the
/// greater id, compared as bytes.
pub type ReplicaId = String;

/// The state of one CRDT entity (or of one value in a map).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Crdt {
    /// A grow-only counter.
    GCounter(GCounter),
    /// A counter that goes up and down.
    PNCounter(PNCounter),
    /// A grow-only set.
    GSet(GSet),
    /// An observed-remove set.
    OrSet(OrSet),
    /// A last-writer-wins register.
    LwwRegister(LwwRegister),
    /// A flag that stays enabled.
    Flag(Flag),
    /// An observed-remove map of CRDTs.
    OrMap(OrMap),
    /// Each replica's vote.
    Vote(Vote),
}

/// A change a command asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Add to a [`GCounter`] (or, positive, to a [`PNCounter`]).
    Increment(u64),
    /// Change a [`PNCounter`] by this much (negative: a decrement).
    PnChange(i64),
    /// Add to a [`GSet`].
    GSetAdd(Vec<Vec<u8>>),
    /// Change an [`OrSet`].
    OrSet(OrSetChange),
    /// Write an [`LwwRegister`].
    Set {
        /// The value written.
        value: Vec<u8>,
        /// How it is ordered against other writes.
        clock: Clock,
    },
    /// Enable a [`Flag`].
    Enable,
    /// Vote, in a [`Vote`].
    Vote(bool),
    /// Change an [`OrMap`].
    OrMap(OrMapChange),
}

/// What a guest sees of a CRDT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// A grow-only counter's sum.
    GCounter(u64),
    /// A counter's increments less its decrements.
    PNCounter(i64),
    /// A grow-only set's elements, in byte order.
    GSet(Vec<Vec<u8>>),
    /// An observed-remove set's elements, in byte order.
    OrSet(Vec<Vec<u8>>),
    /// A register's value, if one was written.
    LwwRegister(Option<Vec<u8>>),
    /// Whether a flag is enabled.
    Flag(bool),
    /// A map's keys, in byte order, with their values.
    OrMap(Vec<(Vec<u8>, Value)>),
    /// A vote, as one replica sees it.
    Vote {
        /// That replica's own vote.
        self_vote: bool,
        /// How many replicas vote yes.
        votes_for: u32,
        /// How many replicas voted.
        voters: u32,
    },
}

/// Why a change could not be applied, or two states not joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// The change is for another type than the state's.
    WrongType {
        /// The state's type.
        crdt: &'static str,
        /// The type the change is for.
        change: &'static str,
    },
    /// A map's value would be a map.
    NestedMap,
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::WrongType { crdt, change } => write!(f, "a change of {change} does not apply to {crdt}"),
            ChangeError::NestedMap => f.write_str("a map's value may not be a map"),
        }
    }
}

impl std::error::Error for ChangeError {}

impl Change {
    /// The name of the type it changes.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Increment(_) => "GCounter",
            Change::PnChange(_) => "PNCounter",
            Change::GSetAdd(_) => "GSet",
            Change::OrSet(_) => "ORSet",
            Change::Set { .. } => "LWWRegister",
            Change::Enable => "Flag",
            Change::Vote(_) => "Vote",
            Change::OrMap(_) => "ORMap",
        }
    }
}

impl Crdt {
    /// The empty state of the type `change` is for: what a new entity (or
    /// map key) starts from.
    pub fn empty_for(change: &Change) -> Crdt {
        match change {
            Change::Increment(_) => Crdt::GCounter(GCounter::default()),
            Change::PnChange(_) => Crdt::PNCounter(PNCounter::default()),
            Change::GSetAdd(_) => Crdt::GSet(GSet::default()),
            Change::OrSet(_) => Crdt::OrSet(OrSet::default()),
            Change::Set { .. } => Crdt::LwwRegister(LwwRegister::default()),
            Change::Enable => Crdt::Flag(Flag::default()),
            Change::Vote(_) => Crdt::Vote(Vote::default()),
            Change::OrMap(_) => Crdt::OrMap(OrMap::default()),
        }
    }

    /// The name of its type.
    pub fn kind(&self) -> &'static str {
        match self {
            Crdt::GCounter(_) => "GCounter",
            Crdt::PNCounter(_) => "PNCounter",
            Crdt::GSet(_) => "GSet",
            Crdt::OrSet(_) => "ORSet",
            Crdt::LwwRegister(_) => "LWWRegister",
            Crdt::Flag(_) => "Flag",
            Crdt::OrMap(_) => "ORMap",
            Crdt::Vote(_) => "Vote",
        }
    }

    /// Applies `change` as `replica` at `now_ms` (the time a register's
    /// default clock reads): answers the delta the other replicas join.
    pub fn apply(&mut self, replica: &ReplicaId, change: &Change, now_ms: u64) -> Result<Crdt, ChangeError> {
        let delta = match (&mut *self, change) {
            (Crdt::GCounter(counter), Change::Increment(by)) => Crdt::GCounter(counter.increment(replica, *by)),
            (Crdt::PNCounter(counter), Change::PnChange(by)) => Crdt::PNCounter(counter.change(replica, *by)),
            (Crdt::PNCounter(counter), Change::Increment(by)) => {
                Crdt::PNCounter(counter.change(replica, i64::try_from(*by).unwrap_or(i64::MAX)))
            }
            (Crdt::GSet(set), Change::GSetAdd(elements)) => Crdt::GSet(set.add(elements.iter().cloned())),
            (Crdt::OrSet(set), Change::OrSet(change)) => Crdt::OrSet(set.apply(replica, change)),
            (Crdt::LwwRegister(register), Change::Set { value, clock }) => {
                Crdt::LwwRegister(register.set(replica, value.clone(), *clock, now_ms))
            }
            (Crdt::Flag(flag), Change::Enable) => Crdt::Flag(flag.enable()),
            (Crdt::Vote(vote), Change::Vote(yes)) => Crdt::Vote(vote.vote(replica, *yes)),
            (Crdt::OrMap(map), Change::OrMap(change)) => Crdt::OrMap(map.apply(replica, change, now_ms)?),
            (crdt, change) => return Err(ChangeError::WrongType { crdt: crdt.kind(), change: change.kind() }),
        };
        Ok(delta)
    }

    /// Joins `other` (a delta, or another replica's state) in.
    pub fn join(&mut self, other: &Crdt) -> Result<(), ChangeError> {
        match (&mut *self, other) {
            (Crdt::GCounter(mine), Crdt::GCounter(theirs)) => mine.join(theirs),
            (Crdt::PNCounter(mine), Crdt::PNCounter(theirs)) => mine.join(theirs),
            (Crdt::GSet(mine), Crdt::GSet(theirs)) => mine.join(theirs),
            (Crdt::OrSet(mine), Crdt::OrSet(theirs)) => mine.join(theirs),
            (Crdt::LwwRegister(mine), Crdt::LwwRegister(theirs)) => mine.join(theirs),
            (Crdt::Flag(mine), Crdt::Flag(theirs)) => mine.join(theirs),
            (Crdt::OrMap(mine), Crdt::OrMap(theirs)) => mine.join(theirs),
            (Crdt::Vote(mine), Crdt::Vote(theirs)) => mine.join(theirs),
            (mine, theirs) => return Err(ChangeError::WrongType { crdt: mine.kind(), change: theirs.kind() }),
        }
        Ok(())
    }

    /// What a guest of `replica` sees of it.
    pub fn value(&self, replica: &ReplicaId) -> Value {
        match self {
            Crdt::GCounter(counter) => Value::GCounter(counter.value()),
            Crdt::PNCounter(counter) => Value::PNCounter(counter.value()),
            Crdt::GSet(set) => Value::GSet(set.elements().cloned().collect()),
            Crdt::OrSet(set) => Value::OrSet(set.elements().cloned().collect()),
            Crdt::LwwRegister(register) => Value::LwwRegister(register.value().map(<[u8]>::to_vec)),
            Crdt::Flag(flag) => Value::Flag(flag.value()),
            Crdt::OrMap(map) => Value::OrMap(
                map.keys().filter_map(|key| map.get(key).map(|value| (key.clone(), value.value(replica)))).collect(),
            ),
            Crdt::Vote(vote) => {
                let (self_vote, votes_for, voters) = vote.value(replica);
                Value::Vote { self_vote, votes_for, voters }
            }
        }
    }
}
