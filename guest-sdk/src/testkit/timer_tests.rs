//! Tests of timers: the contexts' timer methods, the cores' effects, and
//! the kits' book of timers, clock and firings.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ActionTestKit, Firing, Outcome, PendingTimer, ScheduledCall, TestKit, TimerChangeCall, ValueTestKit};
use crate::{
    ActionContext, Command, Commands, Context, Cron, EventSourced, Failure, KeyValue, Missed, Reply, Stateless,
    SubscribedEvent, TimerCall, TimerChange, TimerDue, ValueContext, When, raw,
};

/// 2030-01-01T00:00:00Z, a Tuesday.
const T0: u64 = 1_893_456_000_000;

/// An alarm clock: its commands set, cancel and ring timers.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Alarm {
    /// (name, time, key) of every ring.
    rings: Vec<(String, u64, Option<String>)>,
}

#[derive(Serialize, Deserialize)]
enum AlarmCommand {
    Set { name: String, after_ms: u64 },
    SetAt { name: String, at_ms: u64 },
    Every { name: String, cron: String },
    Remote { name: String, entity: String, after_ms: u64 },
    Cancel { name: String },
    SetAndCancel { name: String },
    Fail { name: String },
    Ring { name: String },
    Snooze { name: String, after_ms: u64, times: u32 },
}

impl Commands for AlarmCommand {
    const SERVICE: &'static str = "alarms";
}

fn ring(name: &str) -> AlarmCommand {
    AlarmCommand::Ring { name: name.to_owned() }
}

impl EventSourced for Alarm {
    type Command = AlarmCommand;
    type Event = (String, u64, Option<String>);

    fn apply(&mut self, event: &Self::Event) {
        self.rings.push(event.clone());
    }

    fn handle(command: AlarmCommand, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        match command {
            AlarmCommand::Set { name, after_ms } => {
                ctx.schedule_self(&name, When::After(Duration::from_millis(after_ms)), &ring(&name));
            }
            AlarmCommand::SetAt { name, at_ms } => {
                let call = TimerCall::to(ctx.entity_id(), &ring(&name));
                ctx.schedule(name, UNIX_EPOCH + Duration::from_millis(at_ms), call);
            }
            AlarmCommand::Every { name, cron } => ctx.schedule_self(&name, Cron::new(cron), &ring(&name)),
            AlarmCommand::Remote { name, entity, after_ms } => {
                let call = TimerCall::new("alarms", entity, "Ring").json(&json!({ "name": name }));
                ctx.schedule(name, Duration::from_millis(after_ms), call);
            }
            AlarmCommand::Cancel { name } => ctx.cancel(name),
            AlarmCommand::SetAndCancel { name } => {
                ctx.schedule_self(&name, Duration::from_secs(1), &ring(&name));
                ctx.cancel(&name);
                assert_eq!(ctx.timers().len(), 2);
            }
            AlarmCommand::Fail { name } => {
                ctx.schedule_self(&name, Duration::from_secs(1), &ring(&name));
                return Err(Failure::rejected("asked to fail"));
            }
            AlarmCommand::Ring { name } => {
                let metadata = ctx.metadata();
                ctx.emit((name, metadata.now_ms(), metadata.idempotency_key().map(str::to_owned)));
            }
            AlarmCommand::Snooze { times: 0, .. } => {}
            AlarmCommand::Snooze { name, after_ms, times } => {
                let again = AlarmCommand::Snooze { name: name.clone(), after_ms, times: times - 1 };
                ctx.schedule_self(name, Duration::from_millis(after_ms), &again);
            }
        }
        Ok(Reply::json(&ctx.state().rings.len()))
    }
}

fn kit() -> TestKit<Alarm> {
    let mut kit = TestKit::<Alarm>::new("a-1");
    kit.set_time_ms(T0);
    kit
}

fn set(name: &str, after_ms: u64) -> AlarmCommand {
    AlarmCommand::Set { name: name.to_owned(), after_ms }
}

