//! What follows a committed command — its synchronous side effects, then
//! its forward — runs to the end even if the caller goes away; and a
//! repeated idempotency key runs none of it twice, while doing what the
//! first attempt left undone.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use wasmstate_tests::guests::{COUNTER, MISBEHAVING, ORDER_VALIDATOR, SHOPPING_CART};

use crate::{start, start_with};

#[tokio::test]
async fn a_repeated_key_does_not_run_the_forward_again() {
    let t = start_with("shopping-cart", SHOPPING_CART, &[]).await;
    let api = &t.api;
    api.deploy("order-validator", Path::new(ORDER_VALIDATOR)).await;
    let order = json!({"cartId": "c1", "productId": "P1", "name": "Pen", "quantity": 2});
    for _ in 0..3 {
        let reply =
            api.invoke_idempotent("order-validator", "any", "PlaceOrder", order.clone(), "order-1").await.expect(200);
        assert_eq!(reply, json!({}));
    }
    assert_eq!(api.position("shopping-cart", "c1").await.0, 1, "the forwarded AddItem ran once");
    assert_eq!(
        api.invoke("shopping-cart", "c1", "GetCart", json!({})).await.expect(200),
        json!({"items": [{"productId": "P1", "name": "Pen", "quantity": 2}]})
    );
    // Another key is another order.
    api.invoke_idempotent("order-validator", "any", "PlaceOrder", order.clone(), "order-2").await.expect(200);
    assert_eq!(api.position("shopping-cart", "c1").await.0, 2);
    // Keys are per entity: the same key sent to another entity (here the
    // action's routing key) is another order too, forward included.
    api.invoke_idempotent("order-validator", "eu", "PlaceOrder", order, "order-2").await.expect(200);
    assert_eq!(api.position("shopping-cart", "c1").await.0, 3);
}

#[tokio::test]
async fn a_repeated_key_runs_a_synchronous_side_effect_that_failed_and_only_once() {
    let t = start_with("asker", MISBEHAVING, &[]).await;
    let api = &t.api;
    // The side effect's target is not deployed yet: the command commits,
    // the side effect fails.
    let ask = json!({"service": "target"});
    let (kind, _) = api.invoke_idempotent("asker", "e", "SelfEffect", ask.clone(), "ask-1").await.expect_error(502);
    assert_eq!(kind, "side_effect_failed");

    api.deploy("target", Path::new(MISBEHAVING)).await;
    for _ in 0..3 {
        let reply = api.invoke_idempotent("asker", "e", "SelfEffect", ask.clone(), "ask-1").await.expect(200);
        assert_eq!(reply, json!({"asked": "myself"}));
    }
    assert_eq!(api.position("target", "e").await.0, 1, "the repeats ran the side effect, once");
    let t = t.restart().await;
    t.api.invoke_idempotent("asker", "e", "SelfEffect", ask, "ask-1").await.expect(200);
    assert_eq!(t.api.position("target", "e").await.0, 1, "and not again after a restart");
}

#[tokio::test]
async fn keys_are_printable_ascii_without_spaces() {
    let t = start(&[]).await;
    t.api.deploy("counter", Path::new(COUNTER)).await;
    // The host's own keys (outbox deliveries, derived keys) have spaces, so
    // a client can never pass for one of them.
    for key in ["outbox 1", "k effect 0", "k\tk", &"k".repeat(257)] {
        let reply = t.api.invoke_idempotent("counter", "c", "Increase", json!({"value": 1}), key).await;
        let (kind, message) = reply.expect_error(400);
        assert_eq!(kind, "bad_request", "{key:?}");
        assert!(message.contains("Idempotency-Key"), "{message}");
    }
    assert_eq!(t.api.position("counter", "c").await.0, 0);
    t.api.invoke_idempotent("counter", "c", "Increase", json!({"value": 1}), "k-1_~!").await.expect(200);
}

