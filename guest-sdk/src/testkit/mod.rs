//! Unit-test services natively, without WebAssembly or a host.
//!
//! Each kit plays the host for one kind of service and runs every call
//! through the same byte-level core as the WebAssembly export
//! ([`raw`](crate::raw)):
//!
//! - [`TestKit`] keeps an event-sourced entity's log as encoded bytes;
//! - [`ValueTestKit`] keeps a value entity's state as encoded bytes;
//! - [`ActionTestKit`] calls an action's `handle` and `on_event`;
//! - [`CrdtKit`] keeps a CRDT entity's replicas, merging them as hosts do
//!   (outside WebAssembly only).
//!
//! As with the host, a failed command changes nothing. The kits do not run
//! forwards or side effects; [`Outcome`] shows them, with their payloads
//! decoded as JSON, so a test can check what the host would run.
//!
//! Webhooks are not sent either: [`Outcome::webhooks`] shows a command's,
//! and each kit keeps every webhook its committed commands sent, as the
//! host's outbox would send them: `webhooks()` lists them, oldest first,
//! and `take_webhooks()` lists and forgets them.
//!
//! Outbound HTTP ([`wasmstate_sdk::http`](crate::http)) never reaches the
//! network outside WebAssembly: the stubs of [`http`], set per
//! test thread, answer it and record the requests.
//!
//! Each kit also keeps the timers of its entity (an action kit, those of
//! its routing key) as the host would: `timers()` lists the pending ones,
//! `timer_changes()` what the last command set and cancelled. It has a
//! clock, `now_ms()`, which its commands see as their time:
//! `set_time_ms` fixes it, and `advance` moves it on and fires the timers
//! that come due meanwhile, running those that target the kit's own entity
//! like `handle` does, under the idempotency key the host would give them.

