//! A component that exports both `wasmstate:entity/event-sourced` and
//! `wasmstate:entity/value`: which kind of service it is cannot be told, so
//! the host must refuse to deploy it.

wit_bindgen::generate!({
    inline: r"
        package test:two-kinds;

        world two-kinds {
            export wasmstate:entity/event-sourced@0.1.0;
            export wasmstate:entity/value@0.1.0;
        }
    ",
    path: "../../../wit/v0.1.0",
    world: "test:two-kinds/two-kinds",
    generate_all,
});

use exports::wasmstate::entity::event_sourced::{self, Effects};
use exports::wasmstate::entity::value::{self, StateChange, ValueEffects};
use wasmstate::entity::types::{Command, Event, Failure, Reply, Snapshot};

/// Answers every command with `{}` under either kind.
struct Both;

impl event_sourced::Guest for Both {
    fn handle(_snapshot: Option<Snapshot>, _events: Vec<Event>, _command: Command) -> Result<Effects, Failure> {
        Ok(Effects {
            events: Vec::new(),
            reply: Reply::Message(b"{}".to_vec()),
            side_effects: Vec::new(),
            state: b"{}".to_vec(),
        })
    }
}

impl value::Guest for Both {
    fn handle(_state: Option<Vec<u8>>, _command: Command) -> Result<ValueEffects, Failure> {
        Ok(ValueEffects {
            reply: Reply::Message(b"{}".to_vec()),
            state: StateChange::Unchanged,
            side_effects: Vec::new(),
        })
    }
}

export!(Both);
