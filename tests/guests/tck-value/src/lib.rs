//! The value entity of Cloudstate's TCK model: one command runs a list of
//! actions, so a test can combine state changes, forwards, side effects and
//! failures at will.
//!
//! The state is a string; none is stored until the first update.
//!
//! Commands (JSON bodies):
//!
//! - `Process {"actions": [...]}` runs the actions in order, then replies
//!   `{"message": <state after the command, "" when none>}`, or forwards if
//!   an action asked to (the last forward wins). The actions:
//!   - `{"update": "A"}` sets the state to `"A"`;
//!   - `{"delete": true}` deletes the state (`{"delete": false}` does
//!     nothing); the last update or delete wins;
//!   - `{"forward": {"service": S, "id": ID}}` makes the reply a forward to
//!     service `S`, entity `ID`, command `Call` with `{"from": <this entity's id>}`;
//!   - `{"effect": {"service": S, "id": ID, "synchronous": bool}}` adds a
//!     side effect to service `S`, entity `ID`, command `Call` with
//!     `{"from": <this entity's id>}`; `synchronous` defaults to false;
//!   - `{"fail": "message"}` fails the command with code `rejected` and that
//!     message; later actions do not run, and nothing is persisted.
//! - `Call {"from"}` replies `{"message": <state>}` and changes nothing;
//! - `Metadata` replies `{"seq", "nowMs", "idempotencyKey"}`, what the host
//!   told the command (`seq` counts the state's writes).

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Failure, KeyValue, Reply, ValueContext};

#[path = "../../tck_common.rs"]
mod common;

use common::{Process, Target, TckCommand, message, metadata_reply, process_reply};

/// The state: a string, `""` when none is stored.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TckValue(pub String);

/// One step of `Process`.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Update(String),
    Delete(bool),
    Forward(Target),
    Effect(Target),
    Fail(String),
}

impl KeyValue for TckValue {
    type Command = TckCommand<Step>;

    fn handle(command: TckCommand<Step>, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
        match command {
            TckCommand::Process(Process { actions }) => {
                let from = ctx.entity_id();
                let mut forward = None;
                for step in actions {
                    match step {
                        Step::Update(value) => ctx.update(TckValue(value)),
                        Step::Delete(true) => ctx.delete(),
                        Step::Delete(false) => {}
                        Step::Forward(target) => forward = Some(target.forward(from)),
                        Step::Effect(target) => ctx.effect(target.effect(from)),
                        Step::Fail(message) => return Err(Failure::rejected(message)),
                    }
                }
                Ok(process_reply(forward, &ctx.state().0))
            }
            TckCommand::Call(_) => Ok(message(&ctx.state().0)),
            TckCommand::Metadata => Ok(metadata_reply(ctx.metadata())),
        }
    }
}

wasmstate_sdk::export_value_entity!(TckValue);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::testkit::{ForwardCall, SideEffectCall, ValueTestKit};

    use super::*;

    fn process(kit: &mut ValueTestKit<TckValue>, actions: serde_json::Value) -> Result<serde_json::Value, Failure> {
        kit.handle("Process", json!({ "actions": actions }))
    }

    #[test]
    fn updates_and_deletes_last_wins() {
        let mut kit = ValueTestKit::<TckValue>::new("v-1");
        assert_eq!(process(&mut kit, json!([])), Ok(json!({"message": ""})));
        assert_eq!(process(&mut kit, json!([{"update": "A"}, {"update": "B"}])), Ok(json!({"message": "B"})));
        assert_eq!(kit.state(), Some(TckValue("B".into())));
        assert_eq!(process(&mut kit, json!([{"delete": true}, {"update": "C"}])), Ok(json!({"message": "C"})));
        assert_eq!(process(&mut kit, json!([{"update": "D"}, {"delete": true}])), Ok(json!({"message": ""})));
        assert_eq!(kit.state(), None);
        assert_eq!(process(&mut kit, json!([{"delete": false}])), Ok(json!({"message": ""})));
    }

    #[test]
    fn forwards_and_adds_side_effects() {
        let mut kit = ValueTestKit::<TckValue>::new("v-1");
        let outcome = kit
            .handle_outcome(
                "Process",
                json!({"actions": [
                    {"update": "A"},
                    {"forward": {"service": "s", "id": "x"}},
                    {"effect": {"service": "s", "id": "y", "synchronous": true}},
                    {"forward": {"service": "s", "id": "z"}},
                ]}),
            )
            .unwrap();
        assert_eq!(outcome.forward, Some(ForwardCall::new("s", "z", "Call", json!({"from": "v-1"}))));
        assert_eq!(outcome.side_effects, [SideEffectCall::new("s", "y", "Call", json!({"from": "v-1"})).synchronous()]);
        assert_eq!(kit.state(), Some(TckValue("A".into())));
    }

    #[test]
    fn fail_changes_nothing_and_call_only_reads() {
        let mut kit = ValueTestKit::<TckValue>::new("v-1").with_state(&TckValue("A".into()));
        assert_eq!(process(&mut kit, json!([{"update": "B"}, {"fail": "no"}])), Err(Failure::rejected("no")));
        assert_eq!(kit.handle("Call", json!({"from": "e-1"})), Ok(json!({"message": "A"})));
        assert_eq!(kit.state(), Some(TckValue("A".into())));
    }
}