fn pending(name: &str, due_ms: u64, entity: &str) -> PendingTimer {
    PendingTimer {
        name: name.to_owned(),
        due_ms,
        cron: None,
        call: ScheduledCall::new("alarms", entity, "Ring", json!({ "name": name })),
    }
}

#[test]
fn contexts_record_timer_changes_in_order() {
    let effects =
        raw::event_sourced::handle::<Alarm>(None, [], Command::new("SetAndCancel", br#"{"name":"x"}"#, "a-1")).unwrap();
    let call = TimerCall::new("alarms", "a-1", "Ring").payload(r#"{"name":"x"}"#);
    assert_eq!(
        effects.timers,
        [TimerChange::Set { name: "x".into(), due: TimerDue::AfterMs(1000), call }, TimerChange::Cancel("x".into())]
    );
    let at = raw::event_sourced::handle::<Alarm>(None, [], Command::new("SetAt", br#"{"name":"y","at_ms":5}"#, "a-1"));
    assert!(matches!(&at.unwrap().timers[..], [TimerChange::Set { due: TimerDue::AtMs(5), .. }]));
    let failed = raw::event_sourced::handle::<Alarm>(None, [], Command::new("Fail", br#"{"name":"z"}"#, "a-1"));
    assert_eq!(failed.unwrap_err(), Failure::rejected("asked to fail"));
}

#[test]
fn the_kit_keeps_pending_timers_as_the_host_would() {
    let mut kit = kit();
    kit.send(&set("a", 5_000)).unwrap();
    kit.send(&set("b", 1_000)).unwrap();
    assert_eq!(kit.timers(), [pending("b", T0 + 1_000, "a-1"), pending("a", T0 + 5_000, "a-1")]);
    assert_eq!(
        kit.timer_changes(),
        [TimerChangeCall::Set {
            name: "b".into(),
            due: TimerDue::AfterMs(1_000),
            call: ScheduledCall::new("alarms", "a-1", "Ring", json!({"name": "b"})),
        }]
    );

    // Setting a name again replaces it; a cancel removes it.
    kit.set_time_ms(T0 + 100);
    kit.send(&set("a", 100)).unwrap();
    kit.send(&AlarmCommand::Cancel { name: "b".into() }).unwrap();
    assert_eq!(kit.timer_changes(), [TimerChangeCall::Cancel("b".into())]);
    assert_eq!(kit.timers(), [pending("a", T0 + 200, "a-1")]);

    // A set then a cancel in one command leaves nothing; a failed command changes nothing.
    kit.send(&AlarmCommand::SetAndCancel { name: "c".into() }).unwrap();
    assert_eq!(kit.timer_changes().len(), 2);
    assert!(kit.send(&AlarmCommand::Fail { name: "d".into() }).is_err());
    assert_eq!(kit.timer_changes(), []);
    kit.send(&AlarmCommand::Cancel { name: "never-set".into() }).unwrap();
    assert_eq!(kit.timers(), [pending("a", T0 + 200, "a-1")]);
}

#[test]
fn advance_fires_due_timers_in_order_under_the_hosts_key() {
    let mut kit = kit();
    kit.send(&set("late", 3_000)).unwrap();
    kit.send(&set("early", 1_000)).unwrap();
    kit.send(&AlarmCommand::SetAt { name: "past".into(), at_ms: T0 - 10 }).unwrap();
    assert_eq!(kit.advance(Duration::from_millis(999)).iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["past"]);
    assert_eq!(kit.now_ms(), T0 + 999);

    let fired = kit.advance(Duration::from_secs(5));
    assert_eq!(
        fired,
        [
            Firing {
                name: "early".into(),
                due_ms: T0 + 1_000,
                key: format!("timer {:016x} {}", 2, T0 + 1_000),
                call: ScheduledCall::new("alarms", "a-1", "Ring", json!({"name": "early"})),
                answer: Some(Ok(Outcome {
                    reply: Some(json!(2)),
                    forward: None,
                    side_effects: vec![],
                    webhooks: vec![]
                })),
            },
            Firing {
                name: "late".into(),
                due_ms: T0 + 3_000,
                key: format!("timer 0000000000000001 {}", T0 + 3_000),
                call: ScheduledCall::new("alarms", "a-1", "Ring", json!({"name": "late"})),
                answer: Some(Ok(Outcome {
                    reply: Some(json!(3)),
                    forward: None,
                    side_effects: vec![],
                    webhooks: vec![]
                })),
            },
        ]
    );
    // Each firing ran at its due time, under its key; the clock ends where it was moved to.
    let rings = kit.state().rings;
    // The timer set for a time past was due at once, when it was set.
    assert_eq!(rings[0], ("past".into(), T0, Some(format!("timer 0000000000000003 {T0}"))));
    assert_eq!(rings[1], ("early".into(), T0 + 1_000, Some(format!("timer 0000000000000002 {}", T0 + 1_000))));
    assert_eq!(rings[2].1, T0 + 3_000);
    assert_eq!(kit.now_ms(), T0 + 5_999);
    assert!(kit.timers().is_empty());
    assert!(kit.advance(Duration::from_secs(60)).is_empty());
}

#[test]
fn timers_targeting_other_entities_come_due_but_do_not_run() {
    let mut kit = kit();
    kit.send(&AlarmCommand::Remote { name: "r".into(), entity: "a-2".into(), after_ms: 10 }).unwrap();
    let fired = kit.advance(Duration::from_millis(10));
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0].call.entity_id.as_str(), &fired[0].answer), ("a-2", &None));
    assert!(kit.state().rings.is_empty() && kit.timers().is_empty());

    // Naming the kit's service: the entity's own timers target it, whatever
    // name its command enum gives, and run; a call of the kit's entity id on
    // another service does not.
    let mut kit = kit_of_service("clocks");
    kit.send(&set("s", 10)).unwrap();
    let fired = kit.advance(Duration::from_millis(10));
    assert_eq!((fired[0].call.service.as_str(), fired[0].answer.is_some()), ("clocks", true));
    kit.send(&AlarmCommand::Remote { name: "r".into(), entity: "a-1".into(), after_ms: 10 }).unwrap();
    let fired = kit.advance(Duration::from_millis(10));
    assert_eq!((fired[0].call.service.as_str(), &fired[0].answer), ("alarms", &None));
}

fn kit_of_service(service: &str) -> TestKit<Alarm> {
    let mut kit = TestKit::<Alarm>::new("a-1").with_service(service);
    kit.set_time_ms(T0);
    kit
}

#[test]
fn cron_timers_fire_every_slot_and_move_on() {
    let mut kit = kit();
    kit.send(&AlarmCommand::Every { name: "tick".into(), cron: "*/10 * * * * *".into() }).unwrap();
    assert_eq!(kit.timers()[0].due_ms, T0 + 10_000);
    assert_eq!(kit.timers()[0].cron, Some(Cron::new("*/10 * * * * *")));
    let fired = kit.advance(Duration::from_secs(35));
    let slots: Vec<_> = fired.iter().map(|f| (f.due_ms, f.key.clone())).collect();
    let slot = |s: u64| (T0 + s * 1000, format!("timer 0000000000000001 {}", T0 + s * 1000));
    assert_eq!(slots, [slot(10), slot(20), slot(30)]);
    assert_eq!(kit.timers()[0].due_ms, T0 + 40_000);
    kit.send(&AlarmCommand::Cancel { name: "tick".into() }).unwrap();
    assert!(kit.advance(Duration::from_secs(60)).is_empty());

    // Slots follow the schedule's time zone: 09:00 in Paris is 08:00 UTC in winter.
    kit.send(&AlarmCommand::Every { name: "daily".into(), cron: "0 9 * * * Europe/Paris".into() }).unwrap();
    assert_eq!(kit.timers()[0].due_ms, T0 + 8 * 3_600_000);
}

#[test]
#[should_panic(expected = "timer \"bad\" has a cron schedule \"61 * * * *\" does not parse")]
fn an_unreadable_cron_panics_as_the_host_refuses_it() {
    kit().send(&AlarmCommand::Every { name: "bad".into(), cron: "61 * * * *".into() }).unwrap();
}

#[test]
fn the_kit_refuses_the_timers_the_host_refuses() {
    let call = || TimerCall::new("alarms", "a-1", "Ring");
    let set = |name: &str, when: When, call: TimerCall| super::timers::due_ms(&TimerChange::set(name, when, call), T0);
    let after = |ms: u64| When::After(Duration::from_millis(ms));
    let ten_years = 10 * 366 * 24 * 3600 * 1000;
    assert_eq!(set("t", after(ten_years), call()), Ok(Some(T0 + ten_years)));
    assert_eq!(set("t", When::At(UNIX_EPOCH + Duration::from_millis(T0 - 1)), call()), Ok(Some(T0)));
    assert_eq!(super::timers::due_ms(&TimerChange::Cancel("t".into()), T0), Ok(None));
    for (name, when, call, says) in [
        ("", after(0), call(), "a timer name must be 1 to 128 bytes long, not 0"),
        (&*"n".repeat(129), after(0), call(), "not 129"),
        ("a\nb", after(0), call(), "holds a control character"),
        ("t", after(ten_years + 1), call(), "timer \"t\" is due more than ten years ahead"),
        ("t", When::At(UNIX_EPOCH + Duration::from_millis(T0 + ten_years + 1)), call(), "ten years"),
        ("t", after(0), TimerCall::new("not a name", "e", "C"), "names an invalid service \"not a name\""),
        ("t", after(0), TimerCall::new("s", "a/b", "C"), "names an invalid entity \"a/b\""),
        ("t", after(0), TimerCall::new("s", "", "C"), "names an invalid entity"),
        ("t", after(0), TimerCall::new("s", "e", ""), "names no command"),
        ("t", When::Cron(Cron::new("0 9 * * * Nowhere/City")), call(), "which is no time zone"),
    ] {
        let refused = set(name, when, call).unwrap_err();
        assert!(refused.contains(says), "{refused}");
    }
    let cancel = super::timers::due_ms(&TimerChange::Cancel(String::new()), T0).unwrap_err();
    assert!(cancel.contains("1 to 128 bytes"), "{cancel}");
}

#[test]
fn a_refused_timer_commits_nothing_before_the_kit_panics() {
    let mut kit = kit();
    kit.send(&set("kept", 10)).unwrap();
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        kit.send(&AlarmCommand::Set { name: String::new(), after_ms: 1 }).unwrap();
    }));
    let message = *refused.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("the host would fail the command (invalid_timer) and commit nothing"), "{message}");
    assert_eq!(kit.timers(), [pending("kept", T0 + 10, "a-1")]);
    assert_eq!(kit.seq(), 0);
}

