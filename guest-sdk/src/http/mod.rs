//! Outbound HTTP: call an HTTP or HTTPS endpoint while a command runs, JSON
//! in and out.
//!
//! [`get`], [`post`], [`put`] and [`delete`] cover the usual calls;
//! [`Request`] builds any other (method, headers, a body of any type). Each
//! returns the whole [`Response`] — status, headers, body, with
//! [`Response::json`] to decode it — or an [`HttpError`] saying why there
//! is none. Redirects are followed (see [`Request::send`]).
//!
//! The requests go through the host, as the standard
//! `wasi:http/outgoing-handler` interface: the host sends only those to the
//! hosts on the service's allow-list (deploy with
//! `?allow_http=host:port,...`), limits how many one command makes and
//! how long and how large their responses may be, and answers a refusal
//! with an error code that [`HttpError`] puts in words. A component
//! imports `wasi:http` only if it uses this module: the functions it does
//! not call are left out of it.
//!
//! # A request is made before the command commits
//!
//! A request leaves while the command runs, before the host has committed
//! anything. **A command that calls out and then fails has still called
//! out**: the endpoint saw the request although the command's events or
//! state change were discarded. The host may also run a command again (a
//! client's retry, a side effect or timer delivered again after a crash),
//! which calls out again. So:
//!
//! - call endpoints that are safe to call more than once: reads, or
//!   writes that carry a key of the command's own
//!   ([`Metadata::idempotency_key`](crate::Metadata::idempotency_key));
//! - to tell the outside world about what a command did, once it is
//!   durable, add a webhook instead
//!   ([`SideEffect::webhook`](crate::SideEffect::webhook)): the host
//!   sends it from its outbox after the commit, and never for a command
//!   that failed;
//! - keep the state deterministic: call out in the command handler, record
//!   what came back in an event (or in the value entity's new state), and
//!   let the event's `apply` — never the HTTP call — change the state.
//!   Replaying the log (after a restart, for a new version, for a past
//!   state) then gives the same state without calling out again.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use wasmstate_sdk::{Context, EventSourced, Failure, Reply, http};
//!
//! /// An account whose transactions an outside service scores.
//! #[derive(Default, Clone, Serialize, Deserialize)]
//! struct Account {
//!     scores: Vec<u32>,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! enum Command {
//!     Record { id: String, amount_cents: u64 },
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(tag = "type")]
//! enum Event {
//!     /// What the scoring service answered, recorded: replays read it here.
//!     Scored { id: String, score: u32 },
//! }
//!
//! #[derive(Deserialize)]
//! struct Score {
//!     score: u32,
//! }
//!
//! impl EventSourced for Account {
//!     type Command = Command;
//!     type Event = Event;
//!
//!     fn apply(&mut self, event: &Event) {
//!         // The state changes from the event alone, never from a request.
//!         match event {
//!             Event::Scored { score, .. } => self.scores.push(*score),
//!         }
//!     }
//!
//!     fn handle(command: Command, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
//!         match command {
//!             Command::Record { id, amount_cents } => {
//!                 // A failed request fails the command (`?`): nothing is recorded.
//!                 let body = serde_json::json!({"id": id, "amount_cents": amount_cents});
//!                 let Score { score } = http::post("http://127.0.0.1:9100/score", &body)?.error_for_status()?.json()?;
//!                 ctx.emit(Event::Scored { id, score });
//!                 Ok(Reply::json(&score))
//!             }
//!         }
//!     }
//! }
//!
//! // In unit tests the test kit's stubs answer: no request leaves the test.
//! use serde_json::json;
//! use wasmstate_sdk::http::{Method, Response};
//! use wasmstate_sdk::testkit::{self, TestKit};
//!
//! testkit::http::respond(Method::Post, "http://127.0.0.1:9100/score", Response::new(200).with_json(&json!({"score": 42})));
//! let mut kit = TestKit::<Account>::new("acc-1");
//! assert_eq!(kit.send(&Command::Record { id: "tx-1".into(), amount_cents: 500 }), Ok(json!(42)));
//! assert_eq!(testkit::http::requests()[0].json(), json!({"id": "tx-1", "amount_cents": 500}));
//! assert_eq!(kit.state().scores, [42]);
//!
//! // An endpoint that fails fails the command, which records nothing.
//! testkit::http::fail(Method::Post, "http://127.0.0.1:9100/score", "connection-refused");
//! let failure = kit.send(&Command::Record { id: "tx-2".into(), amount_cents: 700 }).unwrap_err();
//! assert!(failure.message().ends_with("127.0.0.1:9100 refused the connection (connection-refused)"), "{failure}");
//! assert_eq!(kit.state().scores, [42]);
//! ```
//!
//! # In unit tests
//!
//! Outside WebAssembly the requests never reach the network: the stubs of
//! [`testkit::http`](crate::testkit::http), set per test thread, answer
//! them, record them for the test to check, and an unanswered request is
//! an [`HttpError::NoStub`].

mod error;
mod request;
mod response;
mod url;
#[cfg(target_arch = "wasm32")]
mod wasi;

use serde::Serialize;

pub(crate) use error::HostError;
pub use error::HttpError;
pub(crate) use request::Hop;
pub(crate) use request::is_token;
pub use request::{MAX_REDIRECTS, Method, Request};
pub use response::Response;
pub(crate) use url::Url;

/// Sends `GET url` (see [`Request::send`]).
///
/// # Errors
///
/// See [`Request::send`].
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::new(Method::Get, url).send()
}

/// Sends `POST url` with `body` encoded as JSON (see [`Request::send`]).
///
/// # Errors
///
/// See [`Request::json`] and [`Request::send`].
pub fn post<T: Serialize + ?Sized>(url: &str, body: &T) -> Result<Response, HttpError> {
    Request::new(Method::Post, url).json(body)?.send()
}

/// Sends `PUT url` with `body` encoded as JSON (see [`Request::send`]).
///
/// # Errors
///
/// See [`Request::json`] and [`Request::send`].
pub fn put<T: Serialize + ?Sized>(url: &str, body: &T) -> Result<Response, HttpError> {
    Request::new(Method::Put, url).json(body)?.send()
}

/// Sends `DELETE url` (see [`Request::send`]).
///
/// # Errors
///
/// See [`Request::send`].
pub fn delete(url: &str) -> Result<Response, HttpError> {
    Request::new(Method::Delete, url).send()
}
