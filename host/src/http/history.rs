//! An entity's past: its state as of an event, dry runs of commands, and
//! forks of its log.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiPath, ApiQuery, EntityPath};
use super::responses::{
    BadRequest, Conflict, Gone, Internal, NotFound, Timeout, Unauthorized, Unavailable, Unprocessable,
};
use super::{ApiError, AppState, entities::validate_entity_path};
use crate::domain::{Call, Reply, ServiceKind, StateChange, TimerDue, TimerRequest, Webhook, payload_json};
use crate::invoke::DryRun;
use crate::journal::{Forked, NotKept};
use crate::names::validate_entity_id;

/// The header naming the seq of the last event a state folds in.
const SEQ_HEADER: &str = "wasmstate-seq";

/// Query of the `state` route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    /// The seq right after which to read the state (default: the last).
    at: Option<u64>,
}

/// `GET /v1/services/{service}/entities/{id}/state?at=N`: the entity's
/// state right after event N (default: now), as the newest version folds
/// it, with the seq in `Wasmstate-Seq`. A value entity answers its stored
/// state (value entities keep no history).
#[utoipa::path(
    get,
    path = "/v1/services/{service}/entities/{id}/state",
    operation_id = "state",
    tag = "entities",
    params(EntityPath, StateQuery),
    responses(
        (
            status = 200,
            description = "The entity's state, as the service's code encodes it.",
            body = Value,
            content_type = "application/json",
            headers((
                "Wasmstate-Seq" = u64,
                description = "The seq of the last event the state folds in (event-sourced entities only)."
            )),
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 410, response = Gone),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
        (status = 504, response = Timeout),
    ),
    security(("bearer" = [])),
)]
pub async fn state(
    State(state): State<AppState>,
    ApiPath(EntityPath { service, id }): ApiPath<EntityPath>,
    ApiQuery(query): ApiQuery<StateQuery>,
) -> Result<Response, ApiError> {
    validate_entity_path(&state, &service, &id)?;
    let kind = state.services.describe(&service).map(|s| s.kind);
    if kind == Some(ServiceKind::Crdt) && query.at.is_none() {
        return crdt_state(&state, &service, &id).await;
    }
    if kind == Some(ServiceKind::Value) && query.at.is_none() {
        let (journal, s, e) = (state.journal.clone(), service.clone(), id.clone());
        let value = tokio::task::spawn_blocking(move || journal.value(&s, &e)).await.map_err(ApiError::internal)??;
        let value = value.ok_or_else(|| ApiError::not_found(format!("{service}/{id} has no stored state")))?;
        return Ok(([(header::CONTENT_TYPE, "application/json")], value).into_response());
    }
    let at = state.invoker.state_at(&service, &id, query.at).await?;
    let Some(bytes) = at.state else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_component",
            format!(
                "{service}'s newest version was built against wasmstate:entity@0.1.0, which cannot answer its state; \
                 rebuild it with the current SDK"
            ),
        ));
    };
    let mut response = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    response.headers_mut().insert(SEQ_HEADER, HeaderValue::from(at.seq));
    Ok(response)
}

/// A CRDT entity's value as JSON (`null` while never changed), as `GET` of
/// the entity shows it; 404 `entity_deleted` once deleted.
async fn crdt_state(state: &AppState, service: &str, id: &str) -> Result<Response, ApiError> {
    let (value, _) = state.invoker.read_crdt(service, id).await?;
    Ok(Json(value.as_ref().map_or(Value::Null, super::crdt_value::value_json)).into_response())
}

/// Runs `call` as a dry run against the state right after event `at`
/// (default: now): 200 with what it would do, committing and sending nothing.
pub async fn dry_run(state: &AppState, call: Call, at: Option<u64>) -> Result<Response, ApiError> {
    let DryRun { seq, effects, crdt_value } = state.invoker.dry_run(call, at).await?;
    let (state_change, state_after, events) = match effects.state {
        StateChange::Events { events, state } => {
            (StateChangeKind::Events, payload_json(&state), events.iter().map(|e| payload_json(e)).collect())
        }
        StateChange::Update(state) => (StateChangeKind::Update, payload_json(&state), Vec::new()),
        StateChange::Crdt(Some(_)) => {
            let value = crdt_value.as_ref().map_or(Value::Null, super::crdt_value::value_json);
            (StateChangeKind::Update, value, Vec::new())
        }
        StateChange::Delete | StateChange::CrdtDelete => (StateChangeKind::Delete, Value::Null, Vec::new()),
        StateChange::Unchanged | StateChange::Crdt(None) => (StateChangeKind::Unchanged, Value::Null, Vec::new()),
    };
    let (reply, forward) = match effects.reply {
        Reply::Message(bytes) => (payload_json(&bytes), None),
        Reply::Forward(call) => (Value::Null, Some(CallReply::from(&call))),
    };
    let side_effects = effects
        .side_effects
        .iter()
        .map(|effect| SideEffectReply { call: CallReply::from(&effect.call), synchronous: effect.synchronous })
        .collect();
    let webhooks = effects
        .webhooks
        .iter()
        .map(|webhook| WebhookReply {
            url: webhook.url.clone(),
            method: if webhook.method.is_empty() { Webhook::DEFAULT_METHOD.into() } else { webhook.method.clone() },
            body: payload_json(&webhook.body),
        })
        .collect();
    let timers = effects.timers.iter().map(timer_json).collect();
    let reply = DryRunReply {
        dry_run: true,
        seq,
        events,
        state_change,
        state: state_after,
        reply,
        forward,
        side_effects,
        webhooks,
        timers,
    };
    Ok(Json(reply).into_response())
}