#[tokio::test]
async fn a_synchronous_side_effect_runs_to_the_end_when_the_caller_goes_away() {
    let t = start_with("m", MISBEHAVING, &[]).await;
    t.api.invoke("m", "asker", "Get", json!({})).await.expect(200);
    let ask = json!({
        "service": "m", "entity": "sleeper", "synchronous": true,
        "command": "Sleep", "payload": {"millis": 1_500},
    });
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let url = format!("{}/v1/services/m/entities/asker/Effect", t.server.base());
    let gone = impatient.post(url).body(ask.to_string()).send().await;
    assert!(gone.is_err_and(|e| e.is_timeout()), "the caller gave up before the side effect ended");
    let ran = t.api.eventually(Duration::from_secs(10), || async { t.api.position("m", "sleeper").await.0 == 1 }).await;
    assert!(ran, "the side effect ran to the end");
    assert_eq!(t.api.position("m", "asker").await.0, 1, "the command was committed, once");
}

#[tokio::test]
async fn concurrent_repeats_of_a_key_run_the_order_once() {
    let t = start_with("shopping-cart", SHOPPING_CART, &[]).await;
    t.api.deploy("order-validator", Path::new(ORDER_VALIDATOR)).await;
    t.api.deploy("counter", Path::new(COUNTER)).await;
    let order = json!({"cartId": "c2", "productId": "P1", "name": "Pen", "quantity": 1});
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (api, order) = (t.api.clone(), order.clone());
            tokio::spawn(async move {
                api.invoke_idempotent("order-validator", "any", "PlaceOrder", order, "race").await.expect(200)
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), json!({}));
    }
    assert_eq!(t.api.position("shopping-cart", "c2").await.0, 1, "one AddItem for eight repeats");
    // The order's asynchronous side effect counts it, once: wait until the
    // outbox has delivered everything it holds.
    let api = &t.api;
    let delivered = api
        .eventually(Duration::from_secs(10), || async {
            api.metric("wasmstate_outbox_delivered_total").await >= 1.0
                && api.metric("wasmstate_outbox_pending").await == 0.0
        })
        .await;
    assert!(delivered, "the outbox delivered the order's side effect");
    assert_eq!(api.metric("wasmstate_outbox_delivered_total").await, 1.0);
    assert_eq!(api.invoke("counter", "orders", "Get", json!({})).await.expect(200), json!({"value": 1}));
}

/// A key is a promise about one command: repeating it for another command
/// or payload is refused (422), runs nothing and changes nothing, on an
/// entity and on an action alike.
#[tokio::test]
async fn a_key_reused_for_a_different_command_or_payload_is_refused() {
    let t = start_with("counter", COUNTER, &[]).await;
    let api = &t.api;
    api.deploy("shopping-cart", Path::new(SHOPPING_CART)).await;
    api.deploy("order-validator", Path::new(ORDER_VALIDATOR)).await;
    let first = api.invoke_idempotent("counter", "c", "Increase", json!({"value": 5}), "k").await.expect(200);
    for (command, payload) in [("Increase", json!({"value": 6})), ("Decrease", json!({"value": 5}))] {
        let (kind, message) = api.invoke_idempotent("counter", "c", command, payload, "k").await.expect_error(422);
        assert_eq!(kind, "idempotency_key_reused");
        assert!(message.contains("\"k\""), "{message}");
    }
    assert_eq!(api.position("counter", "c").await.0, 1, "nothing ran");
    assert_eq!(api.invoke_idempotent("counter", "c", "Increase", json!({"value": 5}), "k").await.expect(200), first);
    // Keys are per entity: another entity may use the same key for anything.
    api.invoke_idempotent("counter", "d", "Increase", json!({"value": 6}), "k").await.expect(200);

    let order = |product: &str| json!({"cartId": "c1", "productId": product, "name": "Pen", "quantity": 1});
    api.invoke_idempotent("order-validator", "any", "PlaceOrder", order("P1"), "o").await.expect(200);
    let (kind, _) =
        api.invoke_idempotent("order-validator", "any", "PlaceOrder", order("P2"), "o").await.expect_error(422);
    assert_eq!(kind, "idempotency_key_reused");
    let cart = api.invoke("shopping-cart", "c1", "GetCart", json!({})).await.expect(200);
    assert_eq!(cart["items"].as_array().unwrap().len(), 1, "the second order ran nothing: {cart}");
    // The record survives a restart, fingerprint included.
    let t = t.restart().await;
    t.api.invoke_idempotent("counter", "c", "Increase", json!({"value": 6}), "k").await.expect_error(422);
    t.api.invoke_idempotent("counter", "c", "Increase", json!({"value": 5}), "k").await.expect(200);
    assert_eq!(t.api.position("counter", "c").await.0, 1);
}
