//! The timer examples on a real host. The order saga (`orders` with
//! `inventory`, ordering a shopping cart's items) confirms an order paid
//! in time, keeping its reservation; releases the items of an order left
//! unpaid once its payment timer fires, then refuses its payment; and
//! rejects an order the stock cannot serve. The reminders compile a digest
//! at every slot of a seconds-granular cron schedule until the user
//! unsubscribes.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wasmstate_tests::Api;
use wasmstate_tests::guests::{INVENTORY, ORDER_WORKFLOW, REMINDERS, SHOPPING_CART};

use crate::{Running, start, start_with};

/// The longest the tests wait for a delivery or a firing.
const DEADLINE: Duration = Duration::from_secs(15);

/// A host running the saga's services, with 10 of P1 and 2 of P2 in stock.
async fn saga() -> Running {
    let t = start(&[]).await;
    for (service, component) in [("orders", ORDER_WORKFLOW), ("inventory", INVENTORY), ("shopping-cart", SHOPPING_CART)]
    {
        t.api.deploy(service, Path::new(component)).await;
    }
    for (product, quantity) in [("P1", 10), ("P2", 2)] {
        let restock = json!({"productId": product, "quantity": quantity});
        t.api.invoke("inventory", "main", "Restock", restock).await.expect(200);
    }
    t
}

async fn order(api: &Api, id: &str) -> Value {
    api.invoke("orders", id, "GetOrder", json!({})).await.expect(200)
}

async fn stock(api: &Api) -> Value {
    api.invoke("inventory", "main", "GetStock", json!({})).await.expect(200)
}

/// Waits until order `id` is in `status`, and answers it.
async fn reaches(api: &Api, id: &str, status: &str) -> Value {
    let reached = || async { order(api, id).await["status"] == status };
    assert!(api.eventually(DEADLINE, reached).await, "order {id} becomes {status}: {}", order(api, id).await);
    order(api, id).await
}

async fn timers_of(api: &Api, service: &str, entity: &str) -> Vec<Value> {
    let listed = api.get(&format!("/v1/services/{service}/entities/{entity}/timers")).await.expect(200);
    listed.as_array().expect("a list").clone()
}

/// The `type` of each event of `entity` of `service`.
async fn event_types(api: &Api, service: &str, entity: &str) -> Vec<String> {
    let events = api.events(service, entity, 1).await;
    events.iter().map(|event| event["payload"]["type"].as_str().expect("a tagged event").to_owned()).collect()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test]
async fn an_order_paid_in_time_is_confirmed_and_keeps_its_reservation() {
    let t = saga().await;
    let api = &t.api;
    for (product, name, quantity) in [("P1", "Pen", 3), ("P2", "Pad", 1)] {
        let item = json!({"productId": product, "name": name, "quantity": quantity});
        api.invoke("shopping-cart", "cart-1", "AddItem", item).await.expect(200);
    }
    let cart = api.invoke("shopping-cart", "cart-1", "GetCart", json!({})).await.expect(200);

    let place = json!({"items": cart["items"], "paymentTimeoutSecs": 6});
    let placed = api.invoke("orders", "o-paid", "Place", place).await.expect(200);
    assert_eq!((&placed["status"], &placed["items"]), (&json!("Reserving"), &cart["items"]));
    let pay_by_ms = placed["payByMs"].as_u64().expect("a payment deadline");
    let timers = timers_of(api, "orders", "o-paid").await;
    assert_eq!(timers.len(), 1, "{timers:?}");
    assert_eq!(
        (&timers[0]["name"], &timers[0]["command"]),
        (&json!("payment-timeout"), &json!("orders/o-paid/Expire"))
    );
    assert_eq!((timers[0]["next_due_ms"].as_u64(), &timers[0]["schedule"]), (Some(pay_by_ms), &Value::Null));

    reaches(api, "o-paid", "AwaitingPayment").await;
    let reserved = json!({"P1": {"available": 7, "reserved": 3}, "P2": {"available": 1, "reserved": 1}});
    assert_eq!(stock(api).await["stock"], reserved);

    let paid = api.invoke("orders", "o-paid", "Pay", json!({"paymentId": "pay-1"})).await.expect(200);
    assert_eq!((&paid["status"], &paid["paymentId"]), (&json!("Confirmed"), &json!("pay-1")));
    assert!(timers_of(api, "orders", "o-paid").await.is_empty(), "the payment cancelled the timer");

    // Past the payment window, the order stays confirmed and its items reserved.
    tokio::time::sleep(Duration::from_millis(pay_by_ms.saturating_sub(now_ms()) + 1500)).await;
    assert_eq!(order(api, "o-paid").await["status"], "Confirmed");
    let stock = stock(api).await;
    assert_eq!(stock["stock"], reserved);
    assert_eq!(stock["reservations"]["o-paid"].as_array().map(Vec::len), Some(2));
    assert_eq!(event_types(api, "orders", "o-paid").await, ["Placed", "ItemsReserved", "Paid"]);
}

