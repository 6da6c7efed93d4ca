//! Value entities, actions, kind detection, idempotency, live event streams
//! and event subscriptions, through the examples.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use wasmstate_tests::guests::{
    CART_PROJECTION, COUNTER, FAN_OUT, ORDER_VALIDATOR, SHOPPING_CART, TWO_KINDS, USER_PROFILE,
};
use wasmstate_tests::sse::EventStream;

use crate::{start, start_with};

#[tokio::test]
async fn value_entity_user_profile() {
    let t = start_with("user-profile", USER_PROFILE, &[]).await;
    let api = &t.api;
    let deployed = api.get("/v1/services/user-profile").await.expect(200);
    assert_eq!(deployed["kind"], "value");

    for (name, email) in [("Ada", "ada@one"), ("Ada L", "ada@two"), ("Ada Lovelace", "ada@three")] {
        api.invoke("user-profile", "ada", "Update", json!({"name": name, "email": email})).await.expect(200);
    }
    let profile = json!({"name": "Ada Lovelace", "email": "ada@three"});
    assert_eq!(api.invoke("user-profile", "ada", "Get", json!({})).await.expect(200), profile);
    let described = api.get("/v1/services/user-profile/entities/ada").await.expect(200);
    assert_eq!(described["state"], profile);

    let (kind, _) =
        api.invoke("user-profile", "ada", "Update", json!({"name": "X", "email": "no-at"})).await.expect_error(400);
    assert_eq!(kind, "command_failed");
    assert_eq!(api.invoke("user-profile", "ada", "Get", json!({})).await.expect(200), profile);

    api.invoke("user-profile", "bob", "Update", json!({"name": "Bob", "email": "bob@x"})).await.expect(200);
    api.invoke("user-profile", "bob", "Delete", json!({})).await.expect(200);
    let empty = json!({"name": "", "email": ""});
    assert_eq!(api.invoke("user-profile", "bob", "Get", json!({})).await.expect(200), empty);
    assert_eq!(api.get("/v1/services/user-profile/entities/bob").await.expect(200)["state"], json!(null));

    let t = t.restart().await;
    assert_eq!(t.api.invoke("user-profile", "ada", "Get", json!({})).await.expect(200), profile);
    assert_eq!(t.api.invoke("user-profile", "bob", "Get", json!({})).await.expect(200), empty);
}

#[tokio::test]
async fn an_action_validates_enriches_and_forwards() {
    let t = start_with("shopping-cart", SHOPPING_CART, &[]).await;
    let api = &t.api;
    api.deploy("counter", Path::new(COUNTER)).await;
    let deployed = api.deploy("order-validator", Path::new(ORDER_VALIDATOR)).await;
    assert_eq!(deployed["kind"], "action");

    let order = json!({"cartId": "c1", "productId": "P1", "name": "  Pen  ", "quantity": 2});
    // The reply is the cart's reply to the forwarded AddItem.
    assert_eq!(api.invoke("order-validator", "any", "PlaceOrder", order).await.expect(200), json!({}));
    assert_eq!(
        api.invoke("shopping-cart", "c1", "GetCart", json!({})).await.expect(200),
        json!({"items": [{"productId": "P1", "name": "Pen", "quantity": 2}]})
    );
    let bad = json!({"cartId": "c1", "productId": "P1", "name": "Pen", "quantity": 0});
    let (kind, _) = api.invoke("order-validator", "any", "PlaceOrder", bad).await.expect_error(400);
    assert_eq!(kind, "command_failed");
    // Its asynchronous side effect counts orders.
    let counted = api
        .eventually(Duration::from_secs(5), || async {
            api.invoke("counter", "orders", "Get", json!({})).await.expect(200) == json!({"value": 1})
        })
        .await;
    assert!(counted, "the order counter must reach 1");

    // Actions run in parallel; many at once all land in the cart.
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let order = json!({"cartId": "c2", "productId": format!("P{i}"), "name": "", "quantity": 1});
                api.invoke("order-validator", "any", "PlaceOrder", order).await.expect(200);
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let cart = api.invoke("shopping-cart", "c2", "GetCart", json!({})).await.expect(200);
    assert_eq!(cart["items"].as_array().unwrap().len(), 40);
    assert_eq!(cart["items"][0]["name"], cart["items"][0]["productId"], "an empty name becomes the product id");
}

