//! The CRDT entity of the conformance model: one command runs a list of
//! actions, so a test can combine changes, deletion, forwards, side effects
//! and failures at will, on every CRDT type.
//!
//! The entity id's prefix picks the type: `gcounter-`, `pncounter-`,
//! `gset-`, `orset-`, `lwwregister-`, `flag-`, `ormap-`, `vote-`; any other
//! id fails every command. Elements, register values and map keys are
//! strings.
//!
//! Commands (JSON bodies):
//!
//! - `Process {"actions": [...]}` runs the actions in order, then replies
//!   with the value as this host has it once the command's delta is applied
//!   (see below), or forwards if an action asked to (the last forward
//!   wins). The actions:
//!   - `{"increment": N}`: counters (a GCounter refuses a negative N; on a
//!     PNCounter it is a decrement), `{"decrement": N}`: PNCounter;
//!   - `{"add": "x"}`: sets; `{"remove": "x"}`: ORSet, and an ORMap's key;
//!     `{"clear": true}`: ORSet and ORMap (`false` does nothing);
//!   - `{"set": "v"}`: LWWRegister, by the host's time;
//!   - `{"enable": true}`: Flag (`false` does nothing);
//!   - `{"vote": true|false}`: Vote, as this host;
//!   - `{"key": "k", "action": {...}}`: ORMap; one of the actions above on
//!     key `k`'s value, whose type `k`'s prefix picks as an entity id's
//!     does (not `ormap-`);
//!   - `{"delete": true}` deletes the entity for good (`false` does nothing);
//!   - `{"fail": "message"}` fails the command with code `rejected` and that
//!     message; later actions do not run, and nothing is committed;
//!   - `{"forward": "id"}` makes the reply a forward to `Get` of entity `id`
//!     of this service;
//!   - `{"effect": "id", "synchronous": bool}` adds a side effect running
//!     `Get` of entity `id` of this service, or `Process` with
//!     `{"actions": A}` if the action has `"actions": A`; `synchronous`
//!     defaults to false.
//!
//!   An action the type does not support fails the command like `fail`,
//!   with a message saying which.
//! - `Get` replies with the value and changes nothing.
//!
//! The value, as JSON: counters `{"value": N}`; sets `{"elements": [...]}`,
//! sorted; LWWRegister `{"value": "v"}` (`null` when unset); Flag
//! `{"value": bool}`; ORMap `{"entries": {"k": <k's value>}}`; Vote
//! `{"self_vote": bool, "votes_for": N, "voters": N}`.
//!
//! # Combined actions
//!
//! The actions of one command combine into one delta of the entity's type
//! that does, on this host, what they would have done in order: increments
//! and decrements add up; set adds unite; the last `set` and the last
//! `vote` win. An ORSet's delta is clear, then remove, then add, and every
//! sequence folds into it exactly: a `clear` forgets the adds and removes
//! before it, a `remove` takes back an earlier `add` of the element (and
//! still removes it as this host saw it), an `add` after a `remove` adds it
//! again. An ORMap's delta is clear, remove keys, update values, folded
//! alike: a key's actions combine by its type, a `remove` of a key drops
//! its earlier updates, and an update after it starts the key afresh. On
//! other hosts, an add (or a key's update) wins over a concurrent remove.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use wasmstate_sdk::{CrdtContext, CrdtEntity, CrdtKind, CrdtValue, Failure, Forward, Reply, SideEffect};

/// The service forwards and side effects go to when the host does not say
/// which this one is.
const SERVICE: &str = "tck-crdt";

/// The entity: its type comes from its id.
pub struct TckCrdt;

/// The commands.
#[derive(Deserialize)]
pub enum TckCommand {
    /// Runs the actions in order.
    Process(Process),
    /// Replies with the value.
    Get,
}

/// The argument of `Process`.
#[derive(Deserialize)]
pub struct Process {
    /// The actions, in order.
    pub actions: Vec<Step>,
}