/// Defines a kit's `handle`, `handle_raw` and `handle_outcome`, which send
/// one command through the kit's `run(name, payload)`: that runs the command
/// as the host would (for an entity, committing what a successful command
/// did) and returns its reply and side effects.
///
/// The receiver is `&mut self` or `&self`, as `run` takes it; `$service`
/// names the service in the docs and `$errors` is their `# Errors` section.
macro_rules! command_methods {
    (&mut self, $service:literal, $errors:literal) => {
        command_methods!(@receiver [mut], $service, $errors);
    };
    (&self, $service:literal, $errors:literal) => {
        command_methods!(@receiver [], $service, $errors);
    };
    (@receiver [$($mut:tt)?], $service:literal, $errors:literal) => {
        /// Sends command `name` with `payload` encoded as JSON, returning the
        /// reply decoded as JSON (`null` for an empty reply).
        ///
        /// A unit payload, `()`, is sent as an empty body.
        ///
        /// # Errors
        ///
        #[doc = $errors]
        ///
        /// # Panics
        ///
        /// If the reply is not JSON, if the command forwarded (see
        #[doc = concat!(
            "[`handle_outcome`](Self::handle_outcome)), or if the ",
            $service,
            " panics."
        )]
        pub fn handle(
            &$($mut)? self,
            name: &str,
            payload: impl ::serde::Serialize,
        ) -> Result<::serde_json::Value, $crate::Failure> {
            let reply = self.handle_raw(name, &$crate::testkit::encode(payload))?;
            Ok($crate::testkit::decode(&reply, "reply"))
        }

        /// Sends command `name` with a raw `payload`, returning the raw reply.
        ///
        /// # Errors
        ///
        #[doc = $errors]
        ///
        /// # Panics
        ///
        #[doc = concat!("If the command forwarded, or if the ", $service, " panics.")]
        pub fn handle_raw(
            &$($mut)? self,
            name: &str,
            payload: &[u8],
        ) -> Result<Vec<u8>, $crate::Failure> {
            let (reply, _) = self.run(name, payload)?;
            Ok($crate::testkit::message(name, reply))
        }

        /// Sends command `name` with `payload` encoded as JSON, returning its
        /// reply or forward and its side effects, decoded as JSON.
        ///
        /// # Errors
        ///
        #[doc = $errors]
        ///
        /// # Panics
        ///
        /// If a reply or payload is neither empty nor JSON, or if the
        #[doc = concat!($service, " panics.")]
        pub fn handle_outcome(
            &$($mut)? self,
            name: &str,
            payload: impl ::serde::Serialize,
        ) -> Result<$crate::testkit::Outcome, $crate::Failure> {
            let (reply, side_effects) = self.run(name, &$crate::testkit::encode(payload))?;
            Ok($crate::testkit::Outcome::new(reply, side_effects))
        }

        /// Sends `command`, a value of the service's command enum: its
        /// variant is the command's name, its fields the JSON payload (see
        /// [`Forward::call`](crate::Forward::call)). Returns the reply
        /// decoded as JSON, like [`handle`](Self::handle).
        ///
        /// # Errors
        ///
        #[doc = $errors]
        ///
        /// # Panics
        ///
        /// As [`handle`](Self::handle), and if `command` is not an enum variant.
        pub fn send<C: ::serde::Serialize + ?Sized>(
            &$($mut)? self,
            command: &C,
        ) -> Result<::serde_json::Value, $crate::Failure> {
            let (name, payload) = $crate::command_encode::encode(command);
            let reply = self.handle_raw(&name, &payload)?;
            Ok($crate::testkit::decode(&reply, "reply"))
        }

        /// Sends `command` like [`send`](Self::send), returning its reply or
        /// forward and its side effects, like
        /// [`handle_outcome`](Self::handle_outcome).
        ///
        /// # Errors
        ///
        #[doc = $errors]
        ///
        /// # Panics
        ///
        /// As [`handle_outcome`](Self::handle_outcome), and if `command` is
        /// not an enum variant.
        pub fn send_outcome<C: ::serde::Serialize + ?Sized>(
            &$($mut)? self,
            command: &C,
        ) -> Result<$crate::testkit::Outcome, $crate::Failure> {
            let (name, payload) = $crate::command_encode::encode(command);
            let (reply, side_effects) = self.run(&name, &payload)?;
            Ok($crate::testkit::Outcome::new(reply, side_effects))
        }

        /// Fixes the kit's clock, the time the next commands see in their
        /// [`Metadata`](crate::Metadata), in Unix milliseconds; by default
        /// they see the real time (see [`now_ms`](Self::now_ms)).
        pub fn set_time_ms(&mut self, now_ms: u64) {
            self.metadata.now_ms = Some(now_ms);
        }

        /// Runs the next commands under `key`, as a client's
        /// `Idempotency-Key` (the kit does not answer repeats of it: the
        /// host does); `None` runs them without one, the default.
        pub fn set_idempotency_key(&mut self, key: Option<&str>) {
            self.metadata.idempotency_key = key.map(str::to_owned);
        }
    };
}

#[macro_use]
mod timers;
#[macro_use]
mod webhooks;
mod action;
// Outside WebAssembly only: the kit merges with the host's model of the types.
#[cfg(not(target_arch = "wasm32"))]
mod crdt;
mod cron;
mod event_sourced;
// Outside WebAssembly only, where requests go to the stubs (and in docs).
#[cfg(any(doc, not(target_arch = "wasm32")))]
pub mod http;
#[cfg(test)]
mod timer_tests;
mod value;

pub use action::ActionTestKit;
#[cfg(not(target_arch = "wasm32"))]
pub use crdt::{CrdtKit, ReplicaKit, THIS_HOST};
pub use event_sourced::TestKit;
pub use timers::{Firing, PendingTimer, ScheduledCall, TimerChangeCall};
pub use value::ValueTestKit;

use serde::Serialize;
use serde_json::Value;

use crate::{Effect, Forward, Reply, SideEffect, Webhook};

