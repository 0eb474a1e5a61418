//! The console's static files, embedded with `include_str!` from
//! `crates/safemap-server/console/`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::extract::Params;

/// The page's files: (name under `/ui/assets/`, content type, body).
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../console/app.css"),
    ),
    ("app.js", JS, include_str!("../../console/js/app.js")),
    ("api.js", JS, include_str!("../../console/js/api.js")),
    ("dom.js", JS, include_str!("../../console/js/dom.js")),
    (
        "deletes.js",
        JS,
        include_str!("../../console/js/deletes.js"),
    ),
    ("plans.js", JS, include_str!("../../console/js/plans.js")),
    ("maps.js", JS, include_str!("../../console/js/maps.js")),
    ("charts.js", JS, include_str!("../../console/js/charts.js")),
    (
        "history.js",
        JS,
        include_str!("../../console/js/history.js"),
    ),
    (
        "restore.js",
        JS,
        include_str!("../../console/js/restore.js"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

const INDEX: &str = include_str!("../../console/index.html");

/// Only our own files may run or load; nothing may frame the page, and no
/// request from it carries a referrer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn with_headers(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary: revalidate rather than serve stale code.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /ui`: the page (no token needed; it holds no data).
pub async fn index() -> Response {
    with_headers("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/assets/{file}`: one of the page's scripts or its style sheet.
pub async fn asset(Params(params): Params) -> Result<Response, ApiError> {
    let name = params
        .iter()
        .find(|(k, _)| k == "file")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ctype, body)| with_headers(ctype, body))
        .ok_or_else(|| ApiError::not_found(format!("the console has no file {name:?}")))
}

#[cfg(test)]
mod tests {
    /// Every script the page or another script imports is served.
    #[test]
    fn every_imported_script_is_served() {
        let served: Vec<&str> = super::FILES.iter().map(|(n, _, _)| *n).collect();
        let sources = std::iter::once(super::INDEX).chain(super::FILES.iter().map(|f| f.2));
        for text in sources {
            for part in text.split(['"', '\'']) {
                if let Some(name) = part
                    .strip_prefix("./")
                    .or_else(|| part.strip_prefix("/ui/assets/"))
                    && (name.ends_with(".js") || name.ends_with(".css"))
                {
                    assert!(
                        served.contains(&name),
                        "{name} is referenced but not served"
                    );
                }
            }
        }
    }
}
