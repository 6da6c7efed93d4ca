//! Invoking an entity and reading its log.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::{ApiBody, ApiPath, ApiQuery};
use super::{ApiError, AppState};
use crate::journal::EntityPosition;
use crate::names::{validate_entity_id, validate_service_name};

/// The longest command name accepted.
const MAX_COMMAND_NAME: usize = 128;
/// The most events one `events` request answers.
const MAX_EVENTS_PER_PAGE: usize = 10_000;

/// `POST /v1/services/{service}/entities/{id}/{command}`: runs the command
/// and answers the entity's reply once its events are durable.
pub async fn invoke(
    State(state): State<AppState>,
    ApiPath((service, id, command)): ApiPath<(String, String, String)>,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    validate_entity_path(&state, &service, &id)?;
    if command.is_empty() || command.len() > MAX_COMMAND_NAME || command.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "a command name must be 1 to {MAX_COMMAND_NAME} bytes without control characters"
        )));
    }
    let reply = state.entities.invoke(&service, &id, command, body.to_vec()).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], reply).into_response())
}

/// `{last_seq, snapshot_seq}` of one entity.
#[derive(Serialize)]
pub struct PositionReply {
    service: String,
    entity: String,
    #[serde(flatten)]
    position: EntityPosition,
}

/// `GET /v1/services/{service}/entities/{id}`: where the entity's log stands.
pub async fn position(
    State(state): State<AppState>,
    ApiPath((service, id)): ApiPath<(String, String)>,
) -> Result<Json<PositionReply>, ApiError> {
    validate_entity_path(&state, &service, &id)?;
    let journal = state.journal.clone();
    let (s, e) = (service.clone(), id.clone());
    let position = tokio::task::spawn_blocking(move || journal.position(&s, &e))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(PositionReply { service, entity: id, position }))
}

/// Query of the `events` route.
#[derive(Deserialize)]
pub struct EventsQuery {
    /// The first seq to answer (default 1).
    from: Option<u64>,
    /// The most events to answer (default and maximum 10,000).
    limit: Option<usize>,
}

/// One event as answered over HTTP: JSON payloads are embedded as JSON.
#[derive(Serialize)]
pub struct EventReply {
    seq: u64,
    payload: Value,
}

/// `GET /v1/services/{service}/entities/{id}/events?from=N`: committed events in order.
pub async fn events(
    State(state): State<AppState>,
    ApiPath((service, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<EventReply>>, ApiError> {
    validate_entity_path(&state, &service, &id)?;
    let from = query.from.unwrap_or(1);
    let limit = query.limit.unwrap_or(MAX_EVENTS_PER_PAGE).min(MAX_EVENTS_PER_PAGE);
    let journal = state.journal.clone();
    let events = tokio::task::spawn_blocking(move || journal.events(&service, &id, from, limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let events = events
        .into_iter()
        .map(|e| EventReply {
            seq: e.seq,
            payload: serde_json::from_slice(&e.payload)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&e.payload).into_owned())),
        })
        .collect();
    Ok(Json(events))
}

/// Checks the service exists and the entity id is acceptable.
fn validate_entity_path(state: &AppState, service: &str, id: &str) -> Result<(), ApiError> {
    validate_service_name(service).map_err(ApiError::bad_request)?;
    validate_entity_id(id).map_err(ApiError::bad_request)?;
    if state.services.describe(service).is_none() {
        return Err(ApiError::unknown_service(service));
    }
    Ok(())
}
