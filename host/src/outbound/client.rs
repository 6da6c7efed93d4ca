//! Sends one HTTP request to the outside world: checks its destination
//! against an allow-list, resolves the host, checks every address, connects
//! to one it checked (TLS for `https`, by rustls with the Mozilla roots),
//! and answers the response with a body bounded in size and time.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::Scheme;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error;

use super::allow_list::{AllowList, Destination};

/// Where a request goes: its scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether the scheme is `https`.
    pub https: bool,
    /// The host as the URL names it, lowercase, an IPv6 address without
    /// its brackets.
    pub host: String,
    /// The port, the scheme's default when the URL names none.
    pub port: u16,
    /// Whether the URL named no port, or its scheme's default.
    pub default_port: bool,
}

impl Target {
    /// The target of an absolute `http` or `https` URL.
    pub fn of_url(url: &str) -> Result<Self, Error> {
        Self::of_uri(&url.parse::<Uri>().map_err(|_| Error::HttpRequestUriInvalid)?)
    }

    /// The target of an absolute `http` or `https` URI.
    pub fn of_uri(uri: &Uri) -> Result<Self, Error> {
        let https = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTPS => true,
            Some(scheme) if *scheme == Scheme::HTTP => false,
            _ => return Err(Error::HttpProtocolError),
        };
        let host = uri.host().filter(|host| !host.is_empty()).ok_or(Error::HttpRequestUriInvalid)?;
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
        let default = if https { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default);
        Ok(Self { https, host, port, default_port: port == default })
    }

    /// The target as the allow-list sees it.
    pub fn destination(&self) -> Destination<'_> {
        Destination { host: &self.host, port: self.port, default_port: self.default_port }
    }

    /// `host:port`, IPv6 in brackets: how metrics and logs name it.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.bracketed_host(), self.port)
    }

    /// The host, IPv6 in brackets, as a `Host` header names it.
    pub fn bracketed_host(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.clone(),
        }
    }

    /// Whether the URL names user information (`user:password@`), which
    /// neither a request nor a webhook sends.
    pub fn has_user_info(uri: &Uri) -> bool {
        uri.authority().is_some_and(|authority| authority.as_str().contains('@'))
    }

    /// `scheme://host:port`.
    pub fn origin(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.authority())
    }
}

/// The certificates a TLS connection's server may present: signed by one
/// of the Mozilla roots built in, or by one of the extra roots the server
/// was given (`--http-ca-file`, for a private PKI).
#[derive(Clone)]
pub struct TlsRoots(Arc<rustls::ClientConfig>);

impl TlsRoots {
    /// The Mozilla roots, and those of the PEM file `extra`, if any.
    pub fn new(extra: Option<&std::path::Path>) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = extra {
            let mut added = 0;
            for certificate in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read the certificates of {}", path.display()))?
            {
                let certificate = certificate
                    .with_context(|| format!("{} holds a certificate that does not read", path.display()))?;
                roots
                    .add(certificate)
                    .with_context(|| format!("{} holds a certificate rustls refuses", path.display()))?;
                added += 1;
            }
            anyhow::ensure!(added > 0, "{} holds no PEM certificate", path.display());
        }
        // ring rather than aws-lc-rs keeps the build lean (no cmake, a
        // small C build); it offers no post-quantum key exchange, hence
        // rustls's deprecation note.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("ring supports the default protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self(Arc::new(config)))
    }
}

impl Default for TlsRoots {
    /// The Mozilla roots alone.
    fn default() -> Self {
        static MOZILLA: OnceLock<TlsRoots> = OnceLock::new();
        MOZILLA.get_or_init(|| TlsRoots::new(None).expect("the built-in roots load")).clone()
    }
}

impl std::fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsRoots")
    }
}

/// Sends `request` to `target` if `allow` lets it, all of it by `deadline`,
/// trusting the servers `tls` does; the response body ends in an error once
/// it passes `max_bytes` or the deadline.
pub async fn send<B>(
    mut request: Request<B>,
    target: &Target,
    allow: &AllowList,
    tls: &TlsRoots,
    deadline: Instant,
    max_bytes: u64,
) -> Result<Response<ResponseBody>, Error>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let destination = target.destination();
    if !allow.allows(&destination) {
        return Err(Error::HttpRequestDenied);
    }
    let addresses = resolve(target, deadline).await?;
    if addresses.iter().any(|address| !allow.allows_address(&destination, address.ip())) {
        return Err(Error::DestinationIpProhibited);
    }
    let stream = connect(&addresses, deadline).await?;
    let stream: Box<dyn Stream> =
        if target.https { Box::new(handshake(stream, target, tls, deadline).await?) } else { stream };
    let (mut sender, connection) =
        tokio::time::timeout_at(deadline, hyper::client::conn::http1::handshake(TokioIo::new(stream)))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Hyper)?;
    // The connection lives as long as the exchange, and not much longer
    // than the deadline (the exchange itself ends at it, as a timeout).
    tokio::spawn(async move {
        let _ = tokio::time::timeout_at(deadline + CONNECTION_GRACE, connection).await;
    });
    let path = request.uri().path_and_query().map_or("/", |path| path.as_str());
    *request.uri_mut() = Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
    // `Host` is the checked target's, whatever the request said.
    let host = if target.default_port { target.bracketed_host() } else { target.authority() };
    let host = HeaderValue::try_from(host).map_err(|_| Error::HttpRequestUriInvalid)?;
    request.headers_mut().insert(http::header::HOST, host);
    let response = tokio::time::timeout_at(deadline, sender.send_request(request))
        .await
        .map_err(|_| Error::HttpResponseTimeout)?
        .map_err(|error| hyper_error(error, deadline))?;
    Ok(response.map(|incoming| ResponseBody::new(incoming, deadline, max_bytes)))
}

