//! The test kit of event-sourced entities.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Command, Effect, EventSourcedEntity, Failure, Metadata, Reply, StoredEvent, raw};

/// The version the kit records for the events its commands emit, unless
/// told another ([`TestKit::at_version`]).
const KIT_VERSION: u32 = 1;

/// An in-memory host for one entity of type `E`.
///
/// ```
/// # use wasmstate_sdk::{Command, Context, EventSourcedEntity, Failure, Reply};
/// # #[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
/// # struct Visits(u64);
/// # impl EventSourcedEntity for Visits {
/// #     type Event = ();
/// #     fn apply(&mut self, _: &()) { self.0 += 1 }
/// #     fn handle(&self, _: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
/// #         ctx.emit(());
/// #         Ok(Reply::json(&ctx.state().0))
/// #     }
/// # }
/// use wasmstate_sdk::testkit::TestKit;
///
/// let mut kit = TestKit::<Visits>::new("home");
/// assert_eq!(kit.handle("Visit", ()).unwrap(), 1);
/// assert_eq!(kit.handle("Visit", ()).unwrap(), 2);
/// assert_eq!(kit.events().len(), 2);
/// let outcome = kit.handle_outcome("Visit", ()).unwrap();
/// assert_eq!(outcome.reply, Some(serde_json::json!(3)));
/// assert!(outcome.forward.is_none() && outcome.side_effects.is_empty());
/// ```
pub struct TestKit<E> {
    entity_id: String,
    snapshot_every: Option<u64>,
    snapshot: Option<(u64, Vec<u8>)>,
    /// (seq, version, event) as the host would store them.
    events: Vec<(u64, u32, Vec<u8>)>,
    /// The version recorded for the events commands emit.
    version: u32,
    state: Option<Vec<u8>>,
    metadata: super::KitMetadata,
    timers: super::timers::KitTimers,
    outbox: super::webhooks::KitOutbox,
    entity: PhantomData<fn() -> E>,
}

impl<E: EventSourcedEntity> TestKit<E> {
    /// A kit for a fresh entity with id `entity_id` and an empty log.
    ///
    /// By default every command rebuilds the state from the whole log, which
    /// exercises [`EventSourcedEntity::apply`] for every event.
    pub fn new(entity_id: impl Into<String>) -> Self {
        Self {
            entity_id: entity_id.into(),
            snapshot_every: None,
            snapshot: None,
            events: Vec::new(),
            version: KIT_VERSION,
            state: None,
            metadata: super::KitMetadata::default(),
            timers: super::timers::KitTimers::default(),
            outbox: super::webhooks::KitOutbox::default(),
            entity: PhantomData,
        }
    }

    /// Takes a snapshot whenever `events` more events have been committed,
    /// as the host does; commands then start from the latest snapshot.
    ///
    /// # Panics
    ///
    /// If `events` is zero.
    pub fn with_snapshot_every(mut self, events: u64) -> Self {
        assert!(events > 0, "snapshot interval must be positive");
        self.snapshot_every = Some(events);
        self
    }

    /// Records `version` as the version of the service that emits the
    /// events of the commands the kit runs from now on (1 by default): set
    /// it to the version under test when an upcaster tells versions apart.
    pub fn at_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Appends `events` to the log as stored events, each encoded as JSON,
    /// as if an earlier version of the service (version 0: not recorded)
    /// had emitted them: seed the kit with the events a deployed version
    /// stored, to test that this version reads them (see
    /// [`EventSourcedEntity::upcast`]).
    ///
    /// # Panics
    ///
    /// If an event cannot be encoded as JSON.
    pub fn with_events<T: Serialize>(self, events: impl IntoIterator<Item = T>) -> Self {
        self.with_events_of_version(0, events)
    }

    /// Like [`with_events`](Self::with_events), recording `version` as the
    /// version of the service that emitted them.
    ///
    /// # Panics
    ///
    /// If an event cannot be encoded as JSON.
    pub fn with_events_of_version<T: Serialize>(mut self, version: u32, events: impl IntoIterator<Item = T>) -> Self {
        for event in events {
            let bytes = serde_json::to_vec(&event).expect("a seeded event must be encodable as JSON");
            self.events.push((self.seq() + 1, version, bytes));
        }
        self.state = None;
        self
    }

