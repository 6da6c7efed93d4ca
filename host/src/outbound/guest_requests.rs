//! A guest's own HTTP requests (`wasi:http/outgoing-handler`), as the
//! `wasi:http` hooks of its store: refused unless the call's grant allows
//! them, counted per command, bounded by the request timeout and by what is
//! left of the command's time, measured, and logged when refused.
//!
//! A call without a grant — a dry run, a check of stored data — may make
//! no request at all; a service deployed with no allow-list has a grant
//! that names no host, so its requests are refused as not on the list.

use std::sync::Arc;

use http::Request;
use http_body_util::BodyExt;
use tokio::time::Instant;
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

use super::OutboundLimits;
use super::allow_list::AllowList;
use super::client::{self, Target, TlsRoots};
use crate::metrics::Metrics;

/// What the guests of one service version may do over HTTP.
pub struct HttpGrant {
    /// The service, as metrics and logs name it.
    pub service: Arc<str>,
    /// The hosts it may reach.
    pub allow: AllowList,
    /// The bounds on its requests.
    pub limits: OutboundLimits,
    /// The servers its TLS connections trust.
    pub tls: TlsRoots,
    /// Where its requests are counted.
    pub metrics: Arc<Metrics>,
}

/// The `wasi:http` hooks of one guest store: the current call's grant and
/// how many requests it made.
pub struct GuestHttp {
    grant: Option<Arc<HttpGrant>>,
    made: u32,
    deadline: Instant,
}

impl Default for GuestHttp {
    fn default() -> Self {
        Self { grant: None, made: 0, deadline: Instant::now() }
    }
}

impl GuestHttp {
    /// Starts a call that may make requests under `grant` (none: no
    /// request at all) until `deadline`, the end of its time.
    pub fn start_call(&mut self, grant: Option<Arc<HttpGrant>>, deadline: std::time::Instant) {
        self.grant = grant;
        self.made = 0;
        self.deadline = Instant::from_std(deadline);
    }

    /// Ends the current call: nothing more may be sent for it.
    pub fn finish_call(&mut self) {
        self.grant = None;
    }

    /// Checks a request against the call's grant and counts it, allowed
    /// or not (so a guest cannot refuse itself into endless work): the
    /// grant and where the request goes, or why it may not. A host not on
    /// the list is measured as `other`, so guests cannot add series.
    fn admit(&mut self, request: &Request<WasiBody>) -> Result<(Arc<HttpGrant>, Target), Error> {
        let Some(grant) = self.grant.clone() else {
            tracing::warn!(url = %request.uri(), "a guest made an HTTP request where none is allowed (a dry run, or a check of stored data)");
            return Err(Error::ConfigurationError);
        };
        let target = Target::of_uri(request.uri())?;
        let allowed = grant.allow.allows(&target.destination());
        let refuse = |status: &str, error: Error, why: &str| {
            let host = if allowed { target.authority() } else { UNLISTED_HOST.to_owned() };
            grant.metrics.outbound.record_request(&grant.service, &host, status, None);
            tracing::warn!(service = %grant.service, host = %target.authority(), "an HTTP request of a guest was refused: {why}");
            Err(error)
        };
        if self.made >= grant.limits.max_requests_per_command {
            let why = format!("the command made {} requests, as many as one may", self.made);
            return refuse("limit", Error::ConnectionLimitReached, &why);
        }
        self.made += 1;
        if !allowed {
            return refuse("denied", Error::HttpRequestDenied, "the host is not on the service's allow-list");
        }
        Ok((grant, target))
    }
}

/// The `host` label of requests to hosts not on the allow-list.
const UNLISTED_HOST: &str = "other";

/// A boxed future, as the hooks answer.
type Boxed<T> = Box<dyn Future<Output = T> + Send>;

impl WasiHttpHooks for GuestHttp {
    /// The client sets `Host` itself, from the checked target (never the
    /// guest's user information, IPv6 in brackets).
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _response_errors: Boxed<Result<(), Error>>,
    ) -> Boxed<Result<(http::Response<WasiBody>, Boxed<Result<(), Error>>), Error>> {
        let admitted = self.admit(&request);
        let call_deadline = self.deadline;
        Box::new(async move {
            let (grant, target) = admitted?;
            let deadline = call_deadline.min(Instant::now() + grant.limits.timeout);
            let started = Instant::now();
            let max_bytes = grant.limits.max_response_bytes;
            let sent = client::send(request, &target, &grant.allow, &grant.tls, deadline, max_bytes).await;
            // A body declared too large fails the response itself: an error
            // while reading a body reaches a guest without its code (as
            // `wasi:http` 0.2 in wasmtime 48 passes body errors on).
            let sent = match sent {
                Ok(response) if response.body().declared_too_large() => {
                    Err(Error::HttpResponseBodySize(Some(max_bytes)))
                }
                sent => sent,
            };
            let status = match &sent {
                Ok(response) => response.status().as_u16().to_string(),
                Err(error) => {
                    tracing::warn!(service = %grant.service, host = %target.authority(), %error, "an HTTP request of a guest failed");
                    error_label(error).to_owned()
                }
            };
            let took = sent.is_ok().then(|| started.elapsed());
            grant.metrics.outbound.record_request(&grant.service, &target.authority(), &status, took);
            let response = sent?.map(|body| body.boxed_unsync());
            Ok((response, Box::new(async { Ok(()) }) as Boxed<Result<(), Error>>))
        })
    }
}

/// The `status` label of a request that got no response.
pub(super) fn error_label(error: &Error) -> &'static str {
    match error {
        Error::HttpRequestDenied => "denied",
        Error::DestinationIpProhibited => "prohibited",
        Error::ConnectionLimitReached => "limit",
        Error::ConnectionTimeout | Error::ConnectionReadTimeout | Error::HttpResponseTimeout | Error::DnsTimeout => {
            "timeout"
        }
        Error::HttpResponseBodySize(_) => "too_large",
        _ => "error",
    }
}
