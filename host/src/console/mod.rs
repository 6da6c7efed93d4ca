//! The web console: static pages embedded in the binary (nothing is loaded
//! from anywhere else), served at `/` and `/console/…`. The pages hold no
//! data: they call the HTTP API like any other client, with the token the
//! user enters, so the console is guarded by the same tokens as the API.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::ApiError;

/// The console's files: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("assets/index.html")),
    ("console.css", "text/css; charset=utf-8", include_str!("assets/console.css")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("assets/console.js")),
    ("api.js", "text/javascript; charset=utf-8", include_str!("assets/api.js")),
    ("live.js", "text/javascript; charset=utf-8", include_str!("assets/live.js")),
];

/// Scripts, styles and requests from this server only; no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes, merged into the API's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route("/console/{file}", get(|Path(file): Path<String>| async move { asset(&file) }))
}

fn asset(name: &str) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(file, ..)| *file == name) else {
        return ApiError::not_found("no such file in the console").into_response();
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Small, and they change with the binary: asked for again each time.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_embedded() {
        let index = ASSETS[0].2;
        for (name, ..) in &ASSETS[1..] {
            let named = index.contains(&format!("/console/{name}"))
                || ASSETS.iter().any(|(_, _, body)| body.contains(&format!("./{name}")));
            assert!(named, "{name} is embedded but nothing loads it");
        }
        for script in ["console.js", "console.css"] {
            assert!(ASSETS.iter().any(|(name, ..)| *name == script));
        }
    }

    #[test]
    fn an_unknown_file_is_a_404() {
        assert_eq!(asset("../Cargo.toml").status(), axum::http::StatusCode::NOT_FOUND);
        assert_eq!(asset("index.html").status(), axum::http::StatusCode::OK);
    }
}
