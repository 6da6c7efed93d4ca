//! A small HTTP client for the command-line client commands.

use anyhow::{Context, bail};
use reqwest::Method;

/// Talks to a running wasmstate server.
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer <token>` with every request.
    token: Option<String>,
    /// The token [`Client::admin`] sends instead, where it differs.
    admin_token: Option<String>,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`),
    /// sending `token` with every request, and `admin_token` (else
    /// `token`) with those of [`Client::admin`].
    pub fn new(base: &str, token: Option<String>, admin_token: Option<String>) -> Self {
        Self { base: base.trim_end_matches('/').to_string(), http: reqwest::Client::new(), token, admin_token }
    }

    /// The same client sending the admin token: for deploys, rollbacks
    /// and deletes.
    pub fn admin(&self) -> Self {
        let token = self.admin_token.clone().or_else(|| self.token.clone());
        Self { base: self.base.clone(), http: self.http.clone(), token, admin_token: None }
    }

    /// GETs `path` and answers the response once its headers came, for a
    /// body read as it streams in.
    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let response = self.request(Method::GET, &url).send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await?;
            bail!(refusal(status, &text));
        }
        Ok(response)
    }

    /// GETs `path` and answers the body.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        self.send(Method::GET, path, None).await
    }

    /// GETs `path` and answers the body, or `None` for a 404.
    pub async fn get_if_found(&self, path: &str) -> anyhow::Result<Option<String>> {
        let url = format!("{}{path}", self.base);
        let response = self.request(Method::GET, &url).send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        match status {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(Some(text)),
            status => bail!(refusal(status, &text)),
        }
    }

    /// DELETEs `path` and answers the reply body.
    pub async fn delete(&self, path: &str) -> anyhow::Result<String> {
        self.send(Method::DELETE, path, None).await
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
        let mut request = self.request(method, &url);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!(refusal(status, &text));
        }
        Ok(text)
    }

    /// A request to `url`, with the token if there is one.
    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// What the server said when it refused a request, on one line:
/// `404 Not Found: unknown_service: no service named "x"`, from its error
/// body (`{"error": {"kind", "message"}}`), else the body as it came.
fn refusal(status: reqwest::StatusCode, body: &str) -> String {
    let error = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|value| {
        let error = value.get("error")?;
        Some(format!("{}: {}", error.get("kind")?.as_str()?, error.get("message")?.as_str()?))
    });
    let said = error.unwrap_or_else(|| body.trim().to_string());
    if status == reqwest::StatusCode::UNAUTHORIZED {
        format!(
            "{status}: {said} (pass the server's token with --token or WASMSTATE_TOKEN, its admin token with --admin-token or WASMSTATE_ADMIN_TOKEN)"
        )
    } else {
        format!("{status}: {said}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_one_line_from_the_error_body() {
        let body = r#"{"error": {"kind": "unknown_service", "message": "no service named \"x\""}}"#;
        let said = refusal(reqwest::StatusCode::NOT_FOUND, body);
        assert_eq!(said, r#"404 Not Found: unknown_service: no service named "x""#);
        assert_eq!(refusal(reqwest::StatusCode::BAD_GATEWAY, "  upstream\n"), "502 Bad Gateway: upstream");
        assert!(refusal(reqwest::StatusCode::UNAUTHORIZED, "{}").ends_with("--admin-token or WASMSTATE_ADMIN_TOKEN)"));
    }
}
