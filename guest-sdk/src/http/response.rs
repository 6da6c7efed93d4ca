//! What an outbound HTTP request got back.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::HttpError;
use crate::reply::encode_json;

/// How much of an unsuccessful response's body [`HttpError::Status`] quotes.
const QUOTED_BODY: usize = 200;

/// An HTTP response, read whole.
///
/// Tests make the responses their stubs answer with [`Response::new`] and
/// the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, such as 200.
    pub status: u16,
    /// The headers, as (name, value) pairs in the order received; a value
    /// that is not UTF-8 is read lossily.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The URL that answered; empty for a response not sent.
    url: String,
}

impl Response {
    /// A response of status `status` with no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new(), url: String::new() }
    }

    /// The same response with header `name: value` added.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same response with `bytes` as its body.
    pub fn with_body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = bytes.into();
        self
    }

    /// The same response with `value` encoded as JSON as its body, and
    /// header `Content-Type: application/json`.
    ///
    /// # Panics
    ///
    /// If `value` cannot be encoded as JSON.
    pub fn with_json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = encode_json(value, "response body");
        self.with_header("Content-Type", crate::reply::JSON).with_body(body)
    }

    /// The same response, answered by `url`.
    pub(crate) fn answered_by(mut self, url: String) -> Self {
        self.url = url;
        self
    }

    /// The URL that answered: the one requested, or the last one it was
    /// redirected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the status is a success, 200 to 299.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The value of the first header named `name`, compared without regard
    /// to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The body as text; bytes that are not UTF-8 read as U+FFFD.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Decodes the body as JSON into `T`, whatever the status.
    ///
    /// # Errors
    ///
    /// [`HttpError::Decode`] when the body is not `T` as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|error| HttpError::Decode {
            url: self.url.clone(),
            status: self.status,
            message: error.to_string(),
        })
    }

    /// The response itself when its status is a success (2xx).
    ///
    /// # Errors
    ///
    /// [`HttpError::Status`], quoting the start of the body, otherwise.
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.is_success() {
            return Ok(self);
        }
        let text = self.text();
        let body = match text.char_indices().nth(QUOTED_BODY) {
            Some((end, _)) => format!("{}...", &text[..end]),
            None => text,
        };
        Err(HttpError::Status { url: self.url, status: self.status, body: body.trim().to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Score {
        score: u32,
    }

    #[test]
    fn reads_headers_text_and_json() {
        let response =
            Response::new(201).with_json(&json!({"score": 7})).with_header("X-Id", "a").answered_by("http://h/".into());
        assert!(response.is_success());
        assert_eq!((response.header("content-type"), response.header("x-id")), (Some("application/json"), Some("a")));
        assert_eq!(response.text(), r#"{"score":7}"#);
        assert_eq!(response.json::<Score>(), Ok(Score { score: 7 }));
        assert_eq!(response.url(), "http://h/");

        let error = Response::new(200).with_body("<html>").answered_by("http://h/".into()).json::<Score>().unwrap_err();
        assert!(matches!(&error, HttpError::Decode { status: 200, .. }), "{error:?}");
        assert!(error.to_string().starts_with("the response from http://h/ (status 200) is not the JSON expected: "));
        assert_eq!(Response::new(200).with_body(vec![b'a', 0xff]).text(), "a\u{fffd}");
    }

    #[test]
    fn error_for_status_quotes_the_body() {
        assert!(Response::new(204).error_for_status().is_ok());
        let error = Response::new(503).with_body(" busy \n").answered_by("http://h/s".into()).error_for_status();
        assert_eq!(error.unwrap_err().to_string(), "http://h/s answered status 503: busy");
        let long = Response::new(500).with_body("x".repeat(300)).error_for_status().unwrap_err();
        let HttpError::Status { body, .. } = long else { panic!() };
        assert_eq!(body.len(), QUOTED_BODY + 3);
        let bare = Response::new(404).answered_by("http://h/".into()).error_for_status();
        assert_eq!(bare.unwrap_err().to_string(), "http://h/ answered status 404");
    }
}
