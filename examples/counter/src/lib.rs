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
use wasmstate_sdk::{Command, Context, EventSourcedEntity, Failure, Reply};

/// The counter's state, also the reply of every command.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The current value.
    pub value: i64,
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

/// The argument of `Increase` and `Decrease`.
#[derive(Deserialize)]
struct Change {
    value: i64,
}

/// Checks a change by `value` named `command` whose result would be `new_value`.
fn validate(command: &str, value: i64, new_value: Option<i64>) -> Result<(), Failure> {
    if value < 0 {
        return Err(Failure::rejected(format!("{command} requires a positive value. It was [{value}].")));
    }
    match new_value {
        Some(_) => Ok(()),
        None => Err(Failure::rejected(format!("{command} by {value} would overflow the counter."))),
    }
}

impl EventSourcedEntity for Counter {
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match *event {
            Event::Increased { value } => self.value = self.value.saturating_add(value),
            Event::Decreased { value } => self.value = self.value.saturating_sub(value),
        }
    }

    fn handle(&self, command: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        match command.name() {
            "Increase" => {
                let Change { value } = command.json()?;
                validate("Increase", value, self.value.checked_add(value))?;
                ctx.emit(Event::Increased { value });
                Ok(Reply::json(ctx.state()))
            }
            "Decrease" => {
                let Change { value } = command.json()?;
                validate("Decrease", value, self.value.checked_sub(value))?;
                ctx.emit(Event::Decreased { value });
                Ok(Reply::json(ctx.state()))
            }
            "Get" => Ok(Reply::json(self)),
            _ => Err(command.unknown()),
        }
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
        assert_eq!(
            failure.message(),
            "invalid payload for command \"Increase\": missing field `value` at line 1 column 2"
        );
        assert_eq!(kit.handle("Reset", ()).unwrap_err().code(), FailureCode::UnknownCommand);
    }
}
