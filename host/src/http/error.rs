//! The one error type of the HTTP API. Every error answers JSON
//! `{"error": {"kind": ..., "message": ...}}` with an honest status code, and
//! never the host's internals (those go to the log).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::domain::{FailureCode, InvalidKey};
use crate::invoke::InvokeError;
use crate::journal::JournalError;
use crate::runtime::GuestError;
use crate::services::DeployError;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    details: Option<serde_json::Value>,
    retry_after_secs: Option<u32>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorReply {
    /// What went wrong.
    pub error: ErrorBody,
}

/// What went wrong, in an `ErrorReply`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable: what a client can match on (`bad_request`,
    /// `unknown_service`, `upgrade_rejected`, `overloaded`, ...).
    #[schema(example = "unknown_service")]
    pub kind: &'static str,
    /// For people: what happened and what to do about it.
    #[schema(example = "no service named \"cart\" is deployed")]
    pub message: String,
    /// What a client needs to act on the error beyond the message, when
    /// there is more (an `upgrade_rejected` answers its verification report
    /// as `{"verification": ...}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with an explicit status, machine-readable kind and message.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), details: None, retry_after_secs: None }
    }

    /// The same error, answered with `details`: what a client needs to act
    /// on it, beyond the message.
    pub fn with_details(self, details: serde_json::Value) -> Self {
        Self { details: Some(details), ..self }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 404 for a service that is not deployed.
    pub fn unknown_service(service: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "unknown_service", format!("no service named {service:?} is deployed"))
    }

    /// 500, with the details logged but not answered.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }

    /// The same error, answered with `Retry-After: secs`.
    pub(super) fn retry_after(self, secs: u32) -> Self {
        Self { retry_after_secs: Some(secs), ..self }
    }
}

impl From<JournalError> for ApiError {
    fn from(error: JournalError) -> Self {
        match error {
            // Which record is named, never where the journal lives.
            JournalError::CorruptRecord(_) => {
                tracing::error!(%error, "a stored record does not match its checksum");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt_record", error.to_string())
            }
            // A read that began on the database as it failed.
            JournalError::Reopening | JournalError::Storage(redb::Error::PreviousIo) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_unavailable",
                "the journal's storage failed and is being reopened; retry",
            )
            .retry_after(1),
            JournalError::WritesRefused(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_unavailable",
                "the journal's storage is failing (is the disk full?) and takes no writes until it works again; \
                 reads go on; retry",
            )
            .retry_after(1),
            JournalError::Unavailable(_) => {
                tracing::warn!(%error, "the journal's database is unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "journal_unavailable",
                    "the journal's database is unavailable; retry",
                )
                .retry_after(1)
            }
            other => Self::internal(other),
        }
    }
}

impl From<InvalidKey> for ApiError {
    fn from(error: InvalidKey) -> Self {
        Self::bad_request(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorReply { error: ErrorBody { kind: self.kind, message: self.message, details: self.details } };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<DeployError> for ApiError {
    fn from(error: DeployError) -> Self {
        match error {
            DeployError::InvalidName(message) => Self::new(StatusCode::BAD_REQUEST, "invalid_name", message),
            DeployError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            DeployError::Component(e) => Self::new(StatusCode::BAD_REQUEST, "invalid_component", e.to_string()),
            DeployError::HttpNotAllowed(e) => Self::new(StatusCode::BAD_REQUEST, "allow_http_refused", e.to_string()),
            DeployError::UpgradeRejected(ref report) => {
                let details = json!({ "verification": report });
                Self::new(StatusCode::CONFLICT, "upgrade_rejected", error.to_string()).with_details(details)
            }
            DeployError::NoSuchVersion(message) => Self::new(StatusCode::NOT_FOUND, "no_such_version", message),
            DeployError::Busy(message) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).retry_after(1)
            }
            DeployError::Journal(e) => Self::from(e),
            DeployError::Internal(e) => Self::internal(e),
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(error: InvokeError) -> Self {
        let message = error.to_string();
        match error {
            InvokeError::UnknownService(service) | InvokeError::DeletedService(service) => {
                Self::unknown_service(&service)
            }
            InvokeError::Overloaded(_) | InvokeError::Guest(GuestError::Busy | GuestError::HostMemoryFull(_)) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).retry_after(1)
            }
            InvokeError::EarlierCommitFailed | InvokeError::KeyRecordExpired | InvokeError::Conflict { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "retry", message).retry_after(1)
            }
            InvokeError::NotInHistory(_) => Self::new(StatusCode::NOT_FOUND, "not_in_history", message),
            InvokeError::HistoryCompacted(_) => Self::new(StatusCode::GONE, "history_compacted", message),
            InvokeError::KeyReused(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message),
            InvokeError::OutputLimit(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "output_limit", message),
            InvokeError::InvalidTarget(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "invalid_target", message),
            InvokeError::InvalidTimer(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "invalid_timer", message),
            InvokeError::InvalidWebhook(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "invalid_webhook", message),
            InvokeError::InvalidDelta(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "invalid_delta", message),
            InvokeError::EntityDeleted(_) => Self::new(StatusCode::NOT_FOUND, "entity_deleted", message),
            // Only a timer's firing meets it, and no caller waits for that.
            InvokeError::TimerGone => Self::new(StatusCode::CONFLICT, "timer_gone", message),
            InvokeError::TooManyHops => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "too_many_hops", message),
            InvokeError::SideEffectFailed { target, source } => {
                // The cause as its own reply would put it, internals logged.
                let cause = Self::from(*source).message;
                let message =
                    format!("the command was committed, but its synchronous side effect {target} failed: {cause}");
                Self::new(StatusCode::BAD_GATEWAY, "side_effect_failed", message)
            }
            // Stored state the code cannot read is the service's fault, not
            // the caller's (the invocation path logged it).
            InvokeError::Failed(failure) if failure.code == FailureCode::InvalidState => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "invalid_state", failure.message)
            }
            InvokeError::Failed(failure) => {
                let kind = match failure.code {
                    FailureCode::Rejected => "command_failed",
                    FailureCode::UnknownCommand => "unknown_command",
                    FailureCode::InvalidPayload | FailureCode::InvalidState => "invalid_payload",
                };
                Self::new(StatusCode::BAD_REQUEST, kind, failure.message)
            }
            InvokeError::Guest(GuestError::Timeout(_)) => Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message),
            InvokeError::Guest(GuestError::MemoryLimit(_)) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "memory_limit", message)
            }
            InvokeError::Guest(GuestError::Trap(_)) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "guest_trap", message)
            }
            InvokeError::Journal(e) => Self::from(e),
            InvokeError::Internal(e) => Self::internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_side_effect_answers_its_cause_without_internals() {
        let source = InvokeError::Journal(JournalError::Corrupt("page 17 of /var/lib/secret".into()));
        let error = ApiError::from(InvokeError::SideEffectFailed { target: "a/b/C".into(), source: Box::new(source) });
        assert_eq!((error.status, error.kind), (StatusCode::BAD_GATEWAY, "side_effect_failed"));
        assert!(error.message.contains("a/b/C") && error.message.contains("see the server log"), "{}", error.message);
        assert!(!error.message.contains("secret"), "{}", error.message);
    }
}
