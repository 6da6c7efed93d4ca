//! `PUT /v1/services/{service}`, `GET /v1/services`, `GET /v1/services/{service}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use serde::{Deserialize, Serialize};

use super::extract::{ApiBody, ApiPath, ApiQuery};
use super::{ApiError, AppState};
use crate::journal::{DeadLetter, VersionMeta};
use crate::services::ServiceInfo;

/// Query of a deploy.
#[derive(Deserialize)]
pub struct DeployQuery {
    /// For an action: the services whose events it subscribes to, comma-separated.
    subscribe: Option<String>,
}

/// Deploys the body as the next version of the service: 201 with its
/// metadata. A client that goes away drops this handler, not the deploy.
pub async fn deploy(
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeployQuery>,
    ApiBody(body): ApiBody,
) -> Result<(StatusCode, Json<VersionMeta>), ApiError> {
    let subscriptions = query
        .subscribe
        .map(|s| s.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    let meta = state.services.deploy(service, body.to_vec(), subscriptions).await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

/// One event a subscriber gave up on.
#[derive(Serialize)]
pub struct DeadLetterReply {
    /// The service whose event it is.
    source: String,
    /// Its position in that service's log.
    position: u64,
    #[serde(flatten)]
    letter: DeadLetter,
}

/// `GET /v1/services/{service}/dead-letters`: the events the subscriber
/// gave up on, by source and position.
pub async fn dead_letters(
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
) -> Result<Json<Vec<DeadLetterReply>>, ApiError> {
    if !state.services.is_deployed(&service) {
        return Err(ApiError::unknown_service(&service));
    }
    let journal = state.journal.clone();
    let letters =
        tokio::task::spawn_blocking(move || journal.dead_letters(&service)).await.map_err(ApiError::internal)??;
    let replies = letters.into_iter().map(|(source, position, letter)| DeadLetterReply { source, position, letter });
    Ok(Json(replies.collect()))
}

/// Lists every deployed service.
pub async fn list(State(state): State<AppState>) -> Json<Vec<ServiceInfo>> {
    Json(state.services.list())
}

/// Describes one service and its versions.
pub async fn describe(
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
) -> Result<Json<ServiceInfo>, ApiError> {
    state.services.describe(&service).map(Json).ok_or_else(|| ApiError::unknown_service(&service))
}

/// Deletes a service: every version goes, so invocations answer 404; its
/// entities' data stays for a later deploy under the same name. Like a
/// deploy, it finishes even if the client goes away.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let removed = state.services.delete(service.clone()).await?.ok_or_else(|| ApiError::unknown_service(&service))?;
    Ok(Json(serde_json::json!({ "service": service, "deleted_versions": removed })))
}
