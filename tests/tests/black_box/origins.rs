//! Requests only from where they may come: a foreign `Host` (DNS
//! rebinding) reaches nothing, and a web page on another origin cannot
//! change anything unless that origin is allowed.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmstate_tests::guests::COUNTER;

use crate::{start, start_with};

/// Sends one request with exactly these extra headers and answers the raw
/// response.
async fn request(base: &str, head: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut text = format!("{head} HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        text.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write the body");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test]
async fn a_foreign_host_reaches_nothing() {
    let t = start(&[]).await;
    let base = t.server.base();
    let component = std::fs::read(COUNTER).unwrap();
    let rebound = [("Host", "evil.example:8080")];
    let deploy = request(base, "PUT /v1/services/counter", &rebound, &component).await;
    assert!(deploy.starts_with("HTTP/1.1 403"), "{deploy}");
    assert!(deploy.contains("host_not_allowed"), "{deploy}");
    let read = request(base, "GET /v1/services", &rebound, b"").await;
    assert!(read.starts_with("HTTP/1.1 403"), "{read}");
    assert_eq!(t.api.get("/v1/services").await.expect(200), json!([]), "nothing was deployed");
    // The loopback names are this server's.
    for host in ["localhost", "127.0.0.1:1", "[::1]:8080"] {
        let answer = request(base, "GET /healthz", &[("Host", host)], b"").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    // --allowed-hosts names the others.
    let t = start(&["--allowed-hosts", "api.example"]).await;
    let answer = request(t.server.base(), "GET /healthz", &[("Host", "api.example:9")], b"").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = request(t.server.base(), "GET /healthz", &[("Host", "localhost")], b"").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

#[tokio::test]
async fn a_page_on_another_origin_cannot_change_anything() {
    let t = start_with("counter", COUNTER, &[]).await;
    let base = t.server.base();
    let body = br#"{"value":1}"#;
    let post = "POST /v1/services/counter/entities/c/Increase";
    // What a form or fetch() on a foreign page sends: text/plain, no preflight.
    let foreign = [("Origin", "http://evil.example"), ("Content-Type", "text/plain")];
    let answer = request(base, post, &foreign, body).await;
    assert!(answer.starts_with("HTTP/1.1 403") && answer.contains("cross_origin_refused"), "{answer}");
    let answer = request(base, post, &[("Sec-Fetch-Site", "cross-site")], body).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = request(base, "DELETE /v1/services/counter", &foreign, b"").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let deploy = request(base, "PUT /v1/services/other", &foreign, &std::fs::read(COUNTER).unwrap()).await;
    assert!(deploy.starts_with("HTTP/1.1 403"), "{deploy}");
    assert_eq!(t.api.position("counter", "c").await, (0, 0), "nothing ran");
    t.api.get("/v1/services/other").await.expect_error(404);
    t.api.get("/v1/services/counter").await.expect(200);

    // The server's own origin, and clients that send none, pass.
    let own = format!("http://{}", base.trim_start_matches("http://"));
    let answer = request(base, post, &[("Origin", &own)], body).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    t.api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    assert_eq!(t.api.position("counter", "c").await.0, 2);
}

#[tokio::test]
async fn listed_origins_get_cors_answers() {
    let t = start_with("counter", COUNTER, &["--cors-origins", "http://app.example"]).await;
    let base = t.server.base();
    let post = "POST /v1/services/counter/entities/c/Increase";
    let preflight = [
        ("Origin", "http://app.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type,idempotency-key"),
    ];
    let answer =
        request(base, "OPTIONS /v1/services/counter/entities/c/Increase", &preflight, b"").await.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("access-control-allow-origin: http://app.example"), "{answer}");
    assert!(answer.contains("idempotency-key"), "{answer}");
    let answer = request(base, post, &[("Origin", "http://app.example")], br#"{"value":1}"#).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("access-control-allow-origin: http://app.example"), "{answer}");
    let answer = request(base, post, &[("Origin", "http://evil.example")], br#"{"value":1}"#).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(t.api.position("counter", "c").await.0, 1);
}
