//! An entity's durable timers: delayed calls (`?delay=` and `?at=` on an
//! invocation), their listing, and their cancellation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiPath, EntityPath};
use super::responses::{BadRequest, Internal, NotFound, Unauthorized, Unavailable};
use super::{ApiError, AppState, entities::validate_entity_path};
use crate::domain::{Call, IdempotencyKey, MissedFirings, payload_json};
use crate::journal::{MAX_TIMER_DELAY, MAX_TIMER_NAME, Timer, now_ms};
use crate::trace_context::{TRACEPARENT, TraceContext};

/// The furthest ahead a delayed call may be set.
const MAX_DELAY: Duration = MAX_TIMER_DELAY;

/// When a delayed call is due, from an invocation's `delay` (a duration:
/// `30s`, `15m`, `1h 30m`) or `at` (an RFC 3339 time); `None` when it
/// names neither. A time in the past is due at once.
pub(super) fn due_ms(delay: Option<&str>, at: Option<&str>) -> Result<Option<u64>, ApiError> {
    let now = now_ms();
    let due = match (delay, at) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => return Err(ApiError::bad_request("a delayed call takes delay or at, not both")),
        (Some(delay), None) => {
            let delay = humantime::parse_duration(delay).map_err(|e| {
                ApiError::bad_request(format!("delay must be a duration such as 30s, 15m or 1h 30m: {e}"))
            })?;
            if delay > MAX_DELAY {
                return Err(ApiError::bad_request("delay must be at most ten years"));
            }
            now + delay.as_millis() as u64
        }
        (None, Some(at)) => {
            let at = parse_rfc3339(at).ok_or_else(|| {
                ApiError::bad_request(
                    "at must be an RFC 3339 time with its offset, such as 2030-01-01T09:00:00Z or \
                     2030-01-01T10:00:00+01:00",
                )
            })?;
            let at = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
            if at > now + MAX_DELAY.as_millis() as u64 {
                return Err(ApiError::bad_request("at must be at most ten years ahead"));
            }
            at.max(now)
        }
    };
    Ok(Some(due))
}

/// An RFC 3339 time: `YYYY-MM-DDTHH:MM:SS[.frac]` then `Z` or an offset
/// `±HH:MM`, which must be there.
fn parse_rfc3339(at: &str) -> Option<SystemTime> {
    if !at.is_ascii() {
        return None;
    }
    let (local, offset_secs) = match at.strip_suffix(['Z', 'z']) {
        Some(local) => (local, 0i64),
        None => {
            let (local, offset) = at.split_at(at.len().checked_sub(6)?);
            let sign = match offset.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (hours, minutes) = offset[1..].split_once(':')?;
            let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            (local, sign * (hours * 3600 + minutes * 60))
        }
    };
    // The local time read as UTC, then moved by the offset.
    let as_utc = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    if offset_secs >= 0 { as_utc.checked_sub(shift) } else { as_utc.checked_add(shift) }
}

/// Sets a timer that runs `call` at `due_ms`: 202 with the timer once it
/// is durable, and the invocation's span in `traceparent`.
pub(super) async fn schedule(
    state: &AppState,
    call: Call,
    key: Option<IdempotencyKey>,
    due_ms: u64,
    parent: Option<TraceContext>,
) -> Result<Response, ApiError> {
    let trace = TraceContext::child_or_root(parent.as_ref());
    let traceparent = HeaderValue::try_from(trace.traceparent()).map_err(ApiError::internal)?;
    let scheduled = state.invoker.schedule(call, key, due_ms, trace).await?;
    let mut response = (StatusCode::ACCEPTED, Json(scheduled)).into_response();
    response.headers_mut().insert(TRACEPARENT, traceparent);
    Ok(response)
}

/// One timer as listed.
#[derive(Serialize, ToSchema)]
pub struct TimerReply {
    /// Its name among the entity's timers.
    name: String,
    /// What it runs: `service/entity/command`.
    command: String,
    /// The command's payload (JSON when it is JSON, else a string; `null`
    /// when empty).
    payload: Value,
    /// When it is next due (after a failed attempt: when it is tried
    /// again), in ms since the Unix epoch.
    next_due_ms: u64,
    /// The time as RFC 3339.
    next_due: String,
    /// Its schedule; `null` for a timer that fires once.
    schedule: Option<ScheduleReply>,
    /// Attempts that failed so far.
    attempts: u32,
    /// Why the last attempt failed.
    last_error: Option<String>,
}

/// A repeating timer's schedule, as listed.
#[derive(Serialize, ToSchema)]
pub struct ScheduleReply {
    /// The cron expression, with its time zone if it names one.
    cron: String,
    /// What becomes of slots that passed unfired: `skip`, `once` or `all`.
    missed: MissedFirings,
}

