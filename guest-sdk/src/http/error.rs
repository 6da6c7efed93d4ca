//! Why an outbound HTTP request failed, in words for the caller: the host's
//! answer (a `wasi:http` `error-code`) or the client's own reasons.

use std::fmt;

use crate::Failure;

/// Why an outbound HTTP request failed.
///
/// Its [`Display`](fmt::Display) says what happened, naming the URL, for a
/// reply to the caller; a failed request converts into a
/// [`Failure`] (code `rejected`, the same message), so `?` works in a
/// handler. The variants let a service tell the cases apart; tests can
/// make them to stub a failure (see [`testkit::http`](crate::testkit::http)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The host refused the request: the URL's host is not on the
    /// service's allow-list (`HTTP-request-denied`).
    Denied {
        /// The URL of the request.
        url: String,
        /// Its host, with the port if the URL names one.
        host: String,
    },
    /// The host refused the request: its host resolves to a loopback,
    /// private or link-local address that the allow-list does not name
    /// explicitly (`destination-IP-prohibited`).
    ProhibitedAddress {
        /// The URL of the request.
        url: String,
        /// Its host, with the port if the URL names one.
        host: String,
    },
    /// The command has made as many outbound requests as the host allows
    /// per command (`connection-limit-reached`).
    LimitReached {
        /// The URL of the request refused.
        url: String,
    },
    /// The request timed out: connecting, waiting for the response or
    /// reading it (`connection-timeout`, `HTTP-response-timeout`,
    /// `connection-read-timeout`, `connection-write-timeout`,
    /// `DNS-timeout`).
    Timeout {
        /// The URL of the request.
        url: String,
        /// The `error-code` the host answered.
        code: String,
    },
    /// The response is larger than the host lets a guest read
    /// (`HTTP-response-body-size`).
    ResponseTooLarge {
        /// The URL of the request.
        url: String,
        /// The host's limit, in bytes, when it said.
        limit: Option<u64>,
    },
    /// Any other `error-code` the host answered: the host could not be
    /// resolved or reached, TLS failed, the response broke HTTP...
    Failed {
        /// The URL of the request.
        url: String,
        /// The `error-code`, as the WIT names it (`DNS-error`,
        /// `connection-refused`, `TLS-certificate-error`, ...).
        code: String,
        /// What the host added, if anything.
        detail: Option<String>,
    },
    /// The response's status is not a success (from
    /// [`Response::error_for_status`](super::Response::error_for_status)).
    Status {
        /// The URL that answered.
        url: String,
        /// Its status.
        status: u16,
        /// The start of its body, as text.
        body: String,
    },
    /// The response's body is not the JSON expected (from
    /// [`Response::json`](super::Response::json)).
    Decode {
        /// The URL that answered.
        url: String,
        /// Its status.
        status: u16,
        /// The decoder's error.
        message: String,
    },
    /// The request was redirected more times than the client follows.
    TooManyRedirects {
        /// The URL first requested.
        url: String,
        /// How many redirects the client follows.
        limit: usize,
    },
    /// The URL (or a redirect's `Location`) is no `http` or `https` URL the
    /// client can call.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request cannot be sent as it is: a body that cannot be encoded,
    /// a method or header the host does not take.
    InvalidRequest {
        /// The URL of the request.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Outside WebAssembly (unit tests): no stub of
    /// [`testkit::http`](crate::testkit::http) answers the request. The
    /// test kits never reach the network.
    NoStub {
        /// The request's method.
        method: String,
        /// The URL of the request.
        url: String,
    },
}

/// An `error-code` the host answered, by its WIT name, with what its case
/// carries: a limit in bytes or words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostError {
    /// The case's WIT name, such as `HTTP-request-denied`.
    pub(crate) code: String,
    /// The size limit of a `-size` case, when the host said it.
    pub(crate) limit: Option<u64>,
    /// What else the case carries, as text.
    pub(crate) detail: Option<String>,
}

impl HostError {
    /// The case `code`, carrying nothing.
    pub(crate) fn new(code: impl Into<String>) -> Self {
        Self { code: code.into(), ..Self::default() }
    }
}

