//! The timers a guest sets and cancels: checked like the rest of its
//! output, then turned into the changes its command commits. A timer's
//! owner is the command's entity (an action's routing key); what it runs
//! may be any command of any service.

use super::{InvokeError, InvokerConfig};
use crate::domain::{TimerDue, TimerRequest};
use crate::journal::{MAX_TIMER_DELAY, MAX_TIMER_NAME, Timer, TimerChange};
use crate::names::{validate_entity_id, validate_service_name};
use crate::timers::CronSpec;
use crate::trace_context::TraceContext;

/// Where a command's timers belong and when it started.
pub(super) struct TimerOwner<'a> {
    /// The service of the command's entity.
    pub service: &'a str,
    /// The entity (an action's routing key).
    pub entity: &'a str,
    /// When the command started, in ms since the Unix epoch: what
    /// `after-ms` counts from.
    pub now_ms: u64,
    /// The command's span, kept with the timers it sets.
    pub trace: Option<TraceContext>,
}

/// Checks `requests` against `config`'s limits and turns them into the
/// changes `owner`'s commit makes. A firing starts a chain of its own
/// (hops 0): time, not depth, paces a timer that sets itself again.
pub(super) fn timer_changes(
    config: &InvokerConfig,
    owner: &TimerOwner<'_>,
    requests: Vec<TimerRequest>,
) -> Result<Vec<TimerChange>, InvokeError> {
    let max = config.max_events_per_command;
    if requests.len() > max {
        return Err(InvokeError::OutputLimit(format!(
            "the guest set or cancelled {} timers; at most {max} are allowed",
            requests.len()
        )));
    }
    let invalid = |message: String| InvokeError::InvalidTimer(message);
    requests
        .into_iter()
        .map(|request| match request {
            TimerRequest::Cancel(name) => {
                check_name(&name).map_err(invalid)?;
                Ok(TimerChange::Cancel(name))
            }
            TimerRequest::Set { name, due, call } => {
                check_name(&name).map_err(invalid)?;
                let named = |problem: String| invalid(format!("timer {name:?} {problem}"));
                validate_service_name(&call.service).map_err(|e| named(format!("names an invalid service: {e}")))?;
                validate_entity_id(&call.entity).map_err(|e| named(format!("names an invalid entity: {e}")))?;
                if call.command.is_empty() {
                    return Err(named("names no command".into()));
                }
                let latest = owner.now_ms + MAX_TIMER_DELAY.as_millis() as u64;
                let (due_ms, schedule) = match due {
                    TimerDue::AfterMs(after) if after <= MAX_TIMER_DELAY.as_millis() as u64 => {
                        (owner.now_ms + after, None)
                    }
                    TimerDue::AtMs(at) if at <= latest => (at.max(owner.now_ms), None),
                    TimerDue::AfterMs(_) | TimerDue::AtMs(_) => {
                        return Err(named("is due more than ten years ahead".into()));
                    }
                    TimerDue::Cron(schedule) => {
                        let spec =
                            CronSpec::parse(&schedule.expression).map_err(|e| named(format!("has an invalid {e}")))?;
                        let first = spec.next_after(owner.now_ms).ok_or_else(|| named("never fires".into()))?;
                        (first, Some(schedule))
                    }
                };
                let mut timer = Timer::new(owner.service, owner.entity, &name, call, due_ms, 0);
                timer.schedule = schedule;
                timer.trace = owner.trace;
                Ok(TimerChange::Set(Box::new(timer)))
            }
        })
        .collect()
}

/// A timer's name: 1 to [`MAX_TIMER_NAME`] bytes, no control characters.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_TIMER_NAME {
        return Err(format!("a timer name must be 1 to {MAX_TIMER_NAME} bytes long, not {}", name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("the timer name {name:?} holds a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Call, CronSchedule, MissedFirings};

    fn config() -> InvokerConfig {
        InvokerConfig { max_events_per_command: 3, ..InvokerConfig::for_tests() }
    }

    const NOW: u64 = 1_893_456_000_000;

    fn owner() -> TimerOwner<'static> {
        TimerOwner { service: "orders", entity: "o-1", now_ms: NOW, trace: None }
    }

    fn set(name: &str, due: TimerDue) -> TimerRequest {
        let call = Call { service: "orders".into(), entity: "o-1".into(), command: "Expire".into(), payload: vec![] };
        TimerRequest::Set { name: name.into(), due, call }
    }

    fn due_of(change: &TimerChange) -> (u64, Option<&CronSchedule>) {
        match change {
            TimerChange::Set(timer) => (timer.due_ms, timer.schedule.as_ref()),
            TimerChange::Cancel(_) => panic!("a cancel"),
        }
    }

    #[test]
    fn timers_become_changes_owned_by_the_command_s_entity() {
        let cron = CronSchedule { expression: "0 9 * * * Europe/Paris".into(), missed: MissedFirings::Skip };
        let changes = timer_changes(
            &config(),
            &owner(),
            vec![
                set("a", TimerDue::AfterMs(900_000)),
                set("b", TimerDue::AtMs(NOW - 5)),
                set("c", TimerDue::Cron(cron.clone())),
            ],
        )
        .unwrap();
        assert_eq!(due_of(&changes[0]), (NOW + 900_000, None));
        assert_eq!(due_of(&changes[1]), (NOW, None), "a time past is due at once");
        assert_eq!(due_of(&changes[2]), (NOW + 8 * 3600 * 1000, Some(&cron)));
        let TimerChange::Set(timer) = &changes[0] else { unreachable!() };
        assert_eq!((timer.service.as_str(), timer.entity.as_str(), timer.hops), ("orders", "o-1", 0));
        let cancel = timer_changes(&config(), &owner(), vec![TimerRequest::Cancel("a".into())]).unwrap();
        assert_eq!(cancel, [TimerChange::Cancel("a".into())]);
    }

    #[test]
    fn bad_timers_are_refused_with_what_is_wrong() {
        let refused = |request: TimerRequest| match timer_changes(&config(), &owner(), vec![request]) {
            Err(InvokeError::InvalidTimer(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(refused(set("", TimerDue::AfterMs(1))).contains("1 to 128 bytes"));
        assert!(refused(set(&"n".repeat(129), TimerDue::AfterMs(1))).contains("1 to 128 bytes"));
        assert!(refused(set("a\nb", TimerDue::AfterMs(1))).contains("control character"));
        assert!(refused(TimerRequest::Cancel(String::new())).contains("1 to 128 bytes"));
        assert!(refused(set("far", TimerDue::AfterMs(11 * 366 * 86_400_000))).contains("ten years"));
        assert!(refused(set("far", TimerDue::AtMs(NOW + 11 * 366 * 86_400_000))).contains("ten years"));
        let cron = |expression: &str| {
            TimerDue::Cron(CronSchedule { expression: expression.into(), missed: MissedFirings::Once })
        };
        assert!(refused(set("c", cron("0 9 * *"))).contains("4 fields"));
        assert!(refused(set("c", cron("0 9 * * * Nowhere/City"))).contains("time zone"));
        let mut bad_target = set("t", TimerDue::AfterMs(1));
        if let TimerRequest::Set { call, .. } = &mut bad_target {
            call.service = "no such/service".into();
        }
        assert!(refused(bad_target).contains("invalid service"));
        let too_many = (0..4).map(|i| set(&i.to_string(), TimerDue::AfterMs(1))).collect();
        assert!(matches!(timer_changes(&config(), &owner(), too_many), Err(InvokeError::OutputLimit(_))));
    }
}
