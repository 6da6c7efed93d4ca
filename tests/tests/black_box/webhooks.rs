//! Webhooks: side effects that are HTTP requests, written to the outbox in
//! the command's transaction and delivered after the commit, at least once,
//! with an `Idempotency-Key` that stays the same across attempts — through
//! a receiver that fails three times, and across a SIGKILL between the
//! commit and the delivery. A command that fails sends none; one to a host
//! not on the allow-list fails its command; a 4xx drops it.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::HTTP_CLIENT;
use wasmstate_tests::{Api, Server};

use crate::http_receiver::{Received, Receiver};
use crate::{Running, start};

async fn client_allowed(allow: &str) -> Running {
    let t = start(&[]).await;
    t.api.deploy_with("http", Path::new(HTTP_CLIENT), &format!("allow_http={allow}")).await.expect(201);
    t
}

fn webhook(url: &str, body: Value) -> Value {
    json!({ "url": url, "body": body, "headers": [["x-source", "tests"]], "method": null })
}

async fn sent(api: &Api, entity: &str) -> u64 {
    api.invoke("http", entity, "get", json!({})).await.expect(200)["webhooks"].as_u64().unwrap()
}

/// The idempotency keys the attempts carried.
fn keys(attempts: &[Received]) -> HashSet<String> {
    attempts.iter().map(|r| r.header("idempotency-key").expect("every attempt has a key").to_string()).collect()
}

#[tokio::test]
async fn a_webhook_is_delivered_after_the_commit_with_its_key_headers_and_body() {
    let receiver = Receiver::start().await;
    let t = client_allowed(&receiver.authority()).await;
    let api = &t.api;
    let reply = api.invoke("http", "a", "webhook", webhook(&receiver.url("/cases"), json!({"case": 1}))).await;
    assert_eq!(reply.expect(200), json!({"sent": true}));
    let got = receiver.wait_for("/cases", 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let hook = &got[0];
    assert_eq!((hook.method.as_str(), hook.json()), ("POST", json!({"case": 1})));
    assert_eq!(hook.header("content-type"), Some("application/json"));
    assert_eq!(hook.header("x-source"), Some("tests"));
    let key = hook.header("idempotency-key").unwrap();
    assert!(key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    assert_eq!(sent(api, "a").await, 1);
    let delivered =
        format!("wasmstate_webhook_deliveries_total{{host=\"{}\",outcome=\"delivered\"}}", receiver.authority());
    assert!(api.eventually(Duration::from_secs(5), || async { api.metric(&delivered).await == 1.0 }).await);
    // A second webhook has a key of its own.
    api.invoke("http", "a", "webhook", webhook(&receiver.url("/cases"), json!({"case": 2}))).await.expect(200);
    let got = receiver.wait_for("/cases", 2, Duration::from_secs(10)).await;
    assert_eq!(keys(&got).len(), 2);
}

#[tokio::test]
async fn a_webhook_the_receiver_fails_three_times_is_delivered_once_with_one_key() {
    let receiver = Receiver::start().await;
    let t = client_allowed(&receiver.authority()).await;
    let api = &t.api;
    let url = receiver.url("/fail/3/case");
    api.invoke("http", "a", "webhook", webhook(&url, json!({"case": 7}))).await.expect(200);
    let attempts = receiver.wait_for("/fail/3/case", 4, Duration::from_secs(20)).await;
    assert_eq!(attempts.len(), 4, "three 503s, then a 200: {attempts:?}");
    assert_eq!(keys(&attempts).len(), 1, "the same key every time");
    assert!(attempts.iter().all(|a| a.json() == json!({"case": 7})));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.requests_to("/fail/3/case").len(), 4, "nothing after the 200");
    let retried =
        format!("wasmstate_webhook_deliveries_total{{host=\"{}\",outcome=\"retried\"}}", receiver.authority());
    assert_eq!(api.metric(&retried).await, 3.0);
}

#[tokio::test]
async fn a_webhook_interrupted_by_a_sigkill_is_delivered_again_with_the_same_key() {
    let receiver = Receiver::start().await;
    let Running { dir, server, api } = client_allowed(&receiver.authority()).await;
    api.invoke("http", "a", "webhook", webhook(&receiver.url("/hold/case"), json!({"case": 9}))).await.expect(200);
    // The first attempt is held open by the receiver: the host dies between
    // the commit and a delivery it saw through.
    assert_eq!(receiver.wait_for("/hold/case", 1, Duration::from_secs(10)).await.len(), 1);
    server.kill().await.unwrap();
    let server = Server::start(dir.path(), &[]).await.expect("the host starts again");
    let api = Api::new(server.base());
    // On a shared journal the new host delivers once the killed one's
    // outbox lease expires.
    let attempts = receiver.wait_for("/hold/case", 2, Duration::from_secs(30)).await;
    assert_eq!(attempts.len(), 2, "delivered again after the restart: {attempts:?}");
    assert_eq!(keys(&attempts).len(), 1, "with the same key");
    assert_eq!(sent(&api, "a").await, 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.requests_to("/hold/case").len(), 2, "and not again once answered");
    drop(server);
}

#[tokio::test]
async fn a_command_that_fails_sends_no_webhook() {
    let receiver = Receiver::start().await;
    let t = client_allowed(&receiver.authority()).await;
    let api = &t.api;
    let (_, message) = api
        .invoke("http", "a", "webhook_then_fail", webhook(&receiver.url("/cases"), json!({})))
        .await
        .expect_error(400);
    assert!(!message.is_empty());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receiver.requests().is_empty(), "nothing was sent");
    assert_eq!(sent(api, "a").await, 0);
    assert_eq!(api.metric("wasmstate_outbox_pending").await, 0.0, "nothing waits in the outbox");
}

