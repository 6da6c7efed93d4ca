//! Time travel: an entity's state as of any event, dry runs that commit
//! and send nothing, forks of a log, and retention: compaction of what a
//! service no longer keeps.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::Api;
use wasmstate_tests::guests::{CART_PROJECTION, CART_UPCASTING, COUNTER, ORDER_VALIDATOR, SHOPPING_CART, USER_PROFILE};

use crate::start_with;

const CART: &str = "shopping-cart";

async fn add(api: &Api, cart: &str, product: &str) {
    let item = json!({"productId": product, "name": product, "quantity": 1});
    api.invoke(CART, cart, "AddItem", item).await.expect(200);
}

/// The product ids in a cart state.
fn products(cart: &Value) -> Vec<String> {
    let items = cart["items"].as_array().unwrap_or_else(|| panic!("not a cart: {cart}"));
    items.iter().map(|item| item["productId"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn the_state_as_of_any_event_including_a_snapshot_boundary() {
    let t = start_with(CART, SHOPPING_CART, &["--snapshot-every", "2"]).await;
    let api = &t.api;
    for product in ["p1", "p2", "p3", "p4", "p5"] {
        add(api, "c", product).await;
    }
    assert_eq!(api.position(CART, "c").await, (5, 4));
    let state = async |at: &str| api.get(&format!("/v1/services/{CART}/entities/c/state{at}")).await;
    assert_eq!(products(&state("?at=1").await.expect(200)), ["p1"]);
    assert_eq!(products(&state("?at=2").await.expect(200)), ["p1", "p2"]);
    assert_eq!(products(&state("?at=3").await.expect(200)), ["p1", "p2", "p3"]);
    assert_eq!(products(&state("?at=4").await.expect(200)), ["p1", "p2", "p3", "p4"]);
    assert_eq!(products(&state("").await.expect(200)), ["p1", "p2", "p3", "p4", "p5"]);
    let (kind, message) = state("?at=6").await.expect_error(404);
    assert_eq!(kind, "not_in_history", "{message}");
    // A cart never written folds to the initial state.
    assert_eq!(api.get(&format!("/v1/services/{CART}/entities/new/state")).await.expect(200), json!({"items": []}));
}

#[tokio::test]
async fn a_dry_run_answers_what_a_command_would_do_and_commits_nothing() {
    let t = start_with(CART, SHOPPING_CART, &[]).await;
    let api = &t.api;
    api.deploy("counter", Path::new(COUNTER)).await;
    api.deploy("order-validator", Path::new(ORDER_VALIDATOR)).await;
    add(api, "c", "p1").await;
    add(api, "c", "p2").await;

    let item = json!({"productId": "p3", "name": "Pen", "quantity": 2});
    let path = format!("/v1/services/{CART}/entities/c/AddItem?dry_run=true");
    let run = api.post(&path, item.clone()).await.expect(200);
    assert_eq!(run["seq"], 2);
    assert_eq!(run["events"], json!([{"type": "ItemAdded", "item": item}]));
    assert_eq!(products(&run["state"]), ["p1", "p2", "p3"]);
    assert_eq!(run["reply"], json!({}));
    assert_eq!(run["side_effects"], json!([]));
    assert_eq!(run["timers"], json!([]));
    // Against a past state.
    let run = api.post(&format!("{path}&at=1"), item.clone()).await.expect(200);
    assert_eq!((run["seq"].clone(), products(&run["state"])), (json!(1), vec!["p1".to_string(), "p3".to_string()]));
    // A refusal is the command's own.
    let (kind, _) = api.post(&path, json!({"productId": "p", "name": "p", "quantity": 0})).await.expect_error(400);
    assert_eq!(kind, "command_failed");
    let (kind, _) = api.post(&format!("/v1/services/{CART}/entities/c/AddItem?at=1"), item).await.expect_error(400);
    assert_eq!(kind, "bad_request");
    assert_eq!(api.position(CART, "c").await.0, 2);

    // An action's dry run shows its forward and side effect; neither runs.
    let order = json!({"cartId": "other", "productId": "P1", "name": "Pen", "quantity": 2});
    let run = api.post("/v1/services/order-validator/entities/any/PlaceOrder?dry_run=true", order).await.expect(200);
    assert_eq!(run["forward"]["service"], CART, "{run}");
    assert_eq!(run["forward"]["entity"], "other", "{run}");
    assert_eq!(run["side_effects"][0]["service"], "counter", "{run}");
    assert_eq!(run["side_effects"][0]["synchronous"], false, "{run}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(api.position(CART, "other").await.0, 0);
    assert_eq!(api.position("counter", "orders").await.0, 0);
    assert_eq!(api.metric("wasmstate_outbox_pending").await, 0.0);
    assert_eq!(api.metric("wasmstate_dry_runs_total").await, 4.0);
}

#[tokio::test]
async fn a_fork_copies_a_prefix_of_the_log_into_a_new_entity() {
    let t = start_with(CART, SHOPPING_CART, &["--snapshot-every", "2"]).await;
    let api = &t.api;
    for product in ["p1", "p2", "p3", "p4"] {
        add(api, "c", product).await;
    }
    // The target was read before, so its entity task holds an empty cart:
    // the fork runs in that task and the next command sees the copy.
    assert_eq!(products(&api.invoke(CART, "f", "GetCart", json!({})).await.expect(200)), Vec::<String>::new());
    let forked = api.post(&format!("/v1/services/{CART}/entities/c/fork?at=3&to=f"), Value::Null).await.expect(201);
    assert_eq!((forked["last_seq"].clone(), forked["from_snapshot"].clone()), (json!(3), Value::Null));
    let source = api.events(CART, "c", 1).await;
    assert_eq!(api.events(CART, "f", 1).await, source[..3]);
    assert_eq!(products(&api.invoke(CART, "f", "GetCart", json!({})).await.expect(200)), ["p1", "p2", "p3"]);
    // The fork goes its own way; the source is unchanged.
    add(api, "f", "q").await;
    assert_eq!(api.position(CART, "f").await.0, 4);
    assert_eq!(api.events(CART, "c", 1).await, source);

    let fork = async |query: &str| api.post(&format!("/v1/services/{CART}/entities/c/fork?{query}"), Value::Null).await;
    assert_eq!(fork("to=f").await.expect_error(409).0, "entity_exists");
    assert_eq!(fork("at=9&to=g").await.expect_error(404).0, "not_in_history");
    assert_eq!(fork("to=c").await.expect_error(400).0, "bad_request");
    assert_eq!(fork("at=1").await.expect_error(400).0, "bad_request");
    // Without `at`, the whole log.
    assert_eq!(fork("to=all").await.expect(201)["last_seq"], 4);

    let t = t.restart().await;
    assert_eq!(products(&t.api.invoke(CART, "f", "GetCart", json!({})).await.expect(200)), ["p1", "p2", "p3", "q"]);
}

#[tokio::test]
async fn a_value_entity_answers_its_stored_state_and_keeps_no_history() {
    let t = start_with("user-profile", USER_PROFILE, &[]).await;
    let api = &t.api;
    let profile = json!({"name": "Ada", "email": "ada@example.com"});
    api.invoke("user-profile", "ada", "Update", profile.clone()).await.expect(200);
    let state = api.get("/v1/services/user-profile/entities/ada/state").await.expect(200);
    assert_eq!((state["name"].clone(), state["email"].clone()), (profile["name"].clone(), profile["email"].clone()));
    assert_eq!(
        api.get("/v1/services/user-profile/entities/ada/state?at=1").await.expect_error(404).0,
        "not_in_history"
    );
    assert_eq!(api.get("/v1/services/user-profile/entities/bob/state").await.expect_error(404).0, "not_found");
    let fork = api.post("/v1/services/user-profile/entities/ada/fork?to=b", Value::Null).await;
    assert_eq!(fork.expect_error(400).0, "bad_request");
}

#[tokio::test]
async fn retention_compacts_old_events_and_time_travel_answers_410_before_what_is_kept() {
    let t = crate::start(&["--snapshot-every", "2", "--compact-every", "100ms"]).await;
    let api = &t.api;
    let retained = api.deploy_with(CART, Path::new(SHOPPING_CART), "retain=snapshots:2").await.expect(201);
    assert_eq!(retained["version"], 1);
    assert_eq!(api.get(&format!("/v1/services/{CART}")).await.expect(200)["retain"], "snapshots:2");
    for product in ["p1", "p2", "p3", "p4", "p5", "p6", "p7"] {
        add(api, "c", product).await;
    }
    // Snapshots at 2, 4 and 6: the two latest stay, events 1 to 4 go.
    let compacted =
        api.eventually(Duration::from_secs(10), async || api.metric("wasmstate_compacted_events_total").await >= 4.0);
    assert!(compacted.await, "nothing was compacted");
    assert_eq!(api.metric("wasmstate_compacted_events_total").await, 4.0);
    assert!(api.metric("wasmstate_compacted_bytes_total").await > 0.0);
    let kept: Vec<u64> = api.events(CART, "c", 1).await.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(kept, [5, 6, 7]);
    assert_eq!(api.position(CART, "c").await.0, 7);

    let state = async |at: u64| api.get(&format!("/v1/services/{CART}/entities/c/state?at={at}")).await;
    assert_eq!(products(&state(4).await.expect(200)), ["p1", "p2", "p3", "p4"]);
    assert_eq!(products(&state(5).await.expect(200)).len(), 5);
    let (kind, message) = state(3).await.expect_error(410);
    assert_eq!(kind, "history_compacted", "{message}");
    assert_eq!(
        api.post(&format!("/v1/services/{CART}/entities/c/fork?at=3&to=f"), Value::Null).await.expect_error(410).0,
        "history_compacted"
    );
    let forked = api.post(&format!("/v1/services/{CART}/entities/c/fork?at=5&to=f"), Value::Null).await.expect(201);
    assert_eq!(forked["last_seq"], 5);
    assert_eq!(products(&api.invoke(CART, "f", "GetCart", json!({})).await.expect(200)).len(), 5);

    // A new version is verified from the oldest state kept.
    let deployed = api.deploy_with(CART, Path::new(CART_UPCASTING), "verify=replay").await.expect(201);
    assert_eq!(
        (deployed["verification"]["checked"].clone(), deployed["verification"]["failed_total"].clone()),
        (json!(2), json!(0))
    );
    let t = t.restart().await;
    assert_eq!(products(&t.api.invoke(CART, "c", "GetCart", json!({})).await.expect(200)).len(), 7);

    for (query, status) in [("retain=snapshots:0", 400), ("retain=forever", 400)] {
        t.api.deploy_with(CART, Path::new(SHOPPING_CART), query).await.expect_error(status);
    }
    t.api.deploy("user-profile", Path::new(USER_PROFILE)).await;
    let (kind, _) =
        t.api.deploy_with("user-profile", Path::new(USER_PROFILE), "retain=snapshots:1").await.expect_error(409);
    assert_eq!(kind, "conflict");
}

#[tokio::test]
async fn compaction_waits_for_subscribers_to_be_given_every_event() {
    let t = crate::start(&["--snapshot-every", "1", "--compact-every", "100ms"]).await;
    let api = &t.api;
    api.deploy_with(CART, Path::new(SHOPPING_CART), "retain=snapshots:1").await.expect(201);
    // The projection's side effects need `counter`, not deployed yet: its
    // deliveries fail and are retried, so the events must stay.
    api.deploy_with("cart-projection", Path::new(CART_PROJECTION), "subscribe=shopping-cart").await.expect(201);
    for product in ["p1", "p2", "p3"] {
        add(api, "c", product).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(api.metric("wasmstate_compacted_events_total").await, 0.0);
    assert_eq!(api.events(CART, "c", 1).await.len(), 3);

    api.deploy("counter", Path::new(COUNTER)).await;
    let delivered = api.eventually(Duration::from_secs(20), async || {
        api.invoke("counter", "items-added", "Get", json!({})).await.body["value"] == 3
    });
    assert!(delivered.await, "the projection never caught up");
    let compacted =
        api.eventually(Duration::from_secs(10), async || api.metric("wasmstate_compacted_events_total").await >= 2.0);
    assert!(compacted.await, "nothing was compacted once the subscriber caught up");
    let kept: Vec<u64> = api.events(CART, "c", 1).await.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(kept, [3]);
}
