//! The transport on WebAssembly: one request through the host's
//! `wasi:http/outgoing-handler`, its response read whole.

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, FieldSizePayload, Fields, FutureIncomingResponse, HeaderError, IncomingBody, IncomingResponse,
    Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme,
};
use wasi::io::streams::StreamError;

use super::{HostError, HttpError, Method, Response};
use crate::http::Hop;

/// The most bytes written to the request body in one go: what
/// `blocking-write-and-flush` takes.
const WRITE_CHUNK: usize = 4096;
/// The most bytes read from the response body in one go.
const READ_CHUNK: u64 = 64 * 1024;

/// Sends `hop` and reads its whole response.
pub(crate) fn send(hop: &Hop) -> Result<Response, HttpError> {
    let url = hop.url.to_string();
    let host_error = |error: HostError| HttpError::from_host(&url, hop.url.authority(), error);
    let invalid = |reason: String| HttpError::InvalidRequest { url: url.clone(), reason };

    let headers = Fields::new();
    for (name, value) in &hop.headers {
        headers.append(name, value.as_bytes()).map_err(|error| invalid(header_refused(name, error)))?;
    }
    let request = OutgoingRequest::new(headers);
    request
        .set_method(&method(&hop.method))
        .map_err(|()| invalid(format!("the host refuses method {}", hop.method)))?;
    let scheme = if hop.url.is_https() { Scheme::Https } else { Scheme::Http };
    request.set_scheme(Some(&scheme)).map_err(|()| invalid("the host refuses its scheme".to_owned()))?;
    request.set_authority(Some(hop.url.authority())).map_err(|()| invalid("the host refuses its host".to_owned()))?;
    request
        .set_path_with_query(Some(hop.url.path_and_query()))
        .map_err(|()| invalid("the host refuses its path".to_owned()))?;
    let body = request.body().map_err(|()| invalid("its body was taken".to_owned()))?;

    let future = outgoing_handler::handle(request, None).map_err(|code| host_error(host_error_of(code)))?;
    let written = write_body(body, &hop.body);
    let response = wait(&future).map_err(|code| host_error(host_error_of(code)));
    // A body the host stopped taking is explained by the response's error.
    let response = match (response, written) {
        (Err(error), _) => return Err(error),
        (Ok(_), Err(code)) => return Err(host_error(code)),
        (Ok(response), Ok(())) => response,
    };
    read(response).map_err(host_error)
}

/// `method` as `wasi:http` has it.
fn method(method: &Method) -> WasiMethod {
    match method {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
        Method::Patch => WasiMethod::Patch,
        Method::Options => WasiMethod::Options,
        Method::Other(name) => WasiMethod::Other(name.clone()),
    }
}

/// Why the host did not take header `name`.
fn header_refused(name: &str, error: HeaderError) -> String {
    match error {
        HeaderError::Forbidden => format!("the host does not let a guest set header {name}"),
        HeaderError::InvalidSyntax => format!("the host refuses header {name} as malformed"),
        HeaderError::Immutable => format!("header {name} could not be set"),
    }
}

/// Writes `bytes` to `body` and finishes it.
fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), HostError> {
    {
        let stream = body.write().map_err(|()| HostError::new("internal-error"))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(stream_error)?;
        }
    }
    OutgoingBody::finish(body, None).map_err(host_error_of)
}

/// The response `future` resolves to, once it does.
fn wait(future: &FutureIncomingResponse) -> Result<IncomingResponse, ErrorCode> {
    loop {
        match future.get() {
            Some(Ok(result)) => return result,
            Some(Err(())) => return Err(ErrorCode::InternalError(Some("the response was taken".to_owned()))),
            None => future.subscribe().block(),
        }
    }
}

/// Reads `response` whole: status, headers, body (and checks its trailers
/// for an error).
fn read(response: IncomingResponse) -> Result<Response, HostError> {
    let status = response.status();
    let headers = {
        let fields = response.headers();
        let entries = fields.entries();
        entries.into_iter().map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned())).collect()
    };
    let incoming = response.consume().map_err(|()| HostError::new("internal-error"))?;
    let mut bytes = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| HostError::new("internal-error"))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(error) => return Err(stream_error(error)),
            }
        }
    }
    let trailers = IncomingBody::finish(incoming);
    let result = loop {
        match trailers.get() {
            Some(result) => break result,
            None => trailers.subscribe().block(),
        }
    };
    if let Ok(Err(code)) = result {
        return Err(host_error_of(code));
    }
    let mut read = Response::new(status).with_body(bytes);
    read.headers = headers;
    Ok(read)
}

/// The host's error behind a failed stream operation.
fn stream_error(error: StreamError) -> HostError {
    match error {
        StreamError::Closed => HostError::new("connection-terminated"),
        StreamError::LastOperationFailed(error) => match wasi::http::types::http_error_code(&error) {
            Some(code) => host_error_of(code),
            None => HostError { detail: Some(error.to_debug_string()), ..HostError::new("HTTP-protocol-error") },
        },
    }
}

