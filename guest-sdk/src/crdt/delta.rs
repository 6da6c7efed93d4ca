//! What one command changes in a CRDT entity: [`CrdtDelta`], built up by
//! the context's handles one operation at a time, and how the operations of
//! one command combine into it.
//!
//! A command sends at most one delta, of the entity's type. Operations
//! combine so the delta does, on this host, what they would have done one
//! after the other:
//!
//! - counters add up, and a grow-only set's adds unite;
//! - a register keeps the last write, a vote the last vote;
//! - an observed-remove set's delta is applied as clear, then remove, then
//!   add (the WIT's order), which expresses any sequence: a clear forgets the
//!   adds and removes before it, a remove takes back an earlier add of the
//!   element (and still removes it), an add after a remove adds it again;
//! - a map's delta is clear, then remove keys, then update values, folded
//!   the same way: a key's updates combine by its type, a remove drops the
//!   key's earlier updates, and an update after a remove starts the key
//!   afresh.
//!
//! On other hosts, an add (or a map update) in the delta wins over a
//! concurrent remove of the same element (or key).

use std::collections::BTreeSet;

use super::value::{CrdtKind, CrdtValue, VoteValue};

/// How a register's write is ordered against concurrent ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Clock {
    /// By the write's time: the latest write wins (a later write by the
    /// same host always follows its earlier ones).
    #[default]
    Default,
    /// By the reverse of its time: the first write wins.
    Reverse,
    /// By this value of the caller's own clock: the highest wins.
    Custom(i64),
}

/// What one command does to an observed-remove set, in this order: clear,
/// remove, add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrSetDelta {
    /// Remove every element first.
    pub clear: bool,
    /// Then remove these (JSON-encoded).
    pub remove: Vec<Vec<u8>>,
    /// Then add these (JSON-encoded).
    pub add: Vec<Vec<u8>>,
}

/// A write of a register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LwwDelta {
    /// The value written (JSON-encoded).
    pub value: Vec<u8>,
    /// How it is ordered against concurrent writes.
    pub clock: Clock,
}

/// What one command does to a map, in this order: clear, remove keys,
/// update values (a key not there starts from its type's empty value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrMapDelta {
    /// Remove every key first.
    pub clear: bool,
    /// Then remove these keys (JSON-encoded).
    pub remove: Vec<Vec<u8>>,
    /// Then change these keys' values, each key once; a value's delta is
    /// never a map's.
    pub update: Vec<(Vec<u8>, CrdtDelta)>,
}

/// What a command changes, mirroring the WIT `crdt-delta` (a map's values
/// take the same type, minus maps: the WIT `leaf-delta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrdtDelta {
    /// Add to a grow-only counter.
    GCounter(u64),
    /// Change a counter (negative: a decrement).
    PNCounter(i64),
    /// Add to a grow-only set (JSON-encoded elements).
    GSet(Vec<Vec<u8>>),
    /// Change an observed-remove set.
    OrSet(OrSetDelta),
    /// Write a register.
    LwwRegister(LwwDelta),
    /// Enable a flag.
    Flag,
    /// Change a map.
    OrMap(OrMapDelta),
    /// Vote, as this host.
    Vote(bool),
}

impl CrdtDelta {
    /// The type it changes.
    pub fn kind(&self) -> CrdtKind {
        match self {
            Self::GCounter(_) => CrdtKind::GCounter,
            Self::PNCounter(_) => CrdtKind::PNCounter,
            Self::GSet(_) => CrdtKind::GSet,
            Self::OrSet(_) => CrdtKind::OrSet,
            Self::LwwRegister(_) => CrdtKind::LwwRegister,
            Self::Flag => CrdtKind::Flag,
            Self::OrMap(_) => CrdtKind::OrMap,
            Self::Vote(_) => CrdtKind::Vote,
        }
    }

