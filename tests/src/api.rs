//! A typed HTTP client for the wasmstate API, for tests.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

/// An answer: its status and body (as JSON when it parses, else a string).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: Value,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
}

impl Reply {
    /// Asserts the status and answers the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts an error answer of the API's shape and answers (kind, message).
    #[track_caller]
    pub fn expect_error(self, status: u16) -> (String, String) {
        let body = self.expect(status);
        let kind = body["error"]["kind"].as_str().unwrap_or_else(|| panic!("no error.kind in {body}"));
        let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("no error.message in {body}"));
        (kind.to_string(), message.to_string())
    }
}

/// A client of one server.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    /// A client of the server at `base`.
    pub fn new(base: &str) -> Self {
        Self { base: base.to_string(), http: reqwest::Client::new(), token: None }
    }

    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Self {
        Self { token: Some(token.to_string()), ..self.clone() }
    }

    /// Sends a request with a raw body; panics if the server cannot be reached.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Reply {
        self.try_send(method, path, body).await.expect("request failed")
    }

    /// Sends a request with a raw body; an error when the server cannot be
    /// reached or the connection breaks.
    pub async fn try_send(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> reqwest::Result<Reply> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let status = response.status();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Reply { status, body, retry_after })
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, Vec::new()).await
    }

    /// Deploys raw bytes as a service.
    pub async fn deploy_bytes(&self, service: &str, bytes: Vec<u8>) -> Reply {
        self.send(reqwest::Method::PUT, &format!("/v1/services/{service}"), bytes).await
    }

    /// Deploys a component file as a service with a query (`verify=replay`,
    /// say), answering whatever the server says.
    pub async fn deploy_with(&self, service: &str, component: &Path, query: &str) -> Reply {
        let bytes = std::fs::read(component).expect("component file");
        self.send(reqwest::Method::PUT, &format!("/v1/services/{service}?{query}"), bytes).await
    }

    /// POST with a JSON body (none for `null`).
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        let body = if body.is_null() { Vec::new() } else { serde_json::to_vec(&body).unwrap() };
        self.send(reqwest::Method::POST, path, body).await
    }

    /// Deploys a component file as a service and asserts 201.
    pub async fn deploy(&self, service: &str, component: &Path) -> Value {
        let bytes = std::fs::read(component).expect("component file");
        self.deploy_bytes(service, bytes).await.expect(201)
    }

    /// Whether this is the API of the server at `base`.
    pub fn is(&self, base: &str) -> bool {
        self.base == base
    }

    /// Invokes a command with a raw body.
    pub async fn invoke_raw(&self, service: &str, entity: &str, command: &str, body: Vec<u8>) -> Reply {
        let path = format!("/v1/services/{service}/entities/{entity}/{command}");
        self.send(reqwest::Method::POST, &path, body).await
    }

    /// Invokes a command with a JSON body.
    pub async fn invoke(&self, service: &str, entity: &str, command: &str, body: Value) -> Reply {
        self.invoke_raw(service, entity, command, serde_json::to_vec(&body).unwrap()).await
    }

    /// Invokes a command with a JSON body; an error when the server cannot be reached.
    pub async fn try_invoke(&self, service: &str, entity: &str, command: &str, body: Value) -> reqwest::Result<Reply> {
        let path = format!("/v1/services/{service}/entities/{entity}/{command}");
        self.try_send(reqwest::Method::POST, &path, serde_json::to_vec(&body).unwrap()).await
    }

    /// Invokes a command with a JSON body and an `Idempotency-Key`.
    pub async fn invoke_idempotent(&self, service: &str, entity: &str, command: &str, body: Value, key: &str) -> Reply {
        self.try_invoke_idempotent(service, entity, command, body, key).await.expect("request failed")
    }

    /// Invokes a command with a JSON body and an `Idempotency-Key`; an
    /// error when the server cannot be reached.
    pub async fn try_invoke_idempotent(
        &self,
        service: &str,
        entity: &str,
        command: &str,
        body: Value,
        key: &str,
    ) -> reqwest::Result<Reply> {
        let url = format!("{}/v1/services/{service}/entities/{entity}/{command}", self.base);
        let response =
            self.http.post(url).header("idempotency-key", key).body(serde_json::to_vec(&body).unwrap()).send().await?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok(Reply { status, body, retry_after: None })
    }

    /// A metric's value from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await.expect(200);
        let text = text.as_str().unwrap_or_default().to_string();
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Polls `check` every 50 ms until it is true or `timeout` passes.
    pub async fn eventually<F, Fut>(&self, timeout: std::time::Duration, mut check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if check().await {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        check().await
    }

    /// The committed events of an entity from `from`, asserting 200.
    pub async fn events(&self, service: &str, entity: &str, from: u64) -> Vec<Value> {
        let body = self.get(&format!("/v1/services/{service}/entities/{entity}/events?from={from}")).await.expect(200);
        body.as_array().expect("an array of events").clone()
    }

    /// The seqs of every committed event of an entity, read page by page.
    pub async fn seqs(&self, service: &str, entity: &str) -> Vec<u64> {
        let mut seqs: Vec<u64> = Vec::new();
        loop {
            let page = self.events(service, entity, seqs.last().map_or(1, |last| last + 1)).await;
            if page.is_empty() {
                return seqs;
            }
            seqs.extend(page.iter().map(|e| e["seq"].as_u64().expect("an event's seq")));
        }
    }

    /// `{last_seq, snapshot_seq}` of an entity, asserting 200.
    pub async fn position(&self, service: &str, entity: &str) -> (u64, u64) {
        let body = self.get(&format!("/v1/services/{service}/entities/{entity}")).await.expect(200);
        (body["last_seq"].as_u64().unwrap(), body["snapshot_seq"].as_u64().unwrap())
    }
}
