//! The core of a CRDT entity: the WIT `crdt.handle`.

use crate::crdt::{CrdtContext, CrdtDelta, CrdtEntity, CrdtParts, CrdtValue};
use crate::{Command, Effect, Failure, Reply, TimerChange};

/// What a successful command produced, mirroring the WIT `crdt-effects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdtEffects {
    /// The reply to the caller, or a forward.
    pub reply: Reply,
    /// The change to the entity, of its type; `None` leaves it as it is.
    pub delta: Option<CrdtDelta>,
    /// Whether the entity is deleted for good.
    pub delete: bool,
    /// Further commands to run and webhooks to send once the delta is
    /// durable, in order.
    pub side_effects: Vec<Effect>,
    /// Timers set and cancelled, in order, committed with the delta.
    pub timers: Vec<TimerChange>,
}

/// Handles `command` for entity type `E` against its `value` as this host
/// has it (`None`: the entity is new).
///
/// # Errors
///
/// The handler's failure, or a `rejected` failure if a handle changed the
/// entity (or a map key) as another type than its own.
///
/// # Panics
///
/// If the handler panics, or if an element, register value or map key
/// cannot be encoded as JSON.
pub fn handle<E: CrdtEntity>(value: Option<&CrdtValue>, command: Command<'_>) -> Result<CrdtEffects, Failure> {
    let mut ctx = CrdtContext::new(&command, value);
    let reply = E::handle(command.decode()?, &mut ctx);
    if let Some(failure) = ctx.take_failure() {
        return Err(failure);
    }
    let reply = reply?;
    let CrdtParts { delta, delete, side_effects, timers } = ctx.into_parts();
    Ok(CrdtEffects { reply, delta, delete, side_effects, timers })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::crdt::OrSetDelta;
    use crate::raw::assert_failure;
    use crate::{FailureCode, SideEffect};

    struct Mixed;

    #[derive(Deserialize)]
    enum MixedCommand {
        Count(u64),
        Tag(String),
        Both,
        KeyTypes,
        Nested,
        FailAfterTag,
    }

    impl CrdtEntity for Mixed {
        type Command = MixedCommand;

        fn handle(command: MixedCommand, ctx: &mut CrdtContext<'_>) -> Result<Reply, Failure> {
            match command {
                MixedCommand::Count(by) => {
                    ctx.gcounter().increment(by).increment(1);
                    ctx.effect(SideEffect::new("audit", ctx.entity_id(), "Counted"));
                    return Ok(Reply::json(&ctx.gcounter().value()));
                }
                MixedCommand::Tag(tag) => {
                    ctx.orset().add(&tag).remove(&"gone");
                }
                MixedCommand::Both => {
                    ctx.gcounter().increment(1);
                    ctx.orset().add("x");
                }
                MixedCommand::KeyTypes => {
                    ctx.map().gcounter("k").increment(1);
                    ctx.map().flag("k").enable();
                }
                MixedCommand::Nested => {
                    ctx.map().remove("k").clear();
                    ctx.delete();
                }
                MixedCommand::FailAfterTag => {
                    ctx.orset().add("x");
                    return Err(Failure::rejected("asked to fail"));
                }
            }
            Ok(Reply::empty())
        }
    }

    fn run(value: Option<&CrdtValue>, name: &str, payload: &str) -> Result<CrdtEffects, Failure> {
        handle::<Mixed>(value, Command::new(name, payload.as_bytes(), "c-1"))
    }

    #[test]
    fn changes_combine_into_one_delta_of_the_entity_type() {
        let effects = run(Some(&CrdtValue::GCounter(10)), "Count", "2").unwrap();
        assert_eq!(effects.delta, Some(CrdtDelta::GCounter(3)));
        assert_eq!(effects.reply, Reply::raw("13"));
        assert_eq!(effects.side_effects.len(), 1);
        let effects = run(None, "Tag", r#""a""#).unwrap();
        let expected = OrSetDelta { clear: false, remove: vec![b"\"gone\"".to_vec()], add: vec![b"\"a\"".to_vec()] };
        assert_eq!(effects.delta, Some(CrdtDelta::OrSet(expected)));
        let effects = run(Some(&CrdtValue::OrMap(vec![])), "Nested", "").unwrap();
        assert!(effects.delete);
    }

    #[test]
    fn a_change_of_another_type_fails_the_command() {
        let failure = run(Some(&CrdtValue::GSet(vec![])), "Count", "1").unwrap_err();
        assert_failure(&failure, FailureCode::Rejected, "this entity is of type GSet: GCounter changes do not apply");
        let failure = run(None, "Both", "").unwrap_err();
        assert_failure(&failure, FailureCode::Rejected, "this entity is of type GCounter: ORSet changes do not apply");
        let failure = run(None, "KeyTypes", "").unwrap_err();
        assert_failure(&failure, FailureCode::Rejected, "key \"k\" of this map is of type GCounter: Flag changes");
        assert_eq!(run(None, "FailAfterTag", ""), Err(Failure::rejected("asked to fail")));
        assert_eq!(run(None, "Nope", "").unwrap_err().code(), FailureCode::UnknownCommand);
    }
}
