//! Building an outbound HTTP request and sending it, following redirects.

use std::fmt;

use serde::Serialize;

use super::url::Url;
use super::{HttpError, Response};

/// How many redirects [`Request::send`] follows.
pub const MAX_REDIRECTS: usize = 5;

/// An HTTP method.
///
/// `Method::from("PUT")` reads one by name, the usual ones without regard
/// to case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `PATCH`.
    Patch,
    /// `OPTIONS`.
    Options,
    /// Any other method, by its name (an HTTP token, such as `PURGE`).
    Other(String),
}

impl Method {
    /// The method's name, such as `"GET"`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
            Self::Options => "OPTIONS",
            Self::Other(name) => name,
        }
    }
}

impl From<&str> for Method {
    /// The method named `name`: a usual one whatever its case, any other
    /// as [`Method::Other`].
    fn from(name: &str) -> Self {
        match name.to_ascii_uppercase().as_str() {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "PATCH" => Self::Patch,
            "OPTIONS" => Self::Options,
            _ => Self::Other(name.to_owned()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outbound HTTP request, built then [sent](Self::send).
///
/// ```no_run
/// use serde_json::{Value, json};
/// use wasmstate_sdk::http::{HttpError, Method, Request};
///
/// # fn main() -> Result<(), HttpError> {
/// let response = Request::new(Method::Put, "https://api.example.com/items/7")
///     .header("Authorization", "Bearer abc")
///     .json(&json!({"name": "lamp"}))?
///     .send()?
///     .error_for_status()?;
/// let item: Value = response.json()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// A `method` request to `url`, an `http` or `https` URL, without
    /// headers or body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self { method, url: url.into(), headers: Vec::new(), body: Vec::new() }
    }

    /// Adds header `name: value`; a name added twice is sent twice.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body to `value` encoded as JSON, with header
    /// `Content-Type: application/json`.
    ///
    /// # Errors
    ///
    /// [`HttpError::InvalidRequest`] when `value` cannot be encoded as JSON.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, HttpError> {
        match serde_json::to_vec(value) {
            Ok(bytes) => Ok(self.body(bytes, crate::reply::JSON)),
            Err(error) => {
                let reason = format!("its body could not be encoded as JSON: {error}");
                Err(HttpError::InvalidRequest { url: self.url, reason })
            }
        }
    }

    /// Sets the body to `bytes`, with header `Content-Type: content_type`
    /// (replacing one added before).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>, content_type: impl Into<String>) -> Self {
        self.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.headers.push(("Content-Type".to_owned(), content_type.into()));
        self.body = bytes.into();
        self
    }

    /// Sends the request through the host and reads the whole response,
    /// whatever its status (see [`Response::error_for_status`]).
    ///
    /// Redirects (301, 302, 303, 307 and 308 with a `Location`) are
    /// followed, up to [`MAX_REDIRECTS`]: each is a new request through
    /// the host, so its allow-list applies to every one. A 303, and a 301
    /// or 302 answering a `POST`, is followed with a `GET` without body;
    /// the others keep the method and body. `Authorization`, `Cookie` and
    /// `Proxy-Authorization` headers are not sent to another origin
    /// (scheme, host and port).
    ///
    /// # Errors
    ///
    /// An invalid URL, method or header; the host's refusal or failure to
    /// make a request (see [`HttpError`]); too many redirects.
    pub fn send(self) -> Result<Response, HttpError> {
        let Self { method, url: first, headers, body } = self;
        let url = Url::parse(&first).map_err(|reason| HttpError::InvalidUrl { url: first.clone(), reason })?;
        if let Err(reason) = check(&method, &headers) {
            return Err(HttpError::InvalidRequest { url: url.to_string(), reason });
        }
        let mut hop = Hop { method, url, headers, body };
        let mut redirects = 0;
        loop {
            let response = transport(&hop)?.answered_by(hop.url.to_string());
            let Some(next) = hop.redirected(&response)? else {
                return Ok(response);
            };
            if redirects == MAX_REDIRECTS {
                return Err(HttpError::TooManyRedirects { url: first, limit: MAX_REDIRECTS });
            }
            redirects += 1;
            hop = next;
        }
    }
}

/// The host's client on WebAssembly.
#[cfg(target_arch = "wasm32")]
fn transport(hop: &Hop) -> Result<Response, HttpError> {
    super::wasi::send(hop)
}

/// The test kit's stubs elsewhere: the kits never reach the network.
#[cfg(not(target_arch = "wasm32"))]
fn transport(hop: &Hop) -> Result<Response, HttpError> {
    crate::testkit::http::send(hop)
}

/// One request of a redirect chain, as the transport sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hop {
    /// The method.
    pub(crate) method: Method,
    /// The URL.
    pub(crate) url: Url,
    /// The headers, in order.
    pub(crate) headers: Vec<(String, String)>,
    /// The body.
    pub(crate) body: Vec<u8>,
}

/// Headers kept from another origin's redirect.
const CREDENTIALS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

