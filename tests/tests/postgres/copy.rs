//! `wasmstate journal copy`: a redb journal with every kind of record moves
//! to PostgreSQL, and a host on the copy serves the same states and
//! carries on where the original stopped.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::{CART_PROJECTION, COUNTER, SHOPPING_CART, TCK_CRDT, TCK_EVENT_SOURCED, USER_PROFILE};
use wasmstate_tests::postgres::start_own;
use wasmstate_tests::server::binary;
use wasmstate_tests::{Api, JournalKind, Options, Server};

/// Runs `wasmstate journal copy`; answers (success, stdout + stderr).
fn copy(from: &Path, to: &str) -> (bool, String) {
    let output = Command::new(binary())
        .args(["journal", "copy", "--from"])
        .arg(from)
        .args(["--to", to])
        .output()
        .expect("wasmstate runs");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

async fn get(api: &Api, service: &str, entity: &str, command: &str) -> Value {
    api.invoke(service, entity, command, json!({})).await.expect(200)
}

#[tokio::test]
async fn a_redb_journal_copied_to_postgres_serves_the_same_and_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let redb = Options { journal: Some(JournalKind::Redb), ..Options::default() };
    let server = Server::start_with(dir.path(), &["--snapshot-every", "3"], redb).await.unwrap();
    let api = Api::new(server.base());
    for (service, component) in [("cart", SHOPPING_CART), ("counter", COUNTER), ("profile", USER_PROFILE)] {
        api.deploy(service, Path::new(component)).await;
    }
    api.deploy("tck", Path::new(TCK_EVENT_SOURCED)).await;
    api.deploy("crdt", Path::new(TCK_CRDT)).await;
    let crdt = |id: &'static str, actions: Value| api.invoke("crdt", id, "Process", json!({ "actions": actions }));
    crdt("gcounter-c", json!([{"increment": 3}])).await.expect(200);
    crdt("orset-s", json!([{"add": "a"}, {"add": "b"}])).await.expect(200);
    crdt("orset-s", json!([{"remove": "a"}])).await.expect(200);
    let bytes = std::fs::read(CART_PROJECTION).unwrap();
    api.send(reqwest::Method::PUT, "/v1/services/projection?subscribe=cart", bytes).await.expect(201);
    for quantity in 1..=4 {
        let item = json!({"productId": format!("P{quantity}"), "name": "P", "quantity": quantity});
        api.invoke("cart", "c1", "AddItem", item).await.expect(200);
    }
    let total = || async { get(&api, "counter", "items-added", "Get").await["value"].clone() };
    assert!(api.eventually(Duration::from_secs(5), || async { total().await == json!(10) }).await);
    api.invoke("profile", "ada", "Update", json!({"name": "Ada", "email": "ada@example.com"})).await.expect(200);
    let keyed = api.invoke_idempotent("counter", "k", "Increase", json!({"value": 7}), "key-1").await.expect(200);
    // A side effect to a service that does not exist yet waits in the outbox.
    let later = json!({"actions": [{"emit": "a"}, {"effect": {"service": "later", "id": "x", "synchronous": false}}]});
    api.invoke("tck", "one", "Process", later).await.expect(200);
    let cart = get(&api, "cart", "c1", "GetCart").await;
    let (position, snapshot) = api.position("cart", "c1").await;
    assert_eq!((position, snapshot), (4, 3), "the cart has a snapshot and an event after it");
    assert!(server.stop().await.unwrap().success());

    let postgres = start_own().await.expect("a PostgreSQL server of the test's own");
    let url = postgres.create_database().await.unwrap();
    let (copied, said) = copy(dir.path(), &url);
    assert!(copied, "{said}");
    for copied in ["versions: 6", "values: 1", "crdt_replicas: 2", "outbox: 1", "offsets: 1"] {
        assert!(said.contains(copied), "{copied} in {said}");
    }

    let on_postgres = Options { journal: Some(JournalKind::Database(url.clone())), ..Options::default() };
    let server = Server::start_with(dir.path(), &["--snapshot-every", "3"], on_postgres).await.unwrap();
    let api = Api::new(server.base());
    assert_eq!(get(&api, "cart", "c1", "GetCart").await, cart, "the same state");
    assert_eq!(api.position("cart", "c1").await, (4, 3));
    assert_eq!(get(&api, "profile", "ada", "Get").await["name"], "Ada");
    assert_eq!(get(&api, "crdt", "orset-s", "Get").await, json!({"elements": ["b"]}));
    // The host goes on as the same replica, its row's revisions carrying on.
    let more = api.invoke("crdt", "gcounter-c", "Process", json!({"actions": [{"increment": 1}]})).await;
    assert_eq!(more.expect(200), json!({"value": 4}));
    let shown = api.get("/v1/services/crdt/entities/gcounter-c").await.expect(200);
    assert_eq!((shown["state"].clone(), shown["replicas"].clone()), (json!(4), json!(1)), "{shown}");
    let repeat = api.invoke_idempotent("counter", "k", "Increase", json!({"value": 7}), "key-1").await.expect(200);
    assert_eq!(repeat, keyed, "the recorded reply, not a second run");
    assert_eq!(get(&api, "counter", "k", "Get").await, json!({"value": 7}));
    // The seqs carry on, and the projection counts only what is new.
    let item = json!({"productId": "P5", "name": "P", "quantity": 5});
    api.invoke("cart", "c1", "AddItem", item).await.expect(200);
    assert_eq!(api.position("cart", "c1").await.0, 5);
    let total = || async { get(&api, "counter", "items-added", "Get").await["value"].clone() };
    assert!(api.eventually(Duration::from_secs(5), || async { total().await == json!(15) }).await, "{}", total().await);
    // The waiting side effect is delivered once its target exists.
    api.deploy("later", Path::new(TCK_EVENT_SOURCED)).await;
    let delivered = api.eventually(Duration::from_secs(15), || async { api.events("later", "x", 1).await.len() == 1 });
    assert!(delivered.await);
    assert!(server.stop().await.unwrap().success());

    // A target that holds anything is refused, and left as it was.
    let (copied, said) = copy(dir.path(), &url);
    assert!(!copied && said.contains("not empty"), "{said}");
}