#[test]
fn firings_set_timers_that_fire_in_the_same_advance() {
    let mut kit = kit();
    kit.send(&AlarmCommand::Snooze { name: "snooze".into(), after_ms: 300, times: 3 }).unwrap();
    kit.send(&set("between", 500)).unwrap();
    let fired: Vec<_> = kit.advance(Duration::from_secs(1)).into_iter().map(|f| (f.name, f.due_ms - T0)).collect();
    let expected = [("snooze", 300), ("between", 500), ("snooze", 600), ("snooze", 900)];
    assert_eq!(fired, expected.map(|(name, at)| (name.to_owned(), at)));
    assert_eq!(kit.timer_changes(), []);
    assert!(kit.timers().is_empty());
}

#[test]
#[should_panic(expected = "more than 10000 timers fired in one advance: timer \"again\" keeps coming due")]
fn a_timer_that_keeps_setting_itself_at_once_panics() {
    let mut kit = kit();
    kit.send(&AlarmCommand::Snooze { name: "again".into(), after_ms: 0, times: u32::MAX }).unwrap();
    kit.advance(Duration::ZERO);
}

#[test]
fn without_a_fixed_time_advance_starts_from_the_real_time() {
    let mut kit = TestKit::<Alarm>::new("a-1");
    let before = kit.now_ms();
    kit.send(&set("soon", 50)).unwrap();
    let due = kit.timers()[0].due_ms;
    assert!(due >= before + 50);
    assert_eq!(kit.advance(Duration::from_secs(3600)).len(), 1);
    assert_eq!(kit.state().rings[0].1, due);
}

