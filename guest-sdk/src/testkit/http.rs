//! Stubs for outbound HTTP in unit tests: outside WebAssembly,
//! [`wasmstate_sdk::http`](crate::http) never reaches the network; the
//! stubs set here answer its requests instead.
//!
//! The stubs and the record of requests belong to the test's thread (each
//! test runs on a thread of its own), so tests running in parallel do not
//! see each other's. A request goes to the stubs newest first; the first
//! that answers it wins:
//!
//! - [`respond`] answers every request of one method to one URL with a
//!   response;
//! - [`fail`] answers them with the error the host gives for a
//!   `wasi:http` `error-code`, such as `connection-refused` or
//!   `HTTP-request-denied`, as on WebAssembly;
//! - [`stub`] lets a closure answer any request it chooses to.
//!
//! A request no stub answers fails with [`HttpError::NoStub`]. Every
//! request made, answered or not, is recorded: [`requests`] lists them,
//! oldest first, each redirect a request of its own. [`reset`] forgets the
//! stubs and the record.
//!
//! ```
//! use serde_json::json;
//! use wasmstate_sdk::http::{self, HttpError, Method, Response};
//! use wasmstate_sdk::testkit;
//!
//! testkit::http::respond(Method::Get, "http://rates.test/eur", Response::new(200).with_json(&json!({"usd": 1.08})));
//! testkit::http::stub(|request| {
//!     let id = request.url.strip_prefix("http://users.test/")?;
//!     Some(Ok(Response::new(200).with_json(&json!({"id": id}))))
//! });
//!
//! assert_eq!(http::get("http://rates.test/eur").unwrap().json::<serde_json::Value>().unwrap(), json!({"usd": 1.08}));
//! assert_eq!(http::get("http://users.test/ada").unwrap().text(), r#"{"id":"ada"}"#);
//! assert!(matches!(http::get("http://elsewhere.test/"), Err(HttpError::NoStub { .. })));
//! let urls: Vec<String> = testkit::http::requests().into_iter().map(|request| request.url).collect();
//! assert_eq!(urls, ["http://rates.test/eur", "http://users.test/ada", "http://elsewhere.test/"]);
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;

use crate::http::{HostError, HttpError, Method, Response, Url};

/// A request [`wasmstate_sdk::http`](crate::http) made, as the stubs see
/// it and [`requests`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The method.
    pub method: Method,
    /// The URL, as sent: the scheme and host lowercased, `/` for an empty
    /// path, no fragment.
    pub url: String,
    /// The headers, in the order they were added.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpCall {
    /// The value of the first header named `name`, compared without regard
    /// to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The body as text; bytes that are not UTF-8 read as U+FFFD.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded as JSON; `null` when it is empty.
    ///
    /// # Panics
    ///
    /// If the body is not JSON.
    pub fn json(&self) -> Value {
        super::decode(&self.body, "request body")
    }
}

/// A stub: answers a request, or passes it on with `None`.
type Stub = dyn FnMut(&HttpCall) -> Option<Result<Response, HttpError>>;

/// The stubs of the thread, oldest first, and the requests it made.
#[derive(Default)]
struct Stubs {
    stubs: Vec<Rc<RefCell<Stub>>>,
    requests: Vec<HttpCall>,
}

thread_local! {
    static STUBS: RefCell<Stubs> = RefCell::default();
}

/// Answers every `method` request to `url` with `response`, from now on
/// in this thread.
pub fn respond(method: Method, url: &str, response: Response) {
    let url = normalized(url);
    stub(move |request| (request.method == method && request.url == url).then(|| Ok(response.clone())));
}

/// Answers every `method` request to `url` with the error the host gives
/// for `wasi:http` error code `code` (its WIT name, such as
/// `connection-refused`, `HTTP-request-denied` or `connection-timeout`),
/// from now on in this thread.
pub fn fail(method: Method, url: &str, code: &str) {
    let (url, code) = (normalized(url), code.to_owned());
    stub(move |request| {
        let answered = request.method == method && request.url == url;
        answered.then(|| Err(HttpError::from_host(&request.url, &authority(&request.url), HostError::new(&code))))
    })
}

/// Lets `stub` answer the requests it chooses, from now on in this thread:
/// it returns `None` to leave a request to the stubs set before it. A stub
/// may make requests itself, which the other stubs answer.
pub fn stub(stub: impl FnMut(&HttpCall) -> Option<Result<Response, HttpError>> + 'static) {
    STUBS.with(|stubs| stubs.borrow_mut().stubs.push(Rc::new(RefCell::new(stub))));
}

/// Every request made in this thread so far, oldest first, whether a stub
/// answered it or not.
pub fn requests() -> Vec<HttpCall> {
    STUBS.with(|stubs| stubs.borrow().requests.clone())
}

/// Forgets this thread's stubs and requests.
pub fn reset() {
    STUBS.with(|stubs| *stubs.borrow_mut() = Stubs::default());
}

