//! The core of an event-sourced entity: the WIT `event-sourced.handle`
//! and `event-sourced.replay`.

use crate::reply::encode_json;
use crate::{Command, Context, Effect, EventSourcedEntity, Failure, Reply, StoredEvent, TimerChange};

/// What a successful command produced, encoded as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effects {
    /// The events the command emitted, in order.
    pub events: Vec<Vec<u8>>,
    /// The reply to the caller, or a forward.
    pub reply: Reply,
    /// Further commands to run and webhooks to send once the events are
    /// durable, in order.
    pub side_effects: Vec<Effect>,
    /// The entity's state after applying all of `events`.
    pub state: Vec<u8>,
    /// Timers set and cancelled, in order, committed with the events.
    pub timers: Vec<TimerChange>,
}

/// Why a stored history could not be rebuilt, mirroring the WIT
/// `replay-failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayFailure {
    /// The seq of the event that could not be read; `None` for the snapshot.
    pub seq: Option<u64>,
    /// What went wrong.
    pub message: String,
}

/// Handles `command` for entity type `E`.
///
/// The state is `snapshot`, a `(seq, state)` pair, or `E::default()` without
/// one, with `events` read by [`EventSourcedEntity::upcast`] and applied in
/// order.
///
/// # Errors
///
/// The handler's failure, or [`FailureCode::InvalidState`](crate::FailureCode::InvalidState)
/// if the snapshot or an event cannot be read.
///
/// # Panics
///
/// If the handler panics, or if an emitted event or the resulting state
/// cannot be encoded as JSON.
pub fn handle<'a, E: EventSourcedEntity>(
    snapshot: Option<(u64, &[u8])>,
    events: impl IntoIterator<Item = StoredEvent<'a>>,
    command: Command<'_>,
) -> Result<Effects, Failure> {
    let state = fold::<E>(snapshot, events).map_err(|failure| Failure::invalid_state(failure.message))?;
    let mut ctx = Context::new(&command, &state);
    let reply = state.handle(command, &mut ctx)?;
    let parts = ctx.into_parts();
    Ok(Effects {
        events: parts.events.iter().map(|event| encode_json(event, "event")).collect(),
        reply,
        side_effects: parts.side_effects,
        state: encode_json(parts.working.as_ref().unwrap_or(&state), "state"),
        timers: parts.timers,
    })
}

/// Rebuilds the state of entity type `E` from `snapshot` and `events`, as
/// [`handle`] does before a command, and answers it encoded as JSON.
///
/// # Errors
///
/// If the snapshot or an event cannot be read, naming which.
///
/// # Panics
///
/// If `apply` panics, or if the state cannot be encoded as JSON.
pub fn replay<'a, E: EventSourcedEntity>(
    snapshot: Option<(u64, &[u8])>,
    events: impl IntoIterator<Item = StoredEvent<'a>>,
) -> Result<Vec<u8>, ReplayFailure> {
    fold::<E>(snapshot, events).map(|state| encode_json(&state, "state"))
}