/// One action of `Process`.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Step {
    /// An action on one key of a map.
    Keyed {
        /// The key; its prefix picks its value's type.
        key: String,
        /// What to do to its value.
        action: Op,
    },
    /// A side effect.
    Effect {
        /// The entity it runs on.
        effect: String,
        /// Whether it runs before the reply.
        #[serde(default)]
        synchronous: bool,
        /// `Process`'s actions to run there; `Get` without them.
        #[serde(default)]
        actions: Option<Json>,
    },
    /// Any other action.
    Op(Op),
}

/// An action of one key.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Increment(i64),
    Decrement(i64),
    Add(String),
    Remove(String),
    Clear(bool),
    Set(String),
    Enable(bool),
    Vote(bool),
    Delete(bool),
    Fail(String),
    Forward(String),
}

impl Op {
    /// The action's name, for failures.
    fn name(&self) -> &'static str {
        match self {
            Op::Increment(_) => "increment",
            Op::Decrement(_) => "decrement",
            Op::Add(_) => "add",
            Op::Remove(_) => "remove",
            Op::Clear(_) => "clear",
            Op::Set(_) => "set",
            Op::Enable(_) => "enable",
            Op::Vote(_) => "vote",
            Op::Delete(_) => "delete",
            Op::Fail(_) => "fail",
            Op::Forward(_) => "forward",
        }
    }
}

/// The type an entity id (or a map key) names by its prefix.
fn kind_of(id: &str) -> Option<CrdtKind> {
    let prefixes = [
        ("gcounter-", CrdtKind::GCounter),
        ("pncounter-", CrdtKind::PNCounter),
        ("gset-", CrdtKind::GSet),
        ("orset-", CrdtKind::OrSet),
        ("lwwregister-", CrdtKind::LwwRegister),
        ("flag-", CrdtKind::Flag),
        ("ormap-", CrdtKind::OrMap),
        ("vote-", CrdtKind::Vote),
    ];
    prefixes.into_iter().find(|(prefix, _)| id.starts_with(prefix)).map(|(_, kind)| kind)
}

impl CrdtEntity for TckCrdt {
    type Command = TckCommand;

    fn handle(command: TckCommand, ctx: &mut CrdtContext<'_>) -> Result<Reply, Failure> {
        let Some(kind) = kind_of(ctx.entity_id()) else {
            return Err(Failure::rejected(format!("entity id {} names no CRDT type", ctx.entity_id())));
        };
        let TckCommand::Process(Process { actions }) = command else { return Ok(Reply::json(&shown(ctx, kind)?)) };
        let service = ctx.metadata().service().unwrap_or(SERVICE);
        let mut forward = None;
        for step in actions {
            match step {
                Step::Keyed { key, action } if kind == CrdtKind::OrMap => {
                    let key_kind = kind_of(&key).filter(|kind| *kind != CrdtKind::OrMap).ok_or_else(|| {
                        Failure::rejected(format!("map key {key} names no CRDT type a map's value may have"))
                    })?;
                    change(ctx, Some(&key), key_kind, &action)?;
                }
                Step::Keyed { .. } => return Err(unsupported(kind, "key")),
                Step::Effect { effect, synchronous, actions } => {
                    let effect = match actions {
                        Some(actions) => SideEffect::new(service, effect, "Process").json(&json!({"actions": actions})),
                        None => SideEffect::new(service, effect, "Get"),
                    };
                    ctx.effect(if synchronous { effect.synchronous() } else { effect });
                }
                Step::Op(Op::Delete(delete)) => {
                    if delete {
                        ctx.delete();
                    }
                }
                Step::Op(Op::Fail(message)) => return Err(Failure::rejected(message)),
                Step::Op(Op::Forward(id)) => forward = Some(Forward::new(service, id, "Get")),
                Step::Op(op) => change(ctx, None, kind, &op)?,
            }
        }
        match forward {
            Some(forward) => Ok(Reply::forward(forward)),
            None => Ok(Reply::json(&shown(ctx, kind)?)),
        }
    }
}

/// The failure of an action `kind` does not support.
fn unsupported(kind: CrdtKind, action: &str) -> Failure {
    Failure::rejected(format!("{kind} does not support {action}"))
}