#[tokio::test]
async fn an_unpaid_order_expires_and_its_items_are_released() {
    let t = saga().await;
    let api = &t.api;
    let place = json!({"items": [{"productId": "P1", "quantity": 4}], "paymentTimeoutSecs": 1});
    api.invoke("orders", "o-late", "Place", place).await.expect(200);

    reaches(api, "o-late", "Expired").await;
    // The compensation: the inventory released what it had reserved.
    let released = || async { event_types(api, "inventory", "main").await.contains(&"Released".to_owned()) };
    assert!(api.eventually(DEADLINE, released).await, "the items are released: {}", stock(api).await);
    let stock = stock(api).await;
    assert_eq!(stock["stock"]["P1"], json!({"available": 10, "reserved": 0}));
    assert_eq!(stock["reservations"], json!({}));
    assert_eq!(event_types(api, "inventory", "main").await, ["Restocked", "Restocked", "Reserved", "Released"]);
    assert!(timers_of(api, "orders", "o-late").await.is_empty());

    let (kind, message) = api.invoke("orders", "o-late", "Pay", json!({"paymentId": "pay-2"})).await.expect_error(400);
    assert_eq!(kind, "command_failed");
    assert!(message.contains("expired unpaid"), "{message}");
    assert_eq!(order(api, "o-late").await["status"], "Expired");
}

#[tokio::test]
async fn an_order_the_stock_cannot_serve_is_rejected() {
    let t = saga().await;
    let api = &t.api;
    let place = json!({"items": [{"productId": "P1", "quantity": 1}, {"productId": "P2", "quantity": 5}]});
    api.invoke("orders", "o-big", "Place", place).await.expect(200);
    let rejected = reaches(api, "o-big", "Rejected").await;
    assert_eq!(rejected["reason"], "Only 2 of item P2 available; order o-big asks for 5.");
    assert!(timers_of(api, "orders", "o-big").await.is_empty(), "the refusal cancelled the timer");
    assert_eq!(stock(api).await["reservations"], json!({}));
}

#[tokio::test]
async fn a_digest_is_compiled_at_every_slot_until_the_user_unsubscribes() {
    let t = start_with("reminders", REMINDERS, &[]).await;
    let api = &t.api;
    let subscribe = json!({"cron": "*/1 * * * * *", "timeZone": "Europe/Paris"});
    api.invoke("reminders", "ada", "Subscribe", subscribe).await.expect(200);
    let timers = timers_of(api, "reminders", "ada").await;
    assert_eq!(timers.len(), 1, "{timers:?}");
    assert_eq!((&timers[0]["name"], &timers[0]["command"]), (&json!("digest"), &json!("reminders/ada/CompileDigest")));
    assert_eq!(timers[0]["schedule"], json!({"cron": "*/1 * * * * * Europe/Paris", "missed": "once"}));
    for text in ["buy milk", "call Bob"] {
        api.invoke("reminders", "ada", "AddNote", json!({"text": text})).await.expect(200);
    }

    let state = || async { api.invoke("reminders", "ada", "Get", json!({})).await.expect(200) };
    let digested = || async {
        let state = state().await;
        state["digestsCompiled"].as_u64() >= Some(3) && state["pending"] == json!([])
    };
    assert!(api.eventually(DEADLINE, digested).await, "digests are compiled: {}", state().await);
    let digests = state().await["digests"].as_array().expect("digests").clone();
    let notes: Vec<&Value> = digests.iter().flat_map(|digest| digest["notes"].as_array().expect("notes")).collect();
    assert_eq!(notes, [&json!("buy milk"), &json!("call Bob")]);
    let times: Vec<u64> = digests.iter().map(|digest| digest["atMs"].as_u64().expect("a time")).collect();
    assert!(times.windows(2).all(|w| w[1] > w[0]), "one digest per slot, in order: {times:?}");

    let unsubscribed = api.invoke("reminders", "ada", "Unsubscribe", json!({})).await.expect(200);
    assert_eq!(unsubscribed["subscription"], Value::Null);
    assert!(timers_of(api, "reminders", "ada").await.is_empty());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(state().await["digestsCompiled"], unsubscribed["digestsCompiled"], "no digest after unsubscribing");
}
