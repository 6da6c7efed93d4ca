//! The test kit of CRDT entities: replicas with the host's merge.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use wasmstate_crdt::{Change, Crdt, OrMapChange, OrSetChange, ReplicaId, Value};

use crate::crdt::{Clock, CrdtDelta, CrdtEntity, CrdtValue, VoteValue};
use crate::{Command, Effect, Failure, Metadata, Reply, raw};

/// The replica a [`CrdtKit`]'s own commands run on.
pub const THIS_HOST: &str = "this-host";

/// An in-memory host for one CRDT entity of type `E`, and the other hosts
/// it is replicated to.
///
/// The kit keeps each replica's state with the host's own model of the
/// types (the `wasmstate-crdt` crate), so values merge as they do between
/// hosts. Its commands (`handle`, `send`, timers' firings...) run on
/// replica [`THIS_HOST`]: each hands the entity that replica's value and
/// applies the command's delta there, as the host does.
///
/// To test concurrency, run commands on another replica with
/// [`replica`](Self::replica): a replica first named starts from what this
/// host has then, and from then on sees nothing of the others until a
/// merge ([`merge_from`](Self::merge_from), [`merge`](Self::merge),
/// [`sync`](Self::sync)) joins one's state into another's.
///
/// ```
/// # use wasmstate_sdk::{CrdtContext, CrdtEntity, Failure, Reply};
/// # struct Tags;
/// # #[derive(serde::Deserialize)]
/// # enum TagCommand { Add(String), Remove(String) }
/// # impl CrdtEntity for Tags {
/// #     type Command = TagCommand;
/// #     fn handle(command: TagCommand, ctx: &mut CrdtContext<'_>) -> Result<Reply, Failure> {
/// #         match command {
/// #             TagCommand::Add(tag) => ctx.orset().add(&tag),
/// #             TagCommand::Remove(tag) => ctx.orset().remove(&tag),
/// #         };
/// #         Ok(Reply::empty())
/// #     }
/// # }
/// use serde_json::json;
/// use wasmstate_sdk::testkit::CrdtKit;
///
/// let mut kit = CrdtKit::<Tags>::new("post-1");
/// kit.handle("Add", "x").unwrap();
/// // Host A (this one) removes x while host B adds it concurrently.
/// kit.replica("host-b").handle("Add", "x").unwrap();
/// kit.handle("Remove", "x").unwrap();
/// assert_eq!(kit.value().unwrap().elements::<String>().unwrap(), Vec::<String>::new());
/// // Once B's state reaches A, the add wins.
/// kit.merge_from("host-b");
/// assert_eq!(kit.value().unwrap().elements::<String>().unwrap(), ["x"]);
/// kit.sync();
/// assert_eq!(kit.value_at("host-b"), kit.value());
/// ```
pub struct CrdtKit<E> {
    entity_id: String,
    /// Each replica's state; `None` until a change reaches it.
    replicas: BTreeMap<ReplicaId, Option<Crdt>>,
    deleted: bool,
    metadata: super::KitMetadata,
    timers: super::timers::KitTimers,
    outbox: super::webhooks::KitOutbox,
    entity: PhantomData<fn() -> E>,
}

impl<E: CrdtEntity> CrdtKit<E> {
    /// A kit for a fresh entity with id `entity_id`, on replica
    /// [`THIS_HOST`] alone.
    pub fn new(entity_id: impl Into<String>) -> Self {
        Self {
            entity_id: entity_id.into(),
            replicas: BTreeMap::from([(THIS_HOST.to_owned(), None)]),
            deleted: false,
            metadata: super::KitMetadata::default(),
            timers: super::timers::KitTimers::default(),
            outbox: super::webhooks::KitOutbox::default(),
            entity: PhantomData,
        }
    }

    command_methods!(
        &mut self,
        "entity",
        "The entity's failure (the delta, timers and webhooks are then not committed), or a `rejected` failure \
         whose message starts with `entity_deleted` once the entity was deleted."
    );

    kit_timer_methods!();

    kit_webhook_methods!();

