//! Upgrades checked against stored data: `verify=replay` rebuilds every
//! stored entity with the new version before it takes traffic (and, with a
//! probe, compares the replies), a refused version changes nothing, a new
//! version never runs on state an earlier one folded, rollbacks, and
//! components of every WIT version.

use std::path::Path;

use serde_json::{Value, json};
use wasmstate_tests::guests::{
    CART_NEW_REPLY, CART_RENAMED_EVENT, CART_UPCASTING, COUNTER, COUNTER_V0_1, SHOPPING_CART,
};
use wasmstate_tests::{Api, Options, Server};

use crate::Running;

/// Starts a server whose log (at INFO) the test reads, with `service`
/// deployed.
async fn start_with(service: &str, component: &str, args: &[&str]) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options { env: vec![("RUST_LOG".into(), "info".into())], capture_stderr: true, ..Options::default() };
    let server = Server::start_with(dir.path(), args, options).await.expect("server starts");
    let api = Api::new(server.base());
    api.deploy(service, Path::new(component)).await;
    Running { dir, server, api }
}

const CART: &str = "shopping-cart";

/// Adds `quantity` of product `product` to `cart`.
async fn add(api: &Api, cart: &str, product: &str, quantity: i32) {
    let item = json!({"productId": product, "name": product, "quantity": quantity});
    api.invoke(CART, cart, "AddItem", item).await.expect(200);
}

/// A server with the cart example deployed (a snapshot every 3 events) and
/// five carts: `cart-0` with 4 events (a snapshot at 3), the others with 1.
async fn five_carts(args: &[&str]) -> Running {
    let mut flags = vec!["--snapshot-every", "3"];
    flags.extend_from_slice(args);
    let t = start_with(CART, SHOPPING_CART, &flags).await;
    for product in ["a", "b", "c", "d"] {
        add(&t.api, "cart-0", product, 1).await;
    }
    for n in 1..5 {
        add(&t.api, &format!("cart-{n}"), "p", n).await;
    }
    assert_eq!(t.api.position(CART, "cart-0").await, (4, 3));
    t
}

/// Every entity's events, to show nothing changed.
async fn all_events(api: &Api) -> Vec<Vec<Value>> {
    let mut all = Vec::new();
    for n in 0..5 {
        all.push(api.events(CART, &format!("cart-{n}"), 1).await);
    }
    all
}

#[tokio::test]
async fn a_compatible_version_deploys_verified_and_reports_every_entity() {
    let t = five_carts(&[]).await;
    let api = &t.api;
    let before = api.invoke(CART, "cart-0", "GetCart", json!({})).await.expect(200);

    let deployed = api.deploy_with(CART, Path::new(CART_UPCASTING), "verify=replay").await.expect(201);
    assert_eq!(deployed["version"], 2);
    let report = &deployed["verification"];
    assert_eq!((report["checked"].clone(), report["stored"].clone()), (json!(5), json!(5)), "{report}");
    assert_eq!(report["failed"], json!([]), "{report}");
    assert_eq!(report["differences"], json!([]), "{report}");

    // The warm cart runs on the new version, rebuilt by its code: the same
    // state, and new events in the new shape, recorded as version 2.
    assert_eq!(api.invoke(CART, "cart-0", "GetCart", json!({})).await.expect(200), before);
    add(api, "cart-0", "e", 1).await;
    let events = api.events(CART, "cart-0", 1).await;
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[0]["payload"]["item"]["productId"], "a");
    assert_eq!(events[4]["version"], 2);
    assert_eq!(events[4]["payload"]["line"]["productId"], "e");

    let t = t.restart().await;
    let cart = t.api.invoke(CART, "cart-0", "GetCart", json!({})).await.expect(200);
    assert_eq!(cart["items"].as_array().unwrap().len(), 5, "{cart}");
}

