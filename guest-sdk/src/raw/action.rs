//! The core of an action: the WIT `action.handle` and `action.on-event`.

use crate::{Action, ActionContext, Command, Effect, Failure, Metadata, Reply, SubscribedEvent, TimerChange};

/// What a successful command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEffects {
    /// The reply to the caller, or a forward.
    pub reply: Reply,
    /// Further commands to run and webhooks to send, in order.
    pub side_effects: Vec<Effect>,
    /// Timers set and cancelled, in order, on the command's routing key.
    pub timers: Vec<TimerChange>,
}

/// Handles `command` with a fresh `A::default()`.
///
/// # Errors
///
/// The handler's failure.
///
/// # Panics
///
/// If the handler panics.
pub fn handle<A: Action>(command: Command<'_>) -> Result<ActionEffects, Failure> {
    let mut ctx = ActionContext::new(command.entity_id(), command.metadata());
    let reply = A::default().handle(command, &mut ctx)?;
    let (side_effects, timers) = ctx.into_parts();
    Ok(ActionEffects { reply, side_effects, timers })
}

/// Handles `event` with a fresh `A::default()`, returning the side effects
/// to run (commands) or write to the outbox (webhooks) before the event
/// counts as delivered.
///
/// # Errors
///
/// The handler's failure.
///
/// # Panics
///
/// If the handler panics, or if it set or cancelled a timer: an event
/// delivery commits no timers, so one would be lost.
pub fn on_event<A: Action>(event: SubscribedEvent<'_>) -> Result<Vec<Effect>, Failure> {
    let mut ctx = ActionContext::new(event.entity_id(), Metadata::default());
    A::default().on_event(event, &mut ctx)?;
    let (side_effects, timers) = ctx.into_parts();
    if let Some(change) = timers.first() {
        panic!(
            "on_event of event {} of {}/{} changed timer {:?}: an event delivery sets and cancels no timers \
             (forward the work to a command with a side effect instead)",
            event.seq(),
            event.service(),
            event.entity_id(),
            change.name()
        );
    }
    Ok(side_effects)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::raw::assert_failure;
    use crate::{FailureCode, Forward, SideEffect};

    /// Forwards `Relay`, and counts `Tick` events through side effects.
    #[derive(Default)]
    struct Relay;

    #[derive(Deserialize)]
    struct Tick {
        by: u32,
    }

    impl Action for Relay {
        fn handle(&self, command: Command<'_>, ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
            match command.name() {
                "Relay" => {
                    ctx.effect(SideEffect::new("stats", "relays", "Increase"));
                    Ok(Reply::forward(Forward::new("target", ctx.entity_id(), "Take").payload(command.payload())))
                }
                "Doomed" => {
                    ctx.effect(SideEffect::new("stats", "relays", "Increase"));
                    Err(Failure::rejected("doomed"))
                }
                _ => Err(command.unknown()),
            }
        }

        fn on_event(&self, event: SubscribedEvent<'_>, ctx: &mut ActionContext<'_>) -> Result<(), Failure> {
            let Tick { by } = event.json()?;
            for _ in 0..by {
                ctx.effect(SideEffect::new("stats", ctx.entity_id(), "Tick").synchronous());
            }
            ctx.effect(SideEffect::webhook("http://hooks.test/ticks").json(&by));
            if by > 2 {
                return Err(Failure::rejected("too many ticks"));
            }
            Ok(())
        }
    }

    /// An action that keeps the default `on_event`.
    #[derive(Default)]
    struct Deaf;

    impl Action for Deaf {
        fn handle(&self, command: Command<'_>, _ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
            Err(command.unknown())
        }
    }

    #[test]
    fn forwards_with_side_effects() {
        let effects = handle::<Relay>(Command::new("Relay", b"{\"a\":1}", "key")).unwrap();
        assert_eq!(effects.reply, Reply::forward(Forward::new("target", "key", "Take").payload("{\"a\":1}")));
        assert_eq!(effects.side_effects, [Effect::from(SideEffect::new("stats", "relays", "Increase"))]);
    }

    #[test]
    fn failure_discards_side_effects() {
        let failure = handle::<Relay>(Command::new("Doomed", b"", "key")).unwrap_err();
        assert_eq!(failure, Failure::rejected("doomed"));
        assert_eq!(handle::<Relay>(Command::new("Other", b"", "key")).unwrap_err().code(), FailureCode::UnknownCommand);
    }

    #[test]
    fn on_event_returns_its_side_effects_and_webhooks() {
        let tick = Effect::from(SideEffect::new("stats", "e-1", "Tick").synchronous());
        let hook = Effect::from(SideEffect::webhook("http://hooks.test/ticks").json(&2));
        let event = SubscribedEvent::new("clock", "e-1", 4, br#"{"by":2}"#);
        assert_eq!(on_event::<Relay>(event), Ok(vec![tick.clone(), tick, hook]));

        let event = SubscribedEvent::new("clock", "e-1", 5, br#"{"by":3}"#);
        assert_eq!(on_event::<Relay>(event), Err(Failure::rejected("too many ticks")));

        let failure = on_event::<Relay>(SubscribedEvent::new("clock", "e-1", 6, b"?")).unwrap_err();
        assert_failure(&failure, FailureCode::InvalidPayload, "event 6 of clock/e-1 could not be decoded: ");
    }

    #[test]
    fn on_event_ignores_events_by_default() {
        let event = SubscribedEvent::new("clock", "e-1", 1, b"not even JSON");
        assert_eq!(on_event::<Deaf>(event), Ok(Vec::new()));
    }
}
