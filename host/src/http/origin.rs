//! Requests only from where they may come.
//!
//! - **Host**: the `Host` a request names must be one this server answers
//!   to — `--allowed-hosts`, or, by default, the loopback names when it
//!   listens on loopback and its own address when it listens on one. DNS
//!   rebinding (a foreign name made to resolve to 127.0.0.1) then reaches
//!   nothing. A server listening on every address accepts any host unless
//!   `--allowed-hosts` says otherwise.
//! - **Origin**: a state-changing request (anything but GET, HEAD and
//!   OPTIONS) that a browser sent from another origin is refused unless
//!   that origin is in `--cors-origins`, so a web page a developer visits
//!   cannot invoke or deploy on their local server. Same-origin requests
//!   and requests without an `Origin` (curl, other servers) pass. The
//!   allowed origins also get CORS answers, preflights included.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};

/// Where requests may come from.
#[derive(Debug, Clone, Default)]
pub struct RequestOrigins {
    /// The host names (with or without a port) requests may name; `None`
    /// accepts any.
    hosts: Option<Vec<String>>,
    /// The origins (`scheme://host[:port]`) allowed to make cross-origin
    /// requests.
    cors: Vec<String>,
}

impl RequestOrigins {
    /// The rules of a server listening on `listen`: `allowed_hosts` if any
    /// are given, else what the address implies; `cors` origins allowed.
    pub fn new(listen: SocketAddr, allowed_hosts: &[String], cors: &[String]) -> Self {
        let hosts = if !allowed_hosts.is_empty() {
            Some(allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect())
        } else if listen.ip().is_loopback() {
            Some(vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()])
        } else if listen.ip().is_unspecified() {
            None
        } else {
            Some(vec![bracketed(listen)])
        };
        let cors = cors.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect();
        Self { hosts, cors }
    }

    /// The origins allowed to make cross-origin requests.
    pub fn cors_origins(&self) -> &[String] {
        &self.cors
    }

    /// Whether a request naming `host` (the `Host` header) may be served.
    fn host_allowed(&self, host: &str) -> bool {
        let Some(hosts) = &self.hosts else { return true };
        let host = host.to_ascii_lowercase();
        let name = strip_port(&host);
        hosts.iter().any(|allowed| *allowed == host || *allowed == name)
    }

    /// Whether a state-changing request from `origin` to `host` may be served.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self.cors.contains(&origin) {
            return true;
        }
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        authority.is_some_and(|authority| host.is_some_and(|host| authority == host.to_ascii_lowercase()))
    }
}

/// The IP of `addr` as a `Host` names it: IPv6 in brackets.
fn bracketed(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    }
}

/// `host` without its `:port`, if it has one (`[::1]:80` → `[::1]`).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}

/// Middleware: refuses a request naming a host this server does not answer
/// to, and a cross-origin state-changing request from an origin not allowed.
pub async fn check(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let origins = &state.origins;
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(host) = host
        && !origins.host_allowed(host)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!("this server does not answer to the host {host:?}; see --allowed-hosts"),
        ));
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) && is_cross_site(headers) {
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("null");
        if !origins.origin_allowed(origin, host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin_refused",
                format!("requests from the origin {origin:?} may not change anything here; see --cors-origins"),
            ));
        }
    }
    Ok(next.run(request).await)
}

/// Whether a browser says the request comes from another site or origin:
/// it carries an `Origin`, or `Sec-Fetch-Site` says so.
fn is_cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    headers.contains_key(header::ORIGIN) || matches!(fetch_site, Some("cross-site" | "same-site"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> RequestOrigins {
        RequestOrigins::new("127.0.0.1:8080".parse().unwrap(), &[], &["http://app.example".into()])
    }

    #[test]
    fn a_loopback_server_answers_to_loopback_names_only() {
        let origins = loopback();
        for host in ["localhost", "localhost:8080", "127.0.0.1:9", "[::1]:8080", "LOCALHOST"] {
            assert!(origins.host_allowed(host), "{host}");
        }
        for host in ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil:80"] {
            assert!(!origins.host_allowed(host), "{host}");
        }
        let anywhere = RequestOrigins::new("0.0.0.0:80".parse().unwrap(), &[], &[]);
        assert!(anywhere.host_allowed("anything.example"));
        let listed = RequestOrigins::new("0.0.0.0:80".parse().unwrap(), &["api.example".into()], &[]);
        assert!(listed.host_allowed("api.example:80") && !listed.host_allowed("other.example"));
    }

    #[test]
    fn only_the_same_origin_and_listed_ones_may_change_things() {
        let origins = loopback();
        assert!(origins.origin_allowed("http://localhost:8080", Some("localhost:8080")));
        assert!(origins.origin_allowed("http://app.example", Some("localhost:8080")));
        assert!(origins.origin_allowed("HTTP://APP.EXAMPLE", None));
        assert!(!origins.origin_allowed("http://evil.example", Some("localhost:8080")));
        assert!(!origins.origin_allowed("http://localhost:9999", Some("localhost:8080")));
        assert!(!origins.origin_allowed("null", Some("localhost:8080")));
    }

    #[test]
    fn ports_are_stripped_from_host_names() {
        assert_eq!(strip_port("a.example:80"), "a.example");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a.example"), "a.example");
    }
}