#[tokio::test]
async fn kinds_are_detected_and_kept() {
    let t = start(&[]).await;
    let (kind, message) = t.api.deploy_bytes("both", std::fs::read(TWO_KINDS).unwrap()).await.expect_error(400);
    assert_eq!(kind, "invalid_component");
    assert!(message.contains("more than one kind"), "{message}");
    t.api.deploy("svc", Path::new(COUNTER)).await;
    let (kind, message) = t.api.deploy_bytes("svc", std::fs::read(USER_PROFILE).unwrap()).await.expect_error(409);
    assert_eq!(kind, "conflict");
    assert!(message.contains("event-sourced"), "{message}");
    let (kind, _) = t
        .api
        .send(reqwest::Method::PUT, "/v1/services/sub?subscribe=svc", std::fs::read(COUNTER).unwrap())
        .await
        .expect_error(409);
    assert_eq!(kind, "conflict", "only actions subscribe");
}

#[tokio::test]
async fn idempotency_keys_answer_the_recorded_reply() {
    let t = start_with("counter", COUNTER, &["--idempotency-ttl", "1s"]).await;
    let api = &t.api;
    let first = api.invoke_idempotent("counter", "c", "Increase", json!({"value": 5}), "key-1").await.expect(200);
    let again = api.invoke_idempotent("counter", "c", "Increase", json!({"value": 5}), "key-1").await.expect(200);
    assert_eq!((first.clone(), again), (json!({"value": 5}), json!({"value": 5})));
    assert_eq!(api.position("counter", "c").await.0, 1, "the repeat did not run");
    // Another entity, or another key, runs.
    api.invoke_idempotent("counter", "d", "Increase", json!({"value": 5}), "key-1").await.expect(200);
    api.invoke_idempotent("counter", "c", "Increase", json!({"value": 1}), "key-2").await.expect(200);
    assert_eq!(api.position("counter", "c").await.0, 2);
    // A failure records nothing: the same key runs again.
    api.invoke_idempotent("counter", "c", "Increase", json!({"value": -1}), "key-3").await.expect_error(400);
    api.invoke_idempotent("counter", "c", "Increase", json!({"value": 1}), "key-3").await.expect(200);
    // Records expire.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = api.invoke_idempotent("counter", "c", "Increase", json!({"value": 5}), "key-1").await.expect(200);
    assert_eq!(after, json!({"value": 12}));
    // It survives a restart.
    api.invoke_idempotent("counter", "c", "Increase", json!({"value": 1}), "key-4").await.expect(200);
    let t = t.restart().await;
    assert_eq!(
        t.api.invoke_idempotent("counter", "c", "Increase", json!({"value": 1}), "key-4").await.expect(200),
        json!({"value": 13})
    );
    assert_eq!(t.api.position("counter", "c").await.0, 5);
}

