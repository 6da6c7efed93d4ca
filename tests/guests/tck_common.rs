//! What the two TCK entities, `tck-event-sourced` and `tck-value`, have in
//! common: the `forward`, `effect` and `fail` actions of `Process`, `Call`,
//! and the `{"message": ...}` reply.
//!
//! Each crate includes this file as a module
//! (`#[path = "../../tck_common.rs"] mod common;`), so both behave alike
//! without a crate of their own for a few lines.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Forward, Metadata, Reply, SideEffect};

/// The commands of both TCK entities; `S` is the entity's kind of step.
#[derive(Deserialize)]
pub enum TckCommand<S> {
    /// Runs the steps in order.
    Process(Process<S>),
    /// Records (or, for the value entity, only answers) a call from another entity.
    Call(Call),
    /// Replies with the command's metadata: `{"seq", "nowMs", "idempotencyKey"}`.
    Metadata,
}

/// The argument of `Process`: the actions to run, in order.
#[derive(Deserialize)]
pub struct Process<S> {
    pub actions: Vec<S>,
}

/// The target of a `forward` or `effect` action.
#[derive(Deserialize)]
pub struct Target {
    service: String,
    id: String,
    /// Only for side effects: whether the side effect is synchronous.
    #[serde(default)]
    synchronous: bool,
}

impl Target {
    /// The forward to command `Call` of this target, from entity `from`.
    pub fn forward(self, from: &str) -> Forward {
        Forward::new(self.service, self.id, "Call").json(&Call::from(from))
    }

    /// The side effect running command `Call` of this target, from entity
    /// `from`.
    pub fn effect(self, from: &str) -> SideEffect {
        let effect = SideEffect::new(self.service, self.id, "Call").json(&Call::from(from));
        if self.synchronous { effect.synchronous() } else { effect }
    }
}

/// The argument of `Call`, and the payload of forwards and side effects.
#[derive(Serialize, Deserialize)]
pub struct Call {
    pub from: String,
}

impl From<&str> for Call {
    fn from(from: &str) -> Self {
        Self { from: from.to_owned() }
    }
}

/// The reply of `Process`: `forward` if an action asked for one, otherwise
/// the message `state`.
/// The reply of `Metadata`: what the host told the command.
pub fn metadata_reply(metadata: Metadata<'_>) -> Reply {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Shown<'a> {
        seq: u64,
        now_ms: u64,
        idempotency_key: Option<&'a str>,
    }
    let (seq, now_ms, idempotency_key) = (metadata.seq(), metadata.now_ms(), metadata.idempotency_key());
    Reply::json(&Shown { seq, now_ms, idempotency_key })
}

pub fn process_reply(forward: Option<Forward>, state: &str) -> Reply {
    match forward {
        Some(forward) => Reply::forward(forward),
        None => message(state),
    }
}

/// The reply of every command that does not forward: `{"message": state}`.
pub fn message(state: &str) -> Reply {
    #[derive(Serialize)]
    struct Message<'a> {
        message: &'a str,
    }
    Reply::json(&Message { message: state })
}
