//! The context of a CRDT entity's command: the entity's value, the one
//! delta the command's handles build up, deletion, side effects and timers.

use super::delta::{CrdtDelta, OrMapDelta, applied};
use super::handles::{
    FlagHandle, GCounterHandle, GSetHandle, LwwHandle, MapHandle, OrSetHandle, PNCounterHandle, Target, VoteHandle,
};
use super::value::{CrdtKind, CrdtValue};
use crate::timer::timer_methods;
use crate::{Command, Effect, Failure, Metadata, TimerChange};

/// What a CRDT entity's command handler can do besides replying: read the
/// entity's value, change it through typed handles, delete it, add side
/// effects, and set and cancel timers.
///
/// Every handle's change goes into the command's one delta
/// ([`delta`](Self::delta)): `ctx.gcounter().increment(2)` twice sends an
/// increment of 4 (see [`CrdtDelta`] for how changes combine). A handle of
/// another type than the entity's (its stored value's, or else the type of
/// this command's first change) fails the command once the handler
/// returns, whatever it returned, and the change is not recorded; so does a
/// map key's change of another type than the key's value. Reading through
/// a handle of another type reads that type's empty value.
pub struct CrdtContext<'a> {
    entity_id: &'a str,
    metadata: Metadata<'a>,
    value: Option<&'a CrdtValue>,
    delta: Option<CrdtDelta>,
    failure: Option<Failure>,
    delete: bool,
    side_effects: Vec<Effect>,
    timers: Vec<TimerChange>,
}

/// What a command produced besides its reply, as the core hands it on.
pub(crate) struct CrdtParts {
    /// The change to the entity.
    pub(crate) delta: Option<CrdtDelta>,
    /// Whether it deletes the entity.
    pub(crate) delete: bool,
    /// Its side effects, in order.
    pub(crate) side_effects: Vec<Effect>,
    /// Its timer changes, in order.
    pub(crate) timers: Vec<TimerChange>,
}

impl<'a> CrdtContext<'a> {
    /// A context for `command` against the entity's `value` (`None`: new).
    pub(crate) fn new(command: &Command<'a>, value: Option<&'a CrdtValue>) -> Self {
        Self {
            entity_id: command.entity_id(),
            metadata: command.metadata(),
            value,
            delta: None,
            failure: None,
            delete: false,
            side_effects: Vec::new(),
            timers: Vec::new(),
        }
    }

