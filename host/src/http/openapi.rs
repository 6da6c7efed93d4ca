//! `GET /v1/openapi.json`: the API's OpenAPI 3.1 document, made from the
//! handlers' `#[utoipa::path]` attributes and the types they take and
//! answer (which derive their schemas), so it follows the code.
//!
//! The document is served without a token: it describes the API and holds
//! no data, and a client reads in it how to authenticate.
//!
//! The web console (`/` and `/console/{file}`) is left out: it is pages
//! for people, which call this API like any client; its file names are its
//! own business, not a contract.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, Required};
use utoipa::{Modify, OpenApi};

use super::entities::Consistency;
use super::error::{ErrorBody, ErrorReply};
use super::history::DryRunReply;
use super::responses::{
    BadGateway, BadRequest, Conflict, Forbidden, Gone, Internal, Misdirected, NotFound, PayloadTooLarge, RETRY_AFTER,
    Timeout, Unauthorized, Unavailable, Unprocessable,
};
use super::services::ComponentBytes;
use super::stream::StreamedEvent;
use super::{entities, history, services, timers};

/// The API's OpenAPI document: every route of `/v1`, `/healthz` and
/// `/metrics`, their parameters, bodies, answers and errors.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wasmstate",
        description = "Deploy WebAssembly components as services and invoke their entities. Every error answers \
                       an `ErrorReply` with an honest status; a 503 says when to retry in `Retry-After`. Routes \
                       with a security requirement need `Authorization: Bearer <token>` when the server has the \
                       token configured: the admin token for deploys, rollbacks and deletes, the invoke token for \
                       entities, the read token (else the invoke token) for the rest; the admin token opens \
                       every route. Every route takes a W3C `traceparent`.",
    ),
    paths(
        services::list,
        services::describe,
        services::deploy,
        services::delete,
        services::rollback,
        services::verification,
        services::dead_letters,
        entities::list,
        entities::position,
        entities::events,
        history::state,
        history::fork,
        entities::invoke,
        timers::list,
        timers::cancel,
        super::cluster,
        super::healthz,
        super::metrics,
        document,
    ),
    components(
        schemas(ErrorReply, ErrorBody, DryRunReply, StreamedEvent, ComponentBytes, Consistency),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            Gone,
            PayloadTooLarge,
            Misdirected,
            Unprocessable,
            Internal,
            BadGateway,
            Unavailable,
            Timeout,
        ),
    ),
    modifiers(&BearerToken, &EveryOperation),
    tags(
        (name = "services", description = "Deployed services and their versions."),
        (name = "entities", description = "Invoking entities and reading their state and history."),
        (name = "host", description = "The host itself: health, metrics, cluster, this document."),
    ),
)]
pub struct ApiDoc;

/// The document as served, made once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    require_retry_after(&mut document);
    serde_json::to_string(&document).expect("a JSON value serializes")
});

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "host",
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Value, content_type = "application/json")),
)]
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

/// The `bearer` security scheme the guarded operations name.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "One of the tokens the server was started with (--admin-token, --invoke-token, --read-token).",
            ))
            .build();
        openapi.components.get_or_insert_default().add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// What every operation takes and can answer: a `traceparent` (W3C trace
/// context), and 403 when the request names a host the server does not
/// answer to, or comes from a web page of another origin.
struct EveryOperation;

impl Modify for EveryOperation {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let traceparent = ParameterBuilder::new()
            .name("traceparent")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "The W3C trace context the request is part of: the host's spans join its trace (a malformed one is \
                 ignored).",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")),
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                operation.parameters.get_or_insert_default().push(traceparent.clone());
                operation.responses.responses.insert("403".into(), Ref::from_response_name("Forbidden").into());
            }
        }
    }
}

/// The operations of a path.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head]
        .into_iter()
        .flatten()
}

/// Marks `Retry-After` required on 503s: the host always sends it, and
/// utoipa 5's header objects have no `required`.
fn require_retry_after(document: &mut Value) {
    if let Some(header) = document.pointer_mut(&format!("/components/responses/Unavailable/headers/{RETRY_AFTER}")) {
        header["required"] = Value::Bool(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let document: Value = serde_json::from_str(&DOCUMENT).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        for path in ["/v1/services", "/v1/services/{service}/entities/{id}/{command}", "/healthz", "/v1/openapi.json"] {
            assert!(paths.contains_key(path), "{path}");
        }
        let unavailable = &document["components"]["responses"]["Unavailable"];
        assert_eq!(unavailable["headers"]["Retry-After"]["required"], true);
        let invoke = &paths["/v1/services/{service}/entities/{id}/{command}"]["post"];
        let names: Vec<&str> =
            invoke["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        for name in ["service", "id", "command", "dry_run", "at", "Idempotency-Key", "traceparent"] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
    }
}
