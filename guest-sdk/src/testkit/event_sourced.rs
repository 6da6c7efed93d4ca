//! The test kit of event-sourced entities.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::{Command, EventSourcedEntity, Failure, Reply, SideEffect, raw};

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
    events: Vec<(u64, Vec<u8>)>,
    state: Option<Vec<u8>>,
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
            state: None,
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

    command_methods!(&mut self, "entity", "The entity's failure; the log and state are then unchanged.");

    /// Runs a command and commits its events, as the host does.
    fn run(&mut self, name: &str, payload: &[u8]) -> Result<(Reply, Vec<SideEffect>), Failure> {
        let snapshot = self.snapshot.as_ref().map(|(seq, state)| (*seq, state.as_slice()));
        let after = snapshot.map_or(0, |(seq, _)| seq);
        let events = self.events.iter().filter(|(seq, _)| *seq > after).map(|(seq, event)| (*seq, event.as_slice()));
        let effects = raw::event_sourced::handle::<E>(snapshot, events, Command::new(name, payload, &self.entity_id))?;

        let first = self.seq() + 1;
        self.events.extend((first..).zip(effects.events));
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
        self.events.last().map_or(0, |(seq, _)| *seq)
    }

    /// The committed events with their sequence numbers, decoded.
    pub fn events(&self) -> Vec<(u64, E::Event)> {
        self.decode_events("committed events decode")
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
        self.events.iter().map(|(seq, bytes)| (*seq, serde_json::from_slice(bytes).expect(expect))).collect()
    }

    /// The state the last successful command returned, decoded; the default
    /// state before any.
    pub fn state(&self) -> E {
        self.state
            .as_ref()
            .map_or_else(E::default, |bytes| serde_json::from_slice(bytes).expect("the returned state decodes"))
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
            })
        );
        assert_eq!(kit.seq(), 3);
        assert_eq!(
            kit.handle_outcome("Write", json!({ "lines": [] })),
            Ok(Outcome { reply: Some(json!({})), forward: None, side_effects: vec![] })
        );
    }

    #[test]
    fn failed_forward_commits_nothing() {
        let mut kit = TestKit::<Log>::new("log");
        let failure = kit.handle_outcome("Publish", json!({ "lines": ["b"], "fail": true })).unwrap_err();
        assert_eq!(failure, Failure::rejected("asked to fail"));
        assert_eq!(kit.seq(), 0);
    }

    #[test]
    #[should_panic(expected = "command Publish forwarded to mirror/log/Copy: use handle_outcome")]
    fn handle_refuses_to_hide_a_forward() {
        let mut kit = TestKit::<Log>::new("log");
        let _ = kit.handle("Publish", json!({ "lines": [] }));
    }
}
