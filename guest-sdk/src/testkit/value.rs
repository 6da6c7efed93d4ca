//! The test kit of value entities.

use std::marker::PhantomData;

use crate::raw::value::StateChange;
use crate::reply::encode_json;
use crate::{Command, Effect, Failure, Metadata, Reply, ValueEntity, raw};

/// An in-memory host for one value entity of type `E`.
///
/// It stores the state as encoded bytes, like the host: every command
/// decodes it afresh, so the kit also checks that the state round-trips
/// through JSON.
///
/// ```
/// # use wasmstate_sdk::{Command, Failure, Reply, ValueContext, ValueEntity};
/// # #[derive(Default, serde::Serialize, serde::Deserialize)]
/// # struct Visits(u64);
/// # impl ValueEntity for Visits {
/// #     fn handle(&self, _: Command<'_>, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
/// #         ctx.update(Visits(self.0 + 1));
/// #         Ok(Reply::json(&ctx.state().0))
/// #     }
/// # }
/// use wasmstate_sdk::testkit::ValueTestKit;
///
/// let mut kit = ValueTestKit::<Visits>::new("home");
/// assert!(kit.state().is_none());
/// assert_eq!(kit.handle("Visit", ()).unwrap(), 1);
/// assert_eq!(kit.handle("Visit", ()).unwrap(), 2);
/// assert_eq!(kit.state().map(|visits| visits.0), Some(2));
/// ```
pub struct ValueTestKit<E> {
    entity_id: String,
    state: Option<Vec<u8>>,
    /// How many times the state was written.
    revision: u64,
    metadata: super::KitMetadata,
    timers: super::timers::KitTimers,
    outbox: super::webhooks::KitOutbox,
    entity: PhantomData<fn() -> E>,
}

impl<E: ValueEntity> ValueTestKit<E> {
    /// A kit for a fresh entity with id `entity_id` and no stored state.
    pub fn new(entity_id: impl Into<String>) -> Self {
        Self {
            entity_id: entity_id.into(),
            state: None,
            revision: 0,
            metadata: super::KitMetadata::default(),
            timers: super::timers::KitTimers::default(),
            outbox: super::webhooks::KitOutbox::default(),
            entity: PhantomData,
        }
    }

    /// Stores `state` as if a previous command had written it.
    ///
    /// # Panics
    ///
    /// If `state` cannot be encoded as JSON.
    pub fn with_state(mut self, state: &E) -> Self {
        self.state = Some(encode_json(state, "state"));
        self.revision += 1;
        self
    }

    command_methods!(&mut self, "entity", "The entity's failure; the state and timers are then unchanged.");

    kit_timer_methods!();

    kit_webhook_methods!();

    /// Runs a command under the test's idempotency key.
    fn run(&mut self, name: &str, payload: &[u8]) -> Result<(Reply, Vec<Effect>), Failure> {
        let key = self.metadata.idempotency_key.clone();
        self.run_keyed(name, payload, key.as_deref())
    }

    /// Runs a command under `key` and commits its state change, timer
    /// changes and webhooks, as the host does.
    fn run_keyed(&mut self, name: &str, payload: &[u8], key: Option<&str>) -> Result<(Reply, Vec<Effect>), Failure> {
        let now_ms = self.metadata.now_ms();
        let metadata = self.timers.addressed(Metadata::new(self.revision, now_ms, key));
        let command = Command::new(name, payload, &self.entity_id).with_metadata(metadata);
        let effects = raw::value::handle::<E>(self.state.as_deref(), command).inspect_err(|_| self.timers.failed())?;
        self.timers.commit(now_ms, effects.timers);
        self.outbox.commit(&effects.side_effects);
        match effects.state {
            StateChange::Unchanged => return Ok((effects.reply, effects.side_effects)),
            StateChange::Update(bytes) => self.state = Some(bytes),
            StateChange::Delete => self.state = None,
        }
        self.revision += 1;
        Ok((effects.reply, effects.side_effects))
    }

    /// The stored state, decoded; `None` when none is stored.
    pub fn state(&self) -> Option<E> {
        self.state.as_ref().map(|bytes| serde_json::from_slice(bytes).expect("the stored state decodes"))
    }

    /// The stored state as JSON; `None` when none is stored.
    pub fn state_json(&self) -> Option<serde_json::Value> {
        self.state.as_ref().map(|bytes| serde_json::from_slice(bytes).expect("the stored state is JSON"))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::ValueTestKit;
    use crate::testkit::{Outcome, SideEffectCall};
    use crate::{Command, Failure, FailureCode, Reply, SideEffect, ValueContext, ValueEntity};

    /// A named setting whose changes are announced.
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Setting {
        value: String,
    }

    #[derive(Deserialize)]
    struct Set {
        value: String,
        #[serde(default)]
        fail: bool,
    }

    impl ValueEntity for Setting {
        fn handle(&self, command: Command<'_>, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
            match command.name() {
                "Set" => {
                    let Set { value, fail } = command.json()?;
                    ctx.effect(SideEffect::new("audit", ctx.entity_id(), "Changed").json(&value));
                    ctx.effect(SideEffect::webhook("https://hooks.test/settings").method("PUT").json(&value));
                    ctx.update(Setting { value });
                    if fail {
                        return Err(Failure::rejected("asked to fail"));
                    }
                    Ok(Reply::json(ctx.state()))
                }
                "Get" => Ok(Reply::json(&json!({"exists": ctx.exists(), "value": self.value}))),
                "Clear" => {
                    ctx.delete();
                    Ok(Reply::empty())
                }
                _ => Err(command.unknown()),
            }
        }
    }

    #[test]
    fn stores_updates_and_deletes() {
        let mut kit = ValueTestKit::<Setting>::new("colour");
        assert_eq!(kit.handle("Get", ()), Ok(json!({"exists": false, "value": ""})));
        assert_eq!(
            kit.handle_outcome("Set", json!({"value": "red"})),
            Ok(Outcome {
                reply: Some(json!({"value": "red"})),
                forward: None,
                side_effects: vec![SideEffectCall::new("audit", "colour", "Changed", json!("red"))],
                webhooks: vec![SideEffect::webhook("https://hooks.test/settings").method("PUT").json("red")],
            })
        );
        assert_eq!(kit.state(), Some(Setting { value: "red".into() }));
        assert_eq!(kit.state_json(), Some(json!({"value": "red"})));
        assert_eq!(kit.handle("Get", ()), Ok(json!({"exists": true, "value": "red"})));
        assert_eq!(kit.handle("Clear", ()), Ok(json!({})));
        assert_eq!(kit.state(), None);
    }

    #[test]
    fn failed_commands_change_nothing() {
        let mut kit = ValueTestKit::<Setting>::new("colour").with_state(&Setting { value: "blue".into() });
        let failure = kit.handle("Set", json!({"value": "red", "fail": true})).unwrap_err();
        assert_eq!(failure.code(), FailureCode::Rejected);
        assert_eq!(kit.handle_raw("Set", b"{").unwrap_err().code(), FailureCode::InvalidPayload);
        assert_eq!(kit.state(), Some(Setting { value: "blue".into() }));
        assert!(kit.webhooks().is_empty());
        kit.handle("Set", json!({"value": "green"})).unwrap();
        assert_eq!(kit.webhooks()[0].body_json::<String>().unwrap(), "green");
    }
}