/// The addresses `target`'s host resolves to (itself, for an address).
async fn resolve(target: &Target, deadline: Instant) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(address) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(address, target.port)]);
    }
    let looked_up = tokio::time::timeout_at(deadline, tokio::net::lookup_host((target.host.as_str(), target.port)))
        .await
        .map_err(|_| Error::DnsTimeout)?;
    let addresses: Vec<SocketAddr> = match looked_up {
        Ok(addresses) => addresses.collect(),
        Err(error) => return Err(Error::DnsError { rcode: Some(error.to_string()), info_code: None }),
    };
    if addresses.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    Ok(addresses)
}

/// A connection to the first of `addresses` that answers.
async fn connect(addresses: &[SocketAddr], deadline: Instant) -> Result<Box<dyn Stream>, Error> {
    let mut last = Error::DestinationNotFound;
    for address in addresses {
        match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await {
            Err(_) => return Err(Error::ConnectionTimeout),
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(Box::new(stream));
            }
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => last = Error::ConnectionRefused,
            Ok(Err(error)) => last = Error::Connect(error),
        }
    }
    Err(last)
}

/// `stream` under TLS, the server's certificate checked for `target`'s host.
async fn handshake(
    stream: Box<dyn Stream>,
    target: &Target,
    tls: &TlsRoots,
    deadline: Instant,
) -> Result<impl Stream, Error> {
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|_| Error::DnsError { rcode: Some("invalid DNS name".into()), info_code: None })?;
    let connector = tokio_rustls::TlsConnector::from(tls.0.clone());
    match tokio::time::timeout_at(deadline, connector.connect(name, stream)).await {
        Err(_) => Err(Error::ConnectionTimeout),
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => {
            let certificate = error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|inner| matches!(inner, rustls::Error::InvalidCertificate(_)));
            Err(if certificate { Error::TlsCertificateError } else { Error::Tls(error) })
        }
    }
}

/// How long a connection outlives its exchange's deadline at most.
const CONNECTION_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a failure of the exchange was: a timeout once `deadline` passed
/// (the connection may have gone first), else the protocol's error.
fn hyper_error(error: hyper::Error, deadline: Instant) -> Error {
    if error.is_timeout() || Instant::now() >= deadline { Error::HttpResponseTimeout } else { Error::Hyper(error) }
}

/// A connection, plain or under TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A response body that fails once it passes its size limit or deadline.
pub struct ResponseBody {
    incoming: hyper::body::Incoming,
    deadline: Pin<Box<Sleep>>,
    ends: Instant,
    remaining: u64,
    limit: u64,
}

impl ResponseBody {
    fn new(incoming: hyper::body::Incoming, deadline: Instant, limit: u64) -> Self {
        let sleep = Box::pin(tokio::time::sleep_until(deadline));
        Self { incoming, deadline: sleep, ends: deadline, remaining: limit, limit }
    }
}

impl ResponseBody {
    /// Whether the body says up front (`Content-Length`) that it is larger
    /// than its limit: read, it fails at once, the status still readable.
    pub fn declared_too_large(&self) -> bool {
        self.incoming.size_hint().exact().is_some_and(|length| length > self.limit)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.remaining == self.limit && self.declared_too_large() {
            self.remaining = 0;
            return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.limit)))));
        }
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |data| data.len() as u64);
                if size > self.remaining {
                    self.remaining = 0;
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.limit)))));
                }
                self.remaining -= size;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(hyper_error(error, self.ends)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::HttpResponseTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_from_urls() {
        let target = Target::of_url("https://API.Example.com/hook?x=1").unwrap();
        assert_eq!(target, Target { https: true, host: "api.example.com".into(), port: 443, default_port: true });
        assert_eq!(target.origin(), "https://api.example.com:443");
        let target = Target::of_url("http://[::1]:9000/").unwrap();
        assert_eq!((target.host.as_str(), target.port, target.default_port), ("::1", 9000, false));
        assert_eq!(target.origin(), "http://[::1]:9000");
        assert!(Target::of_url("http://127.0.0.1:80/").unwrap().default_port);
        assert!(Target::of_url("ftp://example.com/").is_err());
        assert!(Target::of_url("/relative").is_err());
        assert!(Target::of_url("not a url").is_err());
    }
}
