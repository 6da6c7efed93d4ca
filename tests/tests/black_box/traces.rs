//! Distributed tracing: an invocation continues the trace a request's W3C
//! `traceparent` names and answers its own span; with `--otlp-endpoint`,
//! the spans of an invocation, its guest calls and commits, and of
//! everything that follows it (forwards, side effects, outbox and event
//! deliveries) reach an OTLP/HTTP collector — here a small one of the
//! test's own that decodes the protobuf requests.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use wasmstate_tests::guests::{CART_PROJECTION, COUNTER, ORDER_VALIDATOR, SHOPPING_CART};

use crate::start;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Posts `command` with `traceparent` (if any); answers the status and
/// the `traceparent` the reply names.
async fn invoke_traced(base: &str, path: &str, body: serde_json::Value, traceparent: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().post(format!("{base}/v1/services/{path}")).json(&body);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.expect("request");
    let answered = response.headers().get("traceparent").map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), answered.unwrap_or_else(|| panic!("no traceparent on {path}")))
}

/// The fields of a `traceparent` header: trace id, span id, flags.
fn fields(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!((parts.len(), parts[0]), (4, "00"), "{traceparent}");
    assert!(parts[1].len() == 32 && parts[2].len() == 16 && parts[3].len() == 2, "{traceparent}");
    (parts[1].to_string(), parts[2].to_string(), parts[3].to_string())
}

#[tokio::test]
async fn an_invocation_continues_the_callers_trace_and_answers_its_own_span() {
    let t = start(&[]).await;
    t.api.deploy("counter", Path::new(COUNTER)).await;
    let base = t.server.base();
    let parent = format!("00-{TRACE}-{PARENT}-01");

    let (status, answered) =
        invoke_traced(base, "counter/entities/c/Increase", json!({"value": 1}), Some(&parent)).await;
    let (trace, span, flags) = fields(&answered);
    assert_eq!((status, trace.as_str(), flags.as_str()), (200, TRACE, "01"));
    assert_ne!(span, PARENT, "the invocation's own span, a child of the caller's");

    // No header, or one that does not parse: a new trace, not sampled
    // (nothing is exported).
    for header in [None, Some("00-zz-00f067aa0ba902b7-01"), Some(&*format!("00-{TRACE}-0000000000000000-01"))] {
        let (status, answered) = invoke_traced(base, "counter/entities/c/Increase", json!({"value": 1}), header).await;
        let (trace, _, flags) = fields(&answered);
        assert_eq!((status, flags.as_str()), (200, "00"));
        assert_ne!(trace, TRACE);
    }
    // A failed command names its span too.
    let (status, answered) = invoke_traced(base, "counter/entities/c/Increse", json!({}), Some(&parent)).await;
    assert_eq!((status, fields(&answered).0.as_str()), (400, TRACE));
    let value = t.api.invoke("counter", "c", "Get", json!({})).await.expect(200);
    assert_eq!(value["value"], 4, "{value}");
}

/// The spans a collector received.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

impl Collector {
    /// Listens on a free loopback port; answers its base URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/v1/traces", post(receive)).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    /// The received spans of trace `trace` (hex).
    fn of_trace(&self, trace: &str) -> Vec<Span> {
        let spans = self.0.lock().unwrap();
        spans.iter().filter(|s| hex(&s.trace_id) == trace).cloned().collect()
    }
}

async fn receive(State(collector): State<Collector>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let spans = request.resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
    collector.0.lock().unwrap().extend(spans);
    ""
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A string attribute of a span.
fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    })
}

/// The one span named `name` whose `entity` attribute is `entity`.
fn the_span<'a>(spans: &'a [Span], name: &str, entity: &str) -> &'a Span {
    let found: Vec<&Span> =
        spans.iter().filter(|s| s.name == name && attribute(s, "entity").as_deref() == Some(entity)).collect();
    assert_eq!(found.len(), 1, "one {name} of {entity} among {:#?}", names(spans));
    found[0]
}

/// The children of `parent` named `name`.
fn children<'a>(spans: &'a [Span], parent: &Span, name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.parent_span_id == parent.span_id && s.name == name).collect()
}

fn names(spans: &[Span]) -> Vec<(String, String, String)> {
    spans.iter().map(|s| (s.name.clone(), hex(&s.span_id), hex(&s.parent_span_id))).collect()
}

