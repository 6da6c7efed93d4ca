//! The core of a value entity: the WIT `value.handle` and `value.decode-state`.

use crate::{Command, Effect, Failure, Reply, TimerChange, ValueContext, ValueEntity};

/// What a command does to the stored state, mirroring the WIT `state-change`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// Leave the state as it is.
    Unchanged,
    /// Replace the state with this value, encoded as JSON.
    Update(Vec<u8>),
    /// Delete the state: the next command sees none.
    Delete,
}

/// What a successful command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueEffects {
    /// The reply to the caller, or a forward.
    pub reply: Reply,
    /// The change to the state.
    pub state: StateChange,
    /// Further commands to run and webhooks to send once the state change
    /// is durable, in order.
    pub side_effects: Vec<Effect>,
    /// Timers set and cancelled, in order, committed with the state change.
    pub timers: Vec<TimerChange>,
}

/// Handles `command` for entity type `E` against the stored `state`, if any.
///
/// # Errors
///
/// The handler's failure, or [`FailureCode::InvalidState`](crate::FailureCode::InvalidState)
/// if `state` cannot be decoded.
///
/// # Panics
///
/// If the handler panics, or if the new state cannot be encoded as JSON.
pub fn handle<E: ValueEntity>(state: Option<&[u8]>, command: Command<'_>) -> Result<ValueEffects, Failure> {
    let current = match state {
        Some(bytes) => serde_json::from_slice::<E>(bytes)
            .map_err(|error| Failure::invalid_state(format!("state could not be decoded: {error}")))?,
        None => E::default(),
    };
    let mut ctx = ValueContext::new(&command, &current, state.is_some());
    let reply = current.handle(command, &mut ctx)?;
    let (state, side_effects, timers) = ctx.into_parts();
    Ok(ValueEffects { reply, state, side_effects, timers })
}

