//! A subscriber that fans every event out to two counters, to test how the
//! host runs and retries a subscriber's side effects.
//!
//! For every event it reads, it returns two **synchronous side effects**,
//! in this order: `Increase {"value": 1}` of entity `first` of service
//! `counter`, then the same of entity `second` of service `audit`. Both
//! services are meant to run the `counter` example; deploying `audit` late
//! makes the second side effect fail (and be retried) after the first ran.
//!
//! It answers no command.

use serde::Serialize;
use wasmstate_sdk::{ActionContext, Failure, NoCommands, Reply, SideEffect, Stateless, SubscribedEvent};

/// Where each event is counted, in order.
pub const TARGETS: [(&str, &str); 2] = [("counter", "first"), ("audit", "second")];

/// The fan-out subscriber; it holds no state.
#[derive(Debug, Default)]
pub struct FanOut;

/// The command both targets take.
#[derive(Serialize)]
enum Count {
    Increase { value: i64 },
}

impl Stateless for FanOut {
    type Command = NoCommands;

    fn handle(command: NoCommands, _ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
        match command {}
    }

    fn on_event(_event: SubscribedEvent<'_>, ctx: &mut ActionContext<'_>) -> Result<(), Failure> {
        for (service, entity) in TARGETS {
            ctx.effect(SideEffect::call(service, entity, &Count::Increase { value: 1 }).synchronous());
        }
        Ok(())
    }
}

wasmstate_sdk::export_action!(FanOut);