#[tokio::test]
async fn an_incompatible_version_is_refused_naming_the_entity_and_seq_and_the_old_one_keeps_serving() {
    let t = five_carts(&[]).await;
    let api = &t.api;
    let events_before = all_events(api).await;

    let (kind, message) = api.deploy_with(CART, Path::new(CART_RENAMED_EVENT), "verify=replay").await.expect_error(409);
    assert_eq!(kind, "upgrade_rejected", "{message}");
    let body = api.deploy_with(CART, Path::new(CART_RENAMED_EVENT), "verify=replay").await.expect(409);
    let report = &body["error"]["details"]["verification"];
    assert_eq!(report["checked"], 5, "{report}");
    let failed = report["failed"].as_array().unwrap();
    // cart-0 fails from its snapshot (at event 4, after it) and from the
    // start (at event 1); the others from the start, at event 1.
    assert_eq!(report["failed_total"], 6, "{report}");
    let of = |entity: &str, from: &str| {
        failed.iter().find(|f| f["entity"] == entity && f["from"] == from).unwrap_or_else(|| panic!("{report}"))
    };
    assert_eq!(of("cart-0", "snapshot")["seq"], 4);
    assert_eq!(of("cart-0", "start")["seq"], 1);
    assert_eq!(of("cart-3", "start")["seq"], 1);
    assert!(of("cart-3", "start")["message"].as_str().unwrap().contains("event 1 could not be decoded"), "{report}");

    // Nothing changed: the old version serves, every log is as it was.
    let described = api.get(&format!("/v1/services/{CART}")).await.expect(200);
    assert_eq!((described["version"].clone(), described["versions"].as_array().unwrap().len()), (json!(1), 1));
    let cart = api.invoke(CART, "cart-2", "GetCart", json!({})).await.expect(200);
    assert_eq!(cart["items"][0]["quantity"], 2);
    assert_eq!(all_events(api).await, events_before);
    assert_eq!(api.metric("wasmstate_rejected_upgrades_total").await, 2.0);
}

