//! An event-sourced counter.
//!
//! Commands (JSON bodies):
//!
//! - `Increase {"value": n}` and `Decrease {"value": n}` change the counter
//!   by `n`, which must not be negative, and reply `{"value": <new value>}`;
//! - `Get` (empty body or `{}`) replies `{"value": <value>}`.
//!
//! Events: `{"type":"Increased","value":n}` and `{"type":"Decreased","value":n}`.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Commands, Context, EventSourced, Failure, Reply};

/// The counter's state, also the reply of every command.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The current value.
    pub value: i64,
}

/// The counter's commands, as the host names them: `POST
/// /v1/services/counter/entities/{id}/Increase` with `{"value": 3}` is
/// `CounterCommand::Increase { value: 3 }`. Other services call them by
/// type with [`SideEffect::to`](wasmstate_sdk::SideEffect::to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterCommand {
    /// Adds `value`, which must not be negative.
    Increase {
        /// The amount.
        value: i64,
    },
    /// Subtracts `value`, which must not be negative.
    Decrease {
        /// The amount.
        value: i64,
    },
    /// Reads the counter.
    Get,
}

impl Commands for CounterCommand {
    const SERVICE: &'static str = "counter";
}

/// What happened to a counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// The counter went up by `value`.
    Increased {
        /// The amount, never negative.
        value: i64,
    },
    /// The counter went down by `value`.
    Decreased {
        /// The amount, never negative.
        value: i64,
    },
}

/// Refuses a negative `value`, and a change that overflows (`new_value`
/// is `None`).
fn validate(command: &str, value: i64, new_value: Option<i64>) -> Result<(), Failure> {
    if value < 0 {
        return Err(Failure::rejected(format!("{command} requires a positive value. It was [{value}].")));
    }
    match new_value {
        Some(_) => Ok(()),
        None => Err(Failure::rejected(format!("{command} by {value} would overflow the counter."))),
    }
}

impl EventSourced for Counter {
    type Command = CounterCommand;
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match *event {
            Event::Increased { value } => self.value = self.value.saturating_add(value),
            Event::Decreased { value } => self.value = self.value.saturating_sub(value),
        }
    }

    fn handle(command: CounterCommand, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        let current = ctx.state().value;
        match command {
            CounterCommand::Increase { value } => {
                validate("Increase", value, current.checked_add(value))?;
                ctx.emit(Event::Increased { value });
            }
            CounterCommand::Decrease { value } => {
                validate("Decrease", value, current.checked_sub(value))?;
                ctx.emit(Event::Decreased { value });
            }
            CounterCommand::Get => {}
        }
        Ok(Reply::json(ctx.state()))
    }
}

wasmstate_sdk::export_event_sourced!(Counter);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::FailureCode;
    use wasmstate_sdk::testkit::TestKit;

    use super::*;

    #[test]
    fn increases_and_decreases() {
        let mut kit = TestKit::<Counter>::new("counter-1");
        assert_eq!(kit.handle("Get", ()), Ok(json!({"value": 0})));
        assert_eq!(kit.handle("Increase", json!({"value": 2})), Ok(json!({"value": 2})));
        assert_eq!(kit.handle("Increase", json!({"value": 40})), Ok(json!({"value": 42})));
        assert_eq!(kit.handle("Decrease", json!({"value": 50})), Ok(json!({"value": -8})));
        assert_eq!(kit.handle("Get", json!({})), Ok(json!({"value": -8})));
        assert_eq!(
            kit.events_json(),
            [
                (1, json!({"type": "Increased", "value": 2})),
                (2, json!({"type": "Increased", "value": 40})),
                (3, json!({"type": "Decreased", "value": 50})),
            ]
        );
        assert_eq!(kit.state(), Counter { value: -8 });
    }

    #[test]
    fn rejects_negative_values_without_emitting() {
        let mut kit = TestKit::<Counter>::new("counter-1");
        let failure = kit.handle("Increase", json!({"value": -1})).unwrap_err();
        assert_eq!(failure.code(), FailureCode::Rejected);
        assert_eq!(failure.message(), "Increase requires a positive value. It was [-1].");
        let failure = kit.handle("Decrease", json!({"value": -3})).unwrap_err();
        assert_eq!(failure.message(), "Decrease requires a positive value. It was [-3].");
        assert!(kit.events().is_empty());
    }

    #[test]
    fn rejects_overflow() {
        let mut kit = TestKit::<Counter>::new("counter-1");
        kit.handle("Increase", json!({"value": i64::MAX})).unwrap();
        let failure = kit.handle("Increase", json!({"value": 1})).unwrap_err();
        assert_eq!(failure.message(), "Increase by 1 would overflow the counter.");
        assert_eq!(kit.handle("Decrease", json!({"value": i64::MAX})), Ok(json!({"value": 0})));
        assert_eq!(kit.seq(), 2);
    }

    #[test]
    fn reports_bad_commands() {
        let mut kit = TestKit::<Counter>::new("counter-1");
        let failure = kit.handle("Increase", ()).unwrap_err();
        assert_eq!(failure.code(), FailureCode::InvalidPayload);
        assert_eq!(failure.message(), "invalid payload for command \"Increase\": missing field `value`");
        let failure = kit.handle("Reset", ()).unwrap_err();
        assert_eq!(failure.code(), FailureCode::UnknownCommand);
        assert_eq!(failure.message(), "unknown command \"Reset\"; the commands are Increase, Decrease, Get");
        assert!(kit.events().is_empty());
    }

    #[test]
    fn typed_commands_run_like_named_ones() {
        let mut kit = TestKit::<Counter>::new("counter-1");
        assert_eq!(kit.send(&CounterCommand::Increase { value: 5 }), Ok(json!({"value": 5})));
        assert_eq!(kit.send(&CounterCommand::Decrease { value: 2 }), Ok(json!({"value": 3})));
        assert_eq!(kit.send(&CounterCommand::Get), Ok(json!({"value": 3})));
        assert_eq!(kit.seq(), 2);
    }
}