#[tokio::test]
async fn live_event_stream_has_backlog_then_new_events_without_gaps() {
    let t = start_with("counter", COUNTER, &[]).await;
    for _ in 0..3 {
        t.api.invoke("counter", "live", "Increase", json!({"value": 1})).await.expect(200);
    }
    let url = format!("{}/v1/services/counter/entities/live/events?from=2&follow=true", t.server.base());
    let mut stream = EventStream::open(&url).await.unwrap();
    let writer = {
        let api = t.api.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                api.invoke("counter", "live", "Increase", json!({"value": 1})).await.expect(200);
            }
        })
    };
    for seq in 2..=23u64 {
        let (id, event) = stream.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(id, seq.to_string());
        assert_eq!(event["seq"], seq);
        assert_eq!(event["payload"]["type"], "Increased");
    }
    writer.await.unwrap();
    assert!(stream.next(Duration::from_millis(300)).await.is_err(), "no duplicate after the last event");
    // The server still stops promptly with a stream open.
    let status = t.server.stop().await.unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_projection_counts_items_added_across_all_carts() {
    let t = start_with("shopping-cart", SHOPPING_CART, &[]).await;
    let api = &t.api;
    api.deploy("counter", Path::new(COUNTER)).await;
    // Events committed before the subscriber exists are delivered too.
    api.invoke("shopping-cart", "a", "AddItem", json!({"productId": "P", "name": "P", "quantity": 3}))
        .await
        .expect(200);
    let bytes = std::fs::read(CART_PROJECTION).unwrap();
    let deployed =
        api.send(reqwest::Method::PUT, "/v1/services/projection?subscribe=shopping-cart", bytes).await.expect(201);
    assert_eq!(deployed["subscriptions"], json!(["shopping-cart"]));
    for (cart, quantity) in [("a", 2), ("b", 5), ("c", 1)] {
        let item = json!({"productId": "Q", "name": "Q", "quantity": quantity});
        api.invoke("shopping-cart", cart, "AddItem", item).await.expect(200);
    }
    api.invoke("shopping-cart", "b", "RemoveItem", json!({"productId": "Q"})).await.expect(200);
    let total = || async { api.invoke("counter", "items-added", "Get", json!({})).await.expect(200)["value"].clone() };
    assert!(
        api.eventually(Duration::from_secs(5), || async { total().await == json!(11) }).await,
        "got {}",
        total().await
    );

    // The offset is durable: a restart delivers only new events.
    let t = t.restart().await;
    let api = &t.api;
    api.invoke("shopping-cart", "d", "AddItem", json!({"productId": "R", "name": "R", "quantity": 4}))
        .await
        .expect(200);
    let total = || async { api.invoke("counter", "items-added", "Get", json!({})).await.expect(200)["value"].clone() };
    assert!(
        api.eventually(Duration::from_secs(5), || async { total().await == json!(15) }).await,
        "got {}",
        total().await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(total().await, json!(15), "nothing is delivered twice after a clean restart");
}

/// A subscriber's side effects run in order, and when one fails for a
/// while (its service is not deployed yet), each retry goes on from it:
/// the ones before it ran once, not once per retry.
#[tokio::test]
async fn a_retried_event_runs_only_the_side_effects_that_have_not_run() {
    let t = start_with("shopping-cart", SHOPPING_CART, &[]).await;
    let api = &t.api;
    api.deploy("counter", Path::new(COUNTER)).await;
    let bytes = std::fs::read(FAN_OUT).unwrap();
    api.send(reqwest::Method::PUT, "/v1/services/fan-out?subscribe=shopping-cart", bytes).await.expect(201);
    let item = json!({"productId": "P", "name": "P", "quantity": 1});
    api.invoke("shopping-cart", "a", "AddItem", item.clone()).await.expect(200);

    let count = |service: &'static str, entity: &'static str| async move {
        api.invoke(service, entity, "Get", json!({})).await.expect(200)["value"].clone()
    };
    assert!(api.eventually(Duration::from_secs(5), || async { count("counter", "first").await == json!(1) }).await);
    // `audit` does not exist: the event is retried after 100, 200, 400 ms...
    let retried = || async { api.metric("wasmstate_subscription_failures_total").await >= 3.0 };
    assert!(api.eventually(Duration::from_secs(5), retried).await, "the second side effect is retried");
    assert_eq!(count("counter", "first").await, json!(1), "the first side effect ran once, not once per retry");

    api.deploy("audit", Path::new(COUNTER)).await;
    let delivered = || async { count("audit", "second").await == json!(1) };
    assert!(api.eventually(Duration::from_secs(10), delivered).await, "the retry runs the second side effect");
    assert_eq!(count("counter", "first").await, json!(1));

    // The next event runs both, once each.
    api.invoke("shopping-cart", "b", "AddItem", item).await.expect(200);
    let both = || async { count("audit", "second").await == json!(2) };
    assert!(api.eventually(Duration::from_secs(5), both).await);
    assert_eq!(count("counter", "first").await, json!(2));
}
