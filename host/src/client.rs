//! A small HTTP client for the command-line client commands.

use anyhow::{Context, bail};
use reqwest::Method;

/// Talks to a running wasmstate server.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_string(), http: reqwest::Client::new() }
    }

    /// GETs `path` and answers the body.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        self.send(Method::GET, path, None).await
    }

    /// GETs `path` and answers the body, or `None` for a 404.
    pub async fn get_if_found(&self, path: &str) -> anyhow::Result<Option<String>> {
        let url = format!("{}{path}", self.base);
        let response = self.http.get(&url).send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        match status {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(Some(text)),
            status => bail!("{status}: {text}"),
        }
    }

    /// PUTs `body` to `path` and answers the reply body.
    pub async fn put(&self, path: &str, body: Vec<u8>) -> anyhow::Result<String> {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// POSTs `body` to `path` and answers the reply body.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> anyhow::Result<String> {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{status}: {text}");
        }
        Ok(text)
    }
}