impl Hop {
    /// The request `response` redirects this one to; `None` when it is no
    /// redirect.
    fn redirected(&self, response: &Response) -> Result<Option<Self>, HttpError> {
        if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
            return Ok(None);
        }
        let Some(location) = response.header("location") else {
            return Ok(None);
        };
        let url = self.url.join(location).map_err(|reason| HttpError::InvalidUrl {
            url: location.to_owned(),
            reason: format!("{} redirected there, but {reason}", self.url),
        })?;
        let to_get = (response.status == 303 && self.method != Method::Head)
            || (matches!(response.status, 301 | 302) && self.method == Method::Post);
        let mut next =
            Self { method: self.method.clone(), url, headers: self.headers.clone(), body: self.body.clone() };
        if to_get {
            next.method = Method::Get;
            next.body.clear();
            next.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        }
        if !self.url.same_origin(&next.url) {
            next.headers
                .retain(|(name, _)| !CREDENTIALS.iter().any(|credential| name.eq_ignore_ascii_case(credential)));
        }
        Ok(Some(next))
    }
}

/// Whether `text` is an HTTP token (RFC 9110), as methods and header
/// names are.
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Why `method` and `headers` cannot be sent, if they cannot.
fn check(method: &Method, headers: &[(String, String)]) -> Result<(), String> {
    if !is_token(method.as_str()) {
        return Err(format!("{:?} is no HTTP method", method.as_str()));
    }
    for (name, value) in headers {
        if !is_token(name) {
            return Err(format!("{name:?} is no header name"));
        }
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(format!("the value of header {name} holds a line break or NUL"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(method: Method, url: &str) -> Hop {
        let headers = vec![
            ("Authorization".to_owned(), "Bearer t".to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Trace".to_owned(), "1".to_owned()),
        ];
        Hop { method, url: Url::parse(url).unwrap(), headers, body: b"{}".to_vec() }
    }

    fn redirect(status: u16, location: &str) -> Response {
        Response::new(status).with_header("Location", location)
    }

    fn names(hop: &Hop) -> Vec<&str> {
        hop.headers.iter().map(|(name, _)| name.as_str()).collect()
    }

    #[test]
    fn methods_read_by_name() {
        assert_eq!(Method::from("put"), Method::Put);
        assert_eq!(Method::from("GET").to_string(), "GET");
        assert_eq!(Method::from("PURGE"), Method::Other("PURGE".into()));
    }

    #[test]
    fn see_other_and_a_moved_post_become_a_get_without_body() {
        let post = hop(Method::Post, "http://h/a/b");
        for status in [301, 302, 303] {
            let next = post.redirected(&redirect(status, "c?x=1")).unwrap().unwrap();
            assert_eq!(names(&next), ["Authorization", "X-Trace"]);
            assert!(next.body.is_empty());
            assert_eq!((next.method, next.url.to_string()), (Method::Get, "http://h/a/c?x=1".to_owned()));
        }
        let head = hop(Method::Head, "http://h/").redirected(&redirect(303, "/x")).unwrap().unwrap();
        assert_eq!(head.method, Method::Head);
    }

    #[test]
    fn temporary_and_permanent_redirects_keep_method_and_body() {
        for (method, status) in [(Method::Post, 307), (Method::Post, 308), (Method::Put, 301), (Method::Delete, 302)] {
            let next = hop(method.clone(), "http://h/a").redirected(&redirect(status, "/b")).unwrap().unwrap();
            assert_eq!(names(&next), ["Authorization", "Content-Type", "X-Trace"]);
            assert_eq!((next.method, next.body), (method, b"{}".to_vec()));
        }
    }

    #[test]
    fn credentials_stay_with_their_origin() {
        let next = hop(Method::Get, "http://h/a").redirected(&redirect(302, "https://h/a")).unwrap().unwrap();
        assert_eq!(names(&next), ["Content-Type", "X-Trace"]);
        let next = hop(Method::Get, "http://h/a").redirected(&redirect(302, "//h/b")).unwrap().unwrap();
        assert_eq!(names(&next)[0], "Authorization");
    }

    #[test]
    fn no_location_or_another_status_is_the_answer() {
        let get = hop(Method::Get, "http://h/");
        assert_eq!(get.redirected(&Response::new(302)), Ok(None));
        assert_eq!(get.redirected(&redirect(200, "/x")), Ok(None));
        assert_eq!(get.redirected(&redirect(304, "/x")), Ok(None));
        let error = get.redirected(&redirect(301, "ftp://h/x")).unwrap_err();
        assert!(matches!(&error, HttpError::InvalidUrl { url, .. } if url == "ftp://h/x"), "{error:?}");
        assert!(error.to_string().contains("http://h/ redirected there, but its scheme is \"ftp\""), "{error}");
    }

    #[test]
    fn bad_methods_and_headers_are_refused_before_sending() {
        assert!(check(&Method::Other("GE T".into()), &[]).unwrap_err().contains("no HTTP method"));
        assert!(check(&Method::Get, &[("X Y".into(), "1".into())]).unwrap_err().contains("no header name"));
        assert!(check(&Method::Get, &[("X".into(), "a\r\nb".into())]).unwrap_err().contains("line break"));
        assert_eq!(check(&Method::Other("PURGE".into()), &[("X-A".into(), "b c".into())]), Ok(()));
        let body = Request::new(Method::Post, "http://h/").body("a", "text/plain").json(&[1]).unwrap();
        assert_eq!(body.headers, [("Content-Type".to_owned(), "application/json".to_owned())]);
    }
}