/// A value entity that remembers when its reminder rang.
#[derive(Default, Serialize, Deserialize)]
struct Reminder {
    rang_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
enum ReminderCommand {
    Remind { in_ms: u64, missed: Option<String> },
    Rang,
}

impl Commands for ReminderCommand {
    const SERVICE: &'static str = "reminders";
}

impl KeyValue for Reminder {
    type Command = ReminderCommand;

    fn handle(command: ReminderCommand, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
        match command {
            ReminderCommand::Remind { in_ms, missed: None } => {
                ctx.schedule_self("remind", Duration::from_millis(in_ms), &ReminderCommand::Rang);
            }
            ReminderCommand::Remind { missed: Some(_), .. } => {
                ctx.schedule_self("remind", Cron::new("0 * * * *").missed(Missed::Skip), &ReminderCommand::Rang);
                return Err(Failure::rejected("no cron today"));
            }
            ReminderCommand::Rang => ctx.update(Reminder { rang_at: Some(ctx.metadata().now_ms()) }),
        }
        Ok(Reply::empty())
    }
}

#[test]
fn the_value_kit_keeps_and_fires_timers() {
    let mut kit = ValueTestKit::<Reminder>::new("r-1");
    kit.set_time_ms(T0);
    kit.send(&ReminderCommand::Remind { in_ms: 60_000, missed: None }).unwrap();
    assert!(kit.send(&ReminderCommand::Remind { in_ms: 0, missed: Some("skip".into()) }).is_err());
    assert_eq!(kit.timers()[0].call, ScheduledCall::new("reminders", "r-1", "Rang", serde_json::Value::Null));
    let fired = kit.advance(Duration::from_secs(60));
    assert_eq!(
        fired[0].answer,
        Some(Ok(Outcome { reply: Some(json!({})), forward: None, side_effects: vec![], webhooks: vec![] }))
    );
    assert_eq!(kit.state().unwrap().rang_at, Some(T0 + 60_000));
}

/// An action that sets timers on its routing key.
#[derive(Default)]
struct Relay;

#[derive(Serialize, Deserialize)]
enum RelayCommand {
    Later { to: String },
    Deliver { to: String },
}

impl Stateless for Relay {
    type Command = RelayCommand;

