//! Commands and failures: what goes into a service, and how it refuses.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A command addressed to one entity, or to an action.
///
/// Its payload is the HTTP request body the host received (or the payload of
/// a forward or side effect), usually JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    name: &'a str,
    payload: &'a [u8],
    entity_id: &'a str,
    metadata: Metadata<'a>,
}

impl<'a> Command<'a> {
    /// Creates a command named `name` with a raw `payload` for entity
    /// `entity_id`, with empty [`Metadata`].
    pub fn new(name: &'a str, payload: &'a [u8], entity_id: &'a str) -> Self {
        Self { name, payload, entity_id, metadata: Metadata::default() }
    }

    /// The same command, run as `metadata` says.
    pub fn with_metadata(self, metadata: Metadata<'a>) -> Self {
        Self { metadata, ..self }
    }

    /// What the host says about the invocation the command runs in: the
    /// entity's seq, the time, the idempotency key.
    pub fn metadata(&self) -> Metadata<'a> {
        self.metadata
    }

    /// Decodes the command into `C`, a serde enum whose variants are the
    /// service's commands: the command's name picks the variant (as serde
    /// names it, so `#[serde(rename)]` applies), the payload, as JSON,
    /// fills its fields. A variant without fields takes an empty payload,
    /// `null` or `{}`; one with fields reads an empty payload like `{}`
    /// (see [`json`](Self::json)).
    ///
    /// The typed traits ([`EventSourced`](crate::EventSourced),
    /// [`KeyValue`](crate::KeyValue), [`Stateless`](crate::Stateless)) call
    /// it before their `handle`.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use wasmstate_sdk::{Command, FailureCode};
    ///
    /// #[derive(Debug, PartialEq, Deserialize)]
    /// enum CounterCommand {
    ///     Increase { value: i64 },
    ///     Get,
    /// }
    ///
    /// let increase = Command::new("Increase", br#"{"value": 2}"#, "c-1");
    /// assert_eq!(increase.decode(), Ok(CounterCommand::Increase { value: 2 }));
    /// assert_eq!(Command::new("Get", b"", "c-1").decode(), Ok(CounterCommand::Get));
    ///
    /// let typo = Command::new("Increse", b"{}", "c-1").decode::<CounterCommand>().unwrap_err();
    /// assert_eq!(typo.code(), FailureCode::UnknownCommand);
    /// assert_eq!(typo.message(), "unknown command \"Increse\"; the commands are Increase, Get");
    /// ```
    ///
    /// # Errors
    ///
    /// A [`FailureCode::UnknownCommand`] failure when no variant has the
    /// command's name, listing those that do; a
    /// [`FailureCode::InvalidPayload`] failure naming the command and
    /// quoting the decoder's error when the payload does not fit.
    ///
    /// # Panics
    ///
    /// If `C` is not an enum: a bug in the service.
    pub fn decode<C: DeserializeOwned>(&self) -> Result<C, Failure> {
        crate::command_decode::decode(self.name, self.payload)
    }

    /// The command's name, for example `"AddItem"`.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The command's raw payload; possibly empty.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The id of the entity the command is addressed to (any routing key
    /// for an action).
    pub fn entity_id(&self) -> &'a str {
        self.entity_id
    }

    /// Decodes the payload as JSON into `T`.
    ///
    /// An empty (or all-whitespace) payload decodes like `{}`, so commands
    /// without arguments accept an empty body: any struct whose fields all
    /// have defaults works, such as `struct GetCart {}`. If `T` cannot be
    /// decoded from `{}`, an empty payload decodes like `null` instead,
    /// which suits `()` and `Option<_>`.
    ///
    /// # Errors
    ///
    /// A [`FailureCode::InvalidPayload`] failure naming the command and
    /// quoting the decoder's error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        let result = if self.payload.trim_ascii().is_empty() {
            serde_json::from_slice(b"{}").or_else(|error| serde_json::from_slice::<T>(b"null").map_err(|_| error))
        } else {
            serde_json::from_slice(self.payload)
        };
        result.map_err(|error| {
            Failure::invalid_payload(format!("invalid payload for command \"{}\": {error}", self.name))
        })
    }

    /// The failure to return for a command the service does not know.
    pub fn unknown(&self) -> Failure {
        Failure::unknown_command(format!("unknown command \"{}\"", self.name))
    }
}