#[tokio::test]
async fn a_probe_reports_changed_replies_and_strict_refuses_them() {
    let t = five_carts(&[]).await;
    let api = &t.api;
    let query = "verify=replay&probe=GetCart&strict=true";
    let body = api.deploy_with(CART, Path::new(CART_NEW_REPLY), query).await.expect(409);
    assert_eq!(body["error"]["kind"], "upgrade_rejected");
    let report = &body["error"]["details"]["verification"];
    assert_eq!((report["failed_total"].clone(), report["differences_total"].clone()), (json!(0), json!(5)));
    assert_eq!(report["state_differences_total"], 1);
    assert_eq!(api.get(&format!("/v1/services/{CART}")).await.expect(200)["version"], 1);

    let deployed = api.deploy_with(CART, Path::new(CART_NEW_REPLY), "verify=replay&probe=GetCart").await.expect(201);
    let differences = deployed["verification"]["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 5, "{deployed}");
    let cart_2 = differences.iter().find(|d| d["entity"] == "cart-2").unwrap();
    assert_eq!(cart_2["old"], json!({"items": [{"productId": "p", "name": "p", "quantity": 2}]}));
    assert_eq!(cart_2["new"]["totalQuantity"], 2);
    // cart-0's snapshot (as of event 3) lacks the total: folded from it, the
    // new version counts 1; folded from event 1, 4.
    let states = &deployed["verification"]["state_differences"];
    assert_eq!(states.as_array().unwrap().len(), 1, "{deployed}");
    assert_eq!(states[0]["entity"], "cart-0");
    assert_eq!(
        (states[0]["from_snapshot"]["totalQuantity"].clone(), states[0]["from_start"]["totalQuantity"].clone()),
        (json!(1), json!(4))
    );
    // The probe committed nothing.
    assert_eq!(api.position(CART, "cart-2").await.0, 1);
}

#[tokio::test]
async fn a_limit_checks_a_sample_and_the_progress_is_logged() {
    let t = five_carts(&[]).await;
    let deployed = t.api.deploy_with(CART, Path::new(CART_UPCASTING), "verify=replay&limit=2").await.expect(201);
    assert_eq!(
        (deployed["verification"]["checked"].clone(), deployed["verification"]["stored"].clone()),
        (json!(2), json!(5))
    );
    assert!(t.server.stderr().iter().any(|line| line.contains("verified the new version")), "{:?}", t.server.stderr());
    let (kind, _) = t.api.deploy_with(CART, Path::new(CART_UPCASTING), "limit=2").await.expect_error(400);
    assert_eq!(kind, "bad_request");
    for query in ["verify=yes", "verify=replay&limit=0", "verify=replay&probe="] {
        let (kind, _) = t.api.deploy_with(CART, Path::new(CART_UPCASTING), query).await.expect_error(400);
        assert_eq!(kind, "bad_request", "{query}");
    }
}

#[tokio::test]
async fn rollback_makes_an_earlier_version_newest_again() {
    let t = five_carts(&[]).await;
    let api = &t.api;
    let v1 = api.get(&format!("/v1/services/{CART}")).await.expect(200)["digest"].clone();
    let v2 = api.deploy(CART, Path::new(CART_NEW_REPLY)).await;
    assert!(api.invoke(CART, "cart-1", "GetCart", json!({})).await.expect(200).get("totalQuantity").is_some());

    let rolled = api.post(&format!("/v1/services/{CART}/rollback"), Value::Null).await.expect(201);
    assert_eq!((rolled["version"].clone(), rolled["rolled_back_to"].clone()), (json!(3), json!(1)));
    assert_eq!(rolled["digest"], v1);
    assert!(api.invoke(CART, "cart-1", "GetCart", json!({})).await.expect(200).get("totalQuantity").is_none());

    let rolled = api.post(&format!("/v1/services/{CART}/rollback?to=2&verify=replay"), Value::Null).await.expect(201);
    assert_eq!((rolled["version"].clone(), rolled["digest"].clone()), (json!(4), v2["digest"].clone()));
    assert_eq!(rolled["verification"]["checked"], 5);
    let (kind, _) = api.post(&format!("/v1/services/{CART}/rollback?to=99"), Value::Null).await.expect_error(404);
    assert_eq!(kind, "no_such_version");
    let (kind, _) = api.post("/v1/services/nothing/rollback", Value::Null).await.expect_error(404);
    assert_eq!(kind, "no_such_version");

    let t = t.restart().await;
    assert_eq!(t.api.get(&format!("/v1/services/{CART}")).await.expect(200)["version"], 4);
}

#[tokio::test]
async fn require_verify_refuses_unverified_deploys_of_services_with_entities() {
    let t = start_with(CART, SHOPPING_CART, &["--require-verify"]).await;
    let api = &t.api;
    // No entities yet: an unverified deploy is fine.
    api.deploy(CART, Path::new(SHOPPING_CART)).await;
    add(api, "c", "p", 1).await;
    let (kind, message) = api.deploy_bytes(CART, std::fs::read(CART_UPCASTING).unwrap()).await.expect_error(409);
    assert_eq!(kind, "verification_required", "{message}");
    let (kind, _) = api.post(&format!("/v1/services/{CART}/rollback"), Value::Null).await.expect_error(409);
    assert_eq!(kind, "verification_required");
    assert_eq!(api.get(&format!("/v1/services/{CART}")).await.expect(200)["version"], 2);
    api.deploy_with(CART, Path::new(CART_UPCASTING), "verify=replay").await.expect(201);
    // Deleted, its entities stay: a deploy under its name is verified too.
    api.send(reqwest::Method::DELETE, &format!("/v1/services/{CART}"), Vec::new()).await.expect(200);
    let (kind, _) = api.deploy_bytes(CART, std::fs::read(SHOPPING_CART).unwrap()).await.expect_error(409);
    assert_eq!(kind, "verification_required");
}

#[tokio::test]
async fn a_new_version_never_runs_on_state_an_earlier_one_folded() {
    let t = start_with(CART, SHOPPING_CART, &[]).await;
    let api = &t.api;
    add(api, "warm", "p", 1).await;
    // Unverified, the incompatible version is deployed. The warm cart's
    // state is rebuilt with it, which fails: the service's fault, 500,
    // and logged; nothing in the new format reaches the old log.
    api.deploy(CART, Path::new(CART_RENAMED_EVENT)).await;
    let item = json!({"productId": "q", "name": "q", "quantity": 1});
    let (kind, message) = api.invoke(CART, "warm", "AddItem", item).await.expect_error(500);
    assert_eq!(kind, "invalid_state");
    assert!(message.contains("event 1 could not be decoded"), "{message}");
    assert_eq!(api.position(CART, "warm").await.0, 1);
    assert!(
        t.server.stderr().iter().any(|line| line.contains("ERROR") && line.contains("warm")),
        "{:?}",
        t.server.stderr()
    );
    // Rolled back, the cart answers again.
    api.post(&format!("/v1/services/{CART}/rollback"), Value::Null).await.expect(201);
    assert_eq!(api.invoke(CART, "warm", "GetCart", json!({})).await.expect(200)["items"][0]["productId"], "p");
}

#[tokio::test]
async fn a_component_built_against_wit_0_1_0_deploys_runs_and_is_verified() {
    let t = start_with("legacy", COUNTER_V0_1, &["--snapshot-every", "2"]).await;
    let api = &t.api;
    for n in 1..=3 {
        let reply = api.invoke("legacy", "c", "Increase", json!({"value": n})).await.expect(200);
        assert_eq!(reply["value"], [1, 3, 6][n as usize - 1]);
    }
    api.invoke("legacy", "d", "Increase", json!({"value": 5})).await.expect(200);
    let (kind, _) = api.invoke("legacy", "c", "Nope", json!({})).await.expect_error(400);
    assert_eq!(kind, "unknown_command");

    // Verified against itself: every entity folds.
    let deployed = api.deploy_with("legacy", Path::new(COUNTER_V0_1), "verify=replay&probe=Get").await.expect(201);
    assert_eq!(deployed["verification"]["checked"], 2, "{deployed}");
    assert_eq!(deployed["verification"]["differences"], json!([]), "{deployed}");
    // A 0.1.0 component cannot say what its state is.
    let (kind, _) = api.get("/v1/services/legacy/entities/c/state").await.expect_error(422);
    assert_eq!(kind, "unsupported_component");

    // The SDK's counter (0.2.0) reads the same events: verified, and then
    // it can answer the state.
    api.deploy_with("legacy", Path::new(COUNTER), "verify=replay&probe=Get&strict=true").await.expect(201);
    assert_eq!(api.get("/v1/services/legacy/entities/c/state").await.expect(200), json!({"value": 6}));

    // A 0.1.0 component that cannot read a log is refused where it breaks,
    // found by bisection, as it says only that it failed: here the cart's
    // snapshot (as of event 2, with `--snapshot-every 2`), and event 1.
    api.deploy(CART, Path::new(SHOPPING_CART)).await;
    for product in ["a", "b", "c"] {
        add(api, "cart", product, 1).await;
    }
    let body = api.deploy_with(CART, Path::new(COUNTER_V0_1), "verify=replay").await.expect(409);
    let report = &body["error"]["details"]["verification"];
    let failed = report["failed"].as_array().unwrap();
    let from_snapshot = failed.iter().find(|f| f["from"] == "snapshot").unwrap_or_else(|| panic!("{report}"));
    assert_eq!((from_snapshot["seq"].clone(), from_snapshot["snapshot"].clone()), (json!(2), json!(true)));
    let from_start = failed.iter().find(|f| f["from"] == "start").unwrap_or_else(|| panic!("{report}"));
    assert_eq!((from_start["entity"].clone(), from_start["seq"].clone()), (json!("cart"), json!(1)));

    let t = t.restart().await;
    t.api.deploy(CART, Path::new(COUNTER_V0_1)).await;
    let (kind, _) = t.api.invoke(CART, "cart", "Get", json!({})).await.expect_error(500);
    assert_eq!(kind, "invalid_state");
}
