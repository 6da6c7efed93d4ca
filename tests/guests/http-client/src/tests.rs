//! The commands through the value test kit, its HTTP stubs and its
//! record of webhooks.

use std::cell::Cell;
use std::rc::Rc;

use serde_json::json;
use wasmstate_sdk::http::{HttpError, Method, Response};
use wasmstate_sdk::testkit::{self, ValueTestKit};
use wasmstate_sdk::{FailureCode, SideEffect};

use super::*;

const URL: &str = "http://127.0.0.1:9100/echo";

fn kit() -> ValueTestKit<Client> {
    ValueTestKit::<Client>::new("c-1")
}

fn state(kit: &mut ValueTestKit<Client>) -> Value {
    kit.handle("get", ()).unwrap()
}

#[test]
fn fetch_sends_what_it_is_told_and_replies_the_response() {
    testkit::http::respond(
        Method::Put,
        URL,
        Response::new(201).with_header("X-Seen", "a").with_header("x-seen", "b").with_body("made"),
    );
    let mut kit = kit();
    let fetch = json!({"method": "PUT", "url": URL, "body": {"n": 1}, "headers": [["X-Token", "t"]]});
    let reply = kit.handle("fetch", fetch).unwrap();
    assert_eq!(reply, json!({"status": 201, "body": "made", "headers": {"x-seen": "a, b"}}));

    let sent = &testkit::http::requests()[0];
    assert_eq!((sent.method.clone(), sent.url.as_str(), sent.json()), (Method::Put, URL, json!({"n": 1})));
    assert_eq!((sent.header("x-token"), sent.header("content-type")), (Some("t"), Some("application/json")));
    assert_eq!(state(&mut kit), json!({"fetches": 1, "webhooks": 0}));

    // A GET without body or headers, answered 404: still a fetch.
    testkit::http::respond(Method::Get, URL, Response::new(404));
    assert_eq!(kit.handle("fetch", json!({"url": URL})).unwrap()["status"], 404);
    assert!(testkit::http::requests()[1].body.is_empty());
    assert_eq!(state(&mut kit), json!({"fetches": 2, "webhooks": 0}));
}

#[test]
fn a_fetch_without_response_fails_with_the_errors_message_and_counts_nothing() {
    testkit::http::fail(Method::Get, URL, "HTTP-request-denied");
    let mut kit = kit();
    let failure = kit.handle("fetch", json!({"method": "GET", "url": URL, "body": null})).unwrap_err();
    let denied = HttpError::Denied { url: URL.into(), host: "127.0.0.1:9100".into() };
    assert_eq!((failure.code(), failure.message()), (FailureCode::Rejected, denied.to_string().as_str()));
    assert_eq!(state(&mut kit), json!({"fetches": 0, "webhooks": 0}));

    let typo = kit.handle("fetch", json!({"url": URL, "verb": "GET"})).unwrap_err();
    assert_eq!(typo.code(), FailureCode::InvalidPayload);
}

#[test]
fn fetch_then_fail_calls_out_but_commits_nothing() {
    testkit::http::respond(Method::Post, URL, Response::new(200));
    let mut kit = kit();
    let failure = kit.handle("fetch_then_fail", json!({"method": "POST", "url": URL, "body": [1]})).unwrap_err();
    assert_eq!(failure.message(), FAILED_AFTER_CALLING_OUT);
    assert_eq!(testkit::http::requests().len(), 1, "the request was made");
    assert_eq!(kit.state(), None);
}

#[test]
fn fetch_many_stops_at_the_first_error() {
    let calls = Rc::new(Cell::new(0));
    let counted = Rc::clone(&calls);
    testkit::http::stub(move |_| {
        counted.set(counted.get() + 1);
        Some(match counted.get() {
            3 => Err(HttpError::LimitReached { url: URL.into() }),
            _ => Ok(Response::new(200)),
        })
    });
    let mut kit = kit();
    assert_eq!(kit.handle("fetch_many", json!({"url": URL, "count": 2})), Ok(json!(2)));
    let failure = kit.handle("fetch_many", json!({"url": URL, "count": 5})).unwrap_err();
    assert!(failure.message().ends_with("as many outbound requests as the host allows per command"), "{failure}");
    assert_eq!(calls.get(), 3);
    assert_eq!(state(&mut kit), json!({"fetches": 2, "webhooks": 0}));
}

#[test]
fn webhooks_are_sent_by_committed_commands_only() {
    let mut kit = kit();
    let hook = json!({"url": URL, "body": {"event": "x"}, "headers": [["X-Sig", "s"]], "method": "PUT"});
    assert_eq!(kit.handle("webhook", hook), Ok(json!({"sent": true})));
    let failure = kit.handle("webhook_then_fail", json!({"url": URL, "body": 1})).unwrap_err();
    assert_eq!(failure.message(), FAILED_AFTER_WEBHOOK);
    assert_eq!(kit.handle("webhook", json!({"url": URL, "method": null})), Ok(json!({"sent": true})));

    let put = SideEffect::webhook(URL).json(&json!({"event": "x"})).method("PUT").header("X-Sig", "s");
    assert_eq!(kit.webhooks(), [put, SideEffect::webhook(URL).json(&Value::Null)]);
    assert_eq!(state(&mut kit), json!({"fetches": 0, "webhooks": 2}));
    assert!(testkit::http::requests().is_empty(), "a webhook is no request of the command's");
}
