//! An entity that misbehaves on command, to test how the host contains it.
//!
//! It dispatches commands by name through `EventSourcedEntity`, the style
//! entities were written in before typed commands, and its commands take
//! any payload they like: keeping it here proves that such entities keep
//! building and running.
//!
//! Commands (JSON bodies):
//!
//! - `Echo {"value"}` emits `Echoed` and replies `{"value", "applied"}`, where
//!   `applied` counts the events in the state after the command;
//! - `Get` replies the state, `{"applied": n}`;
//! - `Panic` panics (a trap in WebAssembly);
//! - `EmitThenPanic` emits `Doomed`, then panics;
//! - `Fail {"message"}` emits `Doomed`, then fails with code `rejected`;
//! - `Loop` never returns;
//! - `Batch {"value", "count"}` emits `count` `Echoed` events whose values
//!   are `{"batch": value, "part": i}`, and replies `{"batch", "count"}`;
//! - `Bounce {"service"}` forwards `Bounce` to itself in `service`, forever;
//! - `SelfEffect {"service"}` asks for a synchronous `Echo` on itself in
//!   `service`, and replies `{"asked": "myself"}`;
//! - `Effect {"service", "entity", "synchronous", "command", "payload"}`
//!   emits `Echoed` and asks for `command` (by default `Echo
//!   {"value": "asked"}`) on `entity` in `service`, and replies
//!   `{"asked": entity}`;
//! - `Fan {"count", "service", "entity", "command", "payload"}` emits
//!   `Echoed` and asks for `count` asynchronous `command`s (with `payload`)
//!   on `entity` in `service`, and replies `{"asked": count}`;
//! - `Spread {"service", "fanout"}` emits `Echoed` and asks for `fanout`
//!   asynchronous `Spread`s of the same payload on entities `<id>.0`,
//!   `<id>.1`, ... of `service`: a side effect that keeps asking for more;
//! - `Spin {"millis"}` busy-waits that long, then emits `Echoed` and replies
//!   `{"spun": millis}`;
//! - `Sleep {"millis"}` sleeps that long (waiting in the host, running no
//!   Wasm), then emits `Echoed` and replies `{"slept": millis}`;
//! - `Grow {"mib", "millis"}` allocates and writes `mib` MiB, holds it for
//!   `millis` (if given, waiting in the host), then replies
//!   `{"mib", "pages"}` (the 4 KiB pages it checked);
//! - `ReadFile {"path"}` reads a file and replies `{"ok": contents}` or
//!   `{"error": message}`;
//! - `Flood {"count", "bytes"}` emits `count` `Filler` events, each encoded
//!   in `bytes` bytes (or the least a `Filler` event takes, if more), and
//!   replies `{"count"}`;
//! - `Log {"bytes"}` writes a line of `bytes` characters to stderr and to
//!   stdout, and replies `{"logged": bytes}`;
//! - `Residue {"mark"}` replies what an earlier call on this instance left
//!   in a 256 KiB static buffer, `{"found": mark or null, "dirtyChunks"}`
//!   (the 4 KiB chunks that are not all zero), then fills every chunk with
//!   `mark`. A new instance finds nothing.
//!
//! Events: `{"type":"Echoed","value":...}`, `{"type":"Doomed","command":...}`
//! and `{"type":"Filler","data":"xxx..."}`.

use std::hint::black_box;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasmstate_sdk::{Command, Context, EventSourcedEntity, Failure, Forward, Reply, SideEffect};

/// The state: how many events have been applied.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Misbehaving {
    /// The number of events folded into the state.
    pub applied: u64,
}

/// What the entity records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// `Echo` was called with `value`.
    Echoed {
        /// The echoed value.
        value: Value,
    },
    /// A command emitted this and then failed or panicked: it must never be
    /// committed.
    Doomed {
        /// The command's name.
        command: String,
    },
    /// Padding emitted by `Flood`.
    Filler {
        /// Filler characters.
        data: String,
    },
}

#[derive(Deserialize)]
struct Echo {
    value: Value,
}

#[derive(Deserialize)]
struct Fail {
    message: String,
}

#[derive(Deserialize)]
struct Grow {
    mib: usize,
    millis: Option<u64>,
}