/// What a dry run answers: what the command would do, none of it done.
#[derive(Serialize, ToSchema)]
pub struct DryRunReply {
    /// Always `true`.
    dry_run: bool,
    /// The seq it ran on (0 for an action, or a value entity).
    seq: u64,
    /// The events it would emit.
    events: Vec<Value>,
    /// What it would do to the entity's state.
    state_change: StateChangeKind,
    /// The state after it (`null` when deleted or unchanged).
    state: Value,
    /// Its reply (`null` when it forwards).
    reply: Value,
    /// The command it would forward to, if it forwards.
    forward: Option<CallReply>,
    /// The side effects it would ask for.
    side_effects: Vec<SideEffectReply>,
    /// The webhooks it would send.
    webhooks: Vec<WebhookReply>,
    /// The timers it would set (`{"set": name, "due": …, "call": …}`) and
    /// cancel (`{"cancel": name}`), in order.
    timers: Vec<Value>,
}

/// A webhook a dry run would send.
#[derive(Serialize, ToSchema)]
pub struct WebhookReply {
    /// Where.
    url: String,
    /// Its method.
    method: String,
    /// Its body: JSON, or a string when it is not JSON.
    body: Value,
}

/// A timer a dry run would set or cancel, as JSON.
fn timer_json(request: &TimerRequest) -> Value {
    match request {
        TimerRequest::Set { name, due, call } => {
            let due = match due {
                TimerDue::AfterMs(ms) => json!({ "after_ms": ms }),
                TimerDue::AtMs(ms) => json!({ "at_ms": ms }),
                TimerDue::Cron(cron) => json!({ "cron": cron.expression, "missed": cron.missed }),
            };
            json!({ "set": name, "due": due, "call": CallReply::from(call) })
        }
        TimerRequest::Cancel(name) => json!({ "cancel": name }),
    }
}

/// What a command would do to its entity's state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateChangeKind {
    /// It emits events (an event-sourced entity).
    Events,
    /// It writes a new value (a value entity).
    Update,
    /// It deletes the value.
    Delete,
    /// It leaves the state as it is.
    Unchanged,
}

/// A command a dry run would send to an entity.
#[derive(Serialize, ToSchema)]
pub struct CallReply {
    /// Its service.
    service: String,
    /// Its entity.
    entity: String,
    /// The command.
    command: String,
    /// Its payload: JSON, or a string when it is not JSON.
    payload: Value,
}

impl From<&Call> for CallReply {
    fn from(call: &Call) -> Self {
        Self {
            service: call.service.clone(),
            entity: call.entity.clone(),
            command: call.command.clone(),
            payload: payload_json(&call.payload),
        }
    }
}

/// A side effect a dry run would ask for.
#[derive(Serialize, ToSchema)]
pub struct SideEffectReply {
    #[serde(flatten)]
    call: CallReply,
    /// Whether it would run before the reply (else through the outbox).
    synchronous: bool,
}

/// Query of the `fork` route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForkQuery {
    /// The last event to copy (default: the last).
    at: Option<u64>,
    /// The new entity's id.
    #[param(example = "c1-copy", max_length = 256, pattern = r"^[^/\x00-\x1F\x7F-\x9F]+$")]
    to: String,
}

/// What a fork answers: the new entity.
#[derive(Serialize, ToSchema)]
pub struct ForkReply {
    /// The service.
    service: String,
    /// The new entity.
    entity: String,
    /// The entity it was forked from.
    forked_from: String,
    /// The last seq copied.
    last_seq: u64,
    /// The snapshot the copy starts from, when it does not start at the
    /// oldest kept event.
    from_snapshot: Option<u64>,
}

/// `POST /v1/services/{service}/entities/{id}/fork?at=N&to=NEWID`: a new
/// entity whose log is events 1 to N of this one; 201, or 409 when NEWID
/// has events already.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/entities/{id}/fork",
    operation_id = "fork",
    tag = "entities",
    params(EntityPath, ForkQuery),
    responses(
        (status = 201, description = "The new entity.", body = ForkReply),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 410, response = Gone),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn fork(
    State(state): State<AppState>,
    ApiPath(EntityPath { service, id }): ApiPath<EntityPath>,
    ApiQuery(query): ApiQuery<ForkQuery>,
) -> Result<(StatusCode, Json<ForkReply>), ApiError> {
    validate_entity_path(&state, &service, &id)?;
    validate_entity_id(&query.to).map_err(|e| ApiError::bad_request(format!("to: {e}")))?;
    if !state.services.describe(&service).is_some_and(|s| s.kind == ServiceKind::EventSourced) {
        return Err(ApiError::bad_request("only an event-sourced entity has a log to fork"));
    }
    if query.to == id {
        return Err(ApiError::bad_request("an entity cannot be forked into itself"));
    }
    let at = query.at;
    match state.invoker.fork(&service, &id, &query.to, at).await? {
        Forked::Done { last_seq, from_snapshot } => Ok((
            StatusCode::CREATED,
            Json(ForkReply { service, entity: query.to, forked_from: id, last_seq, from_snapshot }),
        )),
        Forked::TargetExists => Err(ApiError::new(
            StatusCode::CONFLICT,
            "entity_exists",
            format!("{service}/{} has events already; fork into a new id", query.to),
        )),
        Forked::NotKept(not_kept @ NotKept::Beyond { .. }) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_in_history", not_kept.message(&id, at.unwrap_or_default())))
        }
        Forked::NotKept(not_kept @ NotKept::Compacted { .. }) => {
            Err(ApiError::new(StatusCode::GONE, "history_compacted", not_kept.message(&id, at.unwrap_or_default())))
        }
    }
}
