//! HTTP requests to the outside world: a guest's own, during a command
//! (`wasi:http/outgoing-handler`), and webhooks, the side effects the
//! outbox delivers after a commit.
//!
//! Both go through one client ([`client`]), which checks the request's
//! host and port against the service's allow-list ([`allow_list`]),
//! resolves the host, checks every address it resolved to, and connects
//! only to an address it checked, so a name cannot resolve its way into
//! the host's own network between the check and the connection. Redirects
//! are never followed here: a guest that follows one makes a new request,
//! checked like the first.
//!
//! # Layout
//!
//! - `allow_list`: the hosts a service may reach, and the server's cap;
//!   `addresses` tells public addresses from the host's own networks;
//! - `client`: resolving, connecting (TLS by rustls) and sending one
//!   request, bounded in time and response size;
//! - `guest_requests`: a guest's requests, per command: counted, bounded,
//!   timed and measured;
//! - `webhook`: one delivery of a webhook from the outbox.

mod addresses;
mod allow_list;
mod client;
mod guest_requests;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

pub use allow_list::{AllowList, AllowListError};
pub use client::TlsRoots;
pub use guest_requests::{GuestHttp, HttpGrant};
pub use webhook::{WebhookOutcome, check_webhook, deliver};

/// The bounds on every outbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundLimits {
    /// The longest one request may take, from its start to the end of its
    /// response body (a guest's is also bounded by its command's time).
    pub timeout: Duration,
    /// The largest response body read.
    pub max_response_bytes: u64,
    /// The most requests one command may make.
    pub max_requests_per_command: u32,
}

impl Default for OutboundLimits {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(10), max_response_bytes: 1 << 20, max_requests_per_command: 16 }
    }
}

/// How the server lets services reach the outside world.
#[derive(Debug, Clone, Default)]
pub struct HttpPolicy {
    /// The bounds on every request.
    pub limits: OutboundLimits,
    /// The most any service may be granted (`--allow-http-max`); `None`: no cap.
    pub max: Option<AllowList>,
    /// The servers TLS connections trust.
    pub tls: TlsRoots,
}

impl HttpPolicy {
    /// Refuses an allow-list beyond the server's cap.
    pub fn check(&self, allow: &AllowList) -> Result<(), AllowListError> {
        match &self.max {
            Some(max) => allow.check_within(max),
            None => Ok(()),
        }
    }

    /// The hosts version `meta` may reach: its allow-list, less what is
    /// beyond the server's cap now (a cap lowered since it was deployed).
    pub fn allow_list_of(&self, meta: &crate::journal::VersionMeta) -> AllowList {
        let allow = AllowList::from_entries(meta.allow_http.iter().map(String::as_str)).unwrap_or_else(|error| {
            tracing::error!(service = %meta.service, version = meta.version, %error, "the stored allow-list does not read; the version may send no HTTP request");
            AllowList::default()
        });
        let Some(max) = &self.max else { return allow };
        let (within, beyond) = allow.split_by(max);
        if !beyond.is_empty() {
            tracing::warn!(service = %meta.service, version = meta.version, beyond = %beyond.join(","), "hosts of the allow-list beyond --allow-http-max are not reached");
        }
        within
    }

    /// What the guests of version `meta` may do over HTTP: reach the hosts
    /// of its allow-list (without one, none: each request is refused as
    /// not on it, so the guest learns what to deploy with).
    pub fn grant(&self, meta: &crate::journal::VersionMeta, metrics: &Arc<crate::metrics::Metrics>) -> Arc<HttpGrant> {
        let allow = self.allow_list_of(meta);
        let service = meta.service.as_str().into();
        Arc::new(HttpGrant { service, allow, limits: self.limits, tls: self.tls.clone(), metrics: metrics.clone() })
    }
}

/// The `host:port` of a URL, as metrics name it; the URL itself when it
/// has no host.
pub fn authority_of(url: &str) -> String {
    match client::Target::of_url(url) {
        Ok(target) => target.authority(),
        Err(_) => url.to_owned(),
    }
}

/// The origin of a URL, `scheme://host:port` with the scheme's default
/// port filled in; the URL itself when it has no host.
pub fn origin_of(url: &str) -> String {
    match client::Target::of_url(url) {
        Ok(target) => target.origin(),
        Err(_) => url.to_owned(),
    }
}
