//! Replies, forwards and side effects: what comes out of a successful command.

use serde::Serialize;

use crate::Webhook;

/// The media type of a JSON body.
pub(crate) const JSON: &str = "application/json";

/// Encodes `value` as JSON, panicking with a message naming `what` if it
/// cannot be: an unencodable value is a bug in the service, so the command
/// traps and nothing it produced is persisted.
pub(crate) fn encode_json<T: Serialize + ?Sized>(value: &T, what: &str) -> Vec<u8> {
    match serde_json::to_vec(value) {
        Ok(bytes) => bytes,
        Err(error) => panic!("{what} could not be encoded as JSON: {error}"),
    }
}

/// What the caller of a successful command gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// This reply message, usually JSON.
    Message(Vec<u8>),
    /// The reply of another command, which the host invokes once this
    /// command's own effects are durable.
    Forward(Forward),
}

impl Reply {
    /// A reply message holding `value` encoded as JSON.
    ///
    /// # Panics
    ///
    /// If `value` cannot be encoded as JSON, for example a map whose keys are
    /// not strings. That is a bug in the service, so the command traps and
    /// nothing it produced is persisted.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        Self::Message(encode_json(value, "reply"))
    }

    /// An empty JSON object, `{}`: the reply of a command that only has effects.
    pub fn empty() -> Self {
        Self::Message(b"{}".to_vec())
    }

    /// A reply message holding `bytes` as they are.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Self {
        Self::Message(bytes.into())
    }

    /// Hands the command on: the caller gets the reply of `forward` instead.
    pub fn forward(forward: Forward) -> Self {
        Self::Forward(forward)
    }

    /// The reply message's bytes; `None` for a forward.
    pub fn as_message(&self) -> Option<&[u8]> {
        match self {
            Self::Message(bytes) => Some(bytes),
            Self::Forward(_) => None,
        }
    }

    /// The forward; `None` for a reply message.
    pub fn as_forward(&self) -> Option<&Forward> {
        match self {
            Self::Message(_) => None,
            Self::Forward(forward) => Some(forward),
        }
    }
}

/// The commands of a service, as other services call it by type.
///
/// Implement it on a service's command enum (the one its typed trait
/// decodes, or a copy of its shape where the service's own crate is out of
/// reach) to call it with [`Forward::to`] and [`SideEffect::to`]: the
/// service's name is written once, here, and a misspelt command is a
/// compile error. [`Forward::call`] and [`SideEffect::call`] call a
/// command enum under any service name; [`Forward::new`] and
/// [`SideEffect::new`] take every name as a string.
///
/// ```
/// use serde::Serialize;
/// use wasmstate_sdk::{Commands, SideEffect};
///
/// #[derive(Serialize)]
/// enum CounterCommand {
///     Increase { value: i64 },
/// }
///
/// impl Commands for CounterCommand {
///     const SERVICE: &'static str = "counter";
/// }
///
/// let effect = SideEffect::to("orders", &CounterCommand::Increase { value: 1 });
/// assert_eq!((effect.service(), effect.command()), ("counter", "Increase"));
/// assert_eq!(effect.payload_bytes(), br#"{"value":1}"#);
/// ```
pub trait Commands: Serialize {
    /// The name the service is deployed under.
    const SERVICE: &'static str;
}

