//! Invoking an entity and reading its log.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiBody, ApiPath, ApiQuery, CommandPath, EntityPath, ServicePath};
use super::forward::Forwarded;
use super::responses::{
    BadGateway, BadRequest, Gone, Internal, Misdirected, NotFound, PayloadTooLarge, Timeout, Unauthorized, Unavailable,
    Unprocessable,
};
use super::stream::StreamedEvent;
use super::{ApiError, AppState};
use crate::domain::{Call, Event, IdempotencyKey, ServiceKind, payload_json};
use crate::invoke::{Cause, Invocation, Scheduled};
use crate::journal::{EntityHead, EntityPosition};
use crate::names::{validate_entity_id, validate_service_name};
use crate::trace_context::{TRACEPARENT, TraceContext};

/// The longest command name accepted.
const MAX_COMMAND_NAME: usize = 128;
/// The most events one `events` request answers.
const MAX_EVENTS_PER_PAGE: usize = 10_000;
/// The most bytes of events one `events` request answers (past them, the
/// page ends: ask again from the next seq).
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// Query of an invocation.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvokeQuery {
    /// Run the command without committing or sending anything, and answer
    /// what it would do.
    #[serde(default)]
    dry_run: bool,
    /// For a dry run: the seq right after which to run it (default: now).
    /// Otherwise: an RFC 3339 time at which to run the command, as a
    /// delayed call (202; in the past: at once).
    #[param(value_type = Option<String>, example = "2030-01-01T09:00:00Z")]
    at: Option<String>,
    /// Run the command after this long, as a delayed call (202): a
    /// duration such as `30s`, `15m` or `1h 30m`, at most ten years.
    #[param(example = "30s")]
    delay: Option<String>,
    /// `all`: on a CRDT entity, reply only once every live host has merged
    /// the command's change (hosts that did not are named in the
    /// `wasmstate-unmerged` header); `local` (the default): once it is
    /// durable.
    consistency: Option<Consistency>,
}

/// Which hosts a command's change must reach before the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Durable in the journal.
    Local,
    /// Durable, and merged by every live host (CRDT entities).
    All,
}