    /// Folds `next`, an operation after those of `self`, in (see the
    /// module's documentation). The caller checked that both are of one
    /// type, and so are a map key's updates; a mismatch keeps `next`.
    pub(crate) fn then(&mut self, next: CrdtDelta) {
        match (&mut *self, next) {
            (Self::GCounter(sum), Self::GCounter(by)) => *sum = sum.saturating_add(by),
            (Self::PNCounter(sum), Self::PNCounter(by)) => *sum = sum.saturating_add(by),
            (Self::GSet(elements), Self::GSet(more)) => {
                for element in more {
                    push_new(elements, element);
                }
            }
            (Self::OrSet(set), Self::OrSet(next)) if !next.clear => {
                for element in next.remove {
                    set.add.retain(|added| *added != element);
                    push_new(&mut set.remove, element);
                }
                for element in next.add {
                    push_new(&mut set.add, element);
                }
            }
            (Self::OrMap(map), Self::OrMap(next)) if !next.clear => {
                for key in next.remove {
                    map.update.retain(|(updated, _)| *updated != key);
                    push_new(&mut map.remove, key);
                }
                for (key, delta) in next.update {
                    match map.update.iter_mut().find(|(updated, _)| *updated == key) {
                        Some((_, pending)) => pending.then(delta),
                        None => map.update.push((key, delta)),
                    }
                }
            }
            (_, next) => *self = next,
        }
    }
}

/// Pushes `item` unless `items` holds it.
fn push_new(items: &mut Vec<Vec<u8>>, item: Vec<u8>) {
    if !items.contains(&item) {
        items.push(item);
    }
}