/// Decodes a stored `state` of entity type `E` and answers it encoded as
/// JSON again, as the entity encodes it now.
///
/// # Errors
///
/// [`FailureCode::InvalidState`](crate::FailureCode::InvalidState) if
/// `state` cannot be decoded.
///
/// # Panics
///
/// If the state cannot be encoded as JSON.
pub fn decode_state<E: ValueEntity>(state: &[u8]) -> Result<Vec<u8>, Failure> {
    let decoded = serde_json::from_slice::<E>(state)
        .map_err(|error| Failure::invalid_state(format!("state could not be decoded: {error}")))?;
    Ok(crate::reply::encode_json(&decoded, "state"))
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;
    use crate::raw::assert_failure;
    use crate::{FailureCode, Forward, SideEffect};

    /// A list of tags; every command names its steps in the payload.
    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    struct Tags {
        tags: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Step {
        Add(String),
        Delete,
        Effect,
        Webhook,
        Fail,
    }

    impl ValueEntity for Tags {
        fn handle(&self, command: Command<'_>, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
            match command.name() {
                "Steps" => {
                    for step in command.json::<Vec<Step>>()? {
                        match step {
                            Step::Add(tag) => {
                                let mut tags = ctx.state().clone();
                                tags.tags.push(tag);
                                ctx.update(tags);
                            }
                            Step::Delete => ctx.delete(),
                            Step::Effect => ctx.effect(SideEffect::new("log", "tags", "Log")),
                            Step::Webhook => {
                                ctx.effect(SideEffect::webhook("https://hooks.test/tags").json(ctx.state()))
                            }
                            Step::Fail => return Err(Failure::rejected("asked to fail")),
                        }
                    }
                    Ok(Reply::json(&json!({"exists": ctx.exists(), "state": ctx.state()})))
                }
                "Before" => Ok(Reply::json(&json!({"exists": ctx.exists(), "state": self}))),
                "Forward" => Ok(Reply::forward(Forward::new("other", ctx.entity_id(), "Take").json(self))),
                _ => Err(command.unknown()),
            }
        }
    }

    fn run(state: Option<&str>, name: &str, payload: &str) -> Result<ValueEffects, Failure> {
        handle::<Tags>(state.map(str::as_bytes), Command::new(name, payload.as_bytes(), "v-1"))
    }

    fn reply(effects: &ValueEffects) -> serde_json::Value {
        serde_json::from_slice(effects.reply.as_message().unwrap()).unwrap()
    }

    #[test]
    fn no_state_is_the_default_and_does_not_exist() {
        let effects = run(None, "Before", "").unwrap();
        assert_eq!(reply(&effects), json!({"exists": false, "state": {"tags": []}}));
        assert_eq!(effects.state, StateChange::Unchanged);
        let effects = run(Some(r#"{"tags":["a"]}"#), "Before", "").unwrap();
        assert_eq!(reply(&effects), json!({"exists": true, "state": {"tags": ["a"]}}));
    }

    #[test]
    fn updates_replace_the_state_and_the_last_wins() {
        let effects = run(Some(r#"{"tags":["a"]}"#), "Steps", r#"[{"add":"b"},{"add":"c"}]"#).unwrap();
        assert_eq!(effects.state, StateChange::Update(br#"{"tags":["a","b","c"]}"#.to_vec()));
        assert_eq!(reply(&effects), json!({"exists": true, "state": {"tags": ["a", "b", "c"]}}));
    }

    #[test]
    fn delete_then_update_updates_and_update_then_delete_deletes() {
        let effects = run(Some(r#"{"tags":["a"]}"#), "Steps", r#"["delete",{"add":"z"}]"#).unwrap();
        assert_eq!(effects.state, StateChange::Update(br#"{"tags":["z"]}"#.to_vec()));

        let effects = run(Some(r#"{"tags":["a"]}"#), "Steps", r#"[{"add":"b"},"delete"]"#).unwrap();
        assert_eq!(effects.state, StateChange::Delete);
        assert_eq!(reply(&effects), json!({"exists": false, "state": {"tags": []}}));

        let effects = run(None, "Steps", r#"["delete"]"#).unwrap();
        assert_eq!(effects.state, StateChange::Delete);
    }

    #[test]
    fn side_effects_are_returned_and_failure_discards_everything() {
        let effects = run(None, "Steps", r#"["effect",{"add":"a"},"webhook","effect"]"#).unwrap();
        let log = Effect::from(SideEffect::new("log", "tags", "Log"));
        let hook = Effect::from(SideEffect::webhook("https://hooks.test/tags").json(&json!({"tags": ["a"]})));
        assert_eq!(effects.side_effects, [log.clone(), hook, log]);

        let failure = run(None, "Steps", r#"[{"add":"a"},"effect","webhook","fail"]"#).unwrap_err();
        assert_eq!(failure, Failure::rejected("asked to fail"));
    }

    #[test]
    fn forward_reply() {
        let effects = run(Some(r#"{"tags":["a"]}"#), "Forward", "").unwrap();
        assert_eq!(effects.reply, Reply::forward(Forward::new("other", "v-1", "Take").payload(r#"{"tags":["a"]}"#)));
        assert_eq!(effects.state, StateChange::Unchanged);
    }

    #[test]
    fn undecodable_state_is_invalid_state() {
        let failure = run(Some("[1]"), "Before", "").unwrap_err();
        assert_failure(&failure, FailureCode::InvalidState, "state could not be decoded: ");
        assert_eq!(run(None, "Nope", "").unwrap_err().code(), FailureCode::UnknownCommand);
    }

    #[test]
    fn decode_state_reencodes_or_refuses() {
        assert_eq!(decode_state::<Tags>(br#"{ "tags": ["a"] }"#), Ok(br#"{"tags":["a"]}"#.to_vec()));
        let failure = decode_state::<Tags>(b"[1]").unwrap_err();
        assert_failure(&failure, FailureCode::InvalidState, "state could not be decoded: ");
    }
}