#[derive(Deserialize)]
struct ReadFile {
    path: String,
}

#[derive(Deserialize)]
struct Batch {
    value: Value,
    count: u64,
}

#[derive(Deserialize)]
struct Target {
    service: String,
}

#[derive(Deserialize)]
struct Spin {
    millis: u64,
}

#[derive(Deserialize)]
struct Effect {
    service: String,
    entity: String,
    synchronous: bool,
    command: Option<String>,
    payload: Option<Value>,
}

#[derive(Deserialize)]
struct Fan {
    count: u32,
    service: String,
    entity: String,
    command: String,
    payload: Value,
}

#[derive(Deserialize)]
struct Spread {
    service: String,
    fanout: u32,
}

#[derive(Deserialize)]
struct Sleep {
    millis: u64,
}

#[derive(Deserialize)]
struct Log {
    /// The length of each line.
    bytes: usize,
    /// How many lines to write to stderr (default one).
    #[serde(default = "one")]
    lines: usize,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
struct Residue {
    mark: String,
}

/// How large `Residue`'s buffer is: many pages, so that a host resetting an
/// instance's memory both by writing and by returning pages to the system
/// has both ways to get right.
const RESIDUE_BYTES: usize = 256 << 10;
/// The unit `Residue` fills and checks.
const RESIDUE_CHUNK: usize = 4 << 10;
/// Fills a chunk after its mark.
const RESIDUE_FILL: u8 = 0xA5;

/// What `Residue` leaves for the next call on the same instance.
static RESIDUE: Mutex<[u8; RESIDUE_BYTES]> = Mutex::new([0; RESIDUE_BYTES]);

/// Replies what the buffer holds, then fills it with `mark`.
fn residue(mark: &str) -> Value {
    let mut buffer = RESIDUE.lock().unwrap_or_else(PoisonError::into_inner);
    let dirty_chunks = buffer.chunks(RESIDUE_CHUNK).filter(|chunk| chunk.iter().any(|&byte| byte != 0)).count();
    let first = &buffer[..RESIDUE_CHUNK];
    let found = first
        .iter()
        .position(|&byte| byte == RESIDUE_FILL)
        .map(|end| String::from_utf8_lossy(&first[..end]).into_owned());
    let mark = &mark.as_bytes()[..mark.len().min(RESIDUE_CHUNK / 2)];
    for chunk in buffer.chunks_mut(RESIDUE_CHUNK) {
        chunk.fill(RESIDUE_FILL);
        chunk[..mark.len()].copy_from_slice(mark);
    }
    json!({ "found": found, "dirtyChunks": dirty_chunks })
}

#[derive(Deserialize)]
struct Flood {
    count: u64,
    bytes: usize,
}

impl EventSourcedEntity for Misbehaving {
    type Event = Event;

    fn apply(&mut self, _event: &Event) {
        self.applied += 1;
    }

