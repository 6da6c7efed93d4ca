//! The HTTP API (v1): deploy services, invoke entities, read their logs.

mod auth;
mod connections;
mod crdt_merge;
mod crdt_stream;
mod crdt_value;
mod entities;
mod error;
mod extract;
pub mod forward;
mod history;
mod openapi;
mod origin;
mod responses;
mod services;
mod stream;
mod timers;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, post, put};

use crate::cluster::Host;
use crate::invoke::Invoker;
use crate::journal::{Journal, LeaseRecord};
use crate::metrics::Metrics;
use crate::services::Services;
use crate::subscriptions::Subscriptions;
pub use auth::Tokens;
pub use connections::{ConnectionLimits, connection_budget, serve};
pub use error::ApiError;
pub use origin::RequestOrigins;
use responses::{Internal, Unauthorized, Unavailable};
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

/// The largest request bodies accepted.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// For a command payload.
    pub invoke: usize,
    /// For a component upload.
    pub deploy: usize,
}

/// What every handler can reach. Axum clones the state for every extractor
/// and middleware of every request, so it is one shared allocation.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// Shares `parts` with every handler.
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    /// Deployed services.
    pub services: Arc<Services>,
    /// The invocation path.
    pub invoker: Invoker,
    /// The journal, for reads.
    pub journal: Arc<dyn Journal>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Body size limits.
    pub limits: BodyLimits,
    /// Bearer tokens guarding deploys, invocations and reads.
    pub tokens: Tokens,
    /// Where requests may come from.
    pub origins: RequestOrigins,
    /// The subscription workers, which follow every deploy and delete.
    pub subscriptions: Arc<Subscriptions>,
    /// Turns true when the server shuts down; live event streams end then.
    pub shutdown: watch::Receiver<bool>,
    /// Refuse unverified deploys of services with stored entities.
    pub require_verify: bool,
    /// This host among the hosts of its journal.
    pub cluster: Arc<crate::cluster::Membership>,
    /// Sends commands on to their entity's owner; `None` without a
    /// cluster token (every host then runs what it receives).
    pub forwarder: Option<forward::Forwarder>,
}

/// The API's router.
pub fn app(state: AppState) -> Router {
    let limits = state.limits;
    let entity_routes = Router::new()
        .route("/v1/services/{service}/entities", get(entities::list))
        .route("/v1/services/{service}/entities/{id}", get(entities::position))
        .route("/v1/services/{service}/entities/{id}/events", get(entities::events))
        .route("/v1/services/{service}/entities/{id}/state", get(history::state))
        .route("/v1/services/{service}/entities/{id}/fork", post(history::fork))
        .route("/v1/services/{service}/entities/{id}/timers", get(timers::list))
        .route("/v1/services/{service}/entities/{id}/timers/{name}", delete(timers::cancel))
        .route(
            "/v1/services/{service}/entities/{id}/{command}",
            post(entities::invoke)
                .layer(DefaultBodyLimit::max(limits.invoke))
                .layer(from_fn(move |req, next| extract::reject_declared_oversize(limits.invoke, req, next))),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::require_invoke));
    let admin = from_fn_with_state(state.clone(), auth::require_admin);
    let read = from_fn_with_state(state.clone(), auth::require_read);
    let deploy = put(services::deploy)
        .layer(DefaultBodyLimit::max(limits.deploy))
        .layer(from_fn(move |req, next| extract::reject_declared_oversize(limits.deploy, req, next)))
        .delete(services::delete)
        .layer(admin.clone());
    let describe = get(services::describe).layer(read.clone());
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics).layer(read.clone()))
        .route("/v1/cluster", get(cluster).layer(read.clone()))
        .route(crdt_merge::PATH, post(crdt_merge::merge))
        .route("/v1/services", get(services::list).layer(read.clone()))
        .route("/v1/services/{service}", deploy.merge(describe))
        .route("/v1/services/{service}/dead-letters", get(services::dead_letters).layer(read.clone()))
        .route("/v1/services/{service}/rollback", post(services::rollback).layer(admin.clone()))
        .route("/v1/services/{service}/verification", get(services::verification).layer(read.clone()))
        .merge(entity_routes)
        .merge(crate::console::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(from_fn(close_after_refused_body));
    let router = match cors(state.origins.cors_origins()) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(from_fn_with_state(state.clone(), origin::check)).with_state(state)
}

/// CORS answers for the origins allowed to make cross-origin requests, if any.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static(crate::trace_context::TRACEPARENT),
            ])
            .expose_headers([header::RETRY_AFTER, HeaderName::from_static(crate::trace_context::TRACEPARENT)]),
    )
}

/// Answers a refused request that came with a body with `Connection: close`.
/// A refusal (401, 404, 413, ...) often leaves the body unread, so the server
/// cannot reuse the connection; saying so keeps a client from sending its
/// next request on a connection that is about to close.
async fn close_after_refused_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = request.headers();
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let has_body = declared.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    let mut response = next.run(request).await;
    if has_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// What `/healthz` says while the journal's storage fails.
const JOURNAL_FAILING: &str =
    "the journal's storage is failing; the host keeps trying and takes commands again once it works";

/// 200 while the host can commit; 503 while the journal's storage fails
/// (a full disk, an unreachable database), until it works again.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "host",
    responses(
        (status = 200, description = "The host can commit.", body = String, content_type = "text/plain", example = "ok\n"),
        (status = 503, response = Unavailable),
    ),
)]
async fn healthz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.journal.is_healthy() {
        Ok("ok\n")
    } else {
        Err(ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "journal_failed", JOURNAL_FAILING)
            .retry_after(1))
    }
}

/// What `GET /v1/cluster` answers.
#[derive(Serialize, ToSchema)]
pub struct ClusterReply {
    /// The live hosts of this host's journal, as it routes commands to them.
    hosts: Vec<Host>,
    /// The leases on the work one host does for all.
    leases: Vec<LeaseRecord>,
}

/// The live hosts of this host's journal, as it routes commands to them,
/// and the leases on the work one host does for all.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    operation_id = "cluster",
    tag = "host",
    responses(
        (status = 200, description = "The live hosts and the leases.", body = ClusterReply),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
async fn cluster(State(state): State<AppState>) -> Result<axum::Json<ClusterReply>, ApiError> {
    let journal = state.journal.clone();
    let leases = tokio::task::spawn_blocking(move || journal.leases()).await.map_err(ApiError::internal)??;
    Ok(axum::Json(ClusterReply { hosts: state.cluster.live(), leases }))
}

/// The host's metrics in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "host",
    responses(
        (status = 200, description = "The metrics, in the Prometheus text exposition format.", body = String, content_type = "text/plain"),
        (status = 401, response = Unauthorized),
    ),
    security(("bearer" = [])),
)]
async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