/// What a kit tells its commands besides the seq: the time of its clock and
/// the idempotency key the test set.
#[derive(Debug, Clone, Default)]
struct KitMetadata {
    /// The kit's clock; the real time when `None`.
    now_ms: Option<u64>,
    /// The key commands run under.
    idempotency_key: Option<String>,
}

impl KitMetadata {
    /// The time of the kit's clock, in Unix milliseconds.
    fn now_ms(&self) -> u64 {
        self.now_ms.unwrap_or_else(|| {
            let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            since_epoch.map_or(0, |elapsed| elapsed.as_millis() as u64)
        })
    }
}

/// Everything a successful command produced besides its events or state
/// change, with payloads decoded as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The reply message decoded as JSON (`null` for an empty one); `None`
    /// when the command forwarded.
    pub reply: Option<Value>,
    /// The command the reply was forwarded to, if it was.
    pub forward: Option<ForwardCall>,
    /// The side effects that run commands, in the order they were added.
    pub side_effects: Vec<SideEffectCall>,
    /// The webhooks, in the order they were added. Their bodies stay bytes,
    /// as a webhook may carry any media type: [`Webhook::body_json`] reads
    /// a JSON one.
    pub webhooks: Vec<Webhook>,
}

/// A [`Forward`] with its payload decoded as JSON (`null` for an empty one).
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardCall {
    /// The service to invoke.
    pub service: String,
    /// The entity to invoke.
    pub entity_id: String,
    /// The command's name.
    pub command: String,
    /// The command's payload.
    pub payload: Value,
}

impl ForwardCall {
    /// A forward to `command` of `entity_id` of `service` with `payload`.
    pub fn new(
        service: impl Into<String>,
        entity_id: impl Into<String>,
        command: impl Into<String>,
        payload: Value,
    ) -> Self {
        Self { service: service.into(), entity_id: entity_id.into(), command: command.into(), payload }
    }
}

impl From<Forward> for ForwardCall {
    /// Decodes the forward's payload.
    ///
    /// # Panics
    ///
    /// If the payload is neither empty nor JSON.
    fn from(forward: Forward) -> Self {
        let payload = decode(&forward.payload, "forward payload");
        Self::new(forward.service, forward.entity_id, forward.command, payload)
    }
}

/// A [`SideEffect`] with its payload decoded as JSON (`null` for an empty
/// one).
#[derive(Debug, Clone, PartialEq)]
pub struct SideEffectCall {
    /// The service to invoke.
    pub service: String,
    /// The entity to invoke.
    pub entity_id: String,
    /// The command's name.
    pub command: String,
    /// The command's payload.
    pub payload: Value,
    /// Whether it runs before the reply is sent.
    pub synchronous: bool,
}

impl SideEffectCall {
    /// An asynchronous side effect running `command` of `entity_id` of
    /// `service` with `payload`.
    pub fn new(
        service: impl Into<String>,
        entity_id: impl Into<String>,
        command: impl Into<String>,
        payload: Value,
    ) -> Self {
        Self {
            service: service.into(),
            entity_id: entity_id.into(),
            command: command.into(),
            payload,
            synchronous: false,
        }
    }

    /// Makes the side effect synchronous.
    pub fn synchronous(mut self) -> Self {
        self.synchronous = true;
        self
    }
}

impl From<SideEffect> for SideEffectCall {
    /// Decodes the side effect's payload.
    ///
    /// # Panics
    ///
    /// If the payload is neither empty nor JSON.
    fn from(effect: SideEffect) -> Self {
        let payload = decode(&effect.payload, "side effect payload");
        Self { synchronous: effect.synchronous, ..Self::new(effect.service, effect.entity_id, effect.command, payload) }
    }
}

impl Outcome {
    /// Decodes a core's reply and side effects.
    fn new(reply: Reply, effects: Vec<Effect>) -> Self {
        let (reply, forward) = match reply {
            Reply::Message(bytes) => (Some(decode(&bytes, "reply")), None),
            Reply::Forward(forward) => (None, Some(forward.into())),
        };
        let (side_effects, webhooks) = split(effects);
        Self { reply, forward, side_effects, webhooks }
    }
}

