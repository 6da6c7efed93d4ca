//! A deploy or delete whose client goes away mid-request: the host's view of
//! the service's versions stays the journal's, so later deploys still work
//! and a restart shows the same versions.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use wasmstate_tests::Api;
use wasmstate_tests::guests::SHOPPING_CART;

use crate::{start, start_with};

const CART: &str = "shopping-cart";

/// Sends a whole request on a fresh connection and closes it `after` that
/// without reading the answer, as a client that timed out does. (A close that
/// arrives with the request makes the server drop it before it starts.)
async fn send_and_hang_up(base: &str, request_line: &str, body: &[u8], after: Duration) {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!("{request_line} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.expect("write the head");
    stream.write_all(body).await.expect("write the body");
    stream.flush().await.expect("flush");
    tokio::time::sleep(after).await;
}

/// The answer of `GET /v1/services/{service}`: its status and body.
async fn described(api: &Api, service: &str) -> (u16, Value) {
    let reply = api.get(&format!("/v1/services/{service}")).await;
    (reply.status.as_u16(), reply.body)
}

/// Asserts that a described service lists consecutive versions, in order,
/// up to its newest (after a delete they go on from the last number).
#[track_caller]
fn assert_consistent_versions(description: &Value) {
    let newest = description["version"].as_u64().expect("a version");
    let numbers: Vec<u64> = description["versions"]
        .as_array()
        .expect("a list of versions")
        .iter()
        .map(|v| v["version"].as_u64().expect("a version number"))
        .collect();
    let first = numbers.first().copied().expect("at least one version");
    assert_eq!(numbers, (first..=newest).collect::<Vec<_>>(), "in {description}");
}

#[tokio::test]
async fn an_abandoned_deploy_leaves_later_deploys_working() {
    let t = start(&[]).await;
    let bytes = std::fs::read(SHOPPING_CART).expect("component file");
    // Compiling takes longer than this, so the client leaves mid-deploy.
    let mid_deploy = Duration::from_millis(100);
    send_and_hang_up(t.server.base(), &format!("PUT /v1/services/{CART}"), &bytes, mid_deploy).await;
    // Having started, it completes; give it the time to.
    let deployed = t.api.eventually(Duration::from_secs(10), || async { described(&t.api, CART).await.0 == 200 }).await;
    assert!(deployed, "the abandoned deploy completed");

    let deployed = t.api.deploy_bytes(CART, bytes.clone()).await.expect(201);
    let (status, description) = described(&t.api, CART).await;
    assert_eq!(status, 200, "{description}");
    assert_eq!(description["version"], deployed["version"], "{description}");
    assert_consistent_versions(&description);
    let item = json!({"productId": "A1", "name": "Apple", "quantity": 2});
    t.api.invoke(CART, "c1", "AddItem", item).await.expect(200);

    // An abandoned deploy right before a normal one: they run one after the
    // other, each with its own version.
    send_and_hang_up(t.server.base(), &format!("PUT /v1/services/{CART}"), &bytes, mid_deploy).await;
    t.api.deploy_bytes(CART, bytes).await.expect(201);
    let newest = deployed["version"].as_u64().unwrap() + 2;
    let both = t
        .api
        .eventually(Duration::from_secs(10), || async { described(&t.api, CART).await.1["version"] == newest })
        .await;
    assert!(both, "both deploys completed");
    let (_, description) = described(&t.api, CART).await;
    assert_consistent_versions(&description);

    // What the host showed is what the journal holds.
    let t = t.restart().await;
    assert_eq!(described(&t.api, CART).await, (200, description));
    let cart = t.api.invoke(CART, "c1", "GetCart", json!({})).await.expect(200);
    assert_eq!(cart, json!({"items": [{"productId": "A1", "name": "Apple", "quantity": 2}]}));
}

#[tokio::test]
async fn an_abandoned_delete_takes_effect_in_memory_too() {
    let t = start_with(CART, SHOPPING_CART, &[]).await;
    // A delete is too quick to leave in the middle of on purpose; leaving at
    // once often does (and otherwise the hang-up comes before the delete
    // starts): either way, what the host shows must be what the journal
    // holds.
    send_and_hang_up(t.server.base(), &format!("DELETE /v1/services/{CART}"), b"", Duration::ZERO).await;
    t.api.eventually(Duration::from_secs(2), || async { described(&t.api, CART).await.0 == 404 }).await;
    let before = described(&t.api, CART).await;

    // What the host showed is what the journal holds.
    let t = t.restart().await;
    assert_eq!(described(&t.api, CART).await, before);
    let deployed = t.api.deploy(CART, Path::new(SHOPPING_CART)).await;
    let (_, description) = described(&t.api, CART).await;
    assert_eq!(description["version"], deployed["version"], "{description}");
    assert_consistent_versions(&description);
}