/// `POST /v1/services/{service}/entities/{id}/{command}`: runs the command
/// and answers the entity's reply once its events are durable.
///
/// A request carrying an `Idempotency-Key` that repeats an earlier key for
/// the same entity answers the recorded reply without running again; one
/// that repeats it for another command or payload answers 422. With
/// `?dry_run=true` (and maybe `&at=N`), the command runs against the
/// current (or a past) state and the answer is what it would do. With
/// `?delay=30s` or `?at=<RFC 3339>`, a durable timer runs it then: 202
/// once the timer is durable (the key makes the scheduling idempotent).
///
/// A W3C `traceparent` header makes the invocation a child of the span it
/// names; every answer of a run names the invocation's own span in a
/// `traceparent` header.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/entities/{id}/{command}",
    operation_id = "invoke",
    tag = "entities",
    params(
        CommandPath,
        InvokeQuery,
        (
            "Idempotency-Key" = Option<String>,
            Header,
            description = "Makes the command run once: a repeat with the same key answers the recorded reply.",
            min_length = 1,
            max_length = 256,
            pattern = "^[!-~]+$"
        ),
    ),
    request_body(
        content = Option<Value>,
        content_type = "application/json",
        description = "The command's payload, as the service's code reads it (the SDK reads JSON); may be empty.",
    ),
    responses(
        (
            status = 200,
            description = "The entity's reply, once the command's writes are durable; for a dry run, what it would \
                           do (a `DryRunReply`).",
            body = Value,
            headers(("traceparent" = String, description = "The W3C trace context of the invocation."))
        ),
        (
            status = 202,
            description = "A delayed call (`delay` or `at`): the timer that will run the command, once it is durable.",
            body = Scheduled,
            headers(("traceparent" = String, description = "The W3C trace context of the scheduling."))
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 410, response = Gone),
        (status = 413, response = PayloadTooLarge),
        (status = 421, response = Misdirected),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 502, response = BadGateway),
        (status = 503, response = Unavailable),
        (status = 504, response = Timeout),
    ),
    security(("bearer" = [])),
)]
pub async fn invoke(
    State(state): State<AppState>,
    ApiPath(CommandPath { service, id, command }): ApiPath<CommandPath>,
    ApiQuery(query): ApiQuery<InvokeQuery>,
    uri: Uri,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    validate_entity_path(&state, &service, &id)?;
    let from_another_host = super::forward::from_another_host(&state, &headers)?;
    if command.is_empty() || command.len() > MAX_COMMAND_NAME || command.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "a command name must be 1 to {MAX_COMMAND_NAME} bytes without control characters"
        )));
    }
    let key = match headers.get("idempotency-key") {
        Some(value) => Some(IdempotencyKey::client(value.as_bytes())?),
        None => None,
    };
    let call = Call { service, entity: id, command, payload: body.to_vec() };
    let parent = headers.get(TRACEPARENT).and_then(|value| TraceContext::from_traceparent(value.as_bytes()));
    if query.dry_run {
        if query.delay.is_some() {
            return Err(ApiError::bad_request("a dry run cannot be delayed"));
        }
        let at = query.at.map(|at| at.parse::<u64>()).transpose();
        let at = at.map_err(|_| ApiError::bad_request("at of a dry run is the seq of an event"))?;
        return super::history::dry_run(&state, call, at).await;
    }
    // A delayed call sets a timer, on whichever host: it touches no state.
    if let Some(due_ms) = super::timers::due_ms(query.delay.as_deref(), query.at.as_deref())? {
        return super::timers::schedule(&state, call, key, due_ms, parent).await;
    }
    // An entity's commands run on the host that owns it, which caches it.
    if let Some(forwarder) = &state.forwarder
        && !from_another_host
        && state.services.get(&call.service).is_some_and(|s| s.kind().has_owner())
        && let Some(owner) = state.cluster.owner_elsewhere(&call.service, &call.entity)
    {
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        if let Forwarded::Answered(answer) = forwarder.forward(&owner, path, &headers, body).await? {
            state.metrics.record_forwarded(true);
            return Ok(answer);
        }
        state.metrics.record_forwarded(false);
    }
    // A CRDT change every host merges before the reply, when asked.
    let merge_everywhere = query.consistency == Some(Consistency::All)
        && state.journal.has_other_writers()
        && state.services.get(&call.service).is_some_and(|s| s.kind() == ServiceKind::Crdt);
    if merge_everywhere && state.forwarder.is_none() {
        return Err(ApiError::bad_request(
            "consistency=all needs the hosts to reach each other: start them with --cluster-token",
        ));
    }
    let merging = merge_everywhere.then(|| (call.service.clone(), call.entity.clone()));
    // The invocation is a child of the caller's span, if it names one,
    // and its own span is answered whatever the outcome.
    let invocation = Invocation::command(call, key).child_of(parent.as_ref(), Cause::Request);
    let traceparent = HeaderValue::try_from(invocation.trace.traceparent()).map_err(ApiError::internal)?;
    let mut response = match state.invoker.invoke(invocation).await {
        Ok(reply) if let Some((service, entity)) = &merging => {
            let unmerged = super::crdt_merge::merge_everywhere(&state, service, entity).await;
            let mut response = ([(header::CONTENT_TYPE, "application/json")], reply).into_response();
            if !unmerged.is_empty() {
                let hosts = HeaderValue::try_from(unmerged.join(",")).map_err(ApiError::internal)?;
                response.headers_mut().insert(super::crdt_merge::UNMERGED, hosts);
            }
            response
        }
        Ok(reply) => ([(header::CONTENT_TYPE, "application/json")], reply).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    };
    response.headers_mut().insert(TRACEPARENT, traceparent);
    Ok(response)
}