    fn handle(&self, command: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        let doomed = || Event::Doomed { command: command.name().to_owned() };
        match command.name() {
            "Echo" => {
                let Echo { value } = command.json()?;
                ctx.emit(Event::Echoed { value: value.clone() });
                Ok(Reply::json(&json!({ "value": value, "applied": ctx.state().applied })))
            }
            "Get" => Ok(Reply::json(self)),
            "Panic" => panic!("the Panic command panics"),
            "EmitThenPanic" => {
                ctx.emit(doomed());
                panic!("the EmitThenPanic command panics after emitting an event")
            }
            "Fail" => {
                let Fail { message } = command.json()?;
                ctx.emit(doomed());
                Err(Failure::rejected(message))
            }
            "Loop" => {
                let mut spins = 0_u64;
                loop {
                    spins = black_box(spins.wrapping_add(1));
                }
            }
            "Batch" => {
                let Batch { value, count } = command.json()?;
                for part in 0..count {
                    ctx.emit(Event::Echoed { value: json!({ "batch": value, "part": part }) });
                }
                Ok(Reply::json(&json!({ "batch": value, "count": count })))
            }
            "Bounce" => {
                let Target { service } = command.json()?;
                let payload = json!({ "service": service });
                Ok(Reply::forward(Forward::new(service, command.entity_id(), "Bounce").json(&payload)))
            }
            "SelfEffect" => {
                let Target { service } = command.json()?;
                ctx.effect(
                    SideEffect::new(service, command.entity_id(), "Echo")
                        .json(&json!({ "value": "from myself" }))
                        .synchronous(),
                );
                Ok(Reply::json(&json!({ "asked": "myself" })))
            }
            "Effect" => {
                let Effect { service, entity, synchronous, command, payload } = command.json()?;
                ctx.emit(Event::Echoed { value: json!({ "asked": entity }) });
                let effect = SideEffect::new(service, entity.as_str(), command.as_deref().unwrap_or("Echo"))
                    .json(&payload.unwrap_or_else(|| json!({ "value": "asked" })));
                ctx.effect(if synchronous { effect.synchronous() } else { effect });
                Ok(Reply::json(&json!({ "asked": entity })))
            }
            "Fan" => {
                let Fan { count, service, entity, command, payload } = command.json()?;
                ctx.emit(Event::Echoed { value: json!({ "fanned": count }) });
                for _ in 0..count {
                    ctx.effect(SideEffect::new(service.as_str(), entity.as_str(), command.as_str()).json(&payload));
                }
                Ok(Reply::json(&json!({ "asked": count })))
            }
            "Spread" => {
                let Spread { service, fanout } = command.json()?;
                ctx.emit(Event::Echoed { value: json!({ "spread": fanout }) });
                for i in 0..fanout {
                    let entity = format!("{}.{i}", command.entity_id());
                    let payload = json!({ "service": service, "fanout": fanout });
                    ctx.effect(SideEffect::new(service.as_str(), entity, "Spread").json(&payload));
                }
                Ok(Reply::json(&json!({ "spread": fanout })))
            }
            "Spin" => {
                let Spin { millis } = command.json()?;
                let started = std::time::Instant::now();
                while started.elapsed() < std::time::Duration::from_millis(millis) {
                    black_box(());
                }
                ctx.emit(Event::Echoed { value: json!({ "spun": millis }) });
                Ok(Reply::json(&json!({ "spun": millis })))
            }
            "Sleep" => {
                let Sleep { millis } = command.json()?;
                std::thread::sleep(std::time::Duration::from_millis(millis));
                ctx.emit(Event::Echoed { value: json!({ "slept": millis }) });
                Ok(Reply::json(&json!({ "slept": millis })))
            }
            "Grow" => {
                let Grow { mib, millis } = command.json()?;
                let len = mib
                    .checked_mul(1 << 20)
                    .ok_or_else(|| Failure::invalid_payload(format!("cannot address {mib} MiB")))?;
                let memory = black_box(vec![0xA5_u8; len]);
                let touched = memory.iter().step_by(4096).filter(|&&byte| byte == 0xA5).count();
                if let Some(millis) = millis {
                    std::thread::sleep(std::time::Duration::from_millis(millis));
                }
                Ok(Reply::json(&json!({ "mib": mib, "pages": touched })))
            }
            "ReadFile" => {
                let ReadFile { path } = command.json()?;
                Ok(Reply::json(&match std::fs::read_to_string(&path) {
                    Ok(contents) => json!({ "ok": contents }),
                    Err(error) => json!({ "error": error.to_string() }),
                }))
            }
            "Flood" => {
                let Flood { count, bytes } = command.json()?;
                let empty = Event::Filler { data: String::new() };
                let overhead = serde_json::to_vec(&empty).map_or(0, |encoded| encoded.len());
                let data = "x".repeat(bytes.saturating_sub(overhead));
                for _ in 0..count {
                    ctx.emit(Event::Filler { data: data.clone() });
                }
                Ok(Reply::json(&json!({ "count": count })))
            }
            "Log" => {
                let Log { bytes, lines } = command.json()?;
                let line = "l".repeat(bytes);
                for _ in 0..lines {
                    eprintln!("{line}");
                }
                println!("{line}");
                Ok(Reply::json(&json!({ "logged": bytes })))
            }
            "Residue" => {
                let Residue { mark } = command.json()?;
                Ok(Reply::json(&residue(&mark)))
            }
            _ => Err(command.unknown()),
        }
    }
}

wasmstate_sdk::export_event_sourced!(Misbehaving);
