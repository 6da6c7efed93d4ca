//! {{name}}: a wasmstate value entity.
//!
//! The host stores one state per entity. Commands (JSON bodies):
//!
//! - `Set {"text": "..."}` replaces the state (the text must not be empty)
//!   and replies it;
//! - `Get` replies the state, `{"text": ...}` (`""` when none is stored);
//! - `Clear` deletes the state and replies `{}`.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Failure, KeyValue, Reply, ValueContext};

/// The entity's state, stored by the host.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct {{Type}} {
    /// The text last set.
    pub text: String,
}

/// The commands, as the host names them: `POST
/// /v1/services/{{name}}/entities/{id}/Set` with `{"text": "hello"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Replaces the state.
    Set({{Type}}),
    /// Reads the state.
    Get,
    /// Deletes the state.
    Clear,
}

impl KeyValue for {{Type}} {
    type Command = Command;

    fn handle(command: Command, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
        match command {
            Command::Set(state) if state.text.is_empty() => {
                Err(Failure::rejected("Set takes a text that is not empty"))
            }
            Command::Set(state) => {
                ctx.update(state);
                Ok(Reply::json(ctx.state()))
            }
            Command::Get => Ok(Reply::json(ctx.state())),
            Command::Clear => {
                ctx.delete();
                Ok(Reply::empty())
            }
        }
    }
}

wasmstate_sdk::export_value_entity!({{Type}});

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::FailureCode;
    use wasmstate_sdk::testkit::ValueTestKit;

    use super::*;

    #[test]
    fn sets_reads_and_clears() {
        let mut kit = ValueTestKit::<{{Type}}>::new("e-1");
        assert_eq!(kit.handle("Get", ()), Ok(json!({"text": ""})));
        assert_eq!(kit.handle("Set", json!({"text": "hello"})), Ok(json!({"text": "hello"})));
        assert_eq!(kit.send(&Command::Get), Ok(json!({"text": "hello"})));
        assert_eq!(kit.send(&Command::Clear), Ok(json!({})));
        assert_eq!(kit.state(), None);
    }

    #[test]
    fn refuses_an_empty_text_and_keeps_the_state() {
        let mut kit = ValueTestKit::<{{Type}}>::new("e-1");
        kit.handle("Set", json!({"text": "kept"})).unwrap();
        assert_eq!(kit.handle("Set", json!({"text": ""})).unwrap_err().code(), FailureCode::Rejected);
        assert_eq!(kit.handle("Rename", ()).unwrap_err().code(), FailureCode::UnknownCommand);
        assert_eq!(kit.state().map(|state| state.text), Some("kept".to_owned()));
    }
}
