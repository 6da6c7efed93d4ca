//! The saga through the test kit: the inventory's answers are sent by
//! hand, the payment timer fires as the kit's clock moves on.

use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_sdk::testkit::{Outcome, ScheduledCall, SideEffectCall, TestKit};
use wasmstate_sdk::{Failure, FailureCode};

use super::*;

/// 2030-01-01T00:00:00Z.
const T0: u64 = 1_893_456_000_000;

fn line(product_id: &str, name: &str, quantity: u32) -> OrderLine {
    OrderLine { product_id: product_id.to_owned(), name: name.to_owned(), quantity }
}

fn place(items: Vec<OrderLine>, payment_timeout_secs: Option<u64>) -> OrderCommand {
    OrderCommand::Place { items, payment_timeout_secs }
}

fn pay(payment_id: &str) -> OrderCommand {
    OrderCommand::Pay { payment_id: payment_id.to_owned() }
}

/// A kit whose clock reads `T0`.
fn kit(order_id: &str) -> TestKit<Order> {
    let mut kit = TestKit::<Order>::new(order_id).with_service("orders");
    kit.set_time_ms(T0);
    kit
}

/// A kit holding order `o-1`, placed at `T0` with a payment window of
/// `timeout` seconds and its items reserved.
fn reserved(timeout: Option<u64>) -> TestKit<Order> {
    let mut kit = kit("o-1");
    kit.send(&place(vec![line("P1", "Pen", 2)], timeout)).unwrap();
    kit.send(&OrderCommand::ItemsReserved).unwrap();
    assert_eq!(kit.state().status, Status::AwaitingPayment);
    kit
}

fn inventory(command: &str, payload: Value) -> Vec<SideEffectCall> {
    vec![SideEffectCall::new("inventory", "main", command, payload)]
}

fn rejection(result: Result<Value, Failure>) -> String {
    let failure = result.unwrap_err();
    assert_eq!(failure.code(), FailureCode::Rejected, "{failure}");
    failure.message().to_owned()
}

#[test]
fn placing_reserves_the_items_and_sets_the_payment_timer() {
    let mut kit = kit("o-1");
    let placed = kit.send_outcome(&place(vec![line("P1", "Pen", 2), line("P2", "", 1)], None)).unwrap();
    let reserve = json!({"orderId": "o-1", "items": [
        {"productId": "P1", "quantity": 2}, {"productId": "P2", "quantity": 1},
    ]});
    assert_eq!(placed.side_effects, inventory("Reserve", reserve));
    assert_eq!(
        placed.reply,
        Some(json!({
            "status": "Reserving",
            "items": [{"productId": "P1", "name": "Pen", "quantity": 2}, {"productId": "P2", "quantity": 1}],
            "payByMs": T0 + 15 * 60 * 1000,
        }))
    );
    let timers = kit.timers();
    assert_eq!((timers.len(), timers[0].name.as_str(), timers[0].due_ms), (1, PAYMENT_TIMER, T0 + 900_000));
    assert_eq!(timers[0].call, ScheduledCall::new("orders", "o-1", "Expire", Value::Null));

    assert_eq!(kit.send(&OrderCommand::ItemsReserved).unwrap()["status"], "AwaitingPayment");
    // The inventory's answer delivered again changes nothing.
    assert_eq!(kit.send_outcome(&OrderCommand::ItemsReserved).unwrap().side_effects, []);
    assert_eq!(kit.seq(), 2);
}

#[test]
fn paid_in_time_the_order_is_confirmed_and_its_timer_cancelled() {
    let mut kit = reserved(None);
    let paid = kit.send_outcome(&pay("pay-1")).unwrap();
    assert_eq!(paid.side_effects, [], "the items stay reserved");
    assert_eq!(paid.reply.unwrap()["status"], "Confirmed");
    assert!(kit.timers().is_empty());
    assert!(kit.advance(Duration::from_secs(3600)).is_empty());

    // Paying again with the same payment changes nothing; another is refused.
    assert_eq!(kit.send(&pay("pay-1")).unwrap()["paymentId"], "pay-1");
    assert_eq!(rejection(kit.send(&pay("pay-2"))), "Order o-1 is already paid.");
    // An expiry racing the payment finds the order confirmed.
    assert_eq!(kit.send_outcome(&OrderCommand::Expire).unwrap().side_effects, []);
    assert_eq!(kit.state().status, Status::Confirmed);
    let types: Vec<Value> = kit.events_json().into_iter().map(|(_, event)| event["type"].clone()).collect();
    assert_eq!(types, ["Placed", "ItemsReserved", "Paid"]);
}

#[test]
fn unpaid_the_order_expires_and_releases_its_items() {
    let mut kit = reserved(Some(10));
    assert!(kit.advance(Duration::from_secs(9)).is_empty());
    let fired = kit.advance(Duration::from_secs(2));
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0].name.as_str(), fired[0].due_ms), (PAYMENT_TIMER, T0 + 10_000));
    assert_eq!(fired[0].key, format!("timer 0000000000000001 {}", T0 + 10_000));
    let Some(Ok(Outcome { reply: Some(order), side_effects, .. })) = &fired[0].answer else {
        panic!("the firing ran on the order: {fired:?}")
    };
    assert_eq!(order["status"], "Expired");
    assert_eq!(*side_effects, inventory("Release", json!({"orderId": "o-1"})));
    assert!(kit.timers().is_empty());

    let refused = rejection(kit.send(&pay("pay-1")));
    assert_eq!(refused, format!("Order o-1 expired unpaid at {} ms; its items were released.", T0 + 10_000));
}