    command_methods!(&mut self, "entity", "The entity's failure; the log, state and timers are then unchanged.");

    kit_timer_methods!();

    kit_webhook_methods!();

    /// The events after the latest snapshot, as the host passes them.
    fn unsnapshotted(&self) -> impl Iterator<Item = StoredEvent<'_>> {
        let after = self.snapshot.as_ref().map_or(0, |(seq, _)| *seq);
        self.events
            .iter()
            .filter(move |(seq, ..)| *seq > after)
            .map(|(seq, version, event)| StoredEvent::new(*seq, *version, event))
    }

    /// Runs a command under the test's idempotency key.
    fn run(&mut self, name: &str, payload: &[u8]) -> Result<(Reply, Vec<Effect>), Failure> {
        let key = self.metadata.idempotency_key.clone();
        self.run_keyed(name, payload, key.as_deref())
    }

    /// Runs a command under `key` and commits its events, timer changes and
    /// webhooks, as the host does.
    fn run_keyed(&mut self, name: &str, payload: &[u8], key: Option<&str>) -> Result<(Reply, Vec<Effect>), Failure> {
        let snapshot = self.snapshot.as_ref().map(|(seq, state)| (*seq, state.as_slice()));
        let after = snapshot.map_or(0, |(seq, _)| seq);
        let now_ms = self.metadata.now_ms();
        let metadata = self.timers.addressed(Metadata::new(self.seq(), now_ms, key));
        let command = Command::new(name, payload, &self.entity_id).with_metadata(metadata);
        let effects = raw::event_sourced::handle::<E>(snapshot, self.unsnapshotted(), command)
            .inspect_err(|_| self.timers.failed())?;
        self.timers.commit(now_ms, effects.timers);
        self.outbox.commit(&effects.side_effects);

        let first = self.seq() + 1;
        let version = self.version;
        self.events.extend((first..).zip(effects.events).map(|(seq, event)| (seq, version, event)));
        if let Some(interval) = self.snapshot_every
            && self.seq() - after >= interval
        {
            self.snapshot = Some((self.seq(), effects.state.clone()));
        }
        self.state = Some(effects.state);
        Ok((effects.reply, effects.side_effects))
    }

    /// The sequence number of the last committed event; 0 for an empty log.
    pub fn seq(&self) -> u64 {
        self.events.last().map_or(0, |(seq, ..)| *seq)
    }

    /// The committed events with their sequence numbers, read by
    /// [`EventSourcedEntity::upcast`].
    ///
    /// # Panics
    ///
    /// If an event cannot be read.
    pub fn events(&self) -> Vec<(u64, E::Event)> {
        let read = |(seq, version, bytes): &(u64, u32, Vec<u8>)| {
            let event = E::upcast(StoredEvent::new(*seq, *version, bytes));
            (*seq, event.unwrap_or_else(|error| panic!("event {seq} cannot be read: {error}")))
        };
        self.events.iter().map(read).collect()
    }

    /// The committed events with their sequence numbers, as JSON values.
    pub fn events_json(&self) -> Vec<(u64, serde_json::Value)> {
        self.decode_events("committed events are JSON")
    }

    /// The committed events with their sequence numbers, decoded as `T`.
    ///
    /// # Panics
    ///
    /// If an event does not decode, with message `expect`.
    fn decode_events<T: DeserializeOwned>(&self, expect: &str) -> Vec<(u64, T)> {
        self.events.iter().map(|(seq, _, bytes)| (*seq, serde_json::from_slice(bytes).expect(expect))).collect()
    }

    /// The state the last successful command returned, decoded; before any
    /// (or after [`with_events`](Self::with_events)), the state the log
    /// folds to.
    ///
    /// # Panics
    ///
    /// If the log cannot be folded, naming the event that cannot be read.
    pub fn state(&self) -> E {
        let bytes = match &self.state {
            Some(bytes) => bytes.clone(),
            None => {
                let snapshot = self.snapshot.as_ref().map(|(seq, state)| (*seq, state.as_slice()));
                raw::event_sourced::replay::<E>(snapshot, self.unsnapshotted())
                    .unwrap_or_else(|failure| panic!("the log cannot be folded: {}", failure.message))
            }
        };
        serde_json::from_slice(&bytes).expect("the state decodes")
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::TestKit;
    use crate::testkit::{ForwardCall, Outcome, SideEffectCall};
    use crate::{Command, Context, EventSourcedEntity, Failure, FailureCode, Forward, Reply, SideEffect};

    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    struct Log {
        lines: Vec<String>,
    }

    #[derive(Deserialize)]
    struct Write {
        lines: Vec<String>,
        #[serde(default)]
        fail: bool,
    }

    impl EventSourcedEntity for Log {
        type Event = String;

        fn apply(&mut self, line: &String) {
            self.lines.push(line.clone());
        }

        fn handle(&self, command: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
            match command.name() {
                "Write" => {
                    let write: Write = command.json()?;
                    write.lines.into_iter().for_each(|line| ctx.emit(line));
                    if write.fail {
                        return Err(Failure::rejected("asked to fail"));
                    }
                    Ok(Reply::empty())
                }
                "Read" => Ok(Reply::json(self)),
                "Publish" => {
                    let write: Write = command.json()?;
                    for line in write.lines {
                        ctx.effect(SideEffect::new("feed", "all", "Post").json(&line));
                        ctx.emit(line);
                    }
                    ctx.effect(SideEffect::new("feed", "all", "Flush").synchronous());
                    ctx.effect(SideEffect::webhook("https://feed.test/published").json(ctx.state()));
                    if write.fail {
                        return Err(Failure::rejected("asked to fail"));
                    }
                    let forward = Forward::new("mirror", ctx.entity_id(), "Copy").json(ctx.state());
                    Ok(Reply::forward(forward))
                }
                "Nothing" => Ok(Reply::raw(Vec::new())),
                _ => Err(command.unknown()),
            }
        }
    }

    fn write(kit: &mut TestKit<Log>, lines: &[&str]) {
        assert_eq!(kit.handle("Write", json!({ "lines": lines })), Ok(json!({})));
    }

    #[test]
    fn commits_events_in_order() {
        let mut kit = TestKit::<Log>::new("log");
        write(&mut kit, &["a", "b"]);
        write(&mut kit, &["c"]);
        assert_eq!(kit.seq(), 3);
        assert_eq!(kit.events(), [(1, "a".to_owned()), (2, "b".to_owned()), (3, "c".to_owned())]);
        assert_eq!(kit.events_json()[2], (3, json!("c")));
        assert_eq!(kit.handle("Read", ()), Ok(json!({ "lines": ["a", "b", "c"] })));
        assert_eq!(kit.state().lines, ["a", "b", "c"]);
    }

    #[test]
    fn failed_commands_change_nothing() {
        let mut kit = TestKit::<Log>::new("log");
        write(&mut kit, &["a"]);
        let failure = kit.handle("Write", json!({ "lines": ["b"], "fail": true })).unwrap_err();
        assert_eq!(failure.code(), FailureCode::Rejected);
        assert_eq!(kit.handle_raw("Write", b"[").unwrap_err().code(), FailureCode::InvalidPayload);
        assert_eq!(kit.handle("Drop", ()).unwrap_err().code(), FailureCode::UnknownCommand);
        assert_eq!(kit.seq(), 1);
        assert_eq!(kit.state().lines, ["a"]);
    }

    #[test]
    fn snapshots_give_the_same_state() {
        let mut kit = TestKit::<Log>::new("log").with_snapshot_every(2);
        for line in ["a", "b", "c", "d", "e"] {
            write(&mut kit, &[line]);
        }
        assert_eq!(kit.snapshot.as_ref().map(|(seq, _)| *seq), Some(4));
        assert_eq!(kit.handle("Read", ()), Ok(json!({ "lines": ["a", "b", "c", "d", "e"] })));
    }

    #[test]
    fn seeded_events_are_read_through_upcast() {
        #[derive(Debug, Default, Clone, Serialize, Deserialize)]
        struct Upcasting {
            lines: Vec<String>,
        }
        impl EventSourcedEntity for Upcasting {
            type Event = String;
            fn apply(&mut self, line: &String) {
                self.lines.push(line.clone());
            }
            fn upcast(event: crate::StoredEvent<'_>) -> serde_json::Result<String> {
                // Version 1 stored {"line": ...}; later ones the bare string.
                match event.version() {
                    1 => event.json::<serde_json::Value>().map(|v| v["line"].as_str().unwrap_or_default().to_owned()),
                    _ => event.json(),
                }
            }
            fn handle(&self, _: Command<'_>, _: &mut Context<'_, Self>) -> Result<Reply, Failure> {
                Ok(Reply::json(self))
            }
        }
        let mut kit = TestKit::<Upcasting>::new("u")
            .with_events_of_version(1, [json!({"line": "old"})])
            .with_events_of_version(2, ["new"]);
        assert_eq!(kit.state().lines, ["old", "new"]);
        assert_eq!(kit.events(), [(1, "old".to_owned()), (2, "new".to_owned())]);
        assert_eq!(kit.handle("Read", ()), Ok(json!({"lines": ["old", "new"]})));

        // The plain entity cannot read the old shape: the command fails as
        // the host would report it.
        let mut plain = TestKit::<Log>::new("log").with_events([json!({"line": "old"})]);
        let failure = plain.handle("Read", ()).unwrap_err();
        assert_eq!(failure.code(), FailureCode::InvalidState);
        assert!(failure.message().starts_with("event 1 could not be decoded"), "{failure}");
    }

    #[test]
    fn empty_reply_is_null() {
        let mut kit = TestKit::<Log>::new("log");
        assert_eq!(kit.handle("Nothing", ()), Ok(serde_json::Value::Null));
        assert_eq!(kit.handle_raw("Nothing", b""), Ok(Vec::new()));
    }

    #[test]
    fn outcome_shows_forward_and_side_effects() {
        let mut kit = TestKit::<Log>::new("log");
        write(&mut kit, &["a"]);
        assert_eq!(
            kit.handle_outcome("Publish", json!({ "lines": ["b", "c"] })),
            Ok(Outcome {
                reply: None,
                forward: Some(ForwardCall::new("mirror", "log", "Copy", json!({ "lines": ["a", "b", "c"] }))),
                side_effects: vec![
                    SideEffectCall::new("feed", "all", "Post", json!("b")),
                    SideEffectCall::new("feed", "all", "Post", json!("c")),
                    SideEffectCall::new("feed", "all", "Flush", serde_json::Value::Null).synchronous(),
                ],
                webhooks: vec![
                    SideEffect::webhook("https://feed.test/published").json(&json!({ "lines": ["a", "b", "c"] }))
                ],
            })
        );
        assert_eq!(kit.seq(), 3);
        assert_eq!(kit.webhooks().len(), 1);
        assert_eq!(
            kit.handle_outcome("Write", json!({ "lines": [] })),
            Ok(Outcome { reply: Some(json!({})), forward: None, side_effects: vec![], webhooks: vec![] })
        );
    }

    #[test]
    fn failed_forward_commits_nothing() {
        let mut kit = TestKit::<Log>::new("log");
        let failure = kit.handle_outcome("Publish", json!({ "lines": ["b"], "fail": true })).unwrap_err();
        assert_eq!(failure, Failure::rejected("asked to fail"));
        assert_eq!(kit.seq(), 0);
        assert!(kit.webhooks().is_empty(), "a failed command sends no webhook");
    }

    #[test]
    #[should_panic(expected = "command Publish forwarded to mirror/log/Copy: use handle_outcome")]
    fn handle_refuses_to_hide_a_forward() {
        let mut kit = TestKit::<Log>::new("log");
        let _ = kit.handle("Publish", json!({ "lines": [] }));
    }
}