/// The command type of a service that takes no commands, such as a
/// subscriber that only reacts to events: every command is unknown, and
/// its `handle` is `match command {}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum NoCommands {}

/// What the host tells a command about the invocation it runs in.
///
/// Read it from the command ([`Command::metadata`]) or from the context
/// (`ctx.metadata()`). Outside the host (in the test kits, or for a
/// component built against WIT 0.1.0) it is whatever the kit set, or empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metadata<'a> {
    seq: u64,
    now_ms: u64,
    idempotency_key: Option<&'a str>,
    service: Option<&'a str>,
}

impl<'a> Metadata<'a> {
    /// Metadata of a command on an entity at `seq`, started at `now_ms`
    /// (Unix milliseconds), under `idempotency_key` if any.
    pub fn new(seq: u64, now_ms: u64, idempotency_key: Option<&'a str>) -> Self {
        Self { seq, now_ms, idempotency_key, service: None }
    }

    /// The same metadata, of a command addressed to service `service`.
    pub fn with_service(self, service: &'a str) -> Self {
        Self { service: Some(service), ..self }
    }

    /// The service the command is addressed to, by the name it was
    /// deployed under; `None` where no host said (a test kit not told
    /// its service, or a component built against WIT 0.1.0).
    pub fn service(&self) -> Option<&'a str> {
        self.service
    }

    /// The entity's position before the command: for an event-sourced
    /// entity the seq of its last event (its first new event is `seq + 1`),
    /// for a value entity how many times its state was written; 0 for an
    /// action.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The host's time when the command started, in milliseconds since the
    /// Unix epoch.
    ///
    /// A command runs again only when it is not yet durable, so what it
    /// reads here may differ between tries; an entity that keeps the time
    /// records it in an event or in its state, and folds that, never the
    /// clock.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// [`now_ms`](Self::now_ms) as a [`SystemTime`].
    pub fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.now_ms)
    }

    /// The key the command runs under, if any: the client's
    /// `Idempotency-Key`, or the key the host gave a side effect, forward
    /// or event delivery. The host answers a repeat of the key with the
    /// first reply, without running the command again.
    pub fn idempotency_key(&self) -> Option<&'a str> {
        self.idempotency_key
    }
}

/// The kind of a [`Failure`], mirroring the WIT `failure-code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCode {
    /// The entity rejected the command by its own rules.
    Rejected,
    /// The entity has no command of that name.
    UnknownCommand,
    /// The payload could not be decoded into the command's argument.
    InvalidPayload,
    /// The snapshot, events or state passed in could not be decoded.
    InvalidState,
}

impl FailureCode {
    /// The code's WIT name, for example `"unknown-command"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::UnknownCommand => "unknown-command",
            Self::InvalidPayload => "invalid-payload",
            Self::InvalidState => "invalid-state",
        }
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a command failed.
///
/// Nothing a failed command produced (events, state changes, side effects,
/// a forward) is persisted or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    code: FailureCode,
    message: String,
}

impl Failure {
    /// A failure of kind `code` with a message for the caller.
    pub fn new(code: FailureCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The entity rejects the command by its own rules.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(FailureCode::Rejected, message)
    }

    /// The entity has no such command; see also [`Command::unknown`].
    pub fn unknown_command(message: impl Into<String>) -> Self {
        Self::new(FailureCode::UnknownCommand, message)
    }

    /// The command's payload is not a valid argument.
    pub fn invalid_payload(message: impl Into<String>) -> Self {
        Self::new(FailureCode::InvalidPayload, message)
    }

    /// The snapshot, events or state passed in could not be decoded.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(FailureCode::InvalidState, message)
    }

    /// The kind of failure.
    pub fn code(&self) -> FailureCode {
        self.code
    }

    /// The message meant for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Failure {}
