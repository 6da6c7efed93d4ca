//! {{name}}: a stateless wasmstate action.
//!
//! Commands (JSON bodies):
//!
//! - `Greet {"name": "..."}` replies `{"greeting": "Hello, <name>!"}`; an
//!   empty name is rejected.
//!
//! An action can also hand a command on to an entity
//! (`Reply::forward(Forward::call(service, id, &command))`), add side
//! effects (`ctx.effect(...)`), and react to the events of the services it
//! subscribes to (`fn on_event`; deploy it with `--subscribe`).

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{ActionContext, Failure, Reply, Stateless};

/// The action; it holds no state.
#[derive(Debug, Default)]
pub struct {{Type}};

/// The commands, as the host names them: `POST
/// /v1/services/{{name}}/entities/{any}/Greet` with `{"name": "Ada"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Greets someone by name.
    Greet {
        /// Who to greet.
        name: String,
    },
}

/// The reply of `Greet`.
#[derive(Debug, Serialize)]
struct Greeting {
    greeting: String,
}

impl Stateless for {{Type}} {
    type Command = Command;

    fn handle(command: Command, _ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
        match command {
            Command::Greet { name } if name.trim().is_empty() => Err(Failure::rejected("Greet takes a name")),
            Command::Greet { name } => Ok(Reply::json(&Greeting { greeting: format!("Hello, {}!", name.trim()) })),
        }
    }
}

wasmstate_sdk::export_action!({{Type}});

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::FailureCode;
    use wasmstate_sdk::testkit::ActionTestKit;

    use super::*;

    #[test]
    fn greets_by_name() {
        let kit = ActionTestKit::<{{Type}}>::new();
        assert_eq!(kit.handle("Greet", json!({"name": "Ada"})), Ok(json!({"greeting": "Hello, Ada!"})));
        let greet = Command::Greet { name: " Grace ".into() };
        assert_eq!(kit.send(&greet), Ok(json!({"greeting": "Hello, Grace!"})));
    }

    #[test]
    fn refuses_an_empty_name_or_an_unknown_command() {
        let kit = ActionTestKit::<{{Type}}>::new();
        assert_eq!(kit.handle("Greet", json!({"name": " "})).unwrap_err().code(), FailureCode::Rejected);
        assert_eq!(kit.handle("Wave", ()).unwrap_err().code(), FailureCode::UnknownCommand);
    }
}
