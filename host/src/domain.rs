//! The host's own vocabulary: what a call names, what a guest answers, the
//! kinds of service, idempotency keys. Every module speaks in these types;
//! the WIT-generated ones never leave `runtime/`, whose `bindings.rs`
//! converts them at the edge.
//!
//! [`Call`], [`Reply`], [`FollowUp`] and [`Fingerprint`] are also part of
//! the journal's stored records (`journal/records.rs`): changing their
//! fields changes the stored format, which takes a new schema version.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
}

impl ServiceKind {
    /// Every kind, in the order the host looks for them in a component.
    pub const ALL: [ServiceKind; 3] = [ServiceKind::EventSourced, ServiceKind::Value, ServiceKind::Action];

    /// The name reported over HTTP and stored with each version.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::EventSourced => "event-sourced",
            ServiceKind::Value => "value",
            ServiceKind::Action => "action",
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
        }
    }

    /// Whether commands to one entity of this kind run one at a time in a
    /// mailbox (event-sourced and value entities) rather than in parallel.
    pub fn has_entities(self) -> bool {
        self != ServiceKind::Action
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A further command a command asks for, run once its writes are durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideEffect {
    /// What to invoke.
    pub call: Call,
    /// True: run before the reply, failing the reply if it fails. False:
    /// delivered from the durable outbox after the reply, at least once.
    pub synchronous: bool,
}

/// An HTTP request a command asks the host to send once its writes are
/// durable: from the outbox, at least once, under an idempotency key that
/// stays the same across attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// The service whose command asked for it: its allow-list applies.
    pub service: String,
    /// Where to send it: an `http` or `https` URL.
    pub url: String,
    /// The request's method.
    pub method: String,
    /// Extra request headers, as (name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// The body's media type.
    pub content_type: String,
    /// The request body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl Webhook {
    /// The method sent when a guest names none.
    pub const DEFAULT_METHOD: &str = "POST";
    /// The media type sent when a guest names none.
    pub const DEFAULT_CONTENT_TYPE: &str = "application/json";
}

/// A side effect delivered from the durable outbox after its command's
/// commit: a command of a deployed service, or a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AsyncEffect {
    /// A command, run as any invocation is.
    Command(Call),
    /// An HTTP request to the outside world.
    Webhook(Webhook),
}

impl AsyncEffect {
    /// The command, for an entry known to hold one.
    ///
    /// # Panics
    ///
    /// On a webhook.
    #[cfg(test)]
    pub fn command(&self) -> &Call {
        match self {
            AsyncEffect::Command(call) => call,
            AsyncEffect::Webhook(webhook) => panic!("a webhook to {}, not a command", webhook.url),
        }
    }

    /// What the outbox counts its waiting entries by: the target service of
    /// a command; the origin (`scheme://host:port`, which no service name
    /// can be) of a webhook.
    pub fn target(&self) -> String {
        match self {
            AsyncEffect::Command(call) => call.service.clone(),
            AsyncEffect::Webhook(webhook) => crate::outbound::origin_of(&webhook.url),
        }
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

/// A repeating schedule of a timer: when its slots are, and what becomes
/// of the slots that passed unfired. Stored with the timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronSchedule {
    /// Five cron fields, or six with seconds first, then optionally an IANA
    /// time zone (UTC when there is none), as the entity wrote it.
    pub expression: String,
    /// What becomes of the slots that passed unfired.
    pub missed: MissedFirings,
}

/// What a cron schedule does with the slots that passed while no host
/// could fire them (see [`crate::timers`] for when a slot counts as missed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MissedFirings {
    /// Fire none of them: go on at the next slot.
    Skip,
    /// Fire once for all of them, then go on at the next slot.
    #[default]
    Once,
    /// Fire every one of them, oldest first (at most the last 100).
    All,
}

impl MissedFirings {
    /// The policy's name, as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MissedFirings::Skip => "skip",
            MissedFirings::Once => "once",
            MissedFirings::All => "all",
        }
    }
}

/// When a timer a guest sets is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerDue {
    /// This many milliseconds after the command started.
    AfterMs(u64),
    /// At this time, in ms since the Unix epoch.
    AtMs(u64),
    /// At every slot of a schedule.
    Cron(CronSchedule),
}

