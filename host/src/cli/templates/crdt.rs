//! {{name}}: a wasmstate CRDT entity.
//!
//! The host keeps the entity's value, an observed-remove set of the users
//! who like it, and merges it across hosts: every host takes likes at once,
//! and a like on one host concurrent with an unlike on another wins.
//! Commands (JSON bodies):
//!
//! - `Like {"user": "..."}` adds the user (the name must not be empty);
//! - `Unlike {"user": "..."}` removes the user;
//! - `Get` changes nothing.
//!
//! Each replies `{"likes": N, "users": [...]}`, the users in order.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{CrdtContext, CrdtEntity, Failure, Reply};

/// The entity: the host holds its value, so the type holds nothing.
pub struct {{Type}};

/// What every command replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Likes {
    /// How many users like the entity.
    pub likes: usize,
    /// Who, in order.
    pub users: Vec<String>,
}

/// The commands, as the host names them: `POST
/// /v1/services/{{name}}/entities/{id}/Like` with `{"user": "ada"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds a user to those who like the entity.
    Like {
        /// The user.
        user: String,
    },
    /// Removes a user from them.
    Unlike {
        /// The user.
        user: String,
    },
    /// Reads who likes it.
    Get,
}

impl CrdtEntity for {{Type}} {
    type Command = Command;

    fn handle(command: Command, ctx: &mut CrdtContext<'_>) -> Result<Reply, Failure> {
        match command {
            Command::Like { user } if user.is_empty() => return Err(Failure::rejected("Like takes a user")),
            Command::Like { user } => {
                ctx.orset().add(&user);
            }
            Command::Unlike { user } => {
                ctx.orset().remove(&user);
            }
            Command::Get => {}
        }
        let users: Vec<String> = ctx.orset().elements()?;
        Ok(Reply::json(&Likes { likes: users.len(), users }))
    }
}

wasmstate_sdk::export_crdt!({{Type}});

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::FailureCode;
    use wasmstate_sdk::testkit::CrdtKit;

    use super::*;

    #[test]
    fn likes_and_unlikes() {
        let mut kit = CrdtKit::<{{Type}}>::new("post-1");
        assert_eq!(kit.handle("Get", ()), Ok(json!({"likes": 0, "users": []})));
        kit.send(&Command::Like { user: "bo".into() }).unwrap();
        assert_eq!(kit.handle("Like", json!({"user": "ada"})), Ok(json!({"likes": 2, "users": ["ada", "bo"]})));
        assert_eq!(kit.handle("Unlike", json!({"user": "bo"})), Ok(json!({"likes": 1, "users": ["ada"]})));
        assert_eq!(kit.handle("Like", json!({"user": ""})).unwrap_err().code(), FailureCode::Rejected);
        assert_eq!(kit.handle("Share", ()).unwrap_err().code(), FailureCode::UnknownCommand);
    }

    #[test]
    fn a_like_on_another_host_wins_over_a_concurrent_unlike() {
        let mut kit = CrdtKit::<{{Type}}>::new("post-1");
        kit.handle("Like", json!({"user": "ada"})).unwrap();
        kit.sync();
        // Another host's ada likes again while this host's unlikes.
        kit.replica("host-b").handle("Like", json!({"user": "ada"})).unwrap();
        assert_eq!(kit.handle("Unlike", json!({"user": "ada"})), Ok(json!({"likes": 0, "users": []})));
        kit.merge_from("host-b");
        assert_eq!(kit.handle("Get", ()), Ok(json!({"likes": 1, "users": ["ada"]})));
    }
}
