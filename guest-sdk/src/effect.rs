//! What a command asks for once its effects are durable: a further command
//! ([`SideEffect`]) or an HTTP request to the outside world ([`Webhook`]),
//! the two kinds of [`Effect`].

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::SideEffect;
use crate::reply::{JSON, encode_json};

/// A side effect of either kind, as the context's `effect` method takes it
/// and `side_effects` lists it (the WIT `effect`).
///
/// Both kinds convert into it, so `ctx.effect(SideEffect::new(...))` and
/// `ctx.effect(SideEffect::webhook(url))` read alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A further command of a deployed service.
    Command(SideEffect),
    /// An HTTP request to the outside world, always sent from the outbox.
    Webhook(Webhook),
}

impl Effect {
    /// The command; `None` for a webhook.
    pub fn as_command(&self) -> Option<&SideEffect> {
        match self {
            Self::Command(effect) => Some(effect),
            Self::Webhook(_) => None,
        }
    }

    /// The webhook; `None` for a command.
    pub fn as_webhook(&self) -> Option<&Webhook> {
        match self {
            Self::Command(_) => None,
            Self::Webhook(webhook) => Some(webhook),
        }
    }
}

impl From<SideEffect> for Effect {
    /// [`Effect::Command`].
    fn from(effect: SideEffect) -> Self {
        Self::Command(effect)
    }
}

impl From<Webhook> for Effect {
    /// [`Effect::Webhook`].
    fn from(webhook: Webhook) -> Self {
        Self::Webhook(webhook)
    }
}

/// An HTTP request the host sends once the command's effects are durable;
/// make one with [`SideEffect::webhook`] and add it with the context's
/// `effect` method, like any side effect.
///
/// A webhook is always asynchronous: the host writes it to its durable
/// outbox with the command's other writes (a command that fails sends
/// nothing) and sends it after the reply, at least once, retrying with
/// backoff, with an `Idempotency-Key` header that stays the same across
/// attempts so the receiver can tell a repeat. A 2xx answer delivers it; a
/// 4xx other than 408 and 429 drops it; anything else is tried again. Its
/// URL's host must be on the service's allow-list (deploy with
/// `?allow_http=host:port,...`).
///
/// It is a `POST` of an empty JSON body unless told otherwise:
///
/// ```
/// use serde_json::json;
/// use wasmstate_sdk::SideEffect;
///
/// let webhook = SideEffect::webhook("https://cases.example.com/cases")
///     .json(&json!({"account": "a-1", "score": 87}))
///     .header("X-Source", "fraud-detector");
/// assert_eq!((webhook.method_name(), webhook.content_type()), ("POST", "application/json"));
/// assert_eq!(webhook.body_bytes(), br#"{"account":"a-1","score":87}"#);
/// assert_eq!(webhook.header_value("x-source"), Some("fraud-detector"));
///
/// let put = SideEffect::webhook("https://example.com/a/1").method("PUT").body("on", "text/plain");
/// assert_eq!((put.method_name(), put.content_type(), put.body_bytes()), ("PUT", "text/plain", b"on".as_slice()));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub(crate) url: String,
    pub(crate) method: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) content_type: String,
    pub(crate) body: Vec<u8>,
}

impl fmt::Debug for Webhook {
    /// Shows the body as text when it is UTF-8, so a failed test reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Webhook");
        debug.field("url", &self.url).field("method", &self.method).field("headers", &self.headers);
        debug.field("content_type", &self.content_type);
        match std::str::from_utf8(&self.body) {
            Ok(text) => debug.field("body", &text),
            Err(_) => debug.field("body", &self.body),
        };
        debug.finish()
    }
}

impl Webhook {
    /// A `POST` to `url` with an empty JSON body.
    pub(crate) fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            method: "POST".to_owned(),
            headers: Vec::new(),
            content_type: JSON.to_owned(),
            body: Vec::new(),
        }
    }

    /// Sets the body to `value` encoded as JSON, and the content type to
    /// `application/json`.
    ///
    /// # Panics
    ///
    /// If `value` cannot be encoded as JSON (see [`Reply::json`](crate::Reply::json)).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.body = encode_json(value, "webhook body");
        self.content_type = JSON.to_owned();
        self
    }

    /// Sets the body to `bytes` as they are, of media type `content_type`
    /// (for example `text/plain; charset=utf-8`).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>, content_type: impl Into<String>) -> Self {
        self.body = bytes.into();
        self.content_type = content_type.into();
        self
    }

    /// Adds request header `name: value`; a name added twice is sent twice.
    /// `Host`, `Content-Length`, `Content-Type` (see [`body`](Self::body)),
    /// `Idempotency-Key` and hop-by-hop headers are the host's to set.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the request's method, such as `PUT` (`POST` by default).
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = method.into();
        self
    }

    /// Where it is sent.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request's method.
    pub fn method_name(&self) -> &str {
        &self.method
    }

    /// The extra request headers, in the order they were added.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of the first header named `name`, compared without regard
    /// to case.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The body's media type.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Decodes the body as JSON into `T`: what a test checks.
    ///
    /// # Errors
    ///
    /// The decoder's, when the body is not `T` as JSON.
    pub fn body_json<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn a_webhook_is_a_post_of_json_unless_told_otherwise() {
        let bare = SideEffect::webhook("http://127.0.0.1:9100/hook");
        assert_eq!((bare.url(), bare.method_name(), bare.content_type()), ("http://127.0.0.1:9100/hook", "POST", JSON));
        assert!(bare.body_bytes().is_empty() && bare.headers().is_empty());

        let full = SideEffect::webhook("http://h/x")
            .body("a,b", "text/csv")
            .header("X-A", "1")
            .header("x-a", "2")
            .method("PATCH")
            .json(&json!({"n": 1}));
        assert_eq!((full.method_name(), full.content_type()), ("PATCH", JSON));
        assert_eq!(full.body_json::<Value>().unwrap(), json!({"n": 1}));
        assert_eq!(full.headers(), [("X-A".to_owned(), "1".to_owned()), ("x-a".to_owned(), "2".to_owned())]);
        assert_eq!((full.header_value("X-a"), full.header_value("other")), (Some("1"), None));
    }

    #[test]
    fn debug_shows_a_text_body_as_text() {
        let text = format!("{:?}", SideEffect::webhook("http://h/").json(&json!({"a": 1})));
        assert!(text.ends_with(r#"content_type: "application/json", body: "{\"a\":1}" }"#), "{text}");
        let bytes = format!("{:?}", SideEffect::webhook("http://h/").body(vec![0xff], "application/octet-stream"));
        assert!(bytes.ends_with("body: [255] }"), "{bytes}");
    }

    #[test]
    fn both_kinds_convert_into_an_effect() {
        let command = Effect::from(SideEffect::new("s", "e", "C"));
        let webhook = Effect::from(SideEffect::webhook("http://h/"));
        assert_eq!(command.as_command().map(SideEffect::service), Some("s"));
        assert_eq!((command.as_webhook(), webhook.as_command()), (None, None));
        assert_eq!(webhook.as_webhook().map(Webhook::url), Some("http://h/"));
    }
}
