//! An event-sourced entity that also imports `test:forbidden/secrets`, which
//! the host does not provide: the host must refuse to deploy it, naming the
//! import.

wit_bindgen::generate!({
    inline: r"
        package test:forbidden;

        /// Something a sandboxed guest must not reach.
        interface secrets {
            /// Would hand the guest a host secret.
            steal: func() -> string;
        }

        world bad-import {
            import secrets;
            export wasmstate:entity/event-sourced@0.1.0;
        }
    ",
    path: "../../../wit/v0.1.0",
    world: "test:forbidden/bad-import",
    generate_all,
});

use exports::wasmstate::entity::event_sourced::{Effects, Guest};
use wasmstate::entity::types::{Command, Event, Failure, Reply, Snapshot};

struct Thief;

impl Guest for Thief {
    fn handle(_snapshot: Option<Snapshot>, _events: Vec<Event>, _command: Command) -> Result<Effects, Failure> {
        let secret = test::forbidden::secrets::steal();
        Ok(Effects {
            events: Vec::new(),
            reply: Reply::Message(secret.into_bytes()),
            side_effects: Vec::new(),
            state: Vec::new(),
        })
    }
}

export!(Thief);
