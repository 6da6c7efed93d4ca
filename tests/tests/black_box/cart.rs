//! The Cloudstate shopping-cart sequence, deploys and versions.

use serde_json::{Value, json};
use wasmstate_tests::guests::{COUNTER, SHOPPING_CART};

use crate::start_with;

const CART: &str = "shopping-cart";

fn item(id: &str, name: &str, quantity: i64) -> Value {
    json!({"productId": id, "name": name, "quantity": quantity})
}

#[tokio::test]
async fn the_cloudstate_cart_sequence() {
    let t = start_with(CART, SHOPPING_CART, &[]).await;
    let api = &t.api;
    assert_eq!(api.invoke(CART, "foo", "GetCart", json!({})).await.expect(200), json!({"items": []}));

    api.invoke(CART, "foo", "AddItem", item("A14362347", "Deluxe", 5)).await.expect(200);
    api.invoke(CART, "foo", "AddItem", item("B14623482", "Basic", 1)).await.expect(200);
    api.invoke(CART, "foo", "AddItem", item("A14362347", "Deluxe", 2)).await.expect(200);
    assert_eq!(
        api.invoke(CART, "foo", "GetCart", json!({})).await.expect(200),
        json!({"items": [item("A14362347", "Deluxe", 7), item("B14623482", "Basic", 1)]})
    );

    api.invoke(CART, "foo", "RemoveItem", json!({"productId": "A14362347"})).await.expect(200);
    // A command without arguments takes an empty body as well as `{}`.
    let empty_body = api.invoke_raw(CART, "foo", "GetCart", Vec::new()).await.expect(200);
    assert_eq!(empty_body, json!({"items": [item("B14623482", "Basic", 1)]}));
    assert_eq!(api.position(CART, "foo").await, (4, 0));

    let (kind, message) = api.invoke(CART, "foo", "AddItem", item("C1", "Zero", 0)).await.expect_error(400);
    assert_eq!(kind, "command_failed");
    assert!(message.contains("greater than zero"), "{message}");
    let (kind, _) = api.invoke(CART, "foo", "RemoveItem", json!({"productId": "A14362347"})).await.expect_error(400);
    assert_eq!(kind, "command_failed");
    assert_eq!(api.position(CART, "foo").await, (4, 0), "failed commands persist nothing");

    let events = api.events(CART, "foo", 1).await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(events[0]["payload"]["item"], item("A14362347", "Deluxe", 5));
    assert_eq!(api.events(CART, "foo", 4).await.len(), 1);

    // Other carts are separate entities.
    assert_eq!(api.invoke(CART, "bar", "GetCart", json!({})).await.expect(200), json!({"items": []}));
}

#[tokio::test]
async fn deploy_answers_metadata_and_redeploy_makes_a_new_version() {
    let t = start_with(CART, SHOPPING_CART, &[]).await;
    let api = &t.api;
    let described = api.get("/v1/services/shopping-cart").await.expect(200);
    assert_eq!(described["version"], 1);
    assert_eq!(described["kind"], "event-sourced");
    let digest = described["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));

    api.invoke(CART, "keep", "AddItem", item("P1", "Pen", 3)).await.expect(200);
    let second = api.deploy(CART, std::path::Path::new(SHOPPING_CART)).await;
    assert_eq!(second["service"], CART);
    assert_eq!(second["version"], 2);
    assert_eq!(second["kind"], "event-sourced");
    assert_eq!(second["digest"], digest);
    // The event log outlives the version.
    assert_eq!(
        api.invoke(CART, "keep", "GetCart", json!({})).await.expect(200),
        json!({"items": [item("P1", "Pen", 3)]})
    );

    api.deploy("counter", std::path::Path::new(COUNTER)).await;
    let list = api.get("/v1/services").await.expect(200);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["service"].as_str().unwrap()).collect();
    assert_eq!(names, ["counter", CART]);
    let versions = api.get("/v1/services/shopping-cart").await.expect(200)["versions"].as_array().unwrap().len();
    assert_eq!(versions, 2);
}

#[tokio::test]
async fn deleting_a_service_keeps_its_entities_data_for_a_later_deploy() {
    let t = start_with(CART, SHOPPING_CART, &[]).await;
    let api = &t.api;
    api.invoke(CART, "kept", "AddItem", item("P1", "Pen", 1)).await.expect(200);
    let deleted = api.send(reqwest::Method::DELETE, "/v1/services/shopping-cart", Vec::new()).await.expect(200);
    assert_eq!(deleted, json!({"service": CART, "deleted_versions": 1}));
    let (kind, _) = api.invoke(CART, "kept", "GetCart", json!({})).await.expect_error(404);
    assert_eq!(kind, "unknown_service");
    api.send(reqwest::Method::DELETE, "/v1/services/shopping-cart", Vec::new()).await.expect_error(404);
    assert_eq!(api.get("/v1/services").await.expect(200), json!([]));

    let t = t.restart().await;
    t.api.get("/v1/services/shopping-cart").await.expect_error(404);
    let redeployed = t.api.deploy(CART, std::path::Path::new(SHOPPING_CART)).await;
    assert_eq!(redeployed["version"], 2, "a version number never names two components");
    assert_eq!(
        t.api.invoke(CART, "kept", "GetCart", json!({})).await.expect(200),
        json!({"items": [item("P1", "Pen", 1)]})
    );
}
