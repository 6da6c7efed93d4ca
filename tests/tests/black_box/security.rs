//! Tokens, the non-loopback guard, and imports the host does not provide.

use std::path::Path;

use serde_json::json;
use wasmstate_tests::guests::{BAD_IMPORT, COUNTER};
use wasmstate_tests::server::binary;

use crate::{start, start_with};

#[tokio::test]
async fn a_component_importing_what_the_host_lacks_is_refused_naming_the_import() {
    let t = start(&[]).await;
    let bytes = std::fs::read(BAD_IMPORT).unwrap();
    let (kind, message) = t.api.deploy_bytes("thief", bytes).await.expect_error(400);
    assert_eq!(kind, "invalid_component");
    assert!(message.contains("test:forbidden/secrets"), "{message}");
    t.api.get("/v1/services/thief").await.expect_error(404);
}

#[tokio::test]
async fn the_admin_token_guards_deploys() {
    let t = start(&["--admin-token", "s3cret"]).await;
    let component = std::fs::read(COUNTER).unwrap();
    let (kind, _) = t.api.deploy_bytes("counter", component.clone()).await.expect_error(401);
    assert_eq!(kind, "unauthorized");
    t.api.with_token("wrong").deploy_bytes("counter", component.clone()).await.expect_error(401);
    t.api.get("/v1/services/counter").await.expect_error(404);
    t.api.with_token("s3cret").deploy_bytes("counter", component).await.expect(201);
    // Invocations need no token unless --invoke-token is set.
    t.api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    // Deleting needs it too.
    t.api.send(reqwest::Method::DELETE, "/v1/services/counter", Vec::new()).await.expect_error(401);
    t.api.get("/v1/services/counter").await.expect(200);
    t.api.with_token("s3cret").send(reqwest::Method::DELETE, "/v1/services/counter", Vec::new()).await.expect(200);
    t.api.get("/v1/services/counter").await.expect_error(404);
}

#[tokio::test]
async fn the_invoke_token_guards_entities() {
    let t = start_with("counter", COUNTER, &["--invoke-token", "inv"]).await;
    let (kind, _) = t.api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect_error(401);
    assert_eq!(kind, "unauthorized");
    t.api.get("/v1/services/counter/entities/c/events").await.expect_error(401);
    let authorized = t.api.with_token("inv");
    authorized.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    assert_eq!(authorized.position("counter", "c").await, (1, 0));
    // Deploying stays open without an admin token.
    t.api.deploy("counter", Path::new(COUNTER)).await;
}

#[test]
fn a_public_address_needs_an_admin_token_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(binary())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--admin-token") && stderr.contains("--insecure"), "{stderr}");
}

#[tokio::test]
async fn the_read_token_guards_metrics_and_the_service_list() {
    let t = start(&["--read-token", "r", "--admin-token", "a"]).await;
    t.api.with_token("a").deploy("counter", Path::new(COUNTER)).await;
    for path in ["/metrics", "/v1/services", "/v1/services/counter"] {
        let (kind, _) = t.api.get(path).await.expect_error(401);
        assert_eq!(kind, "unauthorized", "{path}");
        t.api.with_token("r").get(path).await.expect(200);
        t.api.with_token("a").get(path).await.expect(200);
    }
    t.api.get("/healthz").await.expect(200);
    // Without a read token, the invoke token guards them.
    let t = start_with("counter", COUNTER, &["--invoke-token", "i"]).await;
    t.api.get("/v1/services").await.expect_error(401);
    t.api.with_token("i").get("/v1/services").await.expect(200);
    t.api.get("/healthz").await.expect(200);
}