    /// The entity's value on this host; `None` until a change reached it.
    pub fn value(&self) -> Option<CrdtValue> {
        self.value_at(THIS_HOST)
    }

    /// The entity's value on `replica`, as its commands see it; `None`
    /// until a change reached it (or for a replica never named).
    pub fn value_at(&self, replica: &str) -> Option<CrdtValue> {
        let state = self.replicas.get(replica)?.as_ref()?;
        Some(value_of(state.value(&replica.to_owned())))
    }

    /// Whether a command deleted the entity: every later command fails.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Another host, `replica`, to run commands on: it starts, when first
    /// named, from this host's state, and its commands change only its own
    /// until a merge. It shares the kit's clock (as it is when named),
    /// timers and webhooks.
    ///
    /// # Panics
    ///
    /// If `replica` is [`THIS_HOST`].
    pub fn replica(&mut self, replica: &str) -> ReplicaKit<'_, E> {
        assert_ne!(replica, THIS_HOST, "the kit's own commands run on {THIS_HOST}");
        let start = self.replicas[THIS_HOST].clone();
        self.replicas.entry(replica.to_owned()).or_insert(start);
        let metadata = self.metadata.clone();
        ReplicaKit { kit: self, replica: replica.to_owned(), metadata }
    }

    /// Joins `from`'s state into this host's, as when its deltas arrive.
    ///
    /// # Panics
    ///
    /// As [`merge`](Self::merge).
    pub fn merge_from(&mut self, from: &str) {
        self.merge(from, THIS_HOST);
    }

    /// Joins `from`'s state into `into`'s (naming `into` for the first
    /// time starts it from this host's state, as [`replica`](Self::replica)).
    ///
    /// # Panics
    ///
    /// If `from` was never named, or the two hold different types.
    pub fn merge(&mut self, from: &str, into: &str) {
        let theirs = self.replicas.get(from).unwrap_or_else(|| panic!("no replica {from}")).clone();
        let start = self.replicas[THIS_HOST].clone();
        let mine = self.replicas.entry(into.to_owned()).or_insert(start);
        match (mine, theirs) {
            (_, None) => {}
            (mine @ None, theirs) => *mine = theirs,
            (Some(mine), Some(theirs)) => {
                mine.join(&theirs).unwrap_or_else(|error| panic!("merging {from} into {into}: {error}"))
            }
        }
    }

    /// Joins every replica's state into every other's: they all converge.
    ///
    /// # Panics
    ///
    /// If two hold different types.
    pub fn sync(&mut self) {
        let names: Vec<ReplicaId> = self.replicas.keys().cloned().collect();
        for from in &names {
            self.merge(from, THIS_HOST);
        }
        for into in &names {
            self.merge(THIS_HOST, into);
        }
    }

    /// Runs a command on this host under the test's idempotency key.
    fn run(&mut self, name: &str, payload: &[u8]) -> Result<(Reply, Vec<Effect>), Failure> {
        let key = self.metadata.idempotency_key.clone();
        self.run_keyed(name, payload, key.as_deref())
    }

    /// Runs a command on this host under `key` (a timer's firing, too).
    fn run_keyed(&mut self, name: &str, payload: &[u8], key: Option<&str>) -> Result<(Reply, Vec<Effect>), Failure> {
        let now_ms = self.metadata.now_ms();
        self.run_on(THIS_HOST, name, payload, key, now_ms)
    }

    /// Runs a command on `replica` at `now_ms` under `key`, and commits its
    /// delta there, its deletion, timer changes and webhooks, as the host
    /// does.
    fn run_on(
        &mut self,
        replica: &str,
        name: &str,
        payload: &[u8],
        key: Option<&str>,
        now_ms: u64,
    ) -> Result<(Reply, Vec<Effect>), Failure> {
        if self.deleted {
            return Err(Failure::rejected(format!("entity_deleted: entity {} was deleted", self.entity_id)));
        }
        let replica = replica.to_owned();
        let state = self.replicas.get(&replica).cloned().flatten();
        let value = state.as_ref().map(|state| value_of(state.value(&replica)));
        let metadata = self.timers.addressed(Metadata::new(0, now_ms, key));
        let command = Command::new(name, payload, &self.entity_id).with_metadata(metadata);
        let effects = raw::crdt::handle::<E>(value.as_ref(), command).inspect_err(|_| self.timers.failed())?;
        let state = match effects.delta {
            Some(delta) => {
                let change = change_of(delta);
                let mut state = state.unwrap_or_else(|| Crdt::empty_for(&change));
                if let Err(error) = state.apply(&replica, &change, now_ms) {
                    self.timers.failed();
                    return Err(Failure::rejected(error.to_string()));
                }
                Some(state)
            }
            None => state,
        };
        self.timers.commit(now_ms, effects.timers);
        self.outbox.commit(&effects.side_effects);
        self.replicas.insert(replica, state);
        self.deleted |= effects.delete;
        Ok((effects.reply, effects.side_effects))
    }
}