/// A change a guest makes to its entity's timers (for an action, the
/// timers of its routing key), committed with the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerRequest {
    /// Sets timer `name`, replacing one of that name.
    Set {
        /// Its name among the entity's timers.
        name: String,
        /// When it fires.
        due: TimerDue,
        /// What it runs.
        call: Call,
    },
    /// Cancels the timer of this name, if there is one.
    Cancel(String),
}

/// What one guest call produced: a reply, side effects and, for an entity,
/// a change of its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effects {
    /// The reply, or a forward.
    pub reply: Reply,
    /// Further commands, in the order the guest asked for them.
    pub side_effects: Vec<SideEffect>,
    /// Webhooks, in the order the guest asked for them; their `service` is
    /// filled in by [`Effects::into_parts`].
    pub webhooks: Vec<Webhook>,
    /// What becomes of the entity's state.
    pub state: StateChange,
    /// Timers set and cancelled, in order.
    pub timers: Vec<TimerRequest>,
}

/// What a command does to its entity's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// Nothing: an action, or a value command that left its state alone.
    Unchanged,
    /// An event-sourced entity's new events and its state after them.
    Events {
        /// The events, in order.
        events: Vec<Vec<u8>>,
        /// The state after all of them, as the guest encoded it.
        state: Vec<u8>,
    },
    /// A value entity's new state.
    Update(Vec<u8>),
    /// A value entity's state is deleted.
    Delete,
}

impl Effects {
    /// Effects of a call that only answers `reply`.
    pub fn reply(reply: Reply) -> Self {
        Self {
            reply,
            side_effects: Vec::new(),
            webhooks: Vec::new(),
            state: StateChange::Unchanged,
            timers: Vec::new(),
        }
    }

    /// Splits into the state change, what follows the commit (the
    /// synchronous side effects, then the reply) and the asynchronous side
    /// effects, which go to the outbox: commands, then the webhooks of
    /// `service`.
    pub fn into_parts(self, service: &str) -> (StateChange, FollowUp, Vec<AsyncEffect>) {
        let mut synchronous = Vec::new();
        let mut asynchronous = Vec::new();
        for effect in self.side_effects {
            if effect.synchronous {
                synchronous.push(effect.call);
            } else {
                asynchronous.push(AsyncEffect::Command(effect.call));
            }
        }
        for webhook in self.webhooks {
            asynchronous.push(AsyncEffect::Webhook(Webhook { service: service.to_owned(), ..webhook }));
        }
        (self.state, FollowUp { synchronous, reply: self.reply }, asynchronous)
    }
}

/// What a committed command leaves to do: its synchronous side effects, in
/// order, then its reply or forward. Recorded under the command's
/// idempotency key, so a repeat of the key does it again, each step under
/// a key derived from the command's (see [`IdempotencyKey::derived`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// The synchronous side effects.
    pub synchronous: Vec<Call>,
    /// The reply, or the forward that answers.
    pub reply: Reply,
}

impl FollowUp {
    /// An empty reply and nothing to run.
    pub fn nothing() -> Self {
        Self { synchronous: Vec::new(), reply: Reply::Message(Vec::new()) }
    }
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

    #[test]
    fn effects_split_into_what_follows_and_the_outbox() {
        let call =
            |entity: &str| Call { service: "s".into(), entity: entity.into(), command: "C".into(), payload: vec![] };
        let effects = Effects {
            reply: Reply::Message(b"ok".to_vec()),
            side_effects: vec![
                SideEffect { call: call("a"), synchronous: false },
                SideEffect { call: call("b"), synchronous: true },
                SideEffect { call: call("c"), synchronous: false },
            ],
            webhooks: vec![Webhook {
                service: String::new(),
                url: "https://example.com/hook".into(),
                method: "POST".into(),
                headers: Vec::new(),
                content_type: "application/json".into(),
                body: b"{}".to_vec(),
            }],
            state: StateChange::Delete,
            timers: Vec::new(),
        };
        let (state, follow_up, outbox) = effects.into_parts("cart");
        assert_eq!(state, StateChange::Delete);
        assert_eq!(follow_up, FollowUp { synchronous: vec![call("b")], reply: Reply::Message(b"ok".to_vec()) });
        let [AsyncEffect::Command(a), AsyncEffect::Command(c), AsyncEffect::Webhook(hook)] = outbox.as_slice() else {
            panic!("{outbox:?}");
        };
        assert_eq!((a, c), (&call("a"), &call("c")));
        assert_eq!(hook.service, "cart", "the webhook names the service that asked for it");
        assert_eq!(outbox[2].target(), "https://example.com:443");
    }
}