/// Runs `on` with the handle `method` answers, of the entity (`key` is
/// `None`) or of its map's `key`.
macro_rules! on {
    ($ctx:expr, $key:expr, $method:ident, |$handle:ident| $body:expr) => {
        match $key {
            None => {
                let mut $handle = $ctx.$method();
                $body;
            }
            Some(key) => {
                let mut map = $ctx.map();
                let mut $handle = map.$method(key);
                $body;
            }
        }
    };
}

/// Applies `op` to the entity, or to its map's `key`, of type `kind`.
fn change(ctx: &mut CrdtContext<'_>, key: Option<&str>, kind: CrdtKind, op: &Op) -> Result<(), Failure> {
    match (kind, op) {
        (CrdtKind::GCounter, Op::Increment(by)) if *by >= 0 => {
            on!(ctx, key, gcounter, |h| h.increment(by.unsigned_abs()))
        }
        (CrdtKind::GCounter, Op::Increment(_)) => {
            return Err(Failure::rejected("GCounter does not support a negative increment"));
        }
        (CrdtKind::PNCounter, Op::Increment(by)) => on!(ctx, key, pncounter, |h| h.change(*by)),
        (CrdtKind::PNCounter, Op::Decrement(by)) => on!(ctx, key, pncounter, |h| h.change(by.saturating_neg())),
        (CrdtKind::GSet, Op::Add(element)) => on!(ctx, key, gset, |h| h.add(element)),
        (CrdtKind::OrSet, Op::Add(element)) => on!(ctx, key, orset, |h| h.add(element)),
        (CrdtKind::OrSet, Op::Remove(element)) => on!(ctx, key, orset, |h| h.remove(element)),
        (CrdtKind::OrSet, Op::Clear(true)) => on!(ctx, key, orset, |h| h.clear()),
        (CrdtKind::OrSet | CrdtKind::OrMap, Op::Clear(false)) | (CrdtKind::Flag, Op::Enable(false)) => {}
        (CrdtKind::LwwRegister, Op::Set(value)) => on!(ctx, key, lww, |h| h.set(value)),
        (CrdtKind::Flag, Op::Enable(true)) => on!(ctx, key, flag, |h| h.enable()),
        (CrdtKind::Vote, Op::Vote(yes)) => on!(ctx, key, vote, |h| h.vote(*yes)),
        (CrdtKind::OrMap, Op::Remove(key)) => {
            ctx.map().remove(key);
        }
        (CrdtKind::OrMap, Op::Clear(true)) => {
            ctx.map().clear();
        }
        (kind, op) => return Err(unsupported(kind, op.name())),
    }
    Ok(())
}

/// The entity's value with the command's delta, as JSON.
fn shown(ctx: &CrdtContext<'_>, kind: CrdtKind) -> Result<Json, Failure> {
    json_of(&ctx.current().unwrap_or_else(|| CrdtValue::empty(kind)))
}

/// `value` as the replies show it.
fn json_of(value: &CrdtValue) -> Result<Json, Failure> {
    Ok(match value {
        CrdtValue::GCounter(sum) => json!({"value": sum}),
        CrdtValue::PNCounter(sum) => json!({"value": sum}),
        CrdtValue::GSet(_) | CrdtValue::OrSet(_) => {
            let mut elements = value.elements::<String>()?;
            elements.sort();
            json!({"elements": elements})
        }
        CrdtValue::LwwRegister(_) => json!({"value": value.register::<Json>()?}),
        CrdtValue::Flag(enabled) => json!({"value": enabled}),
        CrdtValue::OrMap(_) => {
            let mut entries = Map::new();
            for (key, value) in value.map_entries::<String>()? {
                entries.insert(key, json_of(value)?);
            }
            json!({"entries": entries})
        }
        CrdtValue::Vote(vote) => {
            json!({"self_vote": vote.self_vote, "votes_for": vote.votes_for, "voters": vote.voters})
        }
    })
}

wasmstate_sdk::export_crdt!(TckCrdt);

#[cfg(test)]
mod tests;
