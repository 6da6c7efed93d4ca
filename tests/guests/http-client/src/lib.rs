//! A value entity that calls out over HTTP and adds webhooks on command,
//! through the SDK's public API only (`wasmstate_sdk::http`,
//! `SideEffect::webhook`): what the host's outbound HTTP and webhooks are
//! tested with.
//!
//! The state is `{"fetches": N, "webhooks": M}`: how many requests
//! answered (whatever their status) and how many webhooks were added, by
//! committed commands. A command that fails persists nothing, so a test
//! reads from the state that nothing was committed.
//!
//! Commands (JSON bodies):
//!
//! - `fetch {"method"?, "url", "body"?, "headers"?}` sends `method`
//!   (default `GET`) to `url` with `body` as JSON unless it is absent or
//!   `null`, and `headers` (`[["name", "value"], ...]`); replies
//!   `{"status", "body": "<text>", "headers": {"name": "value", ...}}`
//!   (names lowercased, the values of a repeated header joined with `, `;
//!   after redirects, the last response's) and counts one fetch.
//!   A request that gets no response fails the command (`rejected`: HTTP
//!   400 from the host) with the `HttpError`'s message.
//! - `fetch_then_fail`, same payload: sends the request (and counts it),
//!   then fails with `failed after calling out`, whatever the answer.
//! - `fetch_many {"url", "count"}` sends `count` GETs to `url` one after
//!   the other and replies how many were answered, counting them all;
//!   the first that gets no response fails the command with its message.
//! - `webhook {"url", "body"?, "headers"?, "method"?}` adds a webhook to
//!   `url` (`method`, default `POST`; `body` as JSON, `null` when absent)
//!   and counts it; replies `{"sent": true}`.
//! - `webhook_then_fail`, same payload: adds the webhook (and counts it),
//!   then fails with `failed after adding a webhook`: nothing is sent.
//! - `get` replies the state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasmstate_sdk::http::{HttpError, Method, Request, Response};
use wasmstate_sdk::{Failure, KeyValue, Reply, SideEffect, ValueContext, Webhook};

/// The message of `fetch_then_fail`'s failure.
pub const FAILED_AFTER_CALLING_OUT: &str = "failed after calling out";
/// The message of `webhook_then_fail`'s failure.
pub const FAILED_AFTER_WEBHOOK: &str = "failed after adding a webhook";

/// The state: what committed commands did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// How many requests got a response.
    pub fetches: u64,
    /// How many webhooks were added.
    pub webhooks: u64,
}

/// The entity's commands.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Sends one request and replies its response.
    Fetch(Fetch),
    /// Sends one request, then fails.
    FetchThenFail(Fetch),
    /// Sends `count` GETs to `url`.
    FetchMany {
        /// Where to.
        url: String,
        /// How many.
        count: u32,
    },
    /// Adds a webhook.
    Webhook(Hook),
    /// Adds a webhook, then fails.
    WebhookThenFail(Hook),
    /// Replies the state.
    Get,
}

/// The argument of `fetch` and `fetch_then_fail`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fetch {
    /// The method; `GET` when absent.
    #[serde(default)]
    method: Option<String>,
    /// The URL.
    url: String,
    /// The body, sent as JSON unless `null`.
    #[serde(default)]
    body: Value,
    /// Extra headers.
    #[serde(default)]
    headers: Vec<(String, String)>,
}

/// The argument of `webhook` and `webhook_then_fail`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// The URL.
    url: String,
    /// The body, as JSON.
    #[serde(default)]
    body: Value,
    /// Extra headers.
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// The method; `POST` when absent.
    #[serde(default)]
    method: Option<String>,
}

impl Fetch {
    /// Sends the request this asks for.
    fn send(self) -> Result<Response, HttpError> {
        let method = self.method.as_deref().map_or(Method::Get, Method::from);
        let mut request = Request::new(method, self.url);
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        if !self.body.is_null() {
            request = request.json(&self.body)?;
        }
        request.send()
    }
}

impl Hook {
    /// The webhook this asks for.
    fn webhook(self) -> Webhook {
        let mut webhook = SideEffect::webhook(self.url).json(&self.body);
        if let Some(method) = self.method {
            webhook = webhook.method(method);
        }
        for (name, value) in self.headers {
            webhook = webhook.header(name, value);
        }
        webhook
    }
}

/// `response` as `fetch` replies it.
fn answer(response: &Response) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &response.headers {
        headers
            .entry(name.to_ascii_lowercase())
            .and_modify(|seen| *seen = format!("{seen}, {value}"))
            .or_insert_with(|| value.clone());
    }
    json!({"status": response.status, "body": response.text(), "headers": headers})
}

impl KeyValue for Client {
    type Command = Command;

    fn handle(command: Command, ctx: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
        let mut state = ctx.state().clone();
        let reply = match command {
            Command::Fetch(fetch) => {
                let response = fetch.send()?;
                state.fetches += 1;
                answer(&response)
            }
            Command::FetchThenFail(fetch) => {
                if fetch.send().is_ok() {
                    ctx.update(Client { fetches: state.fetches + 1, ..state });
                }
                return Err(Failure::rejected(FAILED_AFTER_CALLING_OUT));
            }
            Command::FetchMany { url, count } => {
                for _ in 0..count {
                    wasmstate_sdk::http::get(&url)?;
                }
                state.fetches += u64::from(count);
                json!(count)
            }
            Command::Webhook(hook) => {
                ctx.effect(hook.webhook());
                state.webhooks += 1;
                json!({"sent": true})
            }
            Command::WebhookThenFail(hook) => {
                ctx.effect(hook.webhook());
                ctx.update(Client { webhooks: state.webhooks + 1, ..state });
                return Err(Failure::rejected(FAILED_AFTER_WEBHOOK));
            }
            Command::Get => return Ok(Reply::json(ctx.state())),
        };
        ctx.update(state);
        Ok(Reply::json(&reply))
    }
}

wasmstate_sdk::export_value_entity!(Client);

#[cfg(test)]
mod tests;
