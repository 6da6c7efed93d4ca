//! Digests through the test kit: its clock fires the schedule's slots.

use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_sdk::testkit::{ScheduledCall, TestKit};
use wasmstate_sdk::{Failure, FailureCode};

use super::*;

/// 2030-01-01T00:00:00Z, a Tuesday.
const T0: u64 = 1_893_456_000_000;
const HOUR: u64 = 3600 * 1000;
const DAY: Duration = Duration::from_secs(24 * 3600);

fn kit() -> TestKit<Reminders> {
    let mut kit = TestKit::<Reminders>::new("ada").with_service("reminders");
    kit.set_time_ms(T0);
    kit
}

fn subscribe(cron: &str, time_zone: Option<&str>) -> RemindersCommand {
    RemindersCommand::Subscribe(Subscription { cron: cron.to_owned(), time_zone: time_zone.map(str::to_owned) })
}

fn note(kit: &mut TestKit<Reminders>, text: &str) {
    kit.send(&RemindersCommand::AddNote { text: text.to_owned() }).unwrap();
}

fn rejection(result: Result<Value, Failure>) -> String {
    let failure = result.unwrap_err();
    assert_eq!(failure.code(), FailureCode::Rejected, "{failure}");
    failure.message().to_owned()
}

#[test]
fn a_weekday_digest_in_the_user_s_time_zone_gathers_the_notes_since_the_last() {
    let mut kit = kit();
    let state = kit.send(&subscribe("0 8 * * MON-FRI", Some("Europe/Paris"))).unwrap();
    assert_eq!(state["subscription"], json!({"cron": "0 8 * * MON-FRI", "timeZone": "Europe/Paris"}));
    let timers = kit.timers();
    assert_eq!(timers[0].name, DIGEST_TIMER);
    assert_eq!(timers[0].cron, Some(Cron::new("0 8 * * MON-FRI Europe/Paris").missed(Missed::Once)));
    // 8:00 in Paris in winter is 7:00 UTC.
    assert_eq!(timers[0].due_ms, T0 + 7 * HOUR);
    assert_eq!(timers[0].call, ScheduledCall::new("reminders", "ada", "CompileDigest", Value::Null));

    note(&mut kit, "buy milk");
    note(&mut kit, "call Bob");
    let fired = kit.advance(DAY);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].key, format!("timer 0000000000000001 {}", T0 + 7 * HOUR));
    let state = kit.state();
    assert_eq!(state.digests, [Digest { at_ms: T0 + 7 * HOUR, notes: vec!["buy milk".into(), "call Bob".into()] }]);
    assert!(state.pending.is_empty());

    // Wednesday to Friday fire, the weekend does not; the notes go to the
    // next digest only.
    note(&mut kit, "water plants");
    let fired = kit.advance(6 * DAY);
    let days: Vec<u64> = fired.iter().map(|firing| (firing.due_ms - T0 - 7 * HOUR) / (24 * HOUR)).collect();
    assert_eq!(days, [1, 2, 3, 6]);
    let notes: Vec<usize> = kit.state().digests.iter().map(|digest| digest.notes.len()).collect();
    assert_eq!(notes, [2, 1, 0, 0, 0]);
    assert_eq!(kit.state().digests_compiled, 5);
}

#[test]
fn unsubscribing_stops_the_digests() {
    let mut kit = kit();
    kit.send(&subscribe("*/10 * * * * *", None)).unwrap();
    assert_eq!(kit.advance(Duration::from_secs(30)).len(), 3);
    let state = kit.send(&RemindersCommand::Unsubscribe).unwrap();
    assert_eq!((state["subscription"].clone(), state["digestsCompiled"].clone()), (Value::Null, json!(3)));
    assert!(kit.timers().is_empty());
    assert!(kit.advance(Duration::from_secs(60)).is_empty());

    // A firing that raced the unsubscribe compiles nothing; nor does a
    // second unsubscribe change anything.
    kit.send(&RemindersCommand::CompileDigest).unwrap();
    kit.send(&RemindersCommand::Unsubscribe).unwrap();
    assert_eq!((kit.state().digests_compiled, kit.seq()), (3, 5));
}

#[test]
fn subscribing_again_replaces_the_schedule() {
    let mut kit = kit();
    kit.send(&subscribe("0 8 * * *", None)).unwrap();
    let state = kit.send(&subscribe(" 0   9 * * * ", Some("America/New_York"))).unwrap();
    assert_eq!(state["subscription"], json!({"cron": "0 9 * * *", "timeZone": "America/New_York"}));
    let timers = kit.timers();
    assert_eq!(timers.len(), 1);
    // 9:00 in New York in winter is 14:00 UTC.
    assert_eq!(timers[0].due_ms, T0 + 14 * HOUR);
}

#[test]
fn the_state_keeps_the_latest_digests() {
    let mut kit = kit();
    kit.send(&subscribe("* * * * *", None)).unwrap();
    assert_eq!(kit.advance(Duration::from_secs(15 * 60)).len(), 15);
    let state = kit.state();
    assert_eq!((state.digests.len(), state.digests_compiled), (KEPT_DIGESTS, 15));
    assert_eq!(state.digests[0].at_ms, T0 + 6 * 60 * 1000);
}

#[test]
fn refuses_bad_notes_and_schedules() {
    let mut kit = kit();
    assert_eq!(
        rejection(kit.send(&RemindersCommand::AddNote { text: " ".into() })),
        "A note has 1 to 1000 bytes; this one has 1."
    );
    assert!(rejection(kit.send(&RemindersCommand::AddNote { text: "x".repeat(1001) })).contains("this one has 1001"));
    assert_eq!(
        rejection(kit.send(&subscribe("0 8 * *", None))),
        "cron takes five fields (minute hour day-of-month month day-of-week), or six with seconds first; \
         \"0 8 * *\" has 4."
    );
    assert!(rejection(kit.send(&subscribe("0 0 8 * * * *", None))).ends_with("has 7."));
    for zone in ["", "Europe/ Paris"] {
        let refused = rejection(kit.send(&subscribe("0 8 * * *", Some(zone))));
        assert!(refused.starts_with(&format!("timeZone {zone:?} is no IANA time zone name")), "{refused}");
    }
    let typo = kit.handle("Subscribe", json!({"cron": "0 8 * * *", "tz": "Europe/Paris"})).unwrap_err();
    assert_eq!(typo.code(), FailureCode::InvalidPayload);
    assert!(kit.events().is_empty() && kit.timers().is_empty());
}

#[test]
fn snapshots_and_stored_events_fold_alike() {
    let mut kit = kit();
    kit.send(&subscribe("0 8 * * *", Some("Europe/Paris"))).unwrap();
    note(&mut kit, "a");
    kit.advance(DAY);
    let events: Vec<Value> = kit.events_json().into_iter().map(|(_, event)| event).collect();
    assert_eq!(events[0], json!({"type": "Subscribed", "cron": "0 8 * * *", "timeZone": "Europe/Paris"}));
    let replayed = TestKit::<Reminders>::new("ada").with_snapshot_every(1).with_events(events);
    assert_eq!(replayed.state(), kit.state());
}
