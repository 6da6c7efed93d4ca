//! The host's own vocabulary: what a call names, what a guest answers, the
//! kinds of service, idempotency keys. Every module speaks in these types;
//! the WIT-generated ones never leave `runtime/`, whose `bindings.rs`
//! converts them at the edge.
//!
//! `effects` holds what a guest call produces.
//!
//! [`Call`], [`Reply`], [`FollowUp`] and [`Fingerprint`] are also part of
//! the journal's stored records (`journal/records.rs`): changing their
//! fields changes the stored format, which takes a new schema version.

mod effects;

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use effects::{
    AsyncEffect, CronSchedule, Effects, FollowUp, MissedFirings, SideEffect, StateChange, TimerDue, TimerRequest,
    Webhook,
};

/// One command addressed to an entity, or to an action under a routing key:
/// what a request, a forward, a side effect and an outbox entry all name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The service to invoke.
    pub service: String,
    /// The entity id (any routing key for an action).
    pub entity: String,
    /// The command's name.
    pub command: String,
    /// The command's payload, as the caller encoded it.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl Call {
    /// `service/entity/command`, as logs and errors name a call.
    pub fn target(&self) -> String {
        format!("{}/{}/{}", self.service, self.entity, self.command)
    }
}

/// What the host tells a guest about the invocation a command runs in,
/// besides the [`Call`] itself (WIT 0.2.0 `command` fields; a 0.1.0
/// component gets none of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandMeta {
    /// The entity's position before the command: the seq of its last event,
    /// or its value's revision; 0 for an action.
    pub seq: u64,
    /// The host's time when the command started, in Unix milliseconds.
    pub now_ms: u64,
    /// The key the invocation runs under, if any.
    pub idempotency_key: Option<String>,
}

impl CommandMeta {
    /// The metadata of a command on an entity at `seq`, keyed by `key`,
    /// starting now.
    pub fn now(seq: u64, idempotency_key: Option<String>) -> Self {
        Self::at(seq, crate::journal::now_ms(), idempotency_key)
    }

    /// The metadata of a command on an entity at `seq`, keyed by `key`,
    /// that started at `now_ms`.
    pub fn at(seq: u64, now_ms: u64, idempotency_key: Option<String>) -> Self {
        Self { seq, now_ms, idempotency_key }
    }
}

/// The kinds of service a component can implement, one per WIT interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    /// State is the fold of the entity's events.
    EventSourced,
    /// State is one value the host stores.
    Value,
    /// Stateless: commands run fully in parallel; may subscribe to events.
    Action,
    /// State is a CRDT the host keeps and merges; every host is a replica
    /// that takes writes.
    Crdt,
}

impl ServiceKind {
    /// Every kind, in the order the host looks for them in a component.
    pub const ALL: [ServiceKind; 4] =
        [ServiceKind::EventSourced, ServiceKind::Value, ServiceKind::Action, ServiceKind::Crdt];

    /// The name reported over HTTP and stored with each version.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::EventSourced => "event-sourced",
            ServiceKind::Value => "value",
            ServiceKind::Action => "action",
            ServiceKind::Crdt => "crdt",
        }
    }

    /// The kind named `name` (as [`as_str`](Self::as_str) spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The name with its indefinite article, for messages: "an action".
    pub fn with_article(self) -> &'static str {
        match self {
            ServiceKind::EventSourced => "an event-sourced",
            ServiceKind::Value => "a value",
            ServiceKind::Action => "an action",
            ServiceKind::Crdt => "a CRDT",
        }
    }

    /// Whether commands to one entity of this kind run one at a time in a
    /// mailbox (on each host, for a CRDT) rather than in parallel.
    pub fn has_entities(self) -> bool {
        self != ServiceKind::Action
    }

    /// Whether an entity of this kind is written by one host at a time, its
    /// owner, which commands are routed to: not a CRDT, whose every host
    /// is a replica that takes writes.
    pub fn has_owner(self) -> bool {
        matches!(self, ServiceKind::EventSourced | ServiceKind::Value)
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller of a successful command gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// This reply message.
    Message(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The reply of this other command, which the host invokes.
    Forward(Call),
}

/// Why a guest refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    /// The entity's own rules refused it.
    Rejected,
    /// The entity has no command of that name.
    UnknownCommand,
    /// The payload did not decode into the command's argument.
    InvalidPayload,
    /// The stored snapshot, events or state did not decode.
    InvalidState,
}

/// A command a guest refused: nothing it produced is persisted or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The kind of failure.
    pub code: FailureCode,
    /// A message meant for the caller.
    pub message: String,
}

/// One committed event of an entity's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its position in the entity's log, from 1.
    pub seq: u64,
    /// The version of the service that emitted it; 0 for events stored
    /// before versions were recorded.
    pub version: u32,
    /// The event as the guest encoded it.
    pub payload: Vec<u8>,
}

/// A committed event of one service, as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedEvent {
    /// The service whose entity emitted it.
    pub source: String,
    /// The entity that emitted it.
    pub entity: String,
    /// Its position in that entity's log.
    pub seq: u64,
    /// The version of that service that emitted it (0: not recorded).
    pub version: u32,
    /// The event as that entity encoded it.
    pub payload: Vec<u8>,
}

