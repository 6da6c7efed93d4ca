//! `PUT /v1/services/{service}` (deploy, verified or not), `POST
//! /v1/services/{service}/rollback`, `GET /v1/services`, `GET
//! /v1/services/{service}` and what hangs off a service.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiBody, ApiPath, ApiQuery, ServicePath};
use super::responses::{BadRequest, Conflict, Internal, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use super::{ApiError, AppState};
use crate::domain::ServiceKind;
use crate::journal::{DeadLetter, Retention};
use crate::outbound::AllowList;
use crate::services::{DeployRequest, Deployed, ServiceInfo};
use crate::verify::VerifyOptions;

/// How a deploy (or rollback) is checked against the stored entities: read
/// from the same query as the route's own parameters (a flattened struct
/// would read every value as a string).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// `replay`: rebuild the stored entities with the new version first.
    #[param(pattern = "^replay$")]
    verify: Option<String>,
    /// A read-only command to compare the old and the new version's replies on.
    #[param(min_length = 1, max_length = 128)]
    probe: Option<String>,
    /// Check a deterministic sample of this many entities.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Refuse the new version when a probe's replies differ.
    #[serde(default)]
    strict: bool,
}

impl VerifyQuery {
    /// The options it asks for; `None` when it asks for no verification.
    fn options(self) -> Result<Option<VerifyOptions>, ApiError> {
        match self.verify.as_deref() {
            None if self.probe.is_some() || self.limit.is_some() || self.strict => {
                Err(ApiError::bad_request("probe, limit and strict only apply with verify=replay"))
            }
            None => Ok(None),
            Some("replay") => {
                if self.probe.as_ref().is_some_and(|p| p.is_empty() || p.len() > 128 || p.chars().any(char::is_control))
                {
                    return Err(ApiError::bad_request("probe must name a command"));
                }
                if self.limit == Some(0) {
                    return Err(ApiError::bad_request("limit must check at least one entity"));
                }
                Ok(Some(VerifyOptions { probe: self.probe, limit: self.limit, strict: self.strict }))
            }
            Some(other) => Err(ApiError::bad_request(format!("verify takes `replay`, not {other:?}"))),
        }
    }
}

/// Query of a deploy.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeployQuery {
    /// For an action: the services whose events it subscribes to, comma-separated.
    #[param(example = "shopping-cart")]
    subscribe: Option<String>,
    /// How much history the service keeps: `all` or `snapshots:K`.
    #[param(pattern = "^(all|snapshots:[0-9]+)$", example = "snapshots:2")]
    retain: Option<String>,
    /// The hosts the service's guests may send HTTP requests and webhooks
    /// to, comma-separated: `api.example.com`, `*.example.com`,
    /// `api.example.com:8443`, `127.0.0.1:9000`, `10.0.0.0/8:*`. Loopback
    /// and private addresses are reached only when listed as addresses.
    #[param(example = "api.example.com,127.0.0.1:9000")]
    allow_http: Option<String>,
}

/// Deploys the body as the next version of the service: 201 with its
/// metadata and, when verified, the report; 409 `upgrade_rejected` with the
/// report when the new version cannot rebuild the stored entities. A client
/// that goes away drops this handler, not the deploy.
#[utoipa::path(
    put,
    path = "/v1/services/{service}",
    operation_id = "deploy",
    tag = "services",
    params(ServicePath, DeployQuery, VerifyQuery),
    request_body(content = ComponentBytes, content_type = "application/wasm"),
    responses(
        (status = 201, description = "Deployed as the next version.", body = Deployed),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn deploy(
    State(state): State<AppState>,
    ApiPath(ServicePath { service }): ApiPath<ServicePath>,
    ApiQuery(query): ApiQuery<DeployQuery>,
    ApiQuery(verify): ApiQuery<VerifyQuery>,
    ApiBody(body): ApiBody,
) -> Result<(StatusCode, Json<Deployed>), ApiError> {
    let subscriptions = query
        .subscribe
        .map(|s| s.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    let retain = query.retain.as_deref().map(Retention::parse).transpose().map_err(ApiError::bad_request)?;
    let allow_http = AllowList::parse(query.allow_http.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_allow_http", e.to_string()))?;
    let verify = verification_asked(&state, &service, verify).await?;
    let request = DeployRequest { service, bytes: body.to_vec(), subscriptions, verify, retain, allow_http };
    let deployed = state.services.deploy(request).await?;
    Ok((StatusCode::CREATED, Json(deployed)))
}

/// The verification a deploy or rollback of `service` asks for; under
/// `--require-verify`, none is refused for a service that has stored
/// entities.
async fn verification_asked(
    state: &AppState,
    service: &str,
    query: VerifyQuery,
) -> Result<Option<VerifyOptions>, ApiError> {
    let verify = query.options()?;
    if verify.is_some() || !state.require_verify {
        return Ok(verify);
    }
    // Whether deployed or deleted (its data stays), of either kind.
    let (journal, name) = (state.journal.clone(), service.to_string());
    let stored = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::journal::JournalError>(
            journal.has_entities(&name, ServiceKind::EventSourced)?
                || journal.has_entities(&name, ServiceKind::Value)?,
        )
    })
    .await
    .map_err(ApiError::internal)??;
    if stored {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "verification_required",
            format!("{service} has stored entities: this server deploys new versions of it only with verify=replay"),
        ));
    }
    Ok(None)
}

/// The body of a deploy: a WebAssembly component built against a
/// `wasmstate:entity` world, as bytes.
pub struct ComponentBytes;

