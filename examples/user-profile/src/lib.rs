//! A user profile as a value entity: the host stores one profile per entity
//! id and hands it to every command.
//!
//! Commands (JSON bodies):
//!
//! - `Update {"name", "email"}` replaces the profile; an email without an
//!   `@` is rejected. Replies the new profile, `{"name", "email"}`;
//! - `Get` (empty body or `{}`) replies the profile, or the empty profile
//!   `{"name": "", "email": ""}` when none is stored;
//! - `Delete` (empty body or `{}`) deletes the profile; replies `{}`.
//!
//! The stored state is the profile itself, `{"name", "email"}`.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Commands, Failure, KeyValue, Reply, ValueContext};

/// A user's profile: the stored state, the argument of `Update` and the
/// reply of `Update` and `Get`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The user's name.
    pub name: String,
    /// The user's email address; always contains an `@`.
    pub email: String,
}

/// The profile's commands, as the host names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileCommand {
    /// Replaces the profile; an email without an `@` is rejected.
    Update(Profile),
    /// Replies with the profile, or the empty one when none is stored.
    Get,
    /// Deletes the profile; replies `{}`.
    Delete,
}

impl Commands for ProfileCommand {
    const SERVICE: &'static str = "user-profile";
}

impl KeyValue for Profile {
    type Command = ProfileCommand;

    fn handle(command: ProfileCommand, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
        match command {
            ProfileCommand::Update(profile) => {
                if !profile.email.contains('@') {
                    return Err(Failure::rejected(format!(
                        "Email address \"{}\" is invalid: it has no @.",
                        profile.email
                    )));
                }
                ctx.update(profile);
                Ok(Reply::json(ctx.state()))
            }
            ProfileCommand::Get => Ok(Reply::json(ctx.state())),
            ProfileCommand::Delete => {
                ctx.delete();
                Ok(Reply::empty())
            }
        }
    }
}

wasmstate_sdk::export_value_entity!(Profile);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::FailureCode;
    use wasmstate_sdk::testkit::ValueTestKit;

    use super::*;

    #[test]
    fn update_get_delete() {
        let mut kit = ValueTestKit::<Profile>::new("user-1");
        assert_eq!(kit.handle("Get", ()), Ok(json!({"name": "", "email": ""})));
        assert_eq!(kit.state(), None);

        let ada = json!({"name": "Ada", "email": "ada@example.com"});
        assert_eq!(kit.handle("Update", &ada), Ok(ada.clone()));
        assert_eq!(kit.handle("Get", json!({})), Ok(ada.clone()));
        assert_eq!(kit.state_json(), Some(ada));

        let grace = json!({"name": "Grace", "email": "grace@example.com"});
        assert_eq!(kit.handle("Update", &grace), Ok(grace.clone()));
        assert_eq!(kit.state(), Some(Profile { name: "Grace".into(), email: "grace@example.com".into() }));

        assert_eq!(kit.handle("Delete", ()), Ok(json!({})));
        assert_eq!(kit.state(), None);
        assert_eq!(kit.handle("Get", ()), Ok(json!({"name": "", "email": ""})));
        assert_eq!(kit.handle("Delete", ()), Ok(json!({})));
    }

    #[test]
    fn rejects_an_email_without_at_and_keeps_the_profile() {
        let mut kit = ValueTestKit::<Profile>::new("user-2");
        let ada = json!({"name": "Ada", "email": "ada@example.com"});
        kit.handle("Update", &ada).unwrap();

        let failure = kit.handle("Update", json!({"name": "Ada", "email": "ada.example.com"})).unwrap_err();
        assert_eq!(failure.code(), FailureCode::Rejected);
        assert_eq!(failure.message(), "Email address \"ada.example.com\" is invalid: it has no @.");
        assert_eq!(kit.state_json(), Some(ada));
    }

    #[test]
    fn reports_bad_commands() {
        let mut kit = ValueTestKit::<Profile>::new("user-3");
        let failure = kit.handle("Update", json!({"name": "Ada"})).unwrap_err();
        assert_eq!(failure.code(), FailureCode::InvalidPayload);
        assert_eq!(
            failure.message(),
            "invalid payload for command \"Update\": missing field `email` at line 1 column 14"
        );
        assert_eq!(kit.handle("Rename", ()).unwrap_err().code(), FailureCode::UnknownCommand);
        assert_eq!(kit.state(), None);
    }

    #[test]
    fn replies_are_messages_without_side_effects() {
        let mut kit = ValueTestKit::<Profile>::new("user-4");
        let outcome = kit.handle_outcome("Update", json!({"name": "Ada", "email": "a@b"})).unwrap();
        assert_eq!(outcome.reply, Some(json!({"name": "Ada", "email": "a@b"})));
        assert_eq!(outcome.forward, None);
        assert!(outcome.side_effects.is_empty());
    }
}