#[tokio::test]
async fn spans_of_an_invocation_and_all_that_follows_it_reach_the_collector() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let t = start(&["--otlp-endpoint", &endpoint]).await;
    let api = &t.api;
    api.deploy("shopping-cart", Path::new(SHOPPING_CART)).await;
    api.deploy("counter", Path::new(COUNTER)).await;
    api.deploy("order-validator", Path::new(ORDER_VALIDATOR)).await;
    api.deploy_with("cart-projection", Path::new(CART_PROJECTION), "subscribe=shopping-cart").await.expect(201);
    let base = t.server.base();

    // A request its caller did not sample is not exported.
    let unsampled = "11111111111111111111111111111111";
    let order = json!({"cartId": "cart-1", "productId": "P1", "name": "Pen", "quantity": 2});
    let path = "order-validator/entities/any/PlaceOrder";
    let (status, _) = invoke_traced(base, path, order.clone(), Some(&format!("00-{unsampled}-{PARENT}-00"))).await;
    assert_eq!(status, 200);

    // The order: an action that commits an outbox entry (counter/orders),
    // then forwards to the cart, whose event the projection receives and
    // counts with a synchronous side effect (counter/items-added).
    let (status, answered) = invoke_traced(base, path, order, Some(&format!("00-{TRACE}-{PARENT}-01"))).await;
    assert_eq!(status, 200);
    let (_, order_span, _) = fields(&answered);
    let all_there = || async {
        let spans = collector.of_trace(TRACE);
        let invocations = spans.iter().filter(|s| attribute(s, "cause").is_some()).count();
        invocations >= 5 && spans.iter().filter(|s| s.name == "commit").count() >= 3
    };
    assert!(
        api.eventually(Duration::from_secs(20), all_there).await,
        "the spans arrive: {:#?}",
        names(&collector.of_trace(TRACE))
    );
    let spans = collector.of_trace(TRACE);

    let order = the_span(&spans, "order-validator/PlaceOrder", "any");
    assert_eq!((hex(&order.span_id), hex(&order.parent_span_id)), (order_span, PARENT.to_string()));
    assert_eq!(attribute(order, "cause").as_deref(), Some("request"));
    assert_eq!(attribute(order, "outcome").as_deref(), Some("ok"));
    assert_eq!(children(&spans, order, "guest_call").len(), 1);
    assert_eq!(children(&spans, order, "commit").len(), 1, "the outbox entry's commit");

    let cart = the_span(&spans, "shopping-cart/AddItem", "cart-1");
    assert_eq!(
        (cart.parent_span_id.as_slice(), attribute(cart, "cause").as_deref()),
        (&order.span_id[..], Some("forward"))
    );
    assert!(!children(&spans, cart, "guest_call").is_empty());
    assert_eq!(children(&spans, cart, "commit").len(), 1);

    let counted = the_span(&spans, "counter/Increase", "orders");
    assert_eq!(
        (counted.parent_span_id.as_slice(), attribute(counted, "cause").as_deref()),
        (&order.span_id[..], Some("outbox"))
    );

    let projected = the_span(&spans, "cart-projection/on-event", "cart-1");
    assert_eq!(
        (projected.parent_span_id.as_slice(), attribute(projected, "cause").as_deref()),
        (&cart.span_id[..], Some("event"))
    );
    let effect = the_span(&spans, "counter/Increase", "items-added");
    assert_eq!(
        (effect.parent_span_id.as_slice(), attribute(effect, "cause").as_deref()),
        (&projected.span_id[..], Some("side-effect"))
    );

    // Every span ends after it starts, and none of the unsampled trace came.
    assert!(spans.iter().all(|s| s.end_time_unix_nano >= s.start_time_unix_nano && s.start_time_unix_nano > 0));
    assert!(collector.of_trace(unsampled).is_empty(), "{:#?}", names(&collector.of_trace(unsampled)));
    // Both orders ran: two carts' worth of items counted.
    let items = api.invoke("counter", "items-added", "Get", json!({})).await.expect(200);
    assert_eq!(items["value"], 4, "{items}");
}

/// The journal keeps a sampled command's span beside its events: a
/// subscriber deployed after a restart receives them as children of it.
#[tokio::test]
async fn a_stored_event_is_delivered_in_the_trace_of_the_command_that_committed_it() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let t = start(&["--otlp-endpoint", &endpoint]).await;
    t.api.deploy("shopping-cart", Path::new(SHOPPING_CART)).await;
    t.api.deploy("counter", Path::new(COUNTER)).await;
    let item = json!({"productId": "P1", "name": "Pen", "quantity": 3});
    let parent = format!("00-{TRACE}-{PARENT}-01");
    let (status, answered) =
        invoke_traced(t.server.base(), "shopping-cart/entities/cart-9/AddItem", item, Some(&parent)).await;
    assert_eq!(status, 200);
    let (_, cart_span, _) = fields(&answered);

    let t = t.restart().await;
    let api = &t.api;
    api.deploy_with("cart-projection", Path::new(CART_PROJECTION), "subscribe=shopping-cart").await.expect(201);
    let delivered = || async { collector.of_trace(TRACE).iter().any(|s| s.name == "cart-projection/on-event") };
    assert!(api.eventually(Duration::from_secs(20), delivered).await, "{:#?}", names(&collector.of_trace(TRACE)));
    let spans = collector.of_trace(TRACE);
    let projected = the_span(&spans, "cart-projection/on-event", "cart-9");
    assert_eq!((hex(&projected.parent_span_id), attribute(projected, "cause").as_deref()), (cart_span, Some("event")));
    let items = api.invoke("counter", "items-added", "Get", json!({})).await.expect(200);
    assert_eq!(items["value"], 3, "{items}");
}

/// A delayed call's scheduling is a span of the caller's trace, and its
/// firing a child of it.
#[tokio::test]
async fn a_timer_fires_in_the_trace_that_set_it() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let t = start(&["--otlp-endpoint", &endpoint]).await;
    t.api.deploy("counter", Path::new(COUNTER)).await;
    let parent = format!("00-{TRACE}-{PARENT}-01");
    let path = "counter/entities/later/Increase?delay=0s";
    let (status, answered) = invoke_traced(t.server.base(), path, json!({"value": 1}), Some(&parent)).await;
    assert_eq!(status, 202);
    let (_, scheduling, _) = fields(&answered);
    let fired = || async { collector.of_trace(TRACE).iter().any(|s| s.name == "counter/Increase") };
    assert!(t.api.eventually(Duration::from_secs(20), fired).await, "{:#?}", names(&collector.of_trace(TRACE)));
    let spans = collector.of_trace(TRACE);
    let schedule = spans.iter().find(|s| s.name == "schedule").expect("the scheduling's span");
    assert_eq!((hex(&schedule.span_id), hex(&schedule.parent_span_id)), (scheduling.clone(), PARENT.to_string()));
    let firing = the_span(&spans, "counter/Increase", "later");
    assert_eq!((hex(&firing.parent_span_id), attribute(firing, "cause").as_deref()), (scheduling, Some("timer")));
}
