//! An entity's past: its state as of an event, dry runs of commands, and
//! forks of its log.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiPath, ApiQuery};
use super::{ApiError, AppState, entities::validate_entity_path};
use crate::domain::{Call, Reply, ServiceKind, StateChange, payload_json};
use crate::invoke::DryRun;
use crate::journal::{Forked, NotKept};
use crate::names::validate_entity_id;

/// The header naming the seq of the last event a state folds in.
const SEQ_HEADER: &str = "wasmstate-seq";

/// Query of the `state` route.
#[derive(Deserialize)]
pub struct StateQuery {
    /// The seq right after which to read the state (default: the last).
    at: Option<u64>,
}

/// `GET /v1/services/{service}/entities/{id}/state?at=N`: the entity's
/// state right after event N (default: now), as the newest version folds
/// it, with the seq in `Wasmstate-Seq`. A value entity answers its stored
/// state (value entities keep no history).
pub async fn state(
    State(state): State<AppState>,
    ApiPath((service, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<StateQuery>,
) -> Result<Response, ApiError> {
    validate_entity_path(&state, &service, &id)?;
    if state.services.describe(&service).is_some_and(|s| s.kind == ServiceKind::Value) && query.at.is_none() {
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

/// Runs `call` as a dry run against the state right after event `at`
/// (default: now): 200 with what it would do, committing and sending nothing.
pub async fn dry_run(state: &AppState, call: Call, at: Option<u64>) -> Result<Response, ApiError> {
    let DryRun { seq, effects } = state.invoker.dry_run(call, at).await?;
    let (state_change, state_after, events) = match effects.state {
        StateChange::Events { events, state } => {
            ("events", payload_json(&state), events.iter().map(|e| payload_json(e)).collect())
        }
        StateChange::Update(state) => ("update", payload_json(&state), Vec::new()),
        StateChange::Delete => ("delete", Value::Null, Vec::new()),
        StateChange::Unchanged => ("unchanged", Value::Null, Vec::new()),
    };
    let (reply, forward) = match effects.reply {
        Reply::Message(bytes) => (payload_json(&bytes), Value::Null),
        Reply::Forward(call) => (Value::Null, call_json(&call)),
    };
    let side_effects: Vec<Value> = effects
        .side_effects
        .iter()
        .map(|effect| {
            let mut call = call_json(&effect.call);
            call["synchronous"] = effect.synchronous.into();
            call
        })
        .collect();
    Ok(Json(json!({
        "dry_run": true,
        "seq": seq,
        "events": events,
        "state_change": state_change,
        "state": state_after,
        "reply": reply,
        "forward": forward,
        "side_effects": side_effects,
        "timers": [],
    }))
    .into_response())
}

fn call_json(call: &Call) -> Value {
    json!({
        "service": call.service,
        "entity": call.entity,
        "command": call.command,
        "payload": payload_json(&call.payload),
    })
}

/// Query of the `fork` route.
#[derive(Deserialize)]
pub struct ForkQuery {
    /// The last event to copy (default: the last).
    at: Option<u64>,
    /// The new entity's id.
    to: String,
}

/// `POST /v1/services/{service}/entities/{id}/fork?at=N&to=NEWID`: a new
/// entity whose log is events 1 to N of this one; 201, or 409 when NEWID
/// has events already.
pub async fn fork(
    State(state): State<AppState>,
    ApiPath((service, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<ForkQuery>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
            Json(json!({
                "service": service,
                "entity": query.to,
                "forked_from": id,
                "last_seq": last_seq,
                "from_snapshot": from_snapshot,
            })),
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
