//! A minimal Server-Sent Events reader for the live event stream.

use std::time::Duration;

use serde_json::Value;

/// An open `text/event-stream` response.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// Opens `url` and checks it is an event stream.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let response = reqwest::Client::new().get(url).send().await?;
        anyhow::ensure!(response.status() == 200, "status {}", response.status());
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        anyhow::ensure!(content_type.starts_with("text/event-stream"), "content type {content_type}");
        Ok(Self { response, buffer: String::new() })
    }

    /// The next event's `id` and JSON `data`, waiting at most `timeout`.
    /// Keep-alive comments are skipped.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<(String, Value)> {
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut id, mut data) = (String::new(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    return Ok((id, serde_json::from_str(&data)?));
                }
                let chunk = self.response.chunk().await?.ok_or_else(|| anyhow::anyhow!("the stream ended"))?;
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("no event within {timeout:?}"))?
    }
}