#[tokio::test]
async fn a_webhook_to_a_host_not_on_the_list_fails_its_command() {
    let (allowed, other) = (Receiver::start().await, Receiver::start().await);
    let t = client_allowed(&allowed.authority()).await;
    let api = &t.api;
    let reply = api.invoke("http", "a", "webhook", webhook(&other.url("/cases"), json!({}))).await;
    let (kind, message) = reply.expect_error(500);
    assert_eq!(kind, "invalid_webhook");
    assert!(message.contains("allow-list"), "{message}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(other.requests().is_empty() && allowed.requests().is_empty());
    assert_eq!(sent(api, "a").await, 0, "the command persisted nothing");
}

#[tokio::test]
async fn a_webhook_the_receiver_refuses_is_dropped_after_one_attempt() {
    let receiver = Receiver::start().await;
    let t = client_allowed(&receiver.authority()).await;
    let api = &t.api;
    api.invoke("http", "a", "webhook", webhook(&receiver.url("/status/404"), json!({}))).await.expect(200);
    assert_eq!(receiver.wait_for("/status/404", 1, Duration::from_secs(10)).await.len(), 1);
    let dropped =
        format!("wasmstate_webhook_deliveries_total{{host=\"{}\",outcome=\"dropped\"}}", receiver.authority());
    assert!(api.eventually(Duration::from_secs(5), || async { api.metric(&dropped).await == 1.0 }).await);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.requests_to("/status/404").len(), 1, "a 404 is not retried");
    // A 429 is.
    api.invoke("http", "a", "webhook", webhook(&receiver.url("/status/429"), json!({}))).await.expect(200);
    assert!(receiver.wait_for("/status/429", 2, Duration::from_secs(10)).await.len() >= 2);
}

#[tokio::test]
async fn a_webhook_answered_2xx_with_a_large_body_is_delivered_once() {
    let receiver = Receiver::start().await;
    let t = client_allowed(&receiver.authority()).await;
    let api = &t.api;
    // 2 MB, past the default --http-max-response-bytes of 1 MiB: the 200 counts.
    api.invoke("http", "a", "webhook", webhook(&receiver.url("/big/2000000"), json!({}))).await.expect(200);
    let delivered =
        format!("wasmstate_webhook_deliveries_total{{host=\"{}\",outcome=\"delivered\"}}", receiver.authority());
    assert!(api.eventually(Duration::from_secs(10), || async { api.metric(&delivered).await == 1.0 }).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.requests_to("/big/").len(), 1, "not sent again");
}
