//! The typed handles a command changes a CRDT entity through, on the
//! entity itself (`ctx.orset()`) or on one key of its map
//! (`ctx.map().orset("tags")`).
//!
//! Writes record into the command's one delta (see
//! [`CrdtContext`](super::CrdtContext)); reads see the entity's value with
//! that delta so far applied. Elements, register values and map keys are
//! written as JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::CrdtContext;
use super::delta::{Clock, CrdtDelta, LwwDelta, OrMapDelta, OrSetDelta};
use super::value::{CrdtKind, CrdtValue, VoteValue, encode};
use crate::Failure;

/// What a handle changes: the entity, or one key of its map.
pub(crate) struct Target<'c, 'a> {
    ctx: &'c mut CrdtContext<'a>,
    key: Option<Vec<u8>>,
}

impl<'c, 'a> Target<'c, 'a> {
    /// The entity itself.
    pub(crate) fn entity(ctx: &'c mut CrdtContext<'a>) -> Self {
        Self { ctx, key: None }
    }

    /// Records `delta` of the target.
    fn record(&mut self, delta: CrdtDelta) {
        match &self.key {
            None => self.ctx.record(delta),
            Some(key) => self.ctx.record_key(key.clone(), delta),
        }
    }

    /// The target's value with the pending delta applied, if it is of
    /// `kind`; that type's empty value otherwise.
    fn read(&self, kind: CrdtKind) -> CrdtValue {
        read(self.ctx, self.key.as_deref(), kind)
    }
}

/// The value of `ctx`'s entity (or of its map's `key`) with the pending
/// delta applied, if it is of `kind`; that type's empty value otherwise.
fn read(ctx: &CrdtContext<'_>, key: Option<&[u8]>, kind: CrdtKind) -> CrdtValue {
    let current = ctx.current();
    let value = match key {
        None => current,
        Some(key) => current.and_then(|map| {
            let entries = map.raw_entries()?;
            entries.iter().find(|(present, _)| present == key).map(|(_, value)| value.clone())
        }),
    };
    value.filter(|value| value.kind() == kind).unwrap_or_else(|| CrdtValue::empty(kind))
}

/// Defines a handle type over a [`Target`].
macro_rules! handle_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<'c, 'a> {
            target: Target<'c, 'a>,
        }

        impl<'c, 'a> $name<'c, 'a> {
            /// A handle on `target`.
            pub(crate) fn new(target: Target<'c, 'a>) -> Self {
                Self { target }
            }
        }
    };
}

handle_type!(
    /// A grow-only counter: [`ctx.gcounter()`](CrdtContext::gcounter).
    GCounterHandle
);

impl GCounterHandle<'_, '_> {
    /// Adds `by` (saturating).
    pub fn increment(&mut self, by: u64) -> &mut Self {
        self.target.record(CrdtDelta::GCounter(by));
        self
    }

    /// The sum, with this command's increments.
    pub fn value(&self) -> u64 {
        self.target.read(CrdtKind::GCounter).as_gcounter().unwrap_or_default()
    }
}

handle_type!(
    /// A counter that goes up and down: [`ctx.pncounter()`](CrdtContext::pncounter).
    PNCounterHandle
);

impl PNCounterHandle<'_, '_> {
    /// Adds `by` (saturating).
    pub fn increment(&mut self, by: u64) -> &mut Self {
        self.change(i64::try_from(by).unwrap_or(i64::MAX))
    }

    /// Subtracts `by` (saturating).
    pub fn decrement(&mut self, by: u64) -> &mut Self {
        self.change(i64::try_from(by).map_or(i64::MIN, |by| -by))
    }

    /// Adds `by`, which may be negative (saturating).
    pub fn change(&mut self, by: i64) -> &mut Self {
        self.target.record(CrdtDelta::PNCounter(by));
        self
    }

    /// The increments less the decrements, with this command's.
    pub fn value(&self) -> i64 {
        self.target.read(CrdtKind::PNCounter).as_counter().unwrap_or_default()
    }
}

handle_type!(
    /// A grow-only set of JSON elements: [`ctx.gset()`](CrdtContext::gset).
    GSetHandle
);