/// `code` by its WIT name, with what it carries.
fn host_error_of(code: ErrorCode) -> HostError {
    let (name, limit, detail): (&str, Option<u64>, Option<String>) = match code {
        ErrorCode::DnsTimeout => ("DNS-timeout", None, None),
        ErrorCode::DnsError(payload) => {
            let parts: Vec<String> = payload
                .rcode
                .map(|rcode| format!("rcode {rcode}"))
                .into_iter()
                .chain(payload.info_code.map(|info| format!("info code {info}")))
                .collect();
            ("DNS-error", None, (!parts.is_empty()).then(|| parts.join(", ")))
        }
        ErrorCode::DestinationNotFound => ("destination-not-found", None, None),
        ErrorCode::DestinationUnavailable => ("destination-unavailable", None, None),
        ErrorCode::DestinationIpProhibited => ("destination-IP-prohibited", None, None),
        ErrorCode::DestinationIpUnroutable => ("destination-IP-unroutable", None, None),
        ErrorCode::ConnectionRefused => ("connection-refused", None, None),
        ErrorCode::ConnectionTerminated => ("connection-terminated", None, None),
        ErrorCode::ConnectionTimeout => ("connection-timeout", None, None),
        ErrorCode::ConnectionReadTimeout => ("connection-read-timeout", None, None),
        ErrorCode::ConnectionWriteTimeout => ("connection-write-timeout", None, None),
        ErrorCode::ConnectionLimitReached => ("connection-limit-reached", None, None),
        ErrorCode::TlsProtocolError => ("TLS-protocol-error", None, None),
        ErrorCode::TlsCertificateError => ("TLS-certificate-error", None, None),
        ErrorCode::TlsAlertReceived(payload) => {
            let detail = match (payload.alert_id, payload.alert_message) {
                (_, Some(message)) => Some(message),
                (Some(id), None) => Some(format!("alert {id}")),
                (None, None) => None,
            };
            ("TLS-alert-received", None, detail)
        }
        ErrorCode::HttpRequestDenied => ("HTTP-request-denied", None, None),
        ErrorCode::HttpRequestLengthRequired => ("HTTP-request-length-required", None, None),
        ErrorCode::HttpRequestBodySize(limit) => ("HTTP-request-body-size", limit, None),
        ErrorCode::HttpRequestMethodInvalid => ("HTTP-request-method-invalid", None, None),
        ErrorCode::HttpRequestUriInvalid => ("HTTP-request-URI-invalid", None, None),
        ErrorCode::HttpRequestUriTooLong => ("HTTP-request-URI-too-long", None, None),
        ErrorCode::HttpRequestHeaderSectionSize(limit) => {
            ("HTTP-request-header-section-size", limit.map(u64::from), None)
        }
        ErrorCode::HttpRequestHeaderSize(payload) => ("HTTP-request-header-size", None, payload.and_then(field)),
        ErrorCode::HttpRequestTrailerSectionSize(limit) => {
            ("HTTP-request-trailer-section-size", limit.map(u64::from), None)
        }
        ErrorCode::HttpRequestTrailerSize(payload) => ("HTTP-request-trailer-size", None, field(payload)),
        ErrorCode::HttpResponseIncomplete => ("HTTP-response-incomplete", None, None),
        ErrorCode::HttpResponseHeaderSectionSize(limit) => {
            ("HTTP-response-header-section-size", limit.map(u64::from), None)
        }
        ErrorCode::HttpResponseHeaderSize(payload) => ("HTTP-response-header-size", None, field(payload)),
        ErrorCode::HttpResponseBodySize(limit) => ("HTTP-response-body-size", limit, None),
        ErrorCode::HttpResponseTrailerSectionSize(limit) => {
            ("HTTP-response-trailer-section-size", limit.map(u64::from), None)
        }
        ErrorCode::HttpResponseTrailerSize(payload) => ("HTTP-response-trailer-size", None, field(payload)),
        ErrorCode::HttpResponseTransferCoding(coding) => ("HTTP-response-transfer-coding", None, coding),
        ErrorCode::HttpResponseContentCoding(coding) => ("HTTP-response-content-coding", None, coding),
        ErrorCode::HttpResponseTimeout => ("HTTP-response-timeout", None, None),
        ErrorCode::HttpUpgradeFailed => ("HTTP-upgrade-failed", None, None),
        ErrorCode::HttpProtocolError => ("HTTP-protocol-error", None, None),
        ErrorCode::LoopDetected => ("loop-detected", None, None),
        ErrorCode::ConfigurationError => ("configuration-error", None, None),
        ErrorCode::InternalError(message) => ("internal-error", None, message),
    };
    HostError { code: name.to_owned(), limit, detail }
}

/// The field a `-size` case names, as text.
fn field(payload: FieldSizePayload) -> Option<String> {
    match (payload.field_name, payload.field_size) {
        (Some(name), Some(size)) => Some(format!("header {name}, {size} bytes")),
        (Some(name), None) => Some(format!("header {name}")),
        (None, Some(size)) => Some(format!("{size} bytes")),
        (None, None) => None,
    }
}