    fn handle(command: RelayCommand, ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
        match command {
            RelayCommand::Later { to } => {
                let call = TimerCall::call("relay", ctx.entity_id(), &RelayCommand::Deliver { to });
                ctx.schedule("later", Duration::from_secs(1), call);
                Ok(Reply::empty())
            }
            RelayCommand::Deliver { to } => {
                Ok(Reply::json(&json!({ "delivered": to, "key": ctx.metadata().idempotency_key() })))
            }
        }
    }

    fn on_event(_event: SubscribedEvent<'_>, ctx: &mut ActionContext<'_>) -> Result<(), Failure> {
        ctx.cancel("later");
        Ok(())
    }
}

#[test]
fn the_action_kit_keeps_its_routing_keys_timers() {
    let mut kit = ActionTestKit::<Relay>::new().with_entity_id("k");
    kit.set_time_ms(T0);
    kit.send(&RelayCommand::Later { to: "x".into() }).unwrap();
    assert_eq!(kit.timers()[0].call, ScheduledCall::new("relay", "k", "Deliver", json!({"to": "x"})));
    let fired = kit.advance(Duration::from_secs(1));
    let reply = json!({"delivered": "x", "key": format!("timer 0000000000000001 {}", T0 + 1000)});
    assert_eq!(
        fired[0].answer,
        Some(Ok(Outcome { reply: Some(reply), forward: None, side_effects: vec![], webhooks: vec![] }))
    );
}

#[test]
#[should_panic(expected = "on_event of event 3 of src/e-1 changed timer \"later\": an event delivery sets")]
fn on_event_may_not_change_timers() {
    let _ = ActionTestKit::<Relay>::new().on_event("src", "e-1", 3, json!({}));
}