impl GSetHandle<'_, '_> {
    /// Adds `element`, encoded as JSON.
    ///
    /// # Panics
    ///
    /// If `element` cannot be encoded as JSON.
    pub fn add<T: Serialize + ?Sized>(&mut self, element: &T) -> &mut Self {
        self.target.record(CrdtDelta::GSet(vec![encode(element)]));
        self
    }

    /// The elements with this command's, decoded, in byte order of their
    /// encoding.
    ///
    /// # Errors
    ///
    /// `invalid_state` if an element does not decode as a `T`.
    pub fn elements<T: DeserializeOwned>(&self) -> Result<Vec<T>, Failure> {
        self.target.read(CrdtKind::GSet).elements()
    }

    /// Whether the set holds `element`, with this command's adds.
    pub fn contains<T: Serialize + ?Sized>(&self, element: &T) -> bool {
        self.target.read(CrdtKind::GSet).contains(element)
    }
}

handle_type!(
    /// An observed-remove set of JSON elements: [`ctx.orset()`](CrdtContext::orset).
    /// An add on one host wins over a concurrent remove of the element on
    /// another.
    OrSetHandle
);

impl OrSetHandle<'_, '_> {
    /// Adds `element`, encoded as JSON.
    ///
    /// # Panics
    ///
    /// If `element` cannot be encoded as JSON.
    pub fn add<T: Serialize + ?Sized>(&mut self, element: &T) -> &mut Self {
        self.target.record(CrdtDelta::OrSet(OrSetDelta { add: vec![encode(element)], ..OrSetDelta::default() }));
        self
    }

    /// Removes `element` (compared as its JSON encoding), as this host has
    /// seen it added.
    ///
    /// # Panics
    ///
    /// If `element` cannot be encoded as JSON.
    pub fn remove<T: Serialize + ?Sized>(&mut self, element: &T) -> &mut Self {
        self.target.record(CrdtDelta::OrSet(OrSetDelta { remove: vec![encode(element)], ..OrSetDelta::default() }));
        self
    }

    /// Removes every element this host has seen added.
    pub fn clear(&mut self) -> &mut Self {
        self.target.record(CrdtDelta::OrSet(OrSetDelta { clear: true, ..OrSetDelta::default() }));
        self
    }

    /// The elements with this command's changes, decoded, in byte order of
    /// their encoding.
    ///
    /// # Errors
    ///
    /// `invalid_state` if an element does not decode as a `T`.
    pub fn elements<T: DeserializeOwned>(&self) -> Result<Vec<T>, Failure> {
        self.target.read(CrdtKind::OrSet).elements()
    }

    /// Whether the set holds `element`, with this command's changes.
    pub fn contains<T: Serialize + ?Sized>(&self, element: &T) -> bool {
        self.target.read(CrdtKind::OrSet).contains(element)
    }
}

handle_type!(
    /// A last-writer-wins register of a JSON value: [`ctx.lww()`](CrdtContext::lww).
    LwwHandle
);

impl LwwHandle<'_, '_> {
    /// Writes `value`, encoded as JSON, ordered by the host's time: the
    /// latest write wins.
    ///
    /// # Panics
    ///
    /// If `value` cannot be encoded as JSON.
    pub fn set<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        self.set_with_clock(value, Clock::Default)
    }

    /// Writes `value`, encoded as JSON, ordered by `clock`.
    ///
    /// # Panics
    ///
    /// If `value` cannot be encoded as JSON.
    pub fn set_with_clock<T: Serialize + ?Sized>(&mut self, value: &T, clock: Clock) -> &mut Self {
        self.target.record(CrdtDelta::LwwRegister(LwwDelta { value: encode(value), clock }));
        self
    }

    /// The value, with this command's write (see
    /// [`CrdtContext::current`]), decoded; `None` when none was written.
    ///
    /// # Errors
    ///
    /// `invalid_state` if the value does not decode as a `T`.
    pub fn get<T: DeserializeOwned>(&self) -> Result<Option<T>, Failure> {
        self.target.read(CrdtKind::LwwRegister).register()
    }
}

handle_type!(
    /// A flag that stays enabled: [`ctx.flag()`](CrdtContext::flag).
    FlagHandle
);

impl FlagHandle<'_, '_> {
    /// Enables it, for good.
    pub fn enable(&mut self) -> &mut Self {
        self.target.record(CrdtDelta::Flag);
        self
    }