/// The commands of `effects`, decoded, and the webhooks, each in order.
fn split(effects: Vec<Effect>) -> (Vec<SideEffectCall>, Vec<Webhook>) {
    let (mut commands, mut webhooks) = (Vec::new(), Vec::new());
    for effect in effects {
        match effect {
            Effect::Command(effect) => commands.push(effect.into()),
            Effect::Webhook(webhook) => webhooks.push(webhook),
        }
    }
    (commands, webhooks)
}

/// Encodes a test's payload as JSON; a unit or `null` payload is an empty body.
fn encode(payload: impl Serialize) -> Vec<u8> {
    match serde_json::to_value(&payload).expect("payload must be encodable as JSON") {
        Value::Null => Vec::new(),
        value => value.to_string().into_bytes(),
    }
}

/// Decodes `bytes` as JSON, `null` when empty.
///
/// # Panics
///
/// If `bytes` are not JSON.
fn decode(bytes: &[u8], what: &str) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|error| panic!("{what} must be JSON: {error}"))
}

/// The message of a reply, for the kits' `handle` methods.
///
/// # Panics
///
/// If the command forwarded instead: `handle_outcome` shows forwards.
fn message(command: &str, reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Message(bytes) => bytes,
        Reply::Forward(forward) => panic!(
            "command {command} forwarded to {}/{}/{}: use handle_outcome to see forwards",
            forward.service, forward.entity_id, forward.command
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::{TestKit, ValueTestKit};
    use crate::{Context, EventSourced, Failure, KeyValue, Metadata, Reply, ValueContext};

    /// What a command saw of its metadata.
    fn shown(metadata: Metadata<'_>) -> Reply {
        Reply::json(&json!([metadata.seq(), metadata.now_ms(), metadata.idempotency_key()]))
    }

    #[derive(Default, Clone, Serialize, Deserialize)]
    struct Log(u32);

    #[derive(Serialize, Deserialize)]
    enum LogCommand {
        Add,
        Show,
    }

    impl EventSourced for Log {
        type Command = LogCommand;
        type Event = ();

        fn apply(&mut self, (): &()) {
            self.0 += 1;
        }

        fn handle(command: LogCommand, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
            if let LogCommand::Add = command {
                ctx.emit(());
            }
            Ok(shown(ctx.metadata()))
        }
    }

    #[derive(Default, Serialize, Deserialize)]
    struct Cell(u32);

    impl KeyValue for Cell {
        type Command = LogCommand;

        fn handle(command: LogCommand, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
            if let LogCommand::Add = command {
                ctx.update(Cell(ctx.state().0 + 1));
            }
            Ok(shown(ctx.metadata()))
        }
    }

    #[test]
    fn the_kits_hand_commands_their_seq_the_time_set_and_the_key_set() {
        let mut kit = TestKit::<Log>::new("l");
        kit.set_time_ms(1_000);
        assert_eq!(kit.send(&LogCommand::Add), Ok(json!([0, 1_000, null])));
        kit.set_idempotency_key(Some("k-1"));
        assert_eq!(kit.send(&LogCommand::Show), Ok(json!([1, 1_000, "k-1"])));

        let mut kit = ValueTestKit::<Cell>::new("c").with_state(&Cell(5));
        kit.set_time_ms(7);
        assert_eq!(kit.send(&LogCommand::Show), Ok(json!([1, 7, null])));
        kit.send(&LogCommand::Add).unwrap();
        assert_eq!(kit.send(&LogCommand::Show), Ok(json!([2, 7, null])));
    }

    #[test]
    fn without_a_time_set_commands_see_the_real_time() {
        let before = std::time::SystemTime::now();
        let seen = TestKit::<Log>::new("l").send(&LogCommand::Show).unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(seen[1].as_u64().unwrap());
        assert!(at + std::time::Duration::from_millis(1) >= before && at <= std::time::SystemTime::now());
    }
}