/// The typed constructors, payload builders and getters of [`Forward`],
/// [`SideEffect`] and [`TimerCall`](crate::TimerCall), which all address a
/// command (`service`, `entity_id`, `command`) and carry its `payload`;
/// `$what` names the payload in the panic of `json`. The type's module
/// imports [`Commands`] and `encode_json`.
macro_rules! call_methods {
    ($what:literal) => {
        /// Addresses `command`, a value of a command enum, to entity
        /// `entity_id` of service `service`: the variant's name is the
        /// command, its fields the payload.
        ///
        /// # Panics
        ///
        /// If `command` is not an enum variant or cannot be encoded as JSON.
        pub fn call<C: Serialize + ?Sized>(
            service: impl Into<String>,
            entity_id: impl Into<String>,
            command: &C,
        ) -> Self {
            let (name, payload) = crate::command_encode::encode(command);
            Self::new(service, entity_id, name).payload(payload)
        }

        /// Addresses `command` to entity `entity_id` of the service whose
        /// [`Commands`](crate::Commands) they are.
        ///
        /// # Panics
        ///
        /// As [`call`](Self::call).
        pub fn to<C: Commands + ?Sized>(entity_id: impl Into<String>, command: &C) -> Self {
            Self::call(C::SERVICE, entity_id, command)
        }

        /// Sets the payload to `value` encoded as JSON.
        ///
        /// # Panics
        ///
        /// If `value` cannot be encoded as JSON (see [`Reply::json`](crate::Reply::json)).
        pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
            self.payload = encode_json(value, $what);
            self
        }

        /// Sets the payload to `bytes` as they are.
        pub fn payload(mut self, bytes: impl Into<Vec<u8>>) -> Self {
            self.payload = bytes.into();
            self
        }

        /// The service to invoke.
        pub fn service(&self) -> &str {
            &self.service
        }

        /// The entity to invoke.
        pub fn entity_id(&self) -> &str {
            &self.entity_id
        }

        /// The command's name.
        pub fn command(&self) -> &str {
            &self.command
        }

        /// The command's payload.
        pub fn payload_bytes(&self) -> &[u8] {
            &self.payload
        }
    };
}

pub(crate) use call_methods;

/// A command to hand the caller's command on to, with [`Reply::forward`].
///
/// ```
/// use wasmstate_sdk::{Forward, Reply};
///
/// let reply = Reply::forward(
///     Forward::new("shopping-cart", "cart-1", "AddItem")
///         .json(&serde_json::json!({"productId": "A1", "name": "Apple", "quantity": 2})),
/// );
/// assert_eq!(reply.as_forward().unwrap().service(), "shopping-cart");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub(crate) service: String,
    pub(crate) entity_id: String,
    pub(crate) command: String,
    pub(crate) payload: Vec<u8>,
}

impl Forward {
    /// A forward to command `command` of entity `entity_id` (any routing key
    /// for an action) of service `service`, with an empty payload.
    pub fn new(service: impl Into<String>, entity_id: impl Into<String>, command: impl Into<String>) -> Self {
        Self { service: service.into(), entity_id: entity_id.into(), command: command.into(), payload: Vec::new() }
    }

    call_methods!("forward payload");
}

/// A further command the host runs once the command's own effects are
/// durable; add one with the context's `effect` method.
///
/// A side effect is asynchronous by default: the host runs it after the
/// reply, from a durable outbox, at least once. A
/// [synchronous](Self::synchronous) one runs before the reply is sent, and
/// its failure fails the reply.
///
/// A side effect may also be an HTTP request to the outside world instead
/// of a command: [`SideEffect::webhook`] makes one, added the same way.
///
/// ```
/// use wasmstate_sdk::SideEffect;
///
/// let effect = SideEffect::new("counter", "orders", "Increase")
///     .json(&serde_json::json!({"value": 1}));
/// assert!(!effect.is_synchronous());
/// assert_eq!(effect.payload_bytes(), br#"{"value":1}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideEffect {
    pub(crate) service: String,
    pub(crate) entity_id: String,
    pub(crate) command: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) synchronous: bool,
}

impl SideEffect {
    /// An asynchronous side effect running command `command` of entity
    /// `entity_id` (any routing key for an action) of service `service`,
    /// with an empty payload.
    pub fn new(service: impl Into<String>, entity_id: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            entity_id: entity_id.into(),
            command: command.into(),
            payload: Vec::new(),
            synchronous: false,
        }
    }

    call_methods!("side effect payload");

    /// A webhook: an HTTP `POST` to `url` (an `http` or `https` URL whose
    /// host is on the service's allow-list), with an empty JSON body until
    /// [`json`](Webhook::json) or [`body`](Webhook::body) sets one. Add it
    /// with the context's `effect` method like any side effect; the host
    /// sends it from its durable outbox once the command's effects are
    /// durable (see [`Webhook`]).
    pub fn webhook(url: impl Into<String>) -> Webhook {
        Webhook::new(url)
    }

    /// Makes the side effect synchronous: it runs before the reply is sent,
    /// and the reply fails if it fails.
    pub fn synchronous(mut self) -> Self {
        self.synchronous = true;
        self
    }

    /// Whether the side effect runs before the reply is sent.
    pub fn is_synchronous(&self) -> bool {
        self.synchronous
    }
}
