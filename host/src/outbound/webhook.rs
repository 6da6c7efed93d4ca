//! Webhooks: checked when a command asks for one, delivered from the outbox
//! after its commit, each attempt with the same `Idempotency-Key`.
//!
//! A 2xx answer delivers it. A 4xx other than 408 and 429 drops it, as
//! does a redirect (never followed) or a host its service may no longer
//! reach; a 5xx, 408, 429 or a network error leaves it to be tried again.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use tokio::time::Instant;
use wasmtime_wasi_http::Error;

use super::OutboundLimits;
use super::allow_list::AllowList;
use super::client::{self, Target, TlsRoots};
use crate::domain::Webhook;

/// Headers a webhook may not set: the host sets them, or they concern the
/// connection rather than the request.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "idempotency-key",
];

/// The most headers a webhook may carry.
const MAX_HEADERS: usize = 32;
/// The longest header (name and value) a webhook may carry.
const MAX_HEADER_BYTES: usize = 8 << 10;
/// The longest URL a webhook may have.
const MAX_URL_BYTES: usize = 8 << 10;

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It may succeed later; why this attempt failed.
    Retry(String),
    /// It never will; why.
    Drop(String),
}

/// Checks a webhook a command asks for: a well-formed request to a host on
/// `allow`. The message says what is wrong.
pub fn check_webhook(webhook: &Webhook, allow: &AllowList) -> Result<(), String> {
    if webhook.url.len() > MAX_URL_BYTES {
        return Err(format!("a webhook's URL may have at most {MAX_URL_BYTES} bytes"));
    }
    let uri: http::Uri =
        webhook.url.parse().map_err(|_| format!("a webhook's URL does not read: {:?}", webhook.url))?;
    let target = Target::of_uri(&uri)
        .map_err(|_| format!("a webhook's URL must be an absolute http or https URL, not {:?}", webhook.url))?;
    if Target::has_user_info(&uri) {
        return Err("a webhook's URL may not carry user information (user:password@); send a header".into());
    }
    if !allow.allows(&target.destination()) {
        return Err(format!(
            "a webhook to {} was refused: the host is not on the service's allow-list (deploy with ?allow_http=)",
            target.authority()
        ));
    }
    method(webhook)?;
    if webhook.headers.len() > MAX_HEADERS {
        return Err(format!("a webhook may carry at most {MAX_HEADERS} headers"));
    }
    for (name, value) in &webhook.headers {
        if name.len() + value.len() > MAX_HEADER_BYTES {
            return Err(format!("a webhook's {name} header has more than {MAX_HEADER_BYTES} bytes"));
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("a webhook's header name {name:?} is not a valid HTTP header name"))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(format!("a webhook may not set the {name} header: the host sets it"));
        }
        HeaderValue::from_str(value).map_err(|_| format!("a webhook's {name} header has an invalid value"))?;
    }
    HeaderValue::from_str(content_type(webhook))
        .map_err(|_| format!("a webhook's content type {:?} is not a valid header value", webhook.content_type))?;
    Ok(())
}

/// Sends `webhook` once, with `key` as its `Idempotency-Key`, if `allow`
/// still lets its service reach the host, trusting the servers `tls` does.
pub async fn deliver(
    webhook: &Webhook,
    key: &str,
    allow: &AllowList,
    tls: &TlsRoots,
    limits: &OutboundLimits,
) -> WebhookOutcome {
    let request = match request(webhook, key) {
        Ok(request) => request,
        Err(why) => return WebhookOutcome::Drop(why),
    };
    let target = match Target::of_url(&webhook.url) {
        Ok(target) => target,
        Err(_) => return WebhookOutcome::Drop(format!("{:?} is not an http or https URL", webhook.url)),
    };
    let deadline = Instant::now() + limits.timeout;
    match client::send(request, &target, allow, tls, deadline, limits.max_response_bytes).await {
        Ok(response) => {
            let status = response.status();
            // Read to its end (bounded), so the receiver sees the exchange finish.
            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            match status.as_u16() {
                200..=299 => WebhookOutcome::Delivered,
                408 | 429 | 500..=599 => WebhookOutcome::Retry(format!("the receiver answered {status}")),
                300..=399 => {
                    WebhookOutcome::Drop(format!("the receiver answered {status}; redirects are not followed"))
                }
                _ => WebhookOutcome::Drop(format!("the receiver answered {status}")),
            }
        }
        Err(Error::HttpRequestDenied) => WebhookOutcome::Drop(format!(
            "{} is no longer on the allow-list of {}",
            target.authority(),
            webhook.service
        )),
        Err(Error::DestinationIpProhibited) => WebhookOutcome::Drop(format!(
            "{} resolves to an address off the public internet that the allow-list of {} does not name",
            target.authority(),
            webhook.service
        )),
        Err(error) => WebhookOutcome::Retry(error.to_string()),
    }
}

