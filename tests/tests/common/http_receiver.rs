//! A small HTTP server on a free loopback port, standing in for the outside
//! world that guests call and webhooks reach: it records every request and
//! answers by path.
//!
//! - `/ok`: 200 with `{"hello":"world"}`;
//! - `/score`: 200 with `{"score":10}`, a scoring service's answer;
//! - `/echo`: 200 with the request's method, body and `x-*` headers as JSON;
//! - `/status/{code}`: that status;
//! - `/fail/{n}/{name}`: 503 for the first `n` requests to it, then 200;
//! - `/hold/{name}`: the first request to it waits (until the connection
//!   goes), later ones answer 200;
//! - `/slow/{ms}`: 200 after `ms` milliseconds;
//! - `/big/{bytes}`: 200 with a body of that many bytes;
//! - `/redirect?to={url}`: 302 to `url`;
//! - anything else: 200 with `{}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its method.
    pub method: String,
    /// Its path and query.
    pub path: String,
    /// Its headers, names lowercase.
    pub headers: HashMap<String, String>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON (null if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    port: u16,
    state: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    requests: Vec<Received>,
    per_path: HashMap<String, u32>,
}

impl Receiver {
    /// Starts one on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = Self { port, state: Arc::default() };
        let app = axum::Router::new().fallback(answer).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`, as an allow-list names it.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests so far whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Received> {
        self.requests().into_iter().filter(|r| r.path.starts_with(prefix)).collect()
    }

    /// Waits up to `timeout` for at least `count` requests to `prefix`.
    pub async fn wait_for(&self, prefix: &str, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.requests_to(prefix);
            if seen.len() >= count || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn answer(
    State(receiver): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.to_str().unwrap_or_default().to_string()))
        .collect();
    let received = Received { method: method.to_string(), path: path.clone(), headers, body: body.to_vec() };
    let nth = {
        let mut seen = receiver.state.lock().unwrap();
        seen.requests.push(received.clone());
        let count = seen.per_path.entry(uri.path().to_string()).or_default();
        *count += 1;
        *count
    };
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["ok"] => json(StatusCode::OK, serde_json::json!({ "hello": "world" })),
        ["score"] => json(StatusCode::OK, serde_json::json!({ "score": 10 })),
        ["echo"] => {
            let extra: HashMap<&String, &String> =
                received.headers.iter().filter(|(name, _)| name.starts_with("x-")).collect();
            let body = String::from_utf8_lossy(&received.body);
            json(StatusCode::OK, serde_json::json!({ "method": received.method, "body": body, "headers": extra }))
        }
        ["status", code] => StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap().into_response(),
        ["fail", n, _] if nth <= n.parse().unwrap_or(0) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        ["hold", _] if nth == 1 => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::OK.into_response()
        }
        ["slow", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            json(StatusCode::OK, serde_json::json!({ "slow": true }))
        }
        ["big", bytes] => (StatusCode::OK, vec![b'x'; bytes.parse().unwrap_or(0)]).into_response(),
        ["redirect"] => {
            let to = uri.query().and_then(|q| q.strip_prefix("to=")).unwrap_or("/");
            (StatusCode::FOUND, [("location", to.to_string())]).into_response()
        }
        _ => json(StatusCode::OK, serde_json::json!({})),
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}
