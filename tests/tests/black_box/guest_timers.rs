//! Timers a guest sets and cancels with its effects (WIT 0.2.0): committed
//! with the command, fired once in effect under the timer's own key,
//! replaced by name, cancelled; a failing command sets none; an action's
//! belong to its routing key; cron schedules fire at every slot and, after
//! the host was down across several, obey their missed-firings policy.
//!
//! The `timers` test guest records each `Tick` it receives with the
//! command's time and key (`timer {id} {slot ms}`), so a test reads which
//! slots fired, when.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::{TIMER_ACTION, TIMERS};
use wasmstate_tests::{Api, Server};

use crate::{Running, start_with};

/// The ticks `entity` recorded: `{label, now_ms, key}` each.
async fn ticks(api: &Api, entity: &str) -> Vec<Value> {
    let state = api.invoke("timers", entity, "Get", json!({})).await.expect(200);
    state["ticks"].as_array().expect("ticks").clone()
}

async fn timers_of(api: &Api, service: &str, entity: &str) -> Vec<Value> {
    let listed = api.get(&format!("/v1/services/{service}/entities/{entity}/timers")).await.expect(200);
    listed.as_array().expect("a list").clone()
}

/// Waits until `entity` has `count` ticks, then a while longer, and
/// answers them: it has exactly that many.
async fn settles_at(api: &Api, entity: &str, count: usize) -> Vec<Value> {
    let reached = || async { ticks(api, entity).await.len() >= count };
    assert!(api.eventually(Duration::from_secs(10), reached).await, "{entity} reaches {count} ticks");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ticks = ticks(api, entity).await;
    assert_eq!(ticks.len(), count, "{entity} ticked more often: {ticks:?}");
    ticks
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The slot a tick's key names.
fn slot_of(tick: &Value) -> u64 {
    let key = tick["key"].as_str().expect("a firing runs under a key");
    let mut words = key.split(' ');
    assert_eq!(words.next(), Some("timer"), "{key}");
    words.nth(1).and_then(|slot| slot.parse().ok()).expect("the key names its slot")
}

#[tokio::test]
async fn a_timer_a_command_sets_fires_once_under_its_own_key() {
    let t = start_with("timers", TIMERS, &[]).await;
    let api = &t.api;
    api.invoke("timers", "a", "Schedule", json!({"name": "soon", "after_ms": 300})).await.expect(200);
    let fired = settles_at(api, "a", 1).await;
    assert_eq!(fired[0]["label"], "soon");
    assert!(slot_of(&fired[0]) <= fired[0]["now_ms"].as_u64().unwrap(), "{fired:?}");
    assert!(timers_of(api, "timers", "a").await.is_empty(), "a fired timer is gone");
    assert!(api.metric("wasmstate_timers_fired_total").await >= 1.0);

    // Another entity's command, with its own payload.
    let to_b = json!({"name": "to-b", "after_ms": 0, "entity": "b", "payload": {"label": "from a"}});
    api.invoke("timers", "a", "Schedule", to_b).await.expect(200);
    assert_eq!(settles_at(api, "b", 1).await[0]["label"], "from a");
    assert_eq!(ticks(api, "a").await.len(), 1);
}

/// A command learns the name its service was deployed under, so a timer
/// on the entity itself reaches it whatever that name is.
#[tokio::test]
async fn a_timer_on_the_entity_itself_reaches_its_service_as_deployed() {
    let t = start_with("alarms", TIMERS, &[]).await;
    let api = &t.api;
    api.invoke("alarms", "s", "Schedule", json!({"name": "own", "after_ms": 0})).await.expect(200);
    let listed = timers_of(api, "alarms", "s").await;
    assert!(listed.is_empty() || listed[0]["command"] == "alarms/s/Tick", "{listed:?}");
    let fired = || async {
        !api.invoke("alarms", "s", "Get", json!({})).await.expect(200)["ticks"].as_array().unwrap().is_empty()
    };
    assert!(api.eventually(Duration::from_secs(10), fired).await, "the timer fired on alarms/s");
}

#[tokio::test]
async fn a_name_set_again_replaces_its_timer_and_a_cancel_removes_it() {
    let t = start_with("timers", TIMERS, &[]).await;
    let api = &t.api;
    api.invoke("timers", "r", "Schedule", json!({"name": "t", "after_ms": 3_600_000})).await.expect(200);
    let listed = timers_of(api, "timers", "r").await;
    assert_eq!((listed.len(), &listed[0]["command"]), (1, &json!("timers/r/Tick")), "{listed:?}");
    api.invoke("timers", "r", "Schedule", json!({"name": "t", "after_ms": 200})).await.expect(200);
    assert_eq!(timers_of(api, "timers", "r").await.len(), 1, "replaced, not added");
    settles_at(api, "r", 1).await;

    api.invoke("timers", "r", "Schedule", json!({"name": "u", "after_ms": 1_000})).await.expect(200);
    api.invoke("timers", "r", "Cancel", json!({"name": "u"})).await.expect(200);
    assert!(timers_of(api, "timers", "r").await.is_empty());
    // Cancelling a name that is not set changes nothing.
    api.invoke("timers", "r", "Cancel", json!({"name": "never-set"})).await.expect(200);
    settles_at(api, "r", 1).await;
}

#[tokio::test]
async fn a_command_that_fails_or_sets_a_bad_timer_sets_none() {
    let t = start_with("timers", TIMERS, &[]).await;
    let api = &t.api;
    let failing = json!({"name": "t", "after_ms": 0, "fail": "not today"});
    let (kind, message) = api.invoke("timers", "f", "Schedule", failing).await.expect_error(400);
    assert_eq!((kind.as_str(), message.as_str()), ("command_failed", "not today"));
    for (timer, says) in [
        (json!({"name": "", "after_ms": 0}), "1 to 128 bytes"),
        (json!({"name": "c", "cron": "0 9 * *"}), "4 fields"),
        (json!({"name": "c", "cron": "0 9 * * * Nowhere/City"}), "time zone"),
        (json!({"name": "far", "after_ms": 400_000_000_000_u64}), "ten years"),
        (json!({"name": "t", "after_ms": 0, "service": "not a name"}), "invalid service"),
    ] {
        let (kind, message) = api.invoke("timers", "f", "Schedule", timer.clone()).await.expect_error(500);
        assert_eq!(kind, "invalid_timer", "{timer}: {message}");
        assert!(message.contains(says), "{timer}: {message}");
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(ticks(api, "f").await.is_empty(), "nothing fired");
    assert!(timers_of(api, "timers", "f").await.is_empty(), "nothing was set");
    assert!(api.events("timers", "f", 1).await.is_empty(), "nothing was committed");
}

#[tokio::test]
async fn an_action_s_timers_belong_to_its_routing_key() {
    let t = start_with("timers", TIMERS, &[]).await;
    let api = &t.api;
    api.deploy("scheduler", Path::new(TIMER_ACTION)).await;
    let schedule = |name: &str, after_ms: u64| {
        json!({"name": name, "after_ms": after_ms, "service": "timers", "entity": "x",
               "command": "Tick", "payload": {"label": name}})
    };
    api.invoke("scheduler", "k", "Schedule", schedule("later", 3_600_000)).await.expect(200);
    api.invoke("scheduler", "k", "Schedule", schedule("now", 0)).await.expect(200);
    let listed = timers_of(api, "scheduler", "k").await;
    assert!(listed.iter().any(|t| t["name"] == "later" && t["command"] == "timers/x/Tick"), "{listed:?}");
    assert_eq!(settles_at(api, "x", 1).await[0]["label"], "now");
    api.invoke("scheduler", "k", "Cancel", json!({"name": "later"})).await.expect(200);
    assert!(timers_of(api, "scheduler", "k").await.is_empty());
    assert!(timers_of(api, "scheduler", "other-key").await.is_empty());
}

#[tokio::test]
async fn a_timer_set_by_a_command_fires_after_a_restart() {
    let t = start_with("timers", TIMERS, &[]).await;
    t.api.invoke("timers", "p", "Schedule", json!({"name": "t", "after_ms": 1_500})).await.expect(200);
    let t = t.restart().await;
    assert_eq!(settles_at(&t.api, "p", 1).await[0]["label"], "t");
}

#[tokio::test]
async fn a_cron_timer_fires_at_every_slot_until_cancelled() {
    let t = start_with("timers", TIMERS, &[]).await;
    let api = &t.api;
    api.invoke("timers", "c", "Schedule", json!({"name": "every", "cron": "* * * * * *"})).await.expect(200);
    let listed = timers_of(api, "timers", "c").await;
    assert_eq!(listed[0]["schedule"], json!({"cron": "* * * * * *", "missed": "once"}), "{listed:?}");
    let three = || async { ticks(api, "c").await.len() >= 3 };
    assert!(api.eventually(Duration::from_secs(10), three).await, "three slots fire");
    api.invoke("timers", "c", "Cancel", json!({"name": "every"})).await.expect(200);
    let fired = ticks(api, "c").await;
    let slots: Vec<u64> = fired.iter().map(slot_of).collect();
    assert!(slots.iter().all(|slot| slot % 1000 == 0), "slots are whole seconds: {slots:?}");
    assert!(slots.windows(2).all(|w| w[1] == w[0] + 1000), "one firing per slot, in order: {slots:?}");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(ticks(api, "c").await.len() <= fired.len() + 1, "a cancelled schedule stops");
    assert!(timers_of(api, "timers", "c").await.is_empty());
}

/// Three schedules every 2 s, one per policy, and the host down for 9 s:
/// `all` fires each missed slot, `once` the latest of them, `skip` none
/// but one still within its grace (a second).
#[tokio::test]
async fn missed_cron_slots_obey_each_policy_after_the_host_was_down() {
    let Running { dir, server, api } = start_with("timers", TIMERS, &[]).await;
    for policy in ["skip", "once", "all"] {
        let schedule = json!({"name": "cron", "cron": "*/2 * * * * *", "missed": policy});
        api.invoke("timers", policy, "Schedule", schedule).await.expect(200);
    }
    let first = || async {
        let mut all = true;
        for policy in ["skip", "once", "all"] {
            all &= !ticks(&api, policy).await.is_empty();
        }
        all
    };
    assert!(api.eventually(Duration::from_secs(10), first).await, "each schedule fires once before the stop");
    server.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let restarted_ms = now_ms();
    let server = Server::start(dir.path(), &[]).await.expect("the host starts again");
    let api = Api::new(server.base());
    let acted = || async {
        let mut all = true;
        for policy in ["skip", "once", "all"] {
            let ticks = ticks(&api, policy).await;
            all &= ticks.last().is_some_and(|t| t["now_ms"].as_u64().unwrap() > restarted_ms);
        }
        all
    };
    assert!(api.eventually(Duration::from_secs(15), acted).await, "the schedules fire again");
    tokio::time::sleep(Duration::from_secs(3)).await;

    for policy in ["skip", "once", "all"] {
        let fired = ticks(&api, policy).await;
        let slots: Vec<u64> = fired.iter().map(slot_of).collect();
        assert!(slots.windows(2).all(|w| w[1] > w[0]), "{policy}: each slot once, in order: {slots:?}");
        // The gap the downtime left: the first two slots further apart
        // than one period.
        let gap = slots.windows(2).position(|w| w[1] - w[0] > 2000);
        let late = |tick: &Value| tick["now_ms"].as_u64().unwrap() - slot_of(tick);
        match policy {
            "all" => assert_eq!(gap, None, "all: every missed slot fired: {slots:?}"),
            _ => {
                let gap = gap.unwrap_or_else(|| panic!("{policy}: missed slots were passed over: {slots:?}"));
                assert!(slots[gap + 1] - slots[gap] >= 3 * 2000, "{policy}: several slots missed: {slots:?}");
                let after = &fired[gap + 1];
                if policy == "skip" {
                    assert!(late(after) <= 1000 + 500, "skip: only a slot within its grace fires: {fired:?}");
                } else {
                    // Once: the latest slot at the time it fired, however late.
                    assert!(late(after) < 2000 + 200, "once: the latest missed slot fires: {fired:?}");
                }
                let rest = &slots[gap + 1..];
                assert!(rest.windows(2).all(|w| w[1] - w[0] == 2000), "{policy}: then every slot: {slots:?}");
            }
        }
    }
    // Skip and once passed several slots over each; the metric counts them.
    assert!(api.metric("wasmstate_timer_slots_passed_over_total").await >= 4.0);
    // The `all` schedule fired its missed slots late, one after another.
    let all = ticks(&api, "all").await;
    assert!(all.iter().any(|t| t["now_ms"].as_u64().unwrap() - slot_of(t) > 3000), "{all:?}");
}
