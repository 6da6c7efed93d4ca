//! The API's error answers as reusable OpenAPI responses, one per status:
//! every one is an [`ErrorReply`](super::error::ErrorReply), and a 503
//! always says when to retry in `Retry-After`. The operations in the
//! document name the ones they can answer (see [`super::openapi`]).

use utoipa::ToResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// The header a 503 names the seconds to wait before a retry in.
pub const RETRY_AFTER: &str = "Retry-After";

/// An error response: its description, the [`ErrorReply`](super::error::ErrorReply)
/// body, and `Retry-After` when `retry` says so.
fn error_response(description: &str, retry: bool) -> RefOr<Response> {
    let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorReply"))).build();
    let mut response = ResponseBuilder::new().description(description).content("application/json", body);
    if retry {
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).build();
        let header = HeaderBuilder::new().schema(seconds).description(Some("The seconds to wait before retrying."));
        response = response.header(RETRY_AFTER, header.build());
    }
    response.build().into()
}

/// Declares one reusable error response: a type the `#[utoipa::path]`
/// attributes name as `response = Type`, registered in the document's
/// components under the type's name.
macro_rules! error_responses {
    ($($(#[doc = $doc:literal])+ $name:ident $(, $retry:ident)?;)+) => {$(
        $(#[doc = $doc])+
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                let description = [$($doc),+].map(str::trim).join(" ");
                (stringify!($name), error_response(&description, error_responses!(@retry $($retry)?)))
            }
        }
    )+};
    (@retry retry) => { true };
    (@retry) => { false };
}

error_responses! {
    /// Bad input (a path, query, header or body that does not parse or is
    /// out of range), or a command the entity's code refused
    /// (`command_failed`, `unknown_command`, `invalid_payload`).
    BadRequest;
    /// The route needs `Authorization: Bearer <token>` with a token that
    /// opens it.
    Unauthorized;
    /// The request names a host this server does not answer to
    /// (`host_not_allowed`), or a web page of another origin tried to change
    /// something (`cross_origin_refused`).
    Forbidden;
    /// No such service, entity state, file or route.
    NotFound;
    /// The change conflicts with what is stored: an upgrade its
    /// verification refused (`upgrade_rejected`, with the report in
    /// `details`), a deploy without verification of a service with stored
    /// entities under `--require-verify`, a fork into an entity that exists.
    Conflict;
    /// The history asked for was compacted away (`history_compacted`).
    Gone;
    /// The request body is larger than the server takes.
    PayloadTooLarge;
    /// A command forwarded by another host of the cluster reached a host
    /// that no longer owns the entity (`not_the_owner`); only hosts send these.
    Misdirected;
    /// The request cannot be served as asked: an `Idempotency-Key` reused
    /// for another command or payload, a component too old to answer its state.
    Unprocessable;
    /// The entity's code trapped or met a limit, stored data could not be
    /// read, or the host failed (`internal`; the details are in its log).
    Internal;
    /// The command was committed but a synchronous side effect of it failed
    /// (`side_effect_failed`).
    BadGateway;
    /// The host is overloaded or its journal is unavailable; retry after
    /// `Retry-After` seconds.
    Unavailable, retry;
    /// The entity's code ran out of time.
    Timeout;
}
