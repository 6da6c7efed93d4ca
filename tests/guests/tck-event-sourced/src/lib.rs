//! The event-sourced entity of Cloudstate's TCK model: one command runs a
//! list of actions, so a test can combine events, forwards, side effects
//! and failures at will.
//!
//! The state is a string, the concatenation of the values emitted so far.
//!
//! Commands (JSON bodies):
//!
//! - `Process {"actions": [...]}` runs the actions in order, then replies
//!   `{"message": <state after the command>}`, or forwards if an action
//!   asked to (the last forward wins). The actions:
//!   - `{"emit": "A"}` emits `{"type": "Emitted", "value": "A"}`, which
//!     appends `A` to the state at once;
//!   - `{"forward": {"service": S, "id": ID}}` makes the reply a forward to
//!     service `S`, entity `ID`, command `Call` with `{"from": <this entity's id>}`;
//!   - `{"effect": {"service": S, "id": ID, "synchronous": bool}}` adds a
//!     side effect to service `S`, entity `ID`, command `Call` with
//!     `{"from": <this entity's id>}`; `synchronous` defaults to false;
//!   - `{"fail": "message"}` fails the command with code `rejected` and that
//!     message; later actions do not run, and nothing is persisted.
//! - `Metadata` replies `{"seq", "nowMs", "idempotencyKey"}`, what the host
//!   told the command;
//! - `Call {"from"}` emits `{"type": "Called", "from": ...}`, which leaves
//!   the state as it is, and replies `{"message": <state>}`: the target of a
//!   forward or side effect records in its log that it was called.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Context, EventSourced, Failure, Reply};

#[path = "../../tck_common.rs"]
mod common;

use common::{Call, Process, Target, TckCommand, message, metadata_reply, process_reply};

/// The state: the concatenation of every emitted value.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tck(pub String);

/// What the entity records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// `value` was appended to the state.
    Emitted {
        /// The appended value.
        value: String,
    },
    /// The entity received `Call` from entity `from`.
    Called {
        /// The id of the calling entity.
        from: String,
    },
}

/// One step of `Process`.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Emit(String),
    Forward(Target),
    Effect(Target),
    Fail(String),
}

impl EventSourced for Tck {
    type Command = TckCommand<Step>;
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Emitted { value } => self.0.push_str(value),
            Event::Called { .. } => {}
        }
    }

    fn handle(command: TckCommand<Step>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        match command {
            TckCommand::Process(Process { actions }) => {
                let from = ctx.entity_id();
                let mut forward = None;
                for step in actions {
                    match step {
                        Step::Emit(value) => ctx.emit(Event::Emitted { value }),
                        Step::Forward(target) => forward = Some(target.forward(from)),
                        Step::Effect(target) => ctx.effect(target.effect(from)),
                        Step::Fail(message) => return Err(Failure::rejected(message)),
                    }
                }
                Ok(process_reply(forward, &ctx.state().0))
            }
            TckCommand::Call(Call { from }) => {
                ctx.emit(Event::Called { from });
                Ok(message(&ctx.state().0))
            }
            TckCommand::Metadata => Ok(metadata_reply(ctx.metadata())),
        }
    }
}

wasmstate_sdk::export_event_sourced!(Tck);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::testkit::{ForwardCall, SideEffectCall, TestKit};

    use super::*;

    #[test]
    fn emits_and_replies_the_state() {
        let mut kit = TestKit::<Tck>::new("e-1");
        let process = json!({"actions": [{"emit": "A"}, {"emit": "B"}]});
        assert_eq!(kit.handle("Process", process), Ok(json!({"message": "AB"})));
        assert_eq!(kit.handle("Process", json!({"actions": []})), Ok(json!({"message": "AB"})));
        assert_eq!(kit.events_json()[0], (1, json!({"type": "Emitted", "value": "A"})));
    }

    #[test]
    fn forwards_and_adds_side_effects() {
        let mut kit = TestKit::<Tck>::new("e-1");
        let process = json!({"actions": [
            {"emit": "A"},
            {"effect": {"service": "other", "id": "o-1", "synchronous": true}},
            {"effect": {"service": "other", "id": "o-2"}},
            {"forward": {"service": "other", "id": "o-3"}},
        ]});
        let outcome = kit.handle_outcome("Process", process).unwrap();
        assert_eq!(outcome.reply, None);
        assert_eq!(outcome.forward, Some(ForwardCall::new("other", "o-3", "Call", json!({"from": "e-1"}))));
        assert_eq!(
            outcome.side_effects,
            [
                SideEffectCall::new("other", "o-1", "Call", json!({"from": "e-1"})).synchronous(),
                SideEffectCall::new("other", "o-2", "Call", json!({"from": "e-1"})),
            ]
        );
        assert_eq!(kit.state(), Tck("A".into()));
    }

    #[test]
    fn fail_stops_and_persists_nothing() {
        let mut kit = TestKit::<Tck>::new("e-1");
        let process = json!({"actions": [{"emit": "A"}, {"fail": "no"}, {"emit": "B"}]});
        assert_eq!(kit.handle("Process", process), Err(Failure::rejected("no")));
        assert_eq!(kit.seq(), 0);
    }

    #[test]
    fn call_is_logged_without_changing_the_state() {
        let mut kit = TestKit::<Tck>::new("o-1");
        kit.handle("Process", json!({"actions": [{"emit": "X"}]})).unwrap();
        assert_eq!(kit.handle("Call", json!({"from": "e-1"})), Ok(json!({"message": "X"})));
        assert_eq!(kit.events_json()[1], (2, json!({"type": "Called", "from": "e-1"})));
        assert_eq!(kit.state(), Tck("X".into()));
    }
}
