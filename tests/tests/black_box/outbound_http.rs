//! Outbound HTTP from guests: an allowed call succeeds; a host not on the
//! service's allow-list, a name that resolves to a loopback address the
//! list does not name, and a redirect to a host not on it are refused
//! inside the guest; the timeout, response size and per-command caps hold;
//! a command that called out and then failed persists nothing; dry runs and
//! services without an allow-list call nothing; the server's cap bounds
//! what a deploy may grant.
//!
//! The `http-client` test guest (a value entity) calls out as its commands
//! say and counts its successful fetches in its state; a local receiver
//! (`common/http_receiver.rs`) stands for the outside world.

use std::path::Path;

use serde_json::{Value, json};
use wasmstate_tests::Api;
use wasmstate_tests::guests::HTTP_CLIENT;

use crate::http_receiver::Receiver;
use crate::tls_server::TlsServer;
use crate::{Running, start};

/// A server with the `http-client` guest deployed as `http`, allowed to
/// reach `allow` (comma-separated).
async fn client_allowed(allow: &str, args: &[&str]) -> Running {
    let t = start(args).await;
    t.api.deploy_with("http", Path::new(HTTP_CLIENT), &format!("allow_http={allow}")).await.expect(201);
    t
}

async fn fetch(api: &Api, entity: &str, method: &str, url: &str) -> wasmstate_tests::Reply {
    api.invoke("http", entity, "fetch", json!({ "method": method, "url": url, "body": null, "headers": [] })).await
}

async fn fetches(api: &Api, entity: &str) -> Value {
    api.invoke("http", entity, "get", json!({})).await.expect(200)
}

#[tokio::test]
async fn a_guest_calls_an_allowed_host_and_gets_its_answer() {
    let receiver = Receiver::start().await;
    let t = client_allowed(&receiver.authority(), &[]).await;
    let api = &t.api;
    let reply = fetch(api, "a", "GET", &receiver.url("/ok")).await.expect(200);
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(serde_json::from_str::<Value>(reply["body"].as_str().unwrap()).unwrap(), json!({"hello": "world"}));
    let echo =
        json!({ "method": "POST", "url": receiver.url("/echo"), "body": {"n": 1}, "headers": [["x-trace", "t1"]] });
    let reply = api.invoke("http", "a", "fetch", echo).await.expect(200);
    let echoed: Value = serde_json::from_str(reply["body"].as_str().unwrap()).unwrap();
    assert_eq!((echoed["method"].as_str(), echoed["headers"]["x-trace"].as_str()), (Some("POST"), Some("t1")));
    assert_eq!(serde_json::from_str::<Value>(echoed["body"].as_str().unwrap()).unwrap(), json!({"n": 1}));
    assert_eq!(fetches(api, "a").await["fetches"], 2);

    let described = api.get("/v1/services/http").await.expect(200);
    assert_eq!(described["allow_http"], json!([receiver.authority()]));
    let ok = format!(
        "wasmstate_outbound_requests_total{{service=\"http\",host=\"{}\",status=\"200\"}}",
        receiver.authority()
    );
    assert_eq!(api.metric(&ok).await, 2.0);
    assert!(api.metric("wasmstate_outbound_request_duration_seconds_count{service=\"http\"}").await >= 2.0);
}

