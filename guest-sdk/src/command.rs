//! Commands and failures: what goes into a service, and how it refuses.

use std::fmt;

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
}

impl<'a> Command<'a> {
    /// Creates a command named `name` with a raw `payload` for entity `entity_id`.
    pub fn new(name: &'a str, payload: &'a [u8], entity_id: &'a str) -> Self {
        Self { name, payload, entity_id }
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
