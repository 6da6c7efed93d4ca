//! The test kit of actions.

use std::marker::PhantomData;

use serde::Serialize;

use super::{SideEffectCall, encode};
use crate::{Action, Command, Effect, Failure, Metadata, Reply, SubscribedEvent, raw};

/// Calls an action of type `A` the way the host does.
///
/// Actions are stateless, so the kit keeps nothing between calls but the
/// timers the commands set on their routing key (see
/// [`timers`](Self::timers)); commands are addressed to routing key
/// `"test"` unless [`with_entity_id`](Self::with_entity_id) says otherwise.
///
/// ```
/// # use wasmstate_sdk::{Action, ActionContext, Command, Failure, Reply};
/// # #[derive(Default)]
/// # struct Echo;
/// # impl Action for Echo {
/// #     fn handle(&self, command: Command<'_>, _: &mut ActionContext<'_>) -> Result<Reply, Failure> {
/// #         Ok(Reply::raw(command.payload()))
/// #     }
/// # }
/// use wasmstate_sdk::testkit::ActionTestKit;
///
/// let kit = ActionTestKit::<Echo>::new();
/// assert_eq!(kit.handle("Echo", [1, 2]), Ok(serde_json::json!([1, 2])));
/// assert_eq!(kit.on_event("other", "o-1", 1, "anything"), Ok(vec![]));
/// ```
pub struct ActionTestKit<A> {
    entity_id: String,
    metadata: super::KitMetadata,
    timers: super::timers::KitTimers,
    outbox: super::webhooks::KitOutbox,
    action: PhantomData<fn() -> A>,
}

impl<A: Action> Default for ActionTestKit<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Action> ActionTestKit<A> {
    /// A kit addressing commands to routing key `"test"`.
    pub fn new() -> Self {
        Self {
            entity_id: "test".to_owned(),
            metadata: super::KitMetadata::default(),
            timers: super::timers::KitTimers::default(),
            outbox: super::webhooks::KitOutbox::default(),
            action: PhantomData,
        }
    }

    /// Addresses commands to routing key `entity_id`.
    pub fn with_entity_id(mut self, entity_id: impl Into<String>) -> Self {
        self.entity_id = entity_id.into();
        self
    }

    command_methods!(&self, "action", "The action's failure; the timers are then unchanged.");

    kit_timer_methods!();

    kit_webhook_methods!();

    /// Runs a command under the test's idempotency key.
    fn run(&self, name: &str, payload: &[u8]) -> Result<(Reply, Vec<Effect>), Failure> {
        self.run_keyed(name, payload, self.metadata.idempotency_key.as_deref())
    }

    /// Runs a command under `key` and commits its timer changes and
    /// webhooks, as the host does.
    fn run_keyed(&self, name: &str, payload: &[u8], key: Option<&str>) -> Result<(Reply, Vec<Effect>), Failure> {
        let now_ms = self.metadata.now_ms();
        let metadata = self.timers.addressed(Metadata::new(0, now_ms, key));
        let command = Command::new(name, payload, &self.entity_id).with_metadata(metadata);
        let effects = raw::action::handle::<A>(command).inspect_err(|_| self.timers.failed())?;
        self.timers.commit(now_ms, effects.timers);
        self.outbox.commit(&effects.side_effects);
        Ok((effects.reply, effects.side_effects))
    }

    /// Delivers event `seq` of entity `entity_id` of service `service`, with
    /// `payload` encoded as JSON, returning the side effects to run; the
    /// webhooks it added join [`webhooks`](Self::webhooks).
    ///
    /// # Errors
    ///
    /// The action's failure.
    ///
    /// # Panics
    ///
    /// If a side effect's payload is neither empty nor JSON, or if the
    /// action panics.
    pub fn on_event(
        &self,
        service: &str,
        entity_id: &str,
        seq: u64,
        payload: impl Serialize,
    ) -> Result<Vec<SideEffectCall>, Failure> {
        self.on_event_raw(service, entity_id, seq, &encode(payload))
    }