    /// Whether it is enabled, by this command too.
    pub fn is_enabled(&self) -> bool {
        self.target.read(CrdtKind::Flag).as_flag().unwrap_or_default()
    }
}

handle_type!(
    /// Each host's yes or no: [`ctx.vote()`](CrdtContext::vote).
    VoteHandle
);

impl VoteHandle<'_, '_> {
    /// Votes `yes` (or no) as this host; a later vote replaces it.
    pub fn vote(&mut self, yes: bool) -> &mut Self {
        self.target.record(CrdtDelta::Vote(yes));
        self
    }

    /// The votes, with this command's (see [`CrdtContext::current`]).
    pub fn value(&self) -> VoteValue {
        self.target.read(CrdtKind::Vote).as_vote().unwrap_or_default()
    }
}

/// An observed-remove map from JSON keys to values of any type but a map:
/// [`ctx.map()`](CrdtContext::map). A key's handle (`map.gcounter(&key)`,
/// ...) changes its value, starting a key not there from its type's empty
/// value; an update on one host wins over a concurrent remove of the key on
/// another.
pub struct MapHandle<'c, 'a> {
    ctx: &'c mut CrdtContext<'a>,
}

/// Defines a map's accessor of a key's handle.
macro_rules! key_handle {
    ($(#[$doc:meta])* $method:ident -> $handle:ident) => {
        $(#[$doc])*
        ///
        /// # Panics
        ///
        /// If `key` cannot be encoded as JSON.
        pub fn $method<K: Serialize + ?Sized>(&mut self, key: &K) -> $handle<'_, 'a> {
            $handle::new(Target { ctx: &mut *self.ctx, key: Some(encode(key)) })
        }
    };
}

impl<'c, 'a> MapHandle<'c, 'a> {
    /// The map of `ctx`'s entity.
    pub(crate) fn new(ctx: &'c mut CrdtContext<'a>) -> Self {
        Self { ctx }
    }

    key_handle!(
        /// `key`'s value, as a grow-only counter.
        gcounter -> GCounterHandle
    );
    key_handle!(
        /// `key`'s value, as a counter that goes up and down.
        pncounter -> PNCounterHandle
    );
    key_handle!(
        /// `key`'s value, as a grow-only set.
        gset -> GSetHandle
    );
    key_handle!(
        /// `key`'s value, as an observed-remove set.
        orset -> OrSetHandle
    );
    key_handle!(
        /// `key`'s value, as a last-writer-wins register.
        lww -> LwwHandle
    );
    key_handle!(
        /// `key`'s value, as a flag.
        flag -> FlagHandle
    );
    key_handle!(
        /// `key`'s value, as a vote.
        vote -> VoteHandle
    );

    /// Removes `key` and its value, as this host has seen them.
    ///
    /// # Panics
    ///
    /// If `key` cannot be encoded as JSON.
    pub fn remove<K: Serialize + ?Sized>(&mut self, key: &K) -> &mut Self {
        self.ctx.record(CrdtDelta::OrMap(OrMapDelta { remove: vec![encode(key)], ..OrMapDelta::default() }));
        self
    }

    /// Removes every key this host has seen.
    pub fn clear(&mut self) -> &mut Self {
        self.ctx.record(CrdtDelta::OrMap(OrMapDelta { clear: true, ..OrMapDelta::default() }));
        self
    }

    /// The map with this command's changes: its entries, keys in byte
    /// order (empty if the entity is of another type).
    pub fn value(&self) -> CrdtValue {
        read(self.ctx, None, CrdtKind::OrMap)
    }

    /// The value of `key`, with this command's changes.
    pub fn get<K: Serialize + ?Sized>(&self, key: &K) -> Option<CrdtValue> {
        self.value().map_get(key).cloned()
    }

    /// The entries with this command's changes, keys decoded, in byte
    /// order of their encoding.
    ///
    /// # Errors
    ///
    /// `invalid_state` if a key does not decode as a `K`.
    pub fn entries<K: DeserializeOwned>(&self) -> Result<Vec<(K, CrdtValue)>, Failure> {
        let value = self.value();
        let entries = value.map_entries::<K>()?;
        Ok(entries.into_iter().map(|(key, value)| (key, value.clone())).collect())
    }
}