impl From<Timer> for TimerReply {
    fn from(timer: Timer) -> Self {
        let due = UNIX_EPOCH + Duration::from_millis(timer.due_ms);
        Self {
            name: timer.name,
            command: timer.call.target(),
            payload: if timer.call.payload.is_empty() { Value::Null } else { payload_json(&timer.call.payload) },
            next_due_ms: timer.due_ms,
            next_due: humantime::format_rfc3339_millis(due).to_string(),
            schedule: timer
                .schedule
                .map(|schedule| ScheduleReply { cron: schedule.expression, missed: schedule.missed }),
            attempts: timer.attempts,
            last_error: timer.last_error,
        }
    }
}

/// `GET /v1/services/{service}/entities/{id}/timers`: the entity's timers, by name.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/entities/{id}/timers",
    operation_id = "listTimers",
    tag = "entities",
    params(EntityPath),
    responses(
        (status = 200, description = "The entity's timers, by name.", body = Vec<TimerReply>),
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
    ApiPath(EntityPath { service, id }): ApiPath<EntityPath>,
) -> Result<Json<Vec<TimerReply>>, ApiError> {
    validate_entity_path(&state, &service, &id)?;
    let journal = state.journal.clone();
    let timers =
        tokio::task::spawn_blocking(move || journal.timers_of(&service, &id)).await.map_err(ApiError::internal)??;
    Ok(Json(timers.into_iter().map(TimerReply::from).collect()))
}

/// The path of one timer: `/v1/services/{service}/entities/{id}/timers/{name}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TimerPath {
    /// The service name.
    #[param(example = "counter", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub service: String,
    /// The entity id.
    #[param(example = "c1", max_length = 256, pattern = r"^[^/\x00-\x1F\x7F-\x9F]+$")]
    pub id: String,
    /// The timer's name.
    #[param(example = "delayed-1a2b3c4d5e6f7a8b", max_length = 128, pattern = r"^[^/\x00-\x1F\x7F-\x9F]+$")]
    pub name: String,
}

/// What a cancel answers.
#[derive(Serialize, ToSchema)]
pub struct Cancelled {
    /// The timer cancelled.
    cancelled: String,
}

/// `DELETE /v1/services/{service}/entities/{id}/timers/{name}`: cancels a
/// timer; 404 when the entity has none of that name.
#[utoipa::path(
    delete,
    path = "/v1/services/{service}/entities/{id}/timers/{name}",
    operation_id = "cancelTimer",
    tag = "entities",
    params(TimerPath),
    responses(
        (status = 200, description = "The timer is cancelled: it will not fire.", body = Cancelled),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn cancel(
    State(state): State<AppState>,
    ApiPath(TimerPath { service, id, name }): ApiPath<TimerPath>,
) -> Result<Json<Cancelled>, ApiError> {
    validate_entity_path(&state, &service, &id)?;
    if name.is_empty() || name.len() > MAX_TIMER_NAME {
        return Err(ApiError::bad_request(format!("a timer name is 1 to {MAX_TIMER_NAME} bytes")));
    }
    if !state.invoker.cancel_timer(&service, &id, &name).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_timer",
            format!("{service}/{id} has no timer named {name:?}"),
        ));
    }
    Ok(Json(Cancelled { cancelled: name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delayed_call_is_due_after_its_delay_or_at_its_time() {
        assert_eq!(due_ms(None, None).unwrap(), None);
        let due = due_ms(Some("30s"), None).unwrap().unwrap();
        assert!(due.abs_diff(now_ms() + 30_000) < 1_000, "{due}");
        assert!(due_ms(Some("1h 30m"), None).unwrap().unwrap() > now_ms() + 5_000_000);
        assert_eq!(due_ms(None, Some("2030-01-01T00:00:00Z")).unwrap(), Some(1_893_456_000_000));
        assert_eq!(due_ms(None, Some("2030-01-01T01:30:00+01:30")).unwrap(), Some(1_893_456_000_000));
        assert_eq!(due_ms(None, Some("2029-12-31T19:00:00.000-05:00")).unwrap(), Some(1_893_456_000_000));
        // The past is now.
        assert!(due_ms(None, Some("2000-01-01T00:00:00Z")).unwrap().unwrap() >= now_ms() - 1_000);
        for (delay, at) in [
            (Some("soon"), None),
            (Some("-5s"), None),
            (Some("11000 days"), None),
            (None, Some("tomorrow")),
            (None, Some("2030-01-01T00:00:00")),
            (None, Some("2030-01-01T00:00:00+1:00")),
            (None, Some("2030-01-01T00:00:00+24:00")),
            (None, Some("2030-01-01T00:00:00€")),
            (None, Some("")),
            (None, Some("3000-01-01T00:00:00Z")),
            (Some("5s"), Some("2100-01-01T00:00:00Z")),
        ] {
            assert!(due_ms(delay, at).is_err(), "{delay:?} {at:?}");
        }
    }
}