/// Where one entity stands: `{last_seq, snapshot_seq}`, and for a value
/// entity its stored `state` (null when none).
#[derive(Serialize, ToSchema)]
pub struct PositionReply {
    /// The service.
    service: String,
    /// The entity.
    entity: String,
    #[serde(flatten)]
    position: EntityPosition,
    /// A value entity's stored state (`null` when none), or a CRDT entity's
    /// value as JSON (`null` when never changed); absent for other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<Value>,
    /// A CRDT entity's type (`gcounter`, `orset`, ...; absent when never
    /// changed, and for other kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    crdt: Option<&'static str>,
    /// How many replicas (hosts) wrote a CRDT entity; absent for other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<usize>,
}

/// `GET /v1/services/{service}/entities/{id}`: where the entity's log stands.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/entities/{id}",
    operation_id = "entity_position",
    tag = "entities",
    params(EntityPath),
    responses(
        (status = 200, description = "Where the entity stands.", body = PositionReply),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn position(
    State(state): State<AppState>,
    ApiPath(EntityPath { service, id }): ApiPath<EntityPath>,
) -> Result<Json<PositionReply>, ApiError> {
    validate_entity_path(&state, &service, &id)?;
    let journal = state.journal.clone();
    let kind = state.services.describe(&service).map(|s| s.kind);
    if kind == Some(ServiceKind::Crdt) {
        return crdt_position(&state, service, id).await;
    }
    let is_value = kind == Some(ServiceKind::Value);
    let (s, e) = (service.clone(), id.clone());
    let (position, value) = tokio::task::spawn_blocking(move || {
        let value = if is_value { Some(journal.value(&s, &e)?) } else { None };
        Ok::<_, crate::journal::JournalError>((journal.position(&s, &e)?, value))
    })
    .await
    .map_err(ApiError::internal)??;
    let state = value.map(|v| v.as_deref().map_or(Value::Null, payload_json));
    Ok(Json(PositionReply { service, entity: id, position, state, crdt: None, replicas: None }))
}

/// Where a CRDT entity stands: its value, the join of every replica's row
/// as stored, as this host sees it; 404 `entity_deleted` once deleted.
async fn crdt_position(state: &AppState, service: String, id: String) -> Result<Json<PositionReply>, ApiError> {
    let (value, replicas) = state.invoker.read_crdt(&service, &id).await?;
    let reply = PositionReply {
        position: EntityPosition::default(),
        state: Some(value.as_ref().map_or(Value::Null, super::crdt_value::value_json)),
        crdt: value.as_ref().map(super::crdt_value::type_name),
        replicas: Some(replicas),
        service,
        entity: id,
    };
    Ok(Json(reply))
}

/// Query of the `events` route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The first seq to answer (default 1).
    from: Option<u64>,
    /// The most events to answer (default and maximum 10,000; more is taken as 10,000).
    limit: Option<usize>,
    /// Stream the backlog, then every new event, as Server-Sent Events.
    #[serde(default)]
    follow: bool,
}

/// One event as answered over HTTP: JSON payloads are embedded as JSON.
#[derive(Serialize, ToSchema)]
pub struct EventReply {
    /// Its place in the entity's log, from 1.
    seq: u64,
    /// The version of the service that emitted it (0: not recorded).
    version: u32,
    /// The event as the service's code wrote it: JSON, or a string when it is not JSON.
    payload: Value,
}