/// Another replica of a [`CrdtKit`]'s entity, to run commands on: see
/// [`CrdtKit::replica`].
pub struct ReplicaKit<'k, E> {
    kit: &'k mut CrdtKit<E>,
    replica: String,
    metadata: super::KitMetadata,
}

impl<E: CrdtEntity> ReplicaKit<'_, E> {
    command_methods!(
        &mut self,
        "entity",
        "The entity's failure (nothing is then committed), or a `rejected` failure whose message starts with \
         `entity_deleted` once the entity was deleted."
    );

    /// The entity's value on this replica.
    pub fn value(&self) -> Option<CrdtValue> {
        self.kit.value_at(&self.replica)
    }

    /// Runs a command on this replica.
    fn run(&mut self, name: &str, payload: &[u8]) -> Result<(Reply, Vec<Effect>), Failure> {
        let now_ms = self.metadata.now_ms();
        let key = self.metadata.idempotency_key.clone();
        self.kit.run_on(&self.replica, name, payload, key.as_deref(), now_ms)
    }
}

/// The SDK's value of the model's.
fn value_of(value: Value) -> CrdtValue {
    match value {
        Value::GCounter(sum) => CrdtValue::GCounter(sum),
        Value::PNCounter(sum) => CrdtValue::PNCounter(sum),
        Value::GSet(elements) => CrdtValue::GSet(elements),
        Value::OrSet(elements) => CrdtValue::OrSet(elements),
        Value::LwwRegister(value) => CrdtValue::LwwRegister(value),
        Value::Flag(enabled) => CrdtValue::Flag(enabled),
        Value::OrMap(entries) => {
            CrdtValue::OrMap(entries.into_iter().map(|(key, value)| (key, value_of(value))).collect())
        }
        Value::Vote { self_vote, votes_for, voters } => CrdtValue::Vote(VoteValue { self_vote, votes_for, voters }),
    }
}

