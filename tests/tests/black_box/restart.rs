//! State survives a restart; snapshots are taken at the configured interval.

use serde_json::json;
use wasmstate_tests::guests::{COUNTER, MISBEHAVING, SHOPPING_CART};

use crate::start_with;

#[tokio::test]
async fn services_and_state_survive_a_restart() {
    let t = start_with("shopping-cart", SHOPPING_CART, &[]).await;
    let add = json!({"productId": "A1", "name": "Apple", "quantity": 2});
    t.api.invoke("shopping-cart", "c1", "AddItem", add.clone()).await.expect(200);
    t.api.invoke("shopping-cart", "c1", "AddItem", add).await.expect(200);

    let t = t.restart().await;
    assert_eq!(t.api.get("/v1/services/shopping-cart").await.expect(200)["version"], 1);
    assert_eq!(
        t.api.invoke("shopping-cart", "c1", "GetCart", json!({})).await.expect(200),
        json!({"items": [{"productId": "A1", "name": "Apple", "quantity": 4}]})
    );
    assert_eq!(t.api.position("shopping-cart", "c1").await, (2, 0));
    // The log goes on with the next seq.
    t.api.invoke("shopping-cart", "c1", "RemoveItem", json!({"productId": "A1"})).await.expect(200);
    assert_eq!(t.api.position("shopping-cart", "c1").await, (3, 0));
}

#[tokio::test]
async fn snapshot_every_five_and_rehydrate_after_restart() {
    let t = start_with("counter", COUNTER, &["--snapshot-every", "5"]).await;
    for i in 1..=7 {
        let reply = t.api.invoke("counter", "c", "Increase", json!({"value": i})).await.expect(200);
        assert_eq!(reply["value"], (1..=i).sum::<i64>());
    }
    assert_eq!(t.api.position("counter", "c").await, (7, 5));

    let t = t.restart().await;
    // Rebuilt from the snapshot at 5 plus events 6 and 7.
    assert_eq!(t.api.invoke("counter", "c", "Get", json!({})).await.expect(200), json!({"value": 28}));
    assert_eq!(t.api.events("counter", "c", 1).await.len(), 7);
    // A command whose events cross 10 snapshots the state after all of them.
    t.api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    t.api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    t.api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    assert_eq!(t.api.position("counter", "c").await, (10, 10));
    let t = t.restart().await;
    assert_eq!(t.api.invoke("counter", "c", "Get", json!({})).await.expect(200), json!({"value": 31}));
}

#[tokio::test]
async fn sigterm_finishes_in_flight_commands_then_exits_cleanly() {
    let t = start_with("misbehaving", MISBEHAVING, &[]).await;
    let api = t.api.clone();
    let in_flight =
        tokio::spawn(async move { api.invoke("misbehaving", "slow", "Spin", json!({"millis": 800})).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let crate::Running { dir, server, .. } = t;
    let status = server.stop().await.unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(in_flight.await.unwrap().expect(200), json!({"spun": 800}));
    // What it answered is on disk.
    let server = wasmstate_tests::Server::start(dir.path(), &[]).await.unwrap();
    assert_eq!(wasmstate_tests::Api::new(server.base()).position("misbehaving", "slow").await, (1, 0));
}

/// A journal written by a newer wasmstate (a higher schema version) is
/// refused at start, with a message that says so, and left as it was.
#[tokio::test]
async fn a_journal_from_a_newer_wasmstate_is_refused_at_start() {
    let t = start_with("counter", COUNTER, &[]).await;
    t.api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    let crate::Running { dir, server, .. } = t;
    assert!(server.stop().await.unwrap().success());
    let stored = crate::stored::Stored::of(dir.path()).await;
    stored.set_schema_version(99).await;
    let options = wasmstate_tests::Options { capture_stderr: true, ..Default::default() };
    let error =
        wasmstate_tests::Server::start_with(dir.path(), &[], options).await.err().expect("the start is refused");
    let said = format!("{error:#}");
    assert!(said.contains("schema version 99") && said.contains("newer"), "{said}");
    assert_eq!(stored.schema_version().await, 99, "left as it was");
}
