//! An event-sourced counter built against `wasmstate:entity@0.1.0`, the
//! first released WIT package, with the bindings alone: what a component
//! built with the SDK of that release looks like to the host. The host must
//! keep deploying and running it, verified deploys included.
//!
//! Like that SDK, it reads its snapshot and events before it looks at the
//! command, so a state it cannot read fails every command with
//! `invalid-state`, and an unknown command fails with `unknown-command`.
//!
//! Commands: `Increase {"value": n}` (n ≥ 0) and `Get`, both replying
//! `{"value": total}`. Events: `{"type":"Increased","value":n}`.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "event-sourced-entity",
});

use exports::wasmstate::entity::event_sourced::{Effects, Guest};
use serde::{Deserialize, Serialize};
use wasmstate::entity::types::{Command, Event, Failure, FailureCode, Reply, Snapshot};

/// The state, also every command's reply.
#[derive(Default, Serialize, Deserialize)]
struct Counter {
    value: i64,
}

/// The one event.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
enum CounterEvent {
    Increased { value: i64 },
}

/// The argument of `Increase`.
#[derive(Deserialize)]
struct Change {
    value: i64,
}

fn failure(code: FailureCode, message: String) -> Failure {
    Failure { code, message }
}

fn fold(snapshot: Option<Snapshot>, events: &[Event]) -> Result<Counter, Failure> {
    let mut state = match snapshot {
        Some(s) => serde_json::from_slice(&s.state).map_err(|e| {
            failure(FailureCode::InvalidState, format!("snapshot at seq {} could not be decoded: {e}", s.seq))
        })?,
        None => Counter::default(),
    };
    for event in events {
        let CounterEvent::Increased { value } = serde_json::from_slice(&event.payload).map_err(|e| {
            failure(FailureCode::InvalidState, format!("event {} could not be decoded: {e}", event.seq))
        })?;
        state.value += value;
    }
    Ok(state)
}

struct LegacyCounter;

impl Guest for LegacyCounter {
    fn handle(snapshot: Option<Snapshot>, events: Vec<Event>, command: Command) -> Result<Effects, Failure> {
        let mut state = fold(snapshot, &events)?;
        let mut emitted = Vec::new();
        match command.name.as_str() {
            "Increase" => {
                let Change { value } = serde_json::from_slice(&command.payload)
                    .map_err(|e| failure(FailureCode::InvalidPayload, format!("invalid payload: {e}")))?;
                if value < 0 {
                    return Err(failure(
                        FailureCode::Rejected,
                        format!("Increase requires a positive value, not {value}"),
                    ));
                }
                state.value += value;
                emitted.push(serde_json::to_vec(&CounterEvent::Increased { value }).expect("events encode"));
            }
            "Get" => {}
            other => return Err(failure(FailureCode::UnknownCommand, format!("unknown command {other:?}"))),
        }
        let encoded = serde_json::to_vec(&state).expect("the state encodes");
        Ok(Effects {
            events: emitted,
            reply: Reply::Message(encoded.clone()),
            side_effects: Vec::new(),
            state: encoded,
        })
    }
}

export!(LegacyCounter);
