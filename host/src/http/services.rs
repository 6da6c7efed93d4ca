//! `PUT /v1/services/{service}`, `GET /v1/services`, `GET /v1/services/{service}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{ApiBody, ApiPath};
use super::{ApiError, AppState};
use crate::journal::VersionMeta;
use crate::services::ServiceInfo;

/// Deploys the body as the next version of the service: 201 with its metadata.
pub async fn deploy(
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Result<(StatusCode, Json<VersionMeta>), ApiError> {
    let meta = state.services.deploy(&service, body.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(meta)))
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
    state
        .services
        .describe(&service)
        .map(Json)
        .ok_or_else(|| ApiError::unknown_service(&service))
}
