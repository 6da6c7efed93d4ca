//! Extractors that turn axum's rejections into [`ApiError`]s, so even a
//! malformed path or an oversized body answers the API's JSON error shape,
//! and the path parameters the routes take.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::error::ApiError;

/// Path parameters, or a 400.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// Query parameters, or a 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// The whole request body, or a 413 when it is over the route's limit.
pub struct ApiBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state).await.map(ApiBody).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(rejection.body_text())
            }
        })
    }
}

/// Middleware: answers 413 at once when the declared `Content-Length` is
/// over `limit`, before any of the body is read. (A body without a length,
/// or one that lies, is still cut off at the limit by [`ApiBody`].)
pub async fn reject_declared_oversize(
    limit: usize,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large().into_response();
    }
    next.run(request).await
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is larger than allowed")
}

/// The path of a service's routes: `/v1/services/{service}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServicePath {
    /// The service name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`,
    /// starting with a letter or digit.
    #[param(example = "counter", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub service: String,
}

/// The path of an entity's routes: `/v1/services/{service}/entities/{id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EntityPath {
    /// The service name.
    #[param(example = "counter", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub service: String,
    /// The entity id: 1 to 256 bytes of UTF-8, without control characters or `/`.
    #[param(example = "c1", max_length = 256, pattern = r"^[^/\x00-\x1F\x7F-\x9F]+$")]
    pub id: String,
}

/// The path of a command: `/v1/services/{service}/entities/{id}/{command}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CommandPath {
    /// The service name.
    #[param(example = "counter", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub service: String,
    /// The entity id.
    #[param(example = "c1", max_length = 256, pattern = r"^[^/\x00-\x1F\x7F-\x9F]+$")]
    pub id: String,
    /// The command, as the service's code names it: 1 to 128 bytes
    /// without control characters.
    #[param(example = "Increase", max_length = 128, pattern = r"^[^\x00-\x1F\x7F-\x9F]+$")]
    pub command: String,
}
