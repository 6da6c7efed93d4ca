//! Unit-test services natively, without WebAssembly or a host.
//!
//! Each kit plays the host for one kind of service and runs every call
//! through the same byte-level core as the WebAssembly export
//! ([`raw`](crate::raw)):
//!
//! - [`TestKit`] keeps an event-sourced entity's log as encoded bytes;
//! - [`ValueTestKit`] keeps a value entity's state as encoded bytes;
//! - [`ActionTestKit`] calls an action's `handle` and `on_event`.
//!
//! As with the host, a failed command changes nothing. The kits do not run
//! forwards or side effects; [`Outcome`] shows them, with their payloads
//! decoded as JSON, so a test can check what the host would run.

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
    };
}

mod action;
mod event_sourced;
mod value;

pub use action::ActionTestKit;
pub use event_sourced::TestKit;
pub use value::ValueTestKit;

use serde::Serialize;
use serde_json::Value;

use crate::{Forward, Reply, SideEffect};

/// Everything a successful command produced besides its events or state
/// change, with payloads decoded as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The reply message decoded as JSON (`null` for an empty one); `None`
    /// when the command forwarded.
    pub reply: Option<Value>,
    /// The command the reply was forwarded to, if it was.
    pub forward: Option<ForwardCall>,
    /// The side effects, in the order they were added.
    pub side_effects: Vec<SideEffectCall>,
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
    fn new(reply: Reply, side_effects: Vec<SideEffect>) -> Self {
        let (reply, forward) = match reply {
            Reply::Message(bytes) => (Some(decode(&bytes, "reply")), None),
            Reply::Forward(forward) => (None, Some(forward.into())),
        };
        Self { reply, forward, side_effects: side_effects.into_iter().map(Into::into).collect() }
    }
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