/// The state `snapshot` decodes to (or the default), with `events` applied.
fn fold<'a, E: EventSourcedEntity>(
    snapshot: Option<(u64, &[u8])>,
    events: impl IntoIterator<Item = StoredEvent<'a>>,
) -> Result<E, ReplayFailure> {
    let mut state = match snapshot {
        Some((seq, bytes)) => serde_json::from_slice::<E>(bytes).map_err(|error| ReplayFailure {
            seq: None,
            message: format!("snapshot at seq {seq} could not be decoded: {error}"),
        })?,
        None => E::default(),
    };
    for event in events {
        let decoded = E::upcast(event).map_err(|error| ReplayFailure {
            seq: Some(event.seq()),
            message: format!("event {} could not be decoded: {error}", event.seq()),
        })?;
        state.apply(&decoded);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::raw::assert_failure;
    use crate::{FailureCode, Forward, SideEffect};

    thread_local! {
        static CLONES: Cell<usize> = const { Cell::new(0) };
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Tally {
        total: i64,
    }

    impl Clone for Tally {
        fn clone(&self) -> Self {
            CLONES.with(|clones| clones.set(clones.get() + 1));
            Self { total: self.total }
        }
    }

    #[derive(Deserialize)]
    struct Add {
        #[serde(default = "one")]
        by: i64,
        #[serde(default)]
        times: usize,
        #[serde(default)]
        effects: usize,
        #[serde(default)]
        fail: bool,
    }

    fn one() -> i64 {
        1
    }

    impl EventSourcedEntity for Tally {
        type Event = i64;

        fn apply(&mut self, event: &i64) {
            self.total += event;
        }

        fn handle(&self, command: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
            match command.name() {
                "Add" => {
                    let add: Add = command.json()?;
                    for _ in 0..add.times {
                        ctx.emit(add.by);
                    }
                    assert_eq!(self.total + add.by * add.times as i64, ctx.state().total);
                    for n in 0..add.effects {
                        ctx.effect(SideEffect::new("audit", ctx.entity_id(), "Record").json(&n));
                    }
                    assert_eq!(ctx.side_effects().len(), add.effects);
                    if add.fail {
                        return Err(Failure::rejected("asked to fail"));
                    }
                    Ok(Reply::json(&ctx.state().total))
                }
                "Forward" => {
                    ctx.emit(1);
                    ctx.effect(SideEffect::new("audit", "all", "Forwarded").synchronous());
                    let forward = Forward::new("other", "o-1", "Take").json(&ctx.state().total);
                    Ok(Reply::forward(forward))
                }
                "Unit" => command.json::<()>().map(|()| Reply::empty()),
                "Id" => Ok(Reply::raw(ctx.entity_id())),
                _ => Err(command.unknown()),
            }
        }
    }

    fn run(
        snapshot: Option<(u64, &[u8])>,
        events: &[(u64, &[u8])],
        name: &str,
        payload: &str,
    ) -> Result<Effects, Failure> {
        let events = events.iter().map(|&(seq, payload)| StoredEvent::new(seq, 1, payload));
        handle::<Tally>(snapshot, events, Command::new(name, payload.as_bytes(), "t-1"))
    }

    fn clones() -> usize {
        CLONES.with(Cell::get)
    }

    #[test]
    fn folds_snapshot_and_events() {
        let effects = run(Some((2, br#"{"total":10}"#)), &[(3, b"5"), (4, b"-2")], "Add", r#"{"times":1}"#).unwrap();
        assert_eq!(effects.events, vec![b"1".to_vec()]);
        assert_eq!(effects.reply, Reply::raw("14"));
        assert_eq!(effects.state, br#"{"total":14}"#);
    }

    #[test]
    fn empty_payload_decodes_like_an_empty_object() {
        for payload in ["", "  \n", "{}"] {
            let effects = run(None, &[], "Add", payload).unwrap();
            assert!(effects.events.is_empty());
            assert_eq!(effects.reply, Reply::raw("0"));
        }
        assert_eq!(run(None, &[], "Unit", "").unwrap().reply, Reply::empty());
        assert_eq!(run(None, &[], "Unit", "null").unwrap().reply, Reply::empty());
    }

    #[test]
    fn bad_json_is_an_invalid_payload() {
        let failure = run(None, &[], "Add", r#"{"by":"x"}"#).unwrap_err();
        assert_failure(&failure, FailureCode::InvalidPayload, "invalid payload for command \"Add\": invalid type");
        let failure = run(None, &[], "Add", "{").unwrap_err();
        assert_eq!(failure.code(), FailureCode::InvalidPayload);
        assert!(failure.message().contains("EOF"), "{failure}");
    }

    #[test]
    fn unknown_commands_are_reported() {
        let failure = run(None, &[], "Foo", "").unwrap_err();
        assert_eq!(failure, Failure::unknown_command("unknown command \"Foo\""));
    }

    #[test]
    fn failure_discards_emitted_events_and_side_effects() {
        let failure = run(None, &[], "Add", r#"{"times":3,"effects":2,"fail":true}"#).unwrap_err();
        assert_eq!(failure, Failure::rejected("asked to fail"));
    }

    #[test]
    fn side_effects_are_returned_in_order() {
        let effects = run(None, &[], "Add", r#"{"times":1,"effects":2}"#).unwrap();
        let expected: Vec<_> =
            (0..2).map(|n| Effect::from(SideEffect::new("audit", "t-1", "Record").json(&n))).collect();
        assert_eq!(effects.side_effects, expected);
        assert!(effects.side_effects.iter().all(|e| !e.as_command().unwrap().is_synchronous()));
    }

    #[test]
    fn forward_reply_keeps_events_and_side_effects() {
        let effects = run(None, &[(1, b"4")], "Forward", "").unwrap();
        assert_eq!(effects.reply, Reply::forward(Forward::new("other", "o-1", "Take").payload("5")));
        assert_eq!(effects.reply.as_message(), None);
        assert_eq!(effects.events, vec![b"1".to_vec()]);
        assert_eq!(effects.side_effects, [Effect::from(SideEffect::new("audit", "all", "Forwarded").synchronous())]);
        assert_eq!(effects.state, br#"{"total":5}"#);
    }

    #[test]
    fn working_copy_is_cloned_once_and_only_on_emit() {
        let before = clones();
        let effects = run(None, &[(1, b"4")], "Add", r#"{"times":0}"#).unwrap();
        assert_eq!(clones(), before);
        assert_eq!(effects.state, br#"{"total":4}"#);

        let effects = run(None, &[(1, b"4")], "Add", r#"{"by":2,"times":3}"#).unwrap();
        assert_eq!(clones(), before + 1);
        assert_eq!(effects.events, vec![b"2".to_vec(); 3]);
        assert_eq!(effects.reply, Reply::raw("10"));
        assert_eq!(effects.state, br#"{"total":10}"#);
    }

    #[test]
    fn context_exposes_the_entity_id() {
        assert_eq!(run(None, &[], "Id", "").unwrap().reply, Reply::raw("t-1"));
    }

    #[test]
    fn undecodable_snapshot_or_event_is_invalid_state() {
        let failure = run(Some((7, b"[]")), &[], "Add", "").unwrap_err();
        assert_failure(&failure, FailureCode::InvalidState, "snapshot at seq 7 could not be decoded: ");

        let failure = run(None, &[(1, b"1"), (2, b"\"two\"")], "Add", "").unwrap_err();
        assert_failure(&failure, FailureCode::InvalidState, "event 2 could not be decoded: ");
    }

    #[test]
    fn replay_answers_the_state_or_where_it_broke() {
        let events = [StoredEvent::new(3, 1, b"5"), StoredEvent::new(4, 2, b"-2")];
        assert_eq!(replay::<Tally>(Some((2, br#"{"total":10}"#)), events), Ok(br#"{"total":13}"#.to_vec()));
        assert_eq!(replay::<Tally>(None, []), Ok(br#"{"total":0}"#.to_vec()));

        let broken = [StoredEvent::new(1, 1, b"1"), StoredEvent::new(2, 1, b"{}")];
        let failure = replay::<Tally>(None, broken).unwrap_err();
        assert_eq!(failure.seq, Some(2));
        assert!(failure.message.starts_with("event 2 could not be decoded: "), "{}", failure.message);
        let failure = replay::<Tally>(Some((9, b"[]")), []).unwrap_err();
        assert_eq!(failure.seq, None);
        assert!(failure.message.starts_with("snapshot at seq 9"), "{}", failure.message);
    }
}
