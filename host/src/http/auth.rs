//! Bearer-token checks: an admin token guards deploys, an invoke token
//! guards entities, and a read token guards what describes the host
//! (`/metrics`, the service list and descriptions) — or, without a read
//! token, the invoke token does. The admin token opens every route. A
//! token that is not configured lets everyone through; `/healthz` is open.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// Required to deploy services.
    pub admin: Option<String>,
    /// Required to invoke entities and read their logs.
    pub invoke: Option<String>,
    /// Required to read `/metrics` and the deployed services.
    pub read: Option<String>,
}

/// Middleware: requires the admin token, when one is configured.
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    check(state.tokens.admin.as_deref(), None, &request)?;
    Ok(next.run(request).await)
}

/// Middleware: requires the invoke token (or the admin token), when one is configured.
pub async fn require_invoke(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let tokens = &state.tokens;
    check(tokens.invoke.as_deref(), tokens.admin.as_deref(), &request)?;
    Ok(next.run(request).await)
}

/// Middleware: requires the read token — or, without one, the invoke token
/// — or the admin token, when one is configured.
pub async fn require_read(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let tokens = &state.tokens;
    check(tokens.read.as_deref().or(tokens.invoke.as_deref()), tokens.admin.as_deref(), &request)?;
    Ok(next.run(request).await)
}

/// Lets the request through if `expected` is not configured, or if it
/// presents `expected` or `also` (the admin token, which opens every route).
fn check(expected: Option<&str>, also: Option<&str>, request: &Request) -> Result<(), ApiError> {
    let Some(expected) = expected else { return Ok(()) };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let matches =
        |token: &str, wanted: Option<&str>| wanted.is_some_and(|w| constant_time_eq(token.as_bytes(), w.as_bytes()));
    match presented {
        Some(token) if matches(token, Some(expected)) || matches(token, also) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route requires `Authorization: Bearer <token>` with a valid token",
        )),
    }
}

/// Compares without an early exit, so timing does not reveal the token.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