impl HttpError {
    /// The error for the host's answer `error` to a request to `url`, whose
    /// authority is `host`.
    pub(crate) fn from_host(url: &str, host: &str, error: HostError) -> Self {
        let url = url.to_owned();
        match error.code.as_str() {
            "HTTP-request-denied" => Self::Denied { url, host: host.to_owned() },
            "destination-IP-prohibited" => Self::ProhibitedAddress { url, host: host.to_owned() },
            "connection-limit-reached" => Self::LimitReached { url },
            "connection-timeout"
            | "HTTP-response-timeout"
            | "connection-read-timeout"
            | "connection-write-timeout"
            | "DNS-timeout" => Self::Timeout { url, code: error.code },
            "HTTP-response-body-size" => Self::ResponseTooLarge { url, limit: error.limit },
            _ => {
                let detail = match (error.detail, error.limit) {
                    (Some(detail), _) => Some(detail),
                    (None, Some(limit)) => Some(format!("limit {limit} bytes")),
                    (None, None) => None,
                };
                Self::Failed { url, code: error.code, detail }
            }
        }
    }

    /// The URL of the request that failed (for [`TooManyRedirects`](Self::TooManyRedirects),
    /// the first one).
    pub fn url(&self) -> &str {
        match self {
            Self::Denied { url, .. }
            | Self::ProhibitedAddress { url, .. }
            | Self::LimitReached { url }
            | Self::Timeout { url, .. }
            | Self::ResponseTooLarge { url, .. }
            | Self::Failed { url, .. }
            | Self::Status { url, .. }
            | Self::Decode { url, .. }
            | Self::TooManyRedirects { url, .. }
            | Self::InvalidUrl { url, .. }
            | Self::InvalidRequest { url, .. }
            | Self::NoStub { url, .. } => url,
        }
    }
}

/// The host part of `url`, with its port, for messages; the URL itself
/// when it has none.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if end == 0 { url } else { &rest[..end] }
}

