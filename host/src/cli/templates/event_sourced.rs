//! {{name}}: an event-sourced wasmstate entity.
//!
//! Its state is the fold of its events. Commands (JSON bodies):
//!
//! - `Add {"amount": n}` adds `n` (greater than zero) and replies the state;
//! - `Get` replies the state, `{"total": ..., "additions": ...}`.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Context, EventSourced, Failure, Reply};

/// The entity's state, folded from its events; also the reply of every command.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct {{Type}} {
    /// The sum of every amount added.
    pub total: i64,
    /// How many amounts were added.
    pub additions: u64,
}

/// The commands, as the host names them: `POST
/// /v1/services/{{name}}/entities/{id}/Add` with `{"amount": 2}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds an amount, which must be greater than zero.
    Add {
        /// The amount.
        amount: i64,
    },
    /// Reads the state.
    Get,
}

/// What happened to the entity: the facts its state is folded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// An amount was added.
    Added {
        /// The amount.
        amount: i64,
    },
}

impl EventSourced for {{Type}} {
    type Command = Command;
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Added { amount } => {
                self.total = self.total.saturating_add(*amount);
                self.additions += 1;
            }
        }
    }

    fn handle(command: Command, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        match command {
            Command::Add { amount } if amount <= 0 => {
                Err(Failure::rejected(format!("Add takes an amount greater than zero, not {amount}")))
            }
            Command::Add { amount } => {
                ctx.emit(Event::Added { amount });
                Ok(Reply::json(ctx.state()))
            }
            Command::Get => Ok(Reply::json(ctx.state())),
        }
    }
}

wasmstate_sdk::export_event_sourced!({{Type}});

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::FailureCode;
    use wasmstate_sdk::testkit::TestKit;

    use super::*;

    #[test]
    fn adds_amounts_and_logs_them() {
        let mut kit = TestKit::<{{Type}}>::new("e-1");
        assert_eq!(kit.send(&Command::Add { amount: 2 }), Ok(json!({"total": 2, "additions": 1})));
        assert_eq!(kit.handle("Add", json!({"amount": 3})), Ok(json!({"total": 5, "additions": 2})));
        assert_eq!(kit.handle("Get", ()), Ok(json!({"total": 5, "additions": 2})));
        assert_eq!(kit.events(), [(1, Event::Added { amount: 2 }), (2, Event::Added { amount: 3 })]);
    }

    #[test]
    fn refuses_what_it_cannot_take_and_stores_nothing() {
        let mut kit = TestKit::<{{Type}}>::new("e-1");
        assert_eq!(kit.send(&Command::Add { amount: 0 }).unwrap_err().code(), FailureCode::Rejected);
        assert_eq!(kit.handle("Subtract", ()).unwrap_err().code(), FailureCode::UnknownCommand);
        assert_eq!(kit.handle("Add", json!({"amount": "x"})).unwrap_err().code(), FailureCode::InvalidPayload);
        assert_eq!(kit.seq(), 0);
    }
}