    /// Delivers event `seq` of entity `entity_id` of service `service`,
    /// encoded as `payload`, returning the side effects to run; the
    /// webhooks it added join [`webhooks`](Self::webhooks).
    ///
    /// # Errors
    ///
    /// The action's failure.
    ///
    /// # Panics
    ///
    /// If a side effect's payload is neither empty nor JSON, or if the
    /// action panics.
    pub fn on_event_raw(
        &self,
        service: &str,
        entity_id: &str,
        seq: u64,
        payload: &[u8],
    ) -> Result<Vec<SideEffectCall>, Failure> {
        let event = SubscribedEvent::new(service, entity_id, seq, payload);
        let effects = raw::action::on_event::<A>(event)?;
        self.outbox.commit(&effects);
        Ok(super::split(effects).0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::ActionTestKit;
    use crate::testkit::{ForwardCall, Outcome, SideEffectCall};
    use crate::{Action, ActionContext, Command, Failure, FailureCode, Forward, Reply, SideEffect, SubscribedEvent};

    /// Routes `Send` to a mailbox and acknowledges `Ping`.
    #[derive(Default)]
    struct Router;

    impl Action for Router {
        fn handle(&self, command: Command<'_>, ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
            match command.name() {
                "Send" => {
                    ctx.effect(SideEffect::new("stats", "sent", "Increase").json(&json!({"value": 1})));
                    ctx.effect(SideEffect::webhook("https://hooks.test/sent").body(command.payload(), "text/plain"));
                    Ok(Reply::forward(Forward::new("mailbox", ctx.entity_id(), "Deliver").payload(command.payload())))
                }
                "Ping" => Ok(Reply::json(&json!({"pong": ctx.entity_id()}))),
                _ => Err(command.unknown()),
            }
        }

        fn on_event(&self, event: SubscribedEvent<'_>, ctx: &mut ActionContext<'_>) -> Result<(), Failure> {
            let seq = event.seq();
            ctx.effect(SideEffect::new(event.service(), ctx.entity_id(), "Ack").json(&seq));
            ctx.effect(SideEffect::webhook(format!("https://hooks.test/{}", event.service())).json(&seq));
            if seq == 0 {
                return Err(Failure::rejected("no event has seq 0"));
            }
            Ok(())
        }
    }

    #[test]
    fn shows_forwards_and_side_effects() {
        let kit = ActionTestKit::<Router>::new().with_entity_id("box-1");
        assert_eq!(
            kit.handle_outcome("Send", json!({"text": "hi"})),
            Ok(Outcome {
                reply: None,
                forward: Some(ForwardCall::new("mailbox", "box-1", "Deliver", json!({"text": "hi"}))),
                side_effects: vec![SideEffectCall::new("stats", "sent", "Increase", json!({"value": 1}))],
                webhooks: vec![SideEffect::webhook("https://hooks.test/sent").body(r#"{"text":"hi"}"#, "text/plain")],
            })
        );
        assert_eq!(kit.webhooks()[0].body_bytes(), br#"{"text":"hi"}"#);
        assert_eq!(kit.handle("Ping", ()), Ok(json!({"pong": "box-1"})));
        assert_eq!(kit.handle("Pong", ()).unwrap_err().code(), FailureCode::UnknownCommand);
    }

    #[test]
    fn delivers_events_and_keeps_their_webhooks() {
        let kit = ActionTestKit::<Router>::default();
        assert_eq!(
            kit.on_event("clock", "c-1", 9, json!({})),
            Ok(vec![SideEffectCall::new("clock", "c-1", "Ack", json!(9))])
        );
        assert_eq!(kit.on_event_raw("clock", "c-2", 1, b"").unwrap()[0].entity_id, "c-2");
        assert!(kit.on_event("clock", "c-3", 0, json!({})).is_err());
        let hook = |seq: u64| SideEffect::webhook("https://hooks.test/clock").json(&seq);
        assert_eq!(kit.take_webhooks(), [hook(9), hook(1)]);
        assert!(kit.webhooks().is_empty());
    }
}
