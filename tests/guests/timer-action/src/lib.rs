//! An action that sets and cancels durable timers on its routing key (the
//! entity id of the invocation URL): the host keeps an action's timers
//! under its service and that key.
//!
//! Commands (JSON bodies), each replying `{}`:
//!
//! - `Schedule {"name", "after_ms", "service", "entity", "command",
//!   "payload"}` sets timer `name`, due `after_ms` after the command, to run
//!   `command` of `entity` of `service` with `payload` (any JSON);
//! - `Cancel {"name"}` cancels timer `name`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use wasmstate_sdk::{ActionContext, Failure, Reply, Stateless, TimerCall};

/// The action; it keeps nothing.
#[derive(Default)]
pub struct TimerAction;

/// The action's commands.
#[derive(Deserialize)]
pub enum Command {
    /// Sets a timer on the routing key.
    Schedule {
        /// The timer's name.
        name: String,
        /// How long after the command it fires, in ms.
        after_ms: u64,
        /// The service of the command it runs.
        service: String,
        /// The entity of the command it runs.
        entity: String,
        /// The name of the command it runs.
        command: String,
        /// The payload of the command it runs.
        payload: Value,
    },
    /// Cancels a timer of the routing key.
    Cancel {
        /// The timer's name.
        name: String,
    },
}

impl Stateless for TimerAction {
    type Command = Command;

    fn handle(command: Command, ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
        match command {
            Command::Schedule { name, after_ms, service, entity, command, payload } => {
                let call = TimerCall::new(service, entity, command).json(&payload);
                ctx.schedule(name, Duration::from_millis(after_ms), call);
            }
            Command::Cancel { name } => ctx.cancel(name),
        }
        Ok(Reply::empty())
    }
}

wasmstate_sdk::export_action!(TimerAction);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::testkit::{ActionTestKit, ScheduledCall, TimerChangeCall};
    use wasmstate_sdk::{FailureCode, TimerDue};

    use super::*;

    /// 2030-01-01T00:00:00Z.
    const T0: u64 = 1_893_456_000_000;

    fn schedule(name: &str, after_ms: u64) -> Value {
        json!({
            "name": name, "after_ms": after_ms, "service": "counter", "entity": "c1",
            "command": "Increase", "payload": {"value": 2},
        })
    }

    #[test]
    fn sets_timers_on_its_routing_key() {
        let mut kit = ActionTestKit::<TimerAction>::new().with_entity_id("key-1");
        kit.set_time_ms(T0);
        assert_eq!(kit.handle("Schedule", schedule("later", 250)), Ok(json!({})));
        let call = ScheduledCall::new("counter", "c1", "Increase", json!({"value": 2}));
        assert_eq!(
            kit.timer_changes(),
            [TimerChangeCall::Set { name: "later".into(), due: TimerDue::AfterMs(250), call: call.clone() }]
        );
        assert_eq!((kit.timers()[0].due_ms, &kit.timers()[0].call), (T0 + 250, &call));

        // It targets another service's entity: due, returned, not run here.
        let fired = kit.advance(Duration::from_millis(250));
        assert_eq!((fired.len(), fired[0].answer.is_none()), (1, true));
        assert!(kit.timers().is_empty());
    }

    #[test]
    fn cancels_and_refuses_bad_commands() {
        let mut kit = ActionTestKit::<TimerAction>::new();
        kit.set_time_ms(T0);
        kit.handle("Schedule", schedule("a", 10)).unwrap();
        assert_eq!(kit.handle("Cancel", json!({"name": "a"})), Ok(json!({})));
        assert!(kit.timers().is_empty() && kit.advance(Duration::from_secs(1)).is_empty());
        let missing = kit.handle("Schedule", json!({"name": "b", "after_ms": 1})).unwrap_err();
        assert_eq!(missing.code(), FailureCode::InvalidPayload);
        assert_eq!(kit.handle("Fire", ()).unwrap_err().code(), FailureCode::UnknownCommand);
    }
}