/// A payload (an event, a state, a reply) as JSON, for people to read:
/// embedded as is when it is JSON, else as a string.
pub fn payload_json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(payload).into_owned()))
}

/// The longest idempotency key a client may send.
pub const MAX_CLIENT_KEY: usize = 256;

/// An idempotency key: a command repeated with the same key on the same
/// entity answers what the first run recorded instead of running again.
/// Keys are per entity. A client's key never contains a space and every key
/// the host makes does, so the two never collide; this type is the one
/// place that rule lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// A client's `Idempotency-Key` that breaks the rule of
/// [`IdempotencyKey::client`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to {MAX_CLIENT_KEY} printable ASCII characters, without spaces")]
pub struct InvalidKey;

/// One step of what a keyed command leaves to do, each with a key derived
/// from the command's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The synchronous side effect at this index.
    Effect(usize),
    /// The forward.
    Forward,
}

impl IdempotencyKey {
    /// A client's key: 1 to [`MAX_CLIENT_KEY`] printable ASCII characters
    /// other than space.
    pub fn client(bytes: &[u8]) -> Result<Self, InvalidKey> {
        if bytes.is_empty() || bytes.len() > MAX_CLIENT_KEY || !bytes.iter().all(u8::is_ascii_graphic) {
            return Err(InvalidKey);
        }
        Ok(Self(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// The key of the delivery of outbox entry `id`.
    pub fn outbox(id: u64) -> Self {
        Self(format!("outbox {id}"))
    }

    /// The key of the firing of timer `id` that was first due at
    /// `scheduled_ms`: the same however often the firing is delivered.
    pub fn timer(id: u64, scheduled_ms: u64) -> Self {
        Self(format!("timer {id:016x} {scheduled_ms}"))
    }

    /// The key of the delivery of event `seq` of one entity of service
    /// `source` to a subscriber: recorded under the subscriber and that
    /// entity, it names one event of one source.
    pub fn event(source: &str, seq: u64) -> Self {
        Self(format!("event {source} {seq}"))
    }

    /// The key of one step of what the command keyed `self` on
    /// `service/entity` left to do. A hash seeds it, so the same key on two
    /// entities derives different keys, and keys stay short however deep
    /// forwards nest: the seed, a space, then the step.
    pub fn derived(&self, service: &str, entity: &str, step: Step) -> Self {
        let mut hash = Sha256::new();
        for part in [service, entity, &self.0] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        let seed: String = hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
        match step {
            Step::Effect(index) => Self(format!("{seed} effect {index}")),
            Step::Forward => Self(format!("{seed} forward")),
        }
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A digest of what a keyed command asked (its name and payload), recorded
/// with its key: a repeat of the key that asks something else is refused
/// instead of answered with another command's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// The fingerprint of a command, or of an event delivery (`"on-event"`
    /// and the event's payload).
    pub fn of(name: &str, payload: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update(payload);
        let mut out = [0; 16];
        out.copy_from_slice(&hash.finalize()[..16]);
        Self(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_never_collide_with_the_hosts() {
        assert_eq!(IdempotencyKey::client(b"order-42_~!").unwrap().as_str(), "order-42_~!");
        for bad in [&b""[..], b"has space", b"tab\t", &[b'k'; 257], "ü".as_bytes()] {
            assert_eq!(IdempotencyKey::client(bad), Err(InvalidKey), "{bad:?}");
        }
        let client = IdempotencyKey::client(b"k").unwrap();
        let host = [
            IdempotencyKey::outbox(7),
            IdempotencyKey::event("cart", 3),
            client.derived("s", "e", Step::Effect(0)),
            client.derived("s", "e", Step::Forward),
        ];
        for key in &host {
            assert!(key.as_str().contains(' '), "{key}");
            assert!(IdempotencyKey::client(key.as_str().as_bytes()).is_err());
        }
    }

    #[test]
    fn derived_keys_depend_on_the_entity_and_the_step() {
        let key = IdempotencyKey::client(b"k").unwrap();
        let a = key.derived("s", "a", Step::Effect(0));
        assert_eq!(a, key.derived("s", "a", Step::Effect(0)), "deterministic");
        assert_ne!(a, key.derived("s", "b", Step::Effect(0)));
        assert_ne!(a, key.derived("s", "a", Step::Effect(1)));
        assert_ne!(a, key.derived("s", "a", Step::Forward));
        // Length-prefixed parts: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(key.derived("ab", "c", Step::Forward), key.derived("a", "bc", Step::Forward));
    }

    #[test]
    fn fingerprints_tell_commands_apart() {
        assert_eq!(Fingerprint::of("Add", b"{}"), Fingerprint::of("Add", b"{}"));
        assert_ne!(Fingerprint::of("Add", b"{}"), Fingerprint::of("Add", b"{ }"));
        assert_ne!(Fingerprint::of("Ad", b"d{}"), Fingerprint::of("Add", b"{}"));
    }
}