/// `GET /v1/services/{service}/entities/{id}/events?from=N`: committed events in order.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/entities/{id}/events",
    operation_id = "events",
    tag = "entities",
    params(EntityPath, EventsQuery),
    responses(
        (
            status = 200,
            description = "The committed events from `from` on, in seq order (a page: ask again from the next \
                           seq); with `follow=true`, a stream of Server-Sent Events named `event`, each an \
                           `EventReply` with its seq as the id, that ends only when the server stops. On a CRDT \
                           entity, `follow=true` streams its value instead: events named `value`, each \
                           `{crdt, state}` as `GET` of the entity shows them, at once and after every change; \
                           a `deleted` event ends the stream.",
            content(
                (Vec<EventReply> = "application/json"),
                (StreamedEvent = "text/event-stream"),
            ),
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn events(
    State(state): State<AppState>,
    ApiPath(EntityPath { service, id }): ApiPath<EntityPath>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    validate_entity_path(&state, &service, &id)?;
    let from = query.from.unwrap_or(1);
    if query.follow && state.services.describe(&service).is_some_and(|s| s.kind == ServiceKind::Crdt) {
        return Ok(super::crdt_stream::follow_value(&state, service, id).into_response());
    }
    if query.follow {
        return Ok(super::stream::follow(&state, service, id, from).into_response());
    }
    let limit = query.limit.unwrap_or(MAX_EVENTS_PER_PAGE).min(MAX_EVENTS_PER_PAGE);
    let journal = state.journal.clone();
    let events = tokio::task::spawn_blocking(move || journal.events_page(&service, &id, from, limit, MAX_PAGE_BYTES))
        .await
        .map_err(ApiError::internal)??;
    let events: Vec<EventReply> = events.into_iter().map(EventReply::from).collect();
    Ok(Json(events).into_response())
}

impl From<Event> for EventReply {
    fn from(event: Event) -> Self {
        Self { seq: event.seq, version: event.version, payload: payload_json(&event.payload) }
    }
}

/// The most entities one listing answers, and how many by default.
const MAX_ENTITIES_PER_PAGE: usize = 1000;
const DEFAULT_ENTITIES_PER_PAGE: usize = 100;

/// Query of the entity listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Answer the entities whose ids sort after this one (the `next` of
    /// the page before).
    #[param(max_length = 256, pattern = r"^[^/\x00-\x1F\x7F-\x9F]+$")]
    after: Option<String>,
    /// The most entities to answer (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of a service's entities.
#[derive(Serialize, ToSchema)]
pub struct EntityPage {
    /// The entities, in id order (bytewise).
    entities: Vec<EntityHead>,
    /// What to pass as `after` for the next page; `null` on the last one.
    next: Option<String>,
}

/// `GET /v1/services/{service}/entities?after=ID&limit=N`: the stored
/// entities of a service, a page at a time, each with its `last_seq` (a
/// value entity: its revision). An action has none.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/entities",
    operation_id = "list_entities",
    tag = "entities",
    params(ServicePath, ListQuery),
    responses(
        (status = 200, description = "A page of the service's stored entities.", body = EntityPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(ServicePath { service }): ApiPath<ServicePath>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<EntityPage>, ApiError> {
    validate_service_name(&service).map_err(ApiError::bad_request)?;
    let Some(kind) = state.services.get(&service).map(|s| s.kind()) else {
        return Err(ApiError::unknown_service(&service));
    };
    if let Some(after) = &query.after {
        validate_entity_id(after).map_err(|e| ApiError::bad_request(format!("after: {e}")))?;
    }
    let limit = match query.limit {
        None => DEFAULT_ENTITIES_PER_PAGE,
        Some(limit @ 1..=MAX_ENTITIES_PER_PAGE) => limit,
        Some(_) => return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_ENTITIES_PER_PAGE}"))),
    };
    let journal = state.journal.clone();
    // One more than asked says whether a page follows.
    let mut entities =
        tokio::task::spawn_blocking(move || journal.entity_page(&service, kind, query.after.as_deref(), limit + 1))
            .await
            .map_err(ApiError::internal)??;
    let next = if entities.len() > limit {
        entities.truncate(limit);
        entities.last().map(|head| head.entity.clone())
    } else {
        None
    };
    Ok(Json(EntityPage { entities, next }))
}

/// Checks the service exists and the entity id is acceptable.
pub(super) fn validate_entity_path(state: &AppState, service: &str, id: &str) -> Result<(), ApiError> {
    validate_service_name(service).map_err(ApiError::bad_request)?;
    validate_entity_id(id).map_err(ApiError::bad_request)?;
    if !state.services.is_deployed(service) {
        return Err(ApiError::unknown_service(service));
    }
    Ok(())
}
