//! A subscriber that returns as many side effects per event as the event
//! asks for, to test the limits on what a subscriber may return.
//!
//! It subscribes to a service running the `misbehaving` test entity. For an
//! event `{"type": "Echoed", "value": {"effects": n, "synchronous": s}}`
//! (what `Echo {"value": {"effects": n, "synchronous": s}}` emits) it
//! returns `n` side effects `Increase {"value": 1}` of entity `flooded` of
//! service `counter`, synchronous if `s` is true; for `{"loop": true}` it
//! loops until the host stops it. Other events return none.
//!
//! It answers no command.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{ActionContext, Failure, NoCommands, Reply, SideEffect, Stateless, SubscribedEvent};

/// The service and entity every side effect increases.
pub const TARGET: (&str, &str) = ("counter", "flooded");

/// The subscriber; it holds no state.
#[derive(Debug, Default)]
pub struct EffectsPerEvent;

/// The events it reads.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum Event {
    /// An echoed value, which may ask for side effects.
    Echoed {
        /// What was echoed.
        value: Ask,
    },
    /// Any other event.
    #[serde(other)]
    Other,
}

/// What an echoed value asks for; other values ask for nothing.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Ask {
    effects: u32,
    synchronous: bool,
    #[serde(rename = "loop")]
    forever: bool,
}

/// The counter's command the side effects run.
#[derive(Serialize)]
enum Count {
    Increase { value: i64 },
}

impl Stateless for EffectsPerEvent {
    type Command = NoCommands;

    fn handle(command: NoCommands, _ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
        match command {}
    }

    fn on_event(event: SubscribedEvent<'_>, ctx: &mut ActionContext<'_>) -> Result<(), Failure> {
        let ask = match event.json::<Event>() {
            Ok(Event::Echoed { value }) => value,
            _ => return Ok(()),
        };
        if ask.forever {
            let mut spins = 0_u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        for _ in 0..ask.effects {
            let effect = SideEffect::call(TARGET.0, TARGET.1, &Count::Increase { value: 1 });
            ctx.effect(if ask.synchronous { effect.synchronous() } else { effect });
        }
        Ok(())
    }
}

wasmstate_sdk::export_action!(EffectsPerEvent);
