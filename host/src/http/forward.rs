//! Commands sent on to the host that owns their entity
//! ([`crate::cluster::Membership::owner_elsewhere`]), so the entity is
//! cached on one host and its commits rarely conflict.
//!
//! A forwarded request is the client's, as it came (path, query, body,
//! `Authorization`, `Idempotency-Key`), plus [`FORWARDED_BY`],
//! [`FORWARDED_TO`] (the owner's id) and [`CLUSTER_TOKEN`]; the owner runs
//! it itself and the answer goes back as it is. A request that says it was
//! forwarded without the cluster token is refused with 401; one meant for
//! another host (the owner's address now serves another) with 421.
//!
//! When the owner cannot be reached, or its address answers 401 or 421,
//! the command runs here: the journal's checks keep that correct. When the
//! owner was reached but did not answer, the command may have run there,
//! so the client hears 503 and retries (with an idempotency key, safely).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::journal::HostRecord;
use crate::trace_context::TRACEPARENT;

/// The header naming the host that forwarded a request.
pub const FORWARDED_BY: &str = "wasmstate-forwarded-by";
/// The header naming the host a request was forwarded to.
pub const FORWARDED_TO: &str = "wasmstate-forwarded-to";
/// The header carrying the cluster token on a forwarded request.
pub const CLUSTER_TOKEN: &str = "wasmstate-cluster-token";

/// How long connecting to the owner may take before the command runs here.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The client's headers a forwarded request carries on.
const CARRIED: [&str; 4] = ["authorization", "idempotency-key", "content-type", TRACEPARENT];

/// The HTTP client commands are forwarded with.
pub struct Forwarder {
    http: reqwest::Client,
    token: String,
    host_id: String,
}

/// What became of a command for an entity another host owns.
pub enum Forwarded {
    /// The owner answered: this is its answer.
    Answered(Response),
    /// The owner could not be reached: run the command here.
    Unreachable,
}

impl Forwarder {
    /// Forwards with `token`, as host `host_id`; a forwarded command may
    /// take up to `timeout`.
    pub fn new(token: String, host_id: String, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(timeout).build()?;
        Ok(Self { http, token, host_id })
    }

    /// Sends the command at `path_and_query` to `owner` and answers what
    /// became of it.
    pub async fn forward(
        &self,
        owner: &HostRecord,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Forwarded, ApiError> {
        let mut request = self
            .http
            .post(format!("{}{path_and_query}", owner.url))
            .header(FORWARDED_BY, &self.host_id)
            .header(FORWARDED_TO, &owner.id)
            .header(CLUSTER_TOKEN, &self.token)
            .body(body);
        for name in CARRIED {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value);
            }
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(error) if error.is_connect() => {
                tracing::debug!(%error, owner = %owner.url, "the entity's owner cannot be reached; running here");
                return Ok(Forwarded::Unreachable);
            }
            Err(error) => return Err(owner_silent(owner, &error)),
        };
        let status = answer.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::MISDIRECTED_REQUEST {
            // Not the owner, or not of this cluster: the command did not run there.
            tracing::warn!(owner = %owner.url, %status, "the owner's address did not take a forwarded command; running here");
            return Ok(Forwarded::Unreachable);
        }
        let mut relayed = HeaderMap::new();
        for (name, value) in answer.headers() {
            let relays = name == header::CONTENT_TYPE
                || name == header::RETRY_AFTER
                || name == TRACEPARENT
                || name.as_str().starts_with("wasmstate-");
            if relays {
                relayed.insert(name.clone(), value.clone());
            }
        }
        let body = answer.bytes().await.map_err(|error| owner_silent(owner, &error))?;
        Ok(Forwarded::Answered((status, relayed, body).into_response()))
    }
}

impl Forwarder {
    /// Asks `host` to merge what this host committed to the CRDT entity
    /// `service/entity` before it runs another command on it; answers
    /// once it has, or why it did not.
    pub async fn merge(&self, host: &HostRecord, service: &str, entity: &str) -> Result<(), String> {
        let answer = self
            .http
            .post(format!("{}{}", host.url, super::crdt_merge::PATH))
            .header(FORWARDED_BY, &self.host_id)
            .header(FORWARDED_TO, &host.id)
            .header(CLUSTER_TOKEN, &self.token)
            .json(&serde_json::json!({ "service": service, "entity": entity }))
            .send()
            .await
            .map_err(|error| error.to_string())?;
        match answer.status() {
            StatusCode::NO_CONTENT => Ok(()),
            status => Err(format!("it answered {status}")),
        }
    }
}

/// The owner was reached but its answer did not come back whole.
fn owner_silent(owner: &HostRecord, error: &reqwest::Error) -> ApiError {
    tracing::warn!(%error, owner = %owner.url, "the entity's owner did not answer a forwarded command");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "owner_unavailable",
        "the host that owns this entity did not answer; the command may have run: retry (with an Idempotency-Key to be safe)",
    )
    .retry_after(1)
}

/// Whether the request came from another host of the cluster: it names
/// one and carries the cluster token. One that names a host without the
/// token is refused, and so is one meant for another host.
pub fn from_another_host(state: &AppState, headers: &HeaderMap) -> Result<bool, ApiError> {
    if !headers.contains_key(FORWARDED_BY) {
        return Ok(false);
    }
    let presented = headers.get(CLUSTER_TOKEN).map(HeaderValue::as_bytes);
    match (&state.forwarder, presented) {
        (Some(forwarder), Some(token)) if super::auth::constant_time_eq(token, forwarder.token.as_bytes()) => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a request forwarded by another host needs the cluster token",
            ));
        }
    }
    let meant_for = headers.get(FORWARDED_TO).and_then(|v| v.to_str().ok());
    if meant_for != Some(state.cluster.id()) {
        return Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "not_the_owner",
            "this command was forwarded to another host, which no longer answers here",
        ));
    }
    Ok(true)
}