/// The value `delta` makes of `value` (the empty value of its type when
/// `None`) on this host, as a command reads it before the host applies it.
///
/// Exact for every type but two: a register written with a custom clock
/// reads the value written (it loses, on the host, to a stored write of a
/// higher clock), and a vote's `voters` counts this host's vote once it is
/// known to have voted (the entity is new, or its own vote was yes), and
/// otherwise at least its yes votes.
pub(crate) fn applied(value: Option<&CrdtValue>, delta: &CrdtDelta) -> CrdtValue {
    let mut value = value.filter(|value| value.kind() == delta.kind()).cloned();
    let new = value.is_none();
    let value = value.get_or_insert_with(|| CrdtValue::empty(delta.kind()));
    match (&mut *value, delta) {
        (CrdtValue::GCounter(sum), CrdtDelta::GCounter(by)) => *sum = sum.saturating_add(*by),
        (CrdtValue::PNCounter(sum), CrdtDelta::PNCounter(by)) => *sum = sum.saturating_add(*by),
        (CrdtValue::GSet(elements), CrdtDelta::GSet(added)) => {
            *elements = elements.iter().chain(added).cloned().collect::<BTreeSet<_>>().into_iter().collect();
        }
        (CrdtValue::OrSet(elements), CrdtDelta::OrSet(change)) => {
            let mut set: BTreeSet<Vec<u8>> = if change.clear { BTreeSet::new() } else { elements.drain(..).collect() };
            for element in &change.remove {
                set.remove(element);
            }
            set.extend(change.add.iter().cloned());
            *elements = set.into_iter().collect();
        }
        (CrdtValue::LwwRegister(current), CrdtDelta::LwwRegister(write)) => {
            if write.clock != Clock::Reverse || current.is_none() {
                *current = Some(write.value.clone());
            }
        }
        (CrdtValue::Flag(enabled), CrdtDelta::Flag) => *enabled = true,
        (CrdtValue::Vote(vote), CrdtDelta::Vote(yes)) => {
            let voted = new || vote.self_vote;
            let votes_for = vote.votes_for.saturating_sub(u32::from(vote.self_vote)) + u32::from(*yes);
            let voters = if new {
                1
            } else if voted {
                vote.voters
            } else {
                vote.voters.max(votes_for)
            };
            *vote = VoteValue { self_vote: *yes, votes_for, voters };
        }
        (CrdtValue::OrMap(entries), CrdtDelta::OrMap(change)) => {
            if change.clear {
                entries.clear();
            }
            entries.retain(|(key, _)| !change.remove.contains(key));
            for (key, leaf) in &change.update {
                match entries.iter_mut().find(|(present, _)| present == key) {
                    Some((_, current)) => *current = applied(Some(current), leaf),
                    None => entries.push((key.clone(), applied(None, leaf))),
                }
            }
            entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        }
        _ => unreachable!("the value was made of the delta's type"),
    }
    value.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|item| item.as_bytes().to_vec()).collect()
    }

    fn orset(clear: bool, remove: &[&str], add: &[&str]) -> CrdtDelta {
        CrdtDelta::OrSet(OrSetDelta { clear, remove: bytes(remove), add: bytes(add) })
    }

    #[test]
    fn set_operations_fold_into_clear_remove_add() {
        let mut delta = orset(false, &[], &["a", "b"]);
        delta.then(orset(false, &["a", "z"], &[]));
        assert_eq!(delta, orset(false, &["a", "z"], &["b"]));
        delta.then(orset(false, &[], &["a"]));
        assert_eq!(delta, orset(false, &["a", "z"], &["b", "a"]));
        delta.then(orset(true, &[], &[]));
        delta.then(orset(false, &[], &["c"]));
        assert_eq!(delta, orset(true, &[], &["c"]));

        let before = CrdtValue::OrSet(bytes(&["x", "y"]));
        let mut delta = orset(false, &["x"], &["w"]);
        assert_eq!(applied(Some(&before), &delta), CrdtValue::OrSet(bytes(&["w", "y"])));
        delta.then(orset(false, &[], &["x"]));
        assert_eq!(applied(Some(&before), &delta), CrdtValue::OrSet(bytes(&["w", "x", "y"])));
    }

    #[test]
    fn map_updates_combine_per_key_and_a_remove_starts_a_key_afresh() {
        let update = |key: &str, delta: CrdtDelta| {
            CrdtDelta::OrMap(OrMapDelta { update: vec![(key.as_bytes().to_vec(), delta)], ..OrMapDelta::default() })
        };
        let mut delta = update("n", CrdtDelta::GCounter(2));
        delta.then(update("n", CrdtDelta::GCounter(3)));
        delta.then(update("f", CrdtDelta::Flag));
        let before = CrdtValue::OrMap(vec![(b"n".to_vec(), CrdtValue::GCounter(10))]);
        let after = applied(Some(&before), &delta);
        assert_eq!(
            after,
            CrdtValue::OrMap(vec![(b"f".to_vec(), CrdtValue::Flag(true)), (b"n".to_vec(), CrdtValue::GCounter(15))])
        );
        delta.then(CrdtDelta::OrMap(OrMapDelta { remove: vec![b"n".to_vec()], ..OrMapDelta::default() }));
        delta.then(update("n", CrdtDelta::GCounter(1)));
        let after = applied(Some(&before), &delta);
        let n = after.raw_entries().unwrap().iter().find(|(key, _)| key == b"n");
        assert_eq!(n.map(|(_, value)| value), Some(&CrdtValue::GCounter(1)));
    }

    #[test]
    fn counters_add_up_and_the_last_write_or_vote_wins() {
        let mut delta = CrdtDelta::PNCounter(5);
        delta.then(CrdtDelta::PNCounter(-7));
        assert_eq!(applied(Some(&CrdtValue::PNCounter(1)), &delta), CrdtValue::PNCounter(-1));
        let write = |value: &str, clock| CrdtDelta::LwwRegister(LwwDelta { value: value.into(), clock });
        let stored = CrdtValue::LwwRegister(Some(b"old".to_vec()));
        assert_eq!(applied(Some(&stored), &write("new", Clock::Default)), CrdtValue::LwwRegister(Some("new".into())));
        assert_eq!(applied(Some(&stored), &write("new", Clock::Reverse)), stored);
        assert_eq!(applied(None, &write("new", Clock::Reverse)), CrdtValue::LwwRegister(Some("new".into())));
        let vote = CrdtValue::Vote(VoteValue { self_vote: true, votes_for: 2, voters: 3 });
        let expected = VoteValue { self_vote: false, votes_for: 1, voters: 3 };
        assert_eq!(applied(Some(&vote), &CrdtDelta::Vote(false)), CrdtValue::Vote(expected));
        assert_eq!(
            applied(None, &CrdtDelta::Vote(true)),
            CrdtValue::Vote(VoteValue { self_vote: true, votes_for: 1, voters: 1 })
        );
    }
}