    /// The id of the entity handling the command.
    pub fn entity_id(&self) -> &'a str {
        self.entity_id
    }

    /// The host's time and the idempotency key the command runs under (a
    /// CRDT entity has no seq: it reads 0).
    pub fn metadata(&self) -> Metadata<'a> {
        self.metadata
    }

    /// The entity's value before the command, as this host has it; `None`
    /// for an entity no change reached yet.
    pub fn value(&self) -> Option<&'a CrdtValue> {
        self.value
    }

    /// The entity's value with this command's delta so far applied, as this
    /// host will have it once the delta commits (see
    /// [`CrdtDelta`]'s module for the two types where this reads an
    /// estimate: a register with a custom clock, a vote's voters); `None`
    /// while the entity is new and unchanged.
    pub fn current(&self) -> Option<CrdtValue> {
        match &self.delta {
            Some(delta) => Some(applied(self.value, delta)),
            None => self.value.cloned(),
        }
    }

    /// The entity's type: its value's, or for a new entity that of this
    /// command's first change; `None` for a new entity not changed yet.
    pub fn kind(&self) -> Option<CrdtKind> {
        self.value.map(CrdtValue::kind).or_else(|| self.delta.as_ref().map(CrdtDelta::kind))
    }

    /// The delta the command's changes made so far.
    pub fn delta(&self) -> Option<&CrdtDelta> {
        self.delta.as_ref()
    }

    /// The entity, as a grow-only counter.
    pub fn gcounter(&mut self) -> GCounterHandle<'_, 'a> {
        GCounterHandle::new(Target::entity(self))
    }

    /// The entity, as a counter that goes up and down.
    pub fn pncounter(&mut self) -> PNCounterHandle<'_, 'a> {
        PNCounterHandle::new(Target::entity(self))
    }

    /// The entity, as a grow-only set.
    pub fn gset(&mut self) -> GSetHandle<'_, 'a> {
        GSetHandle::new(Target::entity(self))
    }

    /// The entity, as an observed-remove set.
    pub fn orset(&mut self) -> OrSetHandle<'_, 'a> {
        OrSetHandle::new(Target::entity(self))
    }

    /// The entity, as a last-writer-wins register.
    pub fn lww(&mut self) -> LwwHandle<'_, 'a> {
        LwwHandle::new(Target::entity(self))
    }

    /// The entity, as a flag.
    pub fn flag(&mut self) -> FlagHandle<'_, 'a> {
        FlagHandle::new(Target::entity(self))
    }

    /// The entity, as a vote.
    pub fn vote(&mut self) -> VoteHandle<'_, 'a> {
        VoteHandle::new(Target::entity(self))
    }

    /// The entity, as an observed-remove map.
    pub fn map(&mut self) -> MapHandle<'_, 'a> {
        MapHandle::new(self)
    }

    /// Deletes the entity for good once the command succeeds: the host
    /// keeps a tombstone, and later commands to it fail (`entity_deleted`).
    /// The command's delta, side effects and timers still commit.
    pub fn delete(&mut self) {
        self.delete = true;
    }

    /// Whether this command deletes the entity.
    pub fn is_deleted(&self) -> bool {
        self.delete
    }

    /// Adds a side effect, run once the delta is durable: a command
    /// ([`SideEffect`](crate::SideEffect)) or a webhook
    /// ([`SideEffect::webhook`](crate::SideEffect::webhook)).
    pub fn effect(&mut self, effect: impl Into<Effect>) {
        self.side_effects.push(effect.into());
    }

    /// The side effects added so far by this command, commands and
    /// webhooks, in order.
    pub fn side_effects(&self) -> &[Effect] {
        &self.side_effects
    }

    timer_methods!("the delta");

    /// The failure a change of the wrong type recorded, if any.
    pub(crate) fn take_failure(&mut self) -> Option<Failure> {
        self.failure.take()
    }

    /// Folds `delta` into the command's delta, if it is of the entity's
    /// type; records the failure otherwise (the first one wins).
    pub(crate) fn record(&mut self, delta: CrdtDelta) {
        match self.kind() {
            Some(kind) if kind != delta.kind() => {
                let message = format!("this entity is of type {kind}: {} changes do not apply to it", delta.kind());
                self.fail(message);
            }
            _ => match &mut self.delta {
                Some(pending) => pending.then(delta),
                None => self.delta = Some(delta),
            },
        }
    }

    /// Folds a change of map `key`'s value in, if the entity is a map and
    /// the key holds none or one of the change's type.
    pub(crate) fn record_key(&mut self, key: Vec<u8>, delta: CrdtDelta) {
        if delta.kind() == CrdtKind::OrMap {
            return self.fail("a map's value may not be a map".to_owned());
        }
        let held = self.current().and_then(|map| {
            let entries = map.raw_entries()?;
            entries.iter().find(|(present, _)| *present == key).map(|(_, value)| value.kind())
        });
        if let Some(held) = held.filter(|held| *held != delta.kind()) {
            let key = String::from_utf8_lossy(&key).into_owned();
            let message =
                format!("key {key} of this map is of type {held}: {} changes do not apply to it", delta.kind());
            return self.fail(message);
        }
        self.record(CrdtDelta::OrMap(OrMapDelta { update: vec![(key, delta)], ..OrMapDelta::default() }));
    }

    /// Records `message` as the command's failure, unless one is recorded.
    fn fail(&mut self, message: String) {
        self.failure.get_or_insert_with(|| Failure::rejected(message));
    }

    /// The delta, the deletion, the side effects and the timer changes.
    pub(crate) fn into_parts(self) -> CrdtParts {
        CrdtParts { delta: self.delta, delete: self.delete, side_effects: self.side_effects, timers: self.timers }
    }
}
