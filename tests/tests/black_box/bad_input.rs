//! Bad uploads, unknown services and commands, bad names and oversized
//! bodies: a clear JSON error with an honest status, and nothing persisted.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmstate_tests::guests::{COUNTER, WRONG_WORLD};

use crate::{raw_http, start, start_with};

#[tokio::test]
async fn bad_uploads_are_refused_and_nothing_is_deployed() {
    let t = start(&[]).await;
    let api = &t.api;

    let (kind, message) = api.deploy_bytes("svc", b"definitely not wasm".to_vec()).await.expect_error(400);
    assert_eq!(kind, "invalid_component");
    assert!(message.contains("not a WebAssembly"), "{message}");

    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let (kind, message) = api.deploy_bytes("svc", core_module).await.expect_error(400);
    assert_eq!(kind, "invalid_component");
    assert!(message.contains("core WebAssembly module"), "{message}");

    let truncated = std::fs::read(COUNTER).unwrap()[..1000].to_vec();
    let (kind, _) = api.deploy_bytes("svc", truncated).await.expect_error(400);
    assert_eq!(kind, "invalid_component");

    let wrong_world = std::fs::read(WRONG_WORLD).unwrap();
    let (kind, message) = api.deploy_bytes("svc", wrong_world).await.expect_error(400);
    assert_eq!(kind, "invalid_component");
    assert!(message.contains("wasmstate:entity/event-sourced@0.1.0"), "{message}");

    let (kind, _) = api.deploy_bytes("bad/name", std::fs::read(COUNTER).unwrap()).await.expect_error(404);
    assert_eq!(kind, "not_found");
    let (kind, _) = api.deploy_bytes("-bad", std::fs::read(COUNTER).unwrap()).await.expect_error(400);
    assert_eq!(kind, "invalid_name");

    api.get("/v1/services/svc").await.expect_error(404);
    assert_eq!(api.get("/v1/services").await.expect(200), json!([]));
    // And none of it came back after a restart.
    let t = t.restart().await;
    assert_eq!(t.api.get("/v1/services").await.expect(200), json!([]));
}

#[tokio::test]
async fn unknown_service_and_command() {
    let t = start_with("counter", COUNTER, &[]).await;
    let api = &t.api;
    let (kind, _) = api.invoke("nope", "x", "Get", json!({})).await.expect_error(404);
    assert_eq!(kind, "unknown_service");
    api.get("/v1/services/nope/entities/x/events").await.expect_error(404);

    let (kind, message) = api.invoke("counter", "c", "Explode", json!({})).await.expect_error(400);
    assert_eq!(kind, "unknown_command");
    assert!(message.contains("Explode"), "{message}");
    assert_eq!(api.position("counter", "c").await, (0, 0));

    let (kind, _) = api.invoke_raw("counter", "c", "Increase", b"{not json".to_vec()).await.expect_error(400);
    assert_eq!(kind, "invalid_payload");
    assert_eq!(api.position("counter", "c").await, (0, 0));

    let (kind, _) = api.get("/no/such/route").await.expect_error(404);
    assert_eq!(kind, "not_found");
}

#[tokio::test]
async fn bad_entity_ids_are_refused() {
    let t = start_with("counter", COUNTER, &[]).await;
    let api = &t.api;
    for id in ["a%2Fb", "nul%00", &"x".repeat(10 * 1024)] {
        let (kind, _) = api.invoke("counter", id, "Increase", json!({"value": 1})).await.expect_error(400);
        assert_eq!(kind, "bad_request", "{id}");
    }
    // `..` is an ordinary id that stays inside the counter service's keys.
    // (HTTP clients normalise `..` away, so this one is sent raw.)
    let raw = raw_http(t.server.base(), "POST /v1/services/counter/entities/../Increase", r#"{"value": 1}"#).await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let raw = raw_http(t.server.base(), "GET /v1/services/counter/entities/..", "").await;
    assert!(raw.contains(r#""last_seq":1"#), "{raw}");
    assert_eq!(api.position("counter", "c").await, (0, 0));
}

#[tokio::test]
async fn oversized_bodies_answer_413_and_persist_nothing() {
    let t = start_with("counter", COUNTER, &["--max-body-bytes", "1KiB", "--max-deploy-bytes", "512KiB"]).await;
    let api = &t.api;
    let big = format!("{{\"value\": 1, \"pad\": \"{}\"}}", "x".repeat(4096));
    let (kind, _) = api.invoke_raw("counter", "c", "Increase", big.into_bytes()).await.expect_error(413);
    assert_eq!(kind, "payload_too_large");
    assert_eq!(api.position("counter", "c").await, (0, 0));

    // A 1 MiB upload is refused from its Content-Length alone: the server
    // answers before the client has sent the body.
    let addr = t.server.base().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!("PUT /v1/services/other HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n", 1024 * 1024);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0u8; 1024]).await.unwrap();
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut response)).await.unwrap().unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("payload_too_large"), "{response}");
    api.get("/v1/services/other").await.expect_error(404);
}