/// What went wrong, for an `error-code` without a message of its own.
fn what_failed(code: &str, host: &str) -> String {
    match code {
        "DNS-error" => format!("{host} could not be resolved"),
        "destination-not-found" => format!("{host} was not found"),
        "destination-unavailable" => format!("{host} is unavailable"),
        "destination-IP-unroutable" => format!("{host} has no route to its address"),
        "connection-refused" => format!("{host} refused the connection"),
        "connection-terminated" => format!("the connection to {host} was closed before the response was complete"),
        "TLS-protocol-error" | "TLS-alert-received" => format!("the TLS handshake with {host} failed"),
        "TLS-certificate-error" => format!("the TLS certificate of {host} was not accepted"),
        "HTTP-response-incomplete" => format!("the response from {host} was incomplete"),
        "HTTP-protocol-error" => format!("the response from {host} broke the HTTP protocol"),
        "loop-detected" => "the request loops".to_owned(),
        "HTTP-request-URI-too-long" => "its URL is too long".to_owned(),
        code if code.starts_with("HTTP-request-") => "the host refused the request as it is".to_owned(),
        code if code.starts_with("HTTP-response-") => format!("the response from {host} could not be read"),
        // The host's answer to a call that may send nothing at all.
        "configuration-error" => {
            "the host allows no outbound HTTP here: this is a dry run, or a check of stored data".to_owned()
        }
        "internal-error" => "the host could not make the request".to_owned(),
        _ => "the host could not complete it".to_owned(),
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied { url, host } => write!(
                f,
                "the host refused the request to {url}: {host} is not on this service's allow-list \
                 (deploy with ?allow_http={host})"
            ),
            Self::ProhibitedAddress { url, host } => write!(
                f,
                "the host refused the request to {url}: {host} resolves to a loopback, private or link-local \
                 address that the allow-list does not name explicitly"
            ),
            Self::LimitReached { url } => write!(
                f,
                "the host refused the request to {url}: the command has made as many outbound requests as the host \
                 allows per command"
            ),
            Self::Timeout { url, code } => write!(f, "the request to {url} timed out ({code})"),
            Self::ResponseTooLarge { url, limit: Some(limit) } => {
                write!(f, "the response from {url} is larger than the host allows ({limit} bytes)")
            }
            Self::ResponseTooLarge { url, limit: None } => {
                write!(f, "the response from {url} is larger than the host allows")
            }
            Self::Failed { url, code, detail } => {
                write!(f, "the request to {url} failed: {} ({code}", what_failed(code, host_of(url)))?;
                match detail {
                    Some(detail) => write!(f, ": {detail})"),
                    None => f.write_str(")"),
                }
            }
            Self::Status { url, status, body } if body.is_empty() => write!(f, "{url} answered status {status}"),
            Self::Status { url, status, body } => write!(f, "{url} answered status {status}: {body}"),
            Self::Decode { url, status, message } => {
                write!(f, "the response from {url} (status {status}) is not the JSON expected: {message}")
            }
            Self::TooManyRedirects { url, limit } => {
                write!(f, "the request to {url} was redirected more than {limit} times")
            }
            Self::InvalidUrl { url, reason } => write!(f, "cannot call {url:?}: {reason}"),
            Self::InvalidRequest { url, reason } => write!(f, "the request to {url} cannot be sent: {reason}"),
            Self::NoStub { method, url } => write!(
                f,
                "no test stub answers {method} {url}: set one with wasmstate_sdk::testkit::http::respond or stub \
                 (the test kits never reach the network)"
            ),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Failure {
    /// A `rejected` failure whose message is the error's.
    fn from(error: HttpError) -> Self {
        Failure::rejected(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureCode;

    const URL: &str = "http://127.0.0.1:9100/score";

    fn host(code: &str) -> HttpError {
        HttpError::from_host(URL, "127.0.0.1:9100", HostError::new(code))
    }

    #[test]
    fn the_hosts_refusals_say_why() {
        assert_eq!(
            host("HTTP-request-denied").to_string(),
            "the host refused the request to http://127.0.0.1:9100/score: 127.0.0.1:9100 is not on this service's \
             allow-list (deploy with ?allow_http=127.0.0.1:9100)"
        );
        assert_eq!(
            host("destination-IP-prohibited").to_string(),
            "the host refused the request to http://127.0.0.1:9100/score: 127.0.0.1:9100 resolves to a loopback, \
             private or link-local address that the allow-list does not name explicitly"
        );
        assert_eq!(
            host("connection-limit-reached").to_string(),
            "the host refused the request to http://127.0.0.1:9100/score: the command has made as many outbound \
             requests as the host allows per command"
        );
    }

    #[test]
    fn timeouts_and_sizes() {
        for code in ["connection-timeout", "HTTP-response-timeout", "connection-read-timeout", "DNS-timeout"] {
            assert_eq!(host(code), HttpError::Timeout { url: URL.into(), code: code.into() });
            assert_eq!(host(code).to_string(), format!("the request to {URL} timed out ({code})"));
        }
        let limited = HostError { limit: Some(1_048_576), ..HostError::new("HTTP-response-body-size") };
        assert_eq!(
            HttpError::from_host(URL, "h", limited).to_string(),
            format!("the response from {URL} is larger than the host allows (1048576 bytes)")
        );
        assert_eq!(
            host("HTTP-response-body-size").to_string(),
            format!("the response from {URL} is larger than the host allows")
        );
    }

    #[test]
    fn other_codes_are_named_with_what_they_carry() {
        assert_eq!(
            host("connection-refused").to_string(),
            format!("the request to {URL} failed: 127.0.0.1:9100 refused the connection (connection-refused)")
        );
        let dns = HostError { detail: Some("rcode NXDOMAIN".into()), ..HostError::new("DNS-error") };
        assert_eq!(
            HttpError::from_host("https://nowhere.example/x", "nowhere.example", dns).to_string(),
            "the request to https://nowhere.example/x failed: nowhere.example could not be resolved (DNS-error: \
             rcode NXDOMAIN)"
        );
        assert!(host("TLS-certificate-error").to_string().contains("TLS certificate of 127.0.0.1:9100"));
        let request_size = HostError { limit: Some(10), ..HostError::new("HTTP-request-body-size") };
        assert_eq!(
            HttpError::from_host(URL, "h", request_size).to_string(),
            format!(
                "the request to {URL} failed: the host refused the request as it is (HTTP-request-body-size: limit 10 bytes)"
            )
        );
        assert!(host("something-new").to_string().ends_with("the host could not complete it (something-new)"));
    }

    #[test]
    fn an_error_is_a_rejection_with_its_message() {
        let error = HttpError::TooManyRedirects { url: URL.into(), limit: 5 };
        let failure = Failure::from(error.clone());
        assert_eq!((failure.code(), failure.message()), (FailureCode::Rejected, error.to_string().as_str()));
        assert_eq!(error.url(), URL);
        assert_eq!(host_of("https://h:1/x?y"), "h:1");
    }
}