impl utoipa::PartialSchema for ComponentBytes {
    fn schema() -> RefOr<Schema> {
        let binary = SchemaFormat::KnownFormat(KnownFormat::Binary);
        let description = "The component: a WebAssembly component built against a `wasmstate:entity` world.";
        ObjectBuilder::new().schema_type(Type::String).format(Some(binary)).description(Some(description)).into()
    }
}

impl ToSchema for ComponentBytes {}

/// Query of a rollback.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RollbackQuery {
    /// The version to roll back to (default: the one before the newest).
    to: Option<u32>,
}

/// What a rollback answers: the new version, and the one it runs the code of.
#[derive(Serialize, ToSchema)]
pub struct RolledBack {
    #[serde(flatten)]
    deployed: Deployed,
    /// The version whose code the new version runs.
    rolled_back_to: u32,
}

/// `POST /v1/services/{service}/rollback?to=V`: makes an earlier version the
/// newest again, as a new version number running its code; 201.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/rollback",
    operation_id = "rollback",
    tag = "services",
    params(ServicePath, RollbackQuery, VerifyQuery),
    responses(
        (status = 201, description = "The earlier version's code is the newest version again.", body = RolledBack),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn rollback(
    State(state): State<AppState>,
    ApiPath(ServicePath { service }): ApiPath<ServicePath>,
    ApiQuery(query): ApiQuery<RollbackQuery>,
    ApiQuery(verify): ApiQuery<VerifyQuery>,
) -> Result<(StatusCode, Json<RolledBack>), ApiError> {
    let verify = verification_asked(&state, &service, verify).await?;
    let (deployed, rolled_back_to) = state.services.rollback(service, query.to, verify).await?;
    Ok((StatusCode::CREATED, Json(RolledBack { deployed, rolled_back_to })))
}

/// `GET /v1/services/{service}/verification`: how far the verification of
/// a new version is, while one runs; 404 when none does.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/verification",
    operation_id = "verification",
    tag = "services",
    params(ServicePath),
    responses(
        (status = 200, description = "A verification runs.", body = VerificationProgress),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn verification(
    State(state): State<AppState>,
    ApiPath(ServicePath { service }): ApiPath<ServicePath>,
) -> Result<Json<VerificationProgress>, ApiError> {
    let (checked, total) = state
        .services
        .verification_progress(&service)
        .ok_or_else(|| ApiError::not_found(format!("no new version of {service:?} is being verified")))?;
    Ok(Json(VerificationProgress { service, checked, total }))
}

/// How far the verification of a new version is.
#[derive(Serialize, ToSchema)]
pub struct VerificationProgress {
    /// The service.
    service: String,
    /// The entities checked so far.
    checked: usize,
    /// The entities to check.
    total: usize,
}

/// One event a subscriber gave up on.
#[derive(Serialize, ToSchema)]
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
#[utoipa::path(
    get,
    path = "/v1/services/{service}/dead-letters",
    operation_id = "dead_letters",
    tag = "services",
    params(ServicePath),
    responses(
        (status = 200, description = "The events given up on.", body = Vec<DeadLetterReply>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    ApiPath(ServicePath { service }): ApiPath<ServicePath>,
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
#[utoipa::path(
    get,
    path = "/v1/services",
    operation_id = "list_services",
    tag = "services",
    responses(
        (status = 200, description = "Every deployed service, by name.", body = Vec<ServiceInfo>),
        (status = 401, response = Unauthorized),
    ),
    security(("bearer" = [])),
)]
pub async fn list(State(state): State<AppState>) -> Json<Vec<ServiceInfo>> {
    Json(state.services.list())
}

/// One service as `GET /v1/services/{service}` describes it.
#[derive(Serialize, ToSchema)]
pub struct Described {
    #[serde(flatten)]
    info: ServiceInfo,
    /// Whether the journal holds entities of the service: a new version is
    /// then best verified against them.
    stored_entities: bool,
}

/// Describes one service and its versions.
#[utoipa::path(
    get,
    path = "/v1/services/{service}",
    operation_id = "describe_service",
    tag = "services",
    params(ServicePath),
    responses(
        (status = 200, description = "The service and its versions.", body = Described),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn describe(
    State(state): State<AppState>,
    ApiPath(ServicePath { service }): ApiPath<ServicePath>,
) -> Result<Json<Described>, ApiError> {
    let info = state.services.describe(&service).ok_or_else(|| ApiError::unknown_service(&service))?;
    let (journal, name, kind) = (state.journal.clone(), service.clone(), info.kind);
    let stored_entities =
        tokio::task::spawn_blocking(move || journal.has_entities(&name, kind)).await.map_err(ApiError::internal)??;
    Ok(Json(Described { info, stored_entities }))
}

/// Deletes a service: every version goes, so invocations answer 404; its
/// entities' data stays for a later deploy under the same name. Like a
/// deploy, it finishes even if the client goes away.
#[utoipa::path(
    delete,
    path = "/v1/services/{service}",
    operation_id = "delete_service",
    tag = "services",
    params(ServicePath),
    responses(
        (status = 200, description = "Every version is gone; the entities' data stays.", body = DeletedService),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(ServicePath { service }): ApiPath<ServicePath>,
) -> Result<Json<DeletedService>, ApiError> {
    let removed = state.services.delete(service.clone()).await?.ok_or_else(|| ApiError::unknown_service(&service))?;
    Ok(Json(DeletedService { service, deleted_versions: removed }))
}

/// What a delete answers.
#[derive(Serialize, ToSchema)]
pub struct DeletedService {
    /// The service.
    service: String,
    /// How many versions were removed.
    deleted_versions: usize,
}