/// The request of one attempt.
fn request(webhook: &Webhook, key: &str) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = Request::builder().method(method(webhook)?).uri(&webhook.url);
    for (name, value) in &webhook.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .header(http::header::CONTENT_TYPE, content_type(webhook))
        .header("idempotency-key", key)
        .header(http::header::USER_AGENT, concat!("wasmstate/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::copy_from_slice(&webhook.body)))
        .map_err(|e| format!("the webhook is not a valid request: {e}"))
}

fn method(webhook: &Webhook) -> Result<Method, String> {
    let name = if webhook.method.is_empty() { Webhook::DEFAULT_METHOD } else { webhook.method.as_str() };
    match Method::from_bytes(name.as_bytes()) {
        Ok(method) if method != Method::CONNECT && method != Method::TRACE => Ok(method),
        _ => Err(format!("a webhook's method must be an HTTP method such as POST or PUT, not {name:?}")),
    }
}

fn content_type(webhook: &Webhook) -> &str {
    if webhook.content_type.is_empty() { Webhook::DEFAULT_CONTENT_TYPE } else { &webhook.content_type }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str) -> Webhook {
        Webhook {
            service: "fraud".into(),
            version: 1,
            url: url.into(),
            method: String::new(),
            headers: vec![("X-Case-Source".into(), "fraud".into())],
            content_type: String::new(),
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn webhooks_are_checked_against_the_allow_list_and_http() {
        let allow = AllowList::parse("cases.example.com,127.0.0.1:9100").unwrap();
        assert_eq!(check_webhook(&hook("https://cases.example.com/new"), &allow), Ok(()));
        assert_eq!(check_webhook(&hook("http://127.0.0.1:9100/cases"), &allow), Ok(()));
        let refused = check_webhook(&hook("https://evil.example.com/"), &allow).unwrap_err();
        assert!(refused.contains("evil.example.com:443") && refused.contains("allow-list"), "{refused}");
        assert!(check_webhook(&hook("ftp://cases.example.com/"), &allow).is_err());
        assert!(check_webhook(&hook("/cases"), &allow).is_err());
        let bad_method = Webhook { method: "NOT A METHOD".into(), ..hook("https://cases.example.com/") };
        assert!(check_webhook(&bad_method, &allow).unwrap_err().contains("method"));
        let reserved =
            Webhook { headers: vec![("Idempotency-Key".into(), "mine".into())], ..hook("https://cases.example.com/") };
        assert!(check_webhook(&reserved, &allow).unwrap_err().contains("Idempotency-Key"));
        let bad_value = Webhook { headers: vec![("X-A".into(), "a\nb".into())], ..hook("https://cases.example.com/") };
        assert!(check_webhook(&bad_value, &allow).is_err());
        let with_user = hook("https://user:secret@cases.example.com/");
        assert!(check_webhook(&with_user, &allow).unwrap_err().contains("user information"));
        let long = Webhook { headers: vec![("X-A".into(), "a".repeat(9000))], ..hook("https://cases.example.com/") };
        assert!(check_webhook(&long, &allow).unwrap_err().contains("bytes"));
    }

    #[test]
    fn an_attempt_carries_its_key_and_content_type() {
        let request = request(&hook("https://cases.example.com/new"), "k-1").unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.headers()["idempotency-key"], "k-1");
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(request.headers()["x-case-source"], "fraud");
    }
}