#[test]
fn a_repeated_firing_changes_nothing() {
    let mut kit = reserved(Some(1));
    let fired = kit.advance(Duration::from_secs(1));
    assert_eq!(kit.seq(), 3);
    // The same firing again, under its key (the host answers a repeat from
    // its record; past it, the order finds itself expired already).
    kit.set_idempotency_key(Some(&fired[0].key));
    let again = kit.send_outcome(&OrderCommand::Expire).unwrap();
    assert_eq!((again.side_effects, kit.seq()), (vec![], 3));
    assert_eq!(kit.state().status, Status::Expired);
}

#[test]
fn a_reservation_answered_after_the_expiry_is_released() {
    let mut kit = kit("o-1");
    kit.send(&place(vec![line("P1", "Pen", 2)], Some(5))).unwrap();
    let fired = kit.advance(Duration::from_secs(5));
    let expired = fired[0].answer.clone().unwrap().unwrap();
    assert_eq!(expired.side_effects, inventory("Release", json!({"orderId": "o-1"})));
    // The inventory reserved after all: the order gives the items back.
    let late = kit.send_outcome(&OrderCommand::ItemsReserved).unwrap();
    assert_eq!(late.side_effects, inventory("Release", json!({"orderId": "o-1"})));
    assert_eq!(kit.state().status, Status::Expired);
}

#[test]
fn a_refused_reservation_rejects_the_order_and_cancels_its_timer() {
    let mut kit = kit("o-1");
    kit.send(&place(vec![line("P1", "Pen", 50)], None)).unwrap();
    let reason = "Only 3 of item P1 available; order o-1 asks for 50.";
    let refused = kit.send(&OrderCommand::ReservationRefused { reason: reason.into() }).unwrap();
    assert_eq!(refused["status"], "Rejected");
    assert_eq!(refused["reason"], reason);
    assert!(kit.timers().is_empty());
    assert_eq!(rejection(kit.send(&pay("pay-1"))), format!("Order o-1 was rejected: {reason}"));
    // Once closed, further answers change nothing.
    kit.send(&OrderCommand::ReservationRefused { reason: "again".into() }).unwrap();
    assert_eq!(kit.state().reason.as_deref(), Some(reason));
}

#[test]
fn refuses_bad_orders_and_payments() {
    let mut kit = kit("o-1");
    assert_eq!(rejection(kit.send(&pay("pay-1"))), "Order o-1 was not placed.");
    assert_eq!(rejection(kit.send(&place(vec![], None))), "An order has 1 to 100 lines; this one has 0.");
    assert_eq!(
        rejection(kit.send(&place(vec![line("P1", "", 1); 101], None))),
        "An order has 1 to 100 lines; this one has 101."
    );
    assert_eq!(rejection(kit.send(&place(vec![line(" ", "", 1)], None))), "productId must not be empty.");
    assert_eq!(
        rejection(kit.send(&place(vec![line("P1", "", 0)], None))),
        "Quantity for item P1 must be greater than zero."
    );
    for secs in [0, 901] {
        assert_eq!(
            rejection(kit.send(&place(vec![line("P1", "", 1)], Some(secs)))),
            format!("paymentTimeoutSecs must be between 1 and 900. It was [{secs}].")
        );
    }
    assert!(kit.timers().is_empty() && kit.events().is_empty());

    kit.send(&place(vec![line("P1", "", 1)], None)).unwrap();
    assert_eq!(rejection(kit.send(&place(vec![line("P1", "", 1)], None))), "Order o-1 was already placed.");
    assert_eq!(rejection(kit.send(&pay("pay-1"))), "Order o-1 is not ready for payment: its items are being reserved.");
    kit.send(&OrderCommand::ItemsReserved).unwrap();
    assert_eq!(rejection(kit.send(&pay(" "))), "paymentId must not be empty.");
    let negative = kit.handle("Place", json!({"items": [{"productId": "P1", "quantity": -1}]})).unwrap_err();
    assert_eq!(negative.code(), FailureCode::InvalidPayload);
}

#[test]
fn a_cart_s_items_place_an_order() {
    // What the shopping cart's GetCart answers.
    let cart = json!({"items": [{"productId": "A14362347", "name": "Deluxe", "quantity": 5}]});
    let mut kit = kit("o-1");
    let order = kit.handle("Place", json!({"items": cart["items"], "paymentTimeoutSecs": 30})).unwrap();
    assert_eq!(order["items"], cart["items"]);
    assert_eq!(order["payByMs"], T0 + 30_000);
}

#[test]
fn snapshots_keep_the_order() {
    let mut kit = TestKit::<Order>::new("o-1").with_snapshot_every(1);
    kit.send(&place(vec![line("P1", "Pen", 2)], Some(60))).unwrap();
    kit.send(&OrderCommand::ItemsReserved).unwrap();
    kit.send(&pay("pay-1")).unwrap();
    let order = kit.send(&OrderCommand::GetOrder).unwrap();
    assert_eq!((order["status"].clone(), order["paymentId"].clone()), (json!("Confirmed"), json!("pay-1")));
}