/// Records `hop` and answers it from the stubs, newest first.
pub(crate) fn send(hop: &crate::http::Hop) -> Result<Response, HttpError> {
    let request = HttpCall {
        method: hop.method.clone(),
        url: hop.url.to_string(),
        headers: hop.headers.clone(),
        body: hop.body.clone(),
    };
    // The stubs run without the thread's borrow, so one may make a request
    // (which the other stubs answer: a stub running is passed over).
    let stubs = STUBS.with(|stubs| {
        let mut stubs = stubs.borrow_mut();
        stubs.requests.push(request.clone());
        stubs.stubs.clone()
    });
    for stub in stubs.iter().rev() {
        let Ok(mut stub) = stub.try_borrow_mut() else { continue };
        if let Some(answer) = stub(&request) {
            return answer;
        }
    }
    Err(HttpError::NoStub { method: request.method.to_string(), url: request.url })
}

/// `url` as requests show it, when it is one.
fn normalized(url: &str) -> String {
    Url::parse(url).map_or_else(|_| url.to_owned(), |url| url.to_string())
}

/// The authority of `url`, a URL as requests show it.
fn authority(url: &str) -> String {
    Url::parse(url).map_or_else(|_| url.to_owned(), |url| url.authority().to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::http::{self, MAX_REDIRECTS, Request};

    #[test]
    fn stubs_answer_newest_first_and_every_request_is_recorded() {
        respond(Method::Get, "HTTP://H", Response::new(200).with_body("first"));
        respond(Method::Get, "http://h/", Response::new(200).with_body("second"));
        respond(Method::Post, "http://h/", Response::new(201));
        assert_eq!(http::get("http://h").unwrap().text(), "second");
        assert_eq!(http::post("http://h/", &json!({"a": 1})).unwrap().status, 201);
        assert_eq!(
            http::put("http://h/", &1),
            Err(HttpError::NoStub { method: "PUT".into(), url: "http://h/".into() })
        );

        let requests = requests();
        assert_eq!(requests.len(), 3);
        assert_eq!(
            (requests[1].json(), requests[1].header("content-type")),
            (json!({"a": 1}), Some("application/json"))
        );
        assert_eq!((requests[2].method.clone(), requests[2].text()), (Method::Put, "1".to_owned()));
        reset();
        assert!(requests_after_reset_are_empty());
    }

    fn requests_after_reset_are_empty() -> bool {
        super::requests().is_empty() && http::delete("http://h/").is_err()
    }

    #[test]
    fn failures_are_the_hosts_errors() {
        fail(Method::Get, "http://shop.test:8080/x", "HTTP-request-denied");
        let error = http::get("http://shop.test:8080/x").unwrap_err();
        assert_eq!(error, HttpError::Denied { url: "http://shop.test:8080/x".into(), host: "shop.test:8080".into() });
        let no_stub = http::get("http://nowhere.test/").unwrap_err().to_string();
        assert!(no_stub.starts_with("no test stub answers GET http://nowhere.test/"), "{no_stub}");
    }

    #[test]
    fn redirects_are_followed_hop_by_hop() {
        stub(|request| {
            let n: u32 = request.url.strip_prefix("http://r.test/")?.parse().ok()?;
            Some(Ok(Response::new(if n.is_multiple_of(2) { 302 } else { 307 })
                .with_header("Location", format!("/{}", n + 1))))
        });
        respond(Method::Get, "http://r.test/3", Response::new(200).with_body("done"));
        let response = Request::new(Method::Post, "http://r.test/1").json(&json!({"k": 1})).unwrap().send().unwrap();
        assert_eq!((response.text(), response.url()), ("done".to_owned(), "http://r.test/3"));
        let hops: Vec<(String, String)> =
            requests().iter().map(|request| (request.method.to_string(), request.url.clone())).collect();
        // 307 keeps the POST and its body; the 302 that answers it turns it into a GET.
        assert_eq!(
            hops,
            [
                ("POST".into(), "http://r.test/1".into()),
                ("POST".into(), "http://r.test/2".into()),
                ("GET".into(), "http://r.test/3".into())
            ]
        );
        assert_eq!(requests()[1].json(), json!({"k": 1}));

        reset();
        stub(|request| Some(Ok(Response::new(301).with_header("Location", format!("{}x", request.url)))));
        let error = http::get("http://loop.test/").unwrap_err();
        assert_eq!(error, HttpError::TooManyRedirects { url: "http://loop.test/".into(), limit: MAX_REDIRECTS });
        assert_eq!(requests().len(), MAX_REDIRECTS + 1);
    }

    #[test]
    fn a_stub_may_itself_make_a_request() {
        respond(Method::Get, "http://inner.test/", Response::new(200).with_body("inner"));
        stub(|request| {
            (request.url == "http://outer.test/")
                .then(|| http::get("http://inner.test/").map(|inner| Response::new(200).with_body(inner.body)))
        });
        assert_eq!(http::get("http://outer.test/").unwrap().text(), "inner");
    }

    #[test]
    fn invalid_urls_never_reach_the_stubs() {
        let error = http::get("ftp://h/").unwrap_err();
        assert!(matches!(error, HttpError::InvalidUrl { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "cannot call \"ftp://h/\": its scheme is \"ftp\"; only http and https are supported"
        );
        assert!(requests().is_empty());
    }
}