/// The model's change of the SDK's delta.
fn change_of(delta: CrdtDelta) -> Change {
    match delta {
        CrdtDelta::GCounter(by) => Change::Increment(by),
        CrdtDelta::PNCounter(by) => Change::PnChange(by),
        CrdtDelta::GSet(elements) => Change::GSetAdd(elements),
        CrdtDelta::OrSet(set) => Change::OrSet(OrSetChange { clear: set.clear, remove: set.remove, add: set.add }),
        CrdtDelta::LwwRegister(write) => Change::Set {
            value: write.value,
            clock: match write.clock {
                Clock::Default => wasmstate_crdt::Clock::Default,
                Clock::Reverse => wasmstate_crdt::Clock::Reverse,
                Clock::Custom(at) => wasmstate_crdt::Clock::Custom(at),
            },
        },
        CrdtDelta::Flag => Change::Enable,
        CrdtDelta::OrMap(map) => Change::OrMap(OrMapChange {
            clear: map.clear,
            remove: map.remove,
            update: map.update.into_iter().map(|(key, delta)| (key, change_of(delta))).collect(),
        }),
        CrdtDelta::Vote(yes) => Change::Vote(yes),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::{Clock, CrdtContext, SideEffect, TimerCall};

    /// A board of tasks: a map from task to its done flag, plus a title.
    struct Board;

    #[derive(Deserialize)]
    enum BoardCommand {
        Open { task: String },
        Done { task: String },
        Drop { task: String },
        Title { title: String, clock: Option<i64> },
        Remind,
        Fail,
    }

    impl CrdtEntity for Board {
        type Command = BoardCommand;

        fn handle(command: BoardCommand, ctx: &mut CrdtContext<'_>) -> Result<Reply, Failure> {
            match command {
                BoardCommand::Open { task } => {
                    ctx.map().gcounter(&task).increment(0);
                    let remind = TimerCall::new("boards", ctx.entity_id(), "Remind");
                    ctx.schedule("remind", Duration::from_secs(60), remind);
                }
                BoardCommand::Done { task } => {
                    ctx.map().gcounter(&task).increment(1);
                    ctx.effect(SideEffect::webhook("https://hooks.test/done").json(&task));
                }
                BoardCommand::Drop { task } => {
                    ctx.map().remove(&task);
                }
                BoardCommand::Title { title, clock } => {
                    let clock = clock.map_or(Clock::Default, Clock::Custom);
                    ctx.map().lww("title").set_with_clock(&title, clock);
                }
                BoardCommand::Remind => {
                    ctx.map().flag("reminded").enable();
                }
                BoardCommand::Fail => {
                    ctx.map().flag("reminded").enable();
                    ctx.effect(SideEffect::webhook("https://hooks.test/fail"));
                    return Err(Failure::rejected("asked to fail"));
                }
            }
            let entries: BTreeMap<String, CrdtValue> = ctx.map().entries()?.into_iter().collect();
            Ok(Reply::json(&entries.keys().collect::<Vec<_>>()))
        }
    }

    fn done(kit: &CrdtKit<Board>, task: &str) -> Option<u64> {
        kit.value()?.map_get(task)?.as_gcounter()
    }

    #[test]
    fn an_update_wins_over_a_concurrent_remove_of_its_key() {
        let mut kit = CrdtKit::<Board>::new("b-1");
        assert_eq!(kit.handle("Open", json!({"task": "wash"})), Ok(json!(["wash"])));
        kit.replica("host-b").handle("Done", json!({"task": "wash"})).unwrap();
        assert_eq!(kit.handle("Drop", json!({"task": "wash"})), Ok(json!([])));
        kit.merge_from("host-b");
        assert_eq!(done(&kit, "wash"), Some(1), "b's update survives, as b had it");
        assert_eq!(kit.take_webhooks().len(), 1, "the replica's webhook is kept too");
    }

    #[test]
    fn timers_fire_on_this_host_and_a_failed_command_commits_nothing() {
        let mut kit = CrdtKit::<Board>::new("b-2");
        kit.set_time_ms(1_000);
        kit.handle("Open", json!({"task": "wash"})).unwrap();
        assert_eq!(kit.timers()[0].due_ms, 61_000);
        let before = kit.value();
        assert_eq!(kit.handle("Fail", ()), Err(Failure::rejected("asked to fail")));
        assert_eq!((kit.value(), kit.webhooks().len()), (before, 0));
        let fired = kit.advance(Duration::from_secs(60));
        assert_eq!(fired[0].answer.as_ref().unwrap().as_ref().unwrap().reply, Some(json!(["reminded", "wash"])));
    }

    #[test]
    fn registers_order_writes_by_their_clock_across_replicas() {
        let mut kit = CrdtKit::<Board>::new("b-3");
        kit.handle("Title", json!({"title": "high", "clock": 9})).unwrap();
        kit.replica("host-b").handle("Title", json!({"title": "low", "clock": 3})).unwrap();
        kit.merge_from("host-b");
        let title = kit.value().unwrap().map_get("title").unwrap().register::<String>();
        assert_eq!(title, Ok(Some("high".to_owned())));
        kit.sync();
        assert_eq!(kit.value_at("host-b"), kit.value());
        assert_eq!(kit.value_at("host-c"), None, "a replica never named holds nothing");
    }
}