#[tokio::test]
async fn https_reaches_a_server_a_trusted_root_signed_for_and_no_other() {
    let server = TlsServer::start().await;
    let roots = tempfile::tempdir().unwrap();
    let root_file = roots.path().join("roots.pem");
    std::fs::write(&root_file, server.root_pem()).unwrap();
    let trusting = client_allowed(&server.authority(), &["--http-ca-file", root_file.to_str().unwrap()]).await;
    let reply = fetch(&trusting.api, "a", "GET", &server.url("/secure")).await.expect(200);
    assert_eq!((reply["status"].as_u64(), reply["body"].as_str()), (Some(200), Some(r#"{"secure":true}"#)));

    // The Mozilla roots alone do not vouch for it.
    let wary = client_allowed(&server.authority(), &[]).await;
    let (_, message) = fetch(&wary.api, "a", "GET", &server.url("/secure")).await.expect_error(400);
    assert!(message.contains("TLS certificate"), "{message}");
    assert_eq!(fetches(&wary.api, "a").await["fetches"], 0);
}

#[tokio::test]
async fn a_host_not_on_the_list_is_refused_inside_the_guest_and_nothing_is_persisted() {
    let (allowed, other) = (Receiver::start().await, Receiver::start().await);
    let t = client_allowed(&allowed.authority(), &[]).await;
    let api = &t.api;
    let (kind, message) = fetch(api, "a", "GET", &other.url("/ok")).await.expect_error(400);
    assert_eq!(kind, "command_failed", "{message}");
    assert!(message.contains("allow-list"), "{message}");
    assert!(other.requests().is_empty(), "nothing reached the host");
    assert_eq!(fetches(api, "a").await["fetches"], 0, "the failed command persisted nothing");
    // Hosts not on the list are measured as one, so guests add no series.
    let denied = "wasmstate_outbound_requests_total{service=\"http\",host=\"other\",status=\"denied\"}";
    assert_eq!(api.metric(denied).await, 1.0);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_unless_its_addresses_are_listed() {
    let receiver = Receiver::start().await;
    let port = receiver.port();
    let t = client_allowed(&format!("localhost:{port}"), &[]).await;
    let api = &t.api;
    let url = format!("http://localhost:{port}/ok");
    let (_, message) = fetch(api, "a", "GET", &url).await.expect_error(400);
    assert!(message.contains("loopback") || message.contains("private"), "{message}");
    assert!(receiver.requests().is_empty(), "the check is on the resolved address, before connecting");

    // Naming the addresses lets the name reach them.
    let allow = format!("localhost:{port},127.0.0.1:{port},[::1]:{port}");
    api.deploy_with("http", Path::new(HTTP_CLIENT), &format!("allow_http={allow}")).await.expect(201);
    assert_eq!(fetch(api, "a", "GET", &url).await.expect(200)["status"], 200);
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn a_redirect_to_a_host_not_on_the_list_is_refused() {
    let (allowed, other) = (Receiver::start().await, Receiver::start().await);
    let t = client_allowed(&allowed.authority(), &[]).await;
    let api = &t.api;
    // A redirect within the allowed host is followed.
    let inside = allowed.url(&format!("/redirect?to={}", allowed.url("/ok")));
    assert_eq!(fetch(api, "a", "GET", &inside).await.expect(200)["status"], 200);
    let outside = allowed.url(&format!("/redirect?to={}", other.url("/ok")));
    let (_, message) = fetch(api, "a", "GET", &outside).await.expect_error(400);
    assert!(message.contains("allow-list"), "{message}");
    assert!(other.requests().is_empty(), "the redirect's target was never called");
}

#[tokio::test]
async fn slow_and_large_answers_and_too_many_requests_hit_their_limits() {
    let receiver = Receiver::start().await;
    let flags = ["--http-timeout", "500ms", "--http-max-response-bytes", "64KiB", "--http-max-requests", "3"];
    let t = client_allowed(&receiver.authority(), &flags).await;
    let api = &t.api;
    let (_, message) = fetch(api, "a", "GET", &receiver.url("/slow/3000")).await.expect_error(400);
    assert!(message.contains("timed out"), "{message}");
    let (_, message) = fetch(api, "a", "GET", &receiver.url("/big/200000")).await.expect_error(400);
    assert!(message.contains("larger than"), "{message}");
    assert_eq!(fetch(api, "a", "GET", &receiver.url("/big/1000")).await.expect(200)["status"], 200);

    let many = json!({ "url": receiver.url("/ok"), "count": 5 });
    let (_, message) = api.invoke("http", "b", "fetch_many", many).await.expect_error(400);
    assert!(message.contains("per command"), "{message}");
    assert_eq!(receiver.requests_to("/ok").len(), 3, "the fourth request was never sent");
    let three = json!({ "url": receiver.url("/ok"), "count": 3 });
    assert_eq!(api.invoke("http", "b", "fetch_many", three).await.expect(200), json!(3), "the cap is per command");
    assert_eq!(fetches(api, "a").await["fetches"], 1, "only the command that succeeded persisted");
}

#[tokio::test]
async fn a_command_that_calls_out_and_then_fails_has_called_out_but_persists_nothing() {
    let receiver = Receiver::start().await;
    let t = client_allowed(&receiver.authority(), &[]).await;
    let api = &t.api;
    let call = json!({ "method": "POST", "url": receiver.url("/echo"), "body": {"charge": 5}, "headers": [] });
    let (_, message) = api.invoke("http", "a", "fetch_then_fail", call).await.expect_error(400);
    assert!(message.contains("failed after calling out"), "{message}");
    assert_eq!(receiver.requests_to("/echo").len(), 1, "the call happened before the commit");
    assert_eq!(fetches(api, "a").await["fetches"], 0);
}

#[tokio::test]
async fn no_request_leaves_a_service_without_an_allow_list_nor_a_dry_run() {
    let receiver = Receiver::start().await;
    let t = start(&[]).await;
    let api = &t.api;
    api.deploy("http", Path::new(HTTP_CLIENT)).await;
    let (_, message) = fetch(api, "a", "GET", &receiver.url("/ok")).await.expect_error(400);
    assert!(message.contains("allow-list"), "{message}");

    api.deploy_with("http", Path::new(HTTP_CLIENT), &format!("allow_http={}", receiver.authority())).await.expect(201);
    let body = serde_json::to_vec(&json!({ "method": "GET", "url": receiver.url("/ok"), "body": null, "headers": [] }));
    let dry = api.send(reqwest::Method::POST, "/v1/services/http/entities/a/fetch?dry_run=true", body.unwrap()).await;
    let (_, message) = dry.expect_error(400);
    assert!(message.contains("dry run"), "{message}");
    assert!(receiver.requests().is_empty(), "neither called out");
}

#[tokio::test]
async fn a_deploy_beyond_the_server_s_cap_or_with_an_unreadable_list_is_refused_and_changes_nothing() {
    let t = start(&["--allow-http-max", "*.example.com,127.0.0.1:*"]).await;
    let api = &t.api;
    let bytes = std::fs::read(HTTP_CLIENT).unwrap();
    for (query, kind) in [
        ("allow_http=api.other.net", "allow_http_refused"),
        ("allow_http=10.0.0.0/8:*", "allow_http_refused"),
        ("allow_http=https://api.example.com", "invalid_allow_http"),
        ("allow_http=api.example.com/path", "invalid_allow_http"),
    ] {
        let reply = api.send(reqwest::Method::PUT, &format!("/v1/services/http?{query}"), bytes.clone()).await;
        assert_eq!(reply.expect_error(400).0, kind, "{query}");
        api.get("/v1/services/http").await.expect(404);
    }
    let deployed = api.deploy_with("http", Path::new(HTTP_CLIENT), "allow_http=a.example.com,127.0.0.1:9000").await;
    assert_eq!(deployed.expect(201)["allow_http"], json!(["a.example.com", "127.0.0.1:9000"]));
}
