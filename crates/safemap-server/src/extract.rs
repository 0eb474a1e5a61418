//! Request extractors that turn every malformed part of a request into the
//! spec's JSON error (never axum's plain-text rejections).
//!
//! Handlers take `Authed<ROLE>` first, so authentication and authorization
//! (401/403) win over every other error, as the spec's precedence requires.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::auth::{Principal, Role, bearer};
use crate::error::ApiError;
use crate::names::{check_key, is_valid_name};
use crate::state::AppState;
use crate::trace::TraceCtx;

/// A role a route requires, as a type: `Authed<CanDelete>` in a handler's
/// signature says which role the route needs (http-api.md, "Which role each
/// route needs"); `Authed<AnyRole>` takes any valid token.
pub trait RequiredRole {
    /// The role, or None when any valid token will do.
    const ROLE: Option<Role>;
}

/// Requires only a valid token, whatever its roles (`GET /v1/whoami`).
pub struct AnyRole;
/// Requires the `read` role.
pub struct CanRead;
/// Requires the `write` role.
pub struct CanWrite;
/// Requires the `delete` role.
pub struct CanDelete;
/// Requires the `admin` role.
pub struct IsAdmin;

impl RequiredRole for AnyRole {
    const ROLE: Option<Role> = None;
}
impl RequiredRole for CanRead {
    const ROLE: Option<Role> = Some(Role::Read);
}
impl RequiredRole for CanWrite {
    const ROLE: Option<Role> = Some(Role::Write);
}
impl RequiredRole for CanDelete {
    const ROLE: Option<Role> = Some(Role::Delete);
}
impl RequiredRole for IsAdmin {
    const ROLE: Option<Role> = Some(Role::Admin);
}

/// An authenticated caller holding the role `R` requires.
pub struct Authed<R: RequiredRole>(pub Principal, std::marker::PhantomData<R>);

/// Authenticates a request: 401 when the token is missing or unknown.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = bearer(headers.get(header::AUTHORIZATION)).ok_or_else(|| {
        ApiError::unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    })?;
    state
        .tokens
        .authenticate(token)
        .ok_or_else(|| ApiError::unauthenticated("unknown token"))
}

/// Checks that `p` has `role`: 403 otherwise.
pub fn authorize(p: &Principal, role: Role) -> Result<(), ApiError> {
    if p.has(role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token {:?} lacks the {} role",
            p.name,
            role.as_str()
        ))
        .with_details(serde_json::json!({"required_role": role.as_str()})))
    }
}

impl<R: RequiredRole> FromRequestParts<AppState> for Authed<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let p = authenticate(state, &parts.headers)?;
        if let Some(role) = R::ROLE {
            authorize(&p, role)?;
        }
        Ok(Authed(p, std::marker::PhantomData))
    }
}

/// The request's trace context (set by the observe middleware).
pub struct Trace(pub TraceCtx);

impl<S: Send + Sync> FromRequestParts<S> for Trace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Trace(
            parts
                .extensions
                .get::<TraceCtx>()
                .cloned()
                .unwrap_or_else(|| TraceCtx::from_header(None)),
        ))
    }
}

fn check_map(map: &str) -> Result<(), ApiError> {
    if is_valid_name(map) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_map_name",
            format!("map name {map:?} does not match [a-z0-9][a-z0-9_-]{{0,63}}"),
        ))
    }
}

/// `{map}` from the path, validated.
pub struct MapName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for MapName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        let map = param(&params, "map")?;
        check_map(&map)?;
        Ok(MapName(map))
    }
}

/// `{map}` and `{key}` from the path, validated (keys: 1..=1024 bytes of UTF-8).
pub struct MapKey(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for MapKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_key",
                    format!("{} (keys are percent-encoded UTF-8)", e.body_text()),
                )
            })?;
        let map = param(&params, "map")?;
        check_map(&map)?;
        let key = param(&params, "key")?;
        check_key(&key).map_err(|m| ApiError::bad_request("invalid_key", m))?;
        Ok(MapKey(map, key))
    }
}

/// Another named path parameter (plan id, token name), as text.
pub fn param(params: &[(String, String)], name: &str) -> Result<String, ApiError> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| ApiError::bad_request("invalid_path", format!("missing {name}")))
}

/// All path parameters.
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        Ok(Params(params))
    }
}

/// A query string, with 400 `invalid_query` on anything malformed.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(t) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
        Ok(Q(t))
    }
}

/// A JSON body of at most `server.max_body_bytes`: 413 `body_too_large` above,
/// 400 `invalid_json` when it does not parse, 400 `invalid_body` when it has the
/// wrong shape.
pub struct JsonBody<T>(pub T);

/// A refused body is still read and discarded up to this many bytes past the
/// limit, so that a client that sends its whole body before reading (curl,
/// Python's `http.client`, Go's `net/http`) gets the 413 rather than a reset
/// connection (nginx's lingering close). Larger bodies are cut off.
pub const DISCARD_BYTES: u64 = 64 * 1024 * 1024;
/// ... and for at most this long.
pub const DISCARD_TIME: Duration = Duration::from_secs(10);

/// Reads the body as bytes within the configured limit: 413 `body_too_large`
/// above it, after discarding the rest of the body (see [`DISCARD_BYTES`]).
pub async fn read_body(req: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    use futures_util::StreamExt;
    // An HTTP/1 connection whose body is refused must close (its remaining
    // bytes, if any, are not read), or a client may reuse it and hit a broken
    // pipe; HTTP/2 streams are independent (and forbid the `Connection` header).
    let http1 = req.version() <= axum::http::Version::HTTP_11;
    let too_large = || {
        let error = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
        .with_details(serde_json::json!({"limit_bytes": limit}));
        if http1 {
            error.closing_connection()
        } else {
            error
        }
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body().into_data_stream();
    if let Some(len) = declared
        && len > limit as u64
    {
        if len <= limit as u64 + DISCARD_BYTES {
            discard(&mut body).await;
        }
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("invalid_body", format!("reading the body failed: {e}"))
        })?;
        if buf.len() + chunk.len() > limit {
            discard(&mut body).await;
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// Reads and drops the rest of a body, up to [`DISCARD_BYTES`] and [`DISCARD_TIME`].
async fn discard(body: &mut axum::body::BodyDataStream) {
    use futures_util::StreamExt;
    let _ = tokio::time::timeout(DISCARD_TIME, async {
        let mut dropped = 0u64;
        while let Some(Ok(chunk)) = body.next().await {
            dropped += chunk.len() as u64;
            if dropped > DISCARD_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Parses JSON bytes into `T` with the spec's errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_data() {
            "invalid_body"
        } else {
            "invalid_json"
        };
        ApiError::bad_request(code, format!("body: {e}"))
            .with_details(serde_json::json!({"line": e.line(), "column": e.column()}))
    })
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state.config.server.max_body_bytes).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

/// A header as UTF-8 text: 400 `invalid_header` when it is not.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::bad_request("invalid_header", format!("{name} is not visible ASCII"))
                .with_details(serde_json::json!({"header": name}))
        }),
    }
}

/// Maximum reason length in characters.
pub const MAX_REASON_CHARS: usize = safemap::MAX_REASON_LEN;

/// The reason of a request (http-api.md, "Reasons"): `X-Reason` as UTF-8 text,
/// or `X-Reason-Encoded` as percent-encoded UTF-8 (what a browser's `fetch`
/// can send). Exactly one of the two: both, a malformed encoding or bytes that
/// are not UTF-8 give 400 `invalid_header`. Then 400 `reason_required` when
/// required and missing or blank, `reason_too_long` above 512 characters of the
/// decoded text. Surrounding whitespace is trimmed.
pub fn reason(headers: &HeaderMap, required: bool) -> Result<Option<String>, ApiError> {
    let raw = match (headers.get("x-reason"), headers.get("x-reason-encoded")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_header",
                "send the reason in X-Reason or in X-Reason-Encoded, not both",
            )
            .with_details(serde_json::json!({"header": "X-Reason-Encoded"})));
        }
        (Some(v), None) => Some(String::from_utf8(v.as_bytes().to_vec()).map_err(|_| {
            ApiError::bad_request("invalid_header", "X-Reason is not UTF-8")
                .with_details(serde_json::json!({"header": "X-Reason"}))
        })?),
        (None, Some(v)) => Some(percent_decoded_utf8(v.as_bytes()).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_header",
                "X-Reason-Encoded is not percent-encoded UTF-8 \
                 (as JavaScript's encodeURIComponent makes it)",
            )
            .with_details(serde_json::json!({"header": "X-Reason-Encoded"}))
        })?),
        (None, None) => None,
    };
    let text = raw.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    match text {
        None if required => Err(crate::library_errors::reason_required()),
        Some(t) if t.chars().count() > MAX_REASON_CHARS => {
            Err(crate::library_errors::reason_too_long())
        }
        other => Ok(other),
    }
}

/// Decodes percent-encoded UTF-8 strictly: every `%` starts two hex digits,
/// every other byte is visible ASCII or a space, and the decoded bytes are
/// UTF-8. `None` otherwise (`percent_encoding` alone passes a stray `%` through).
fn percent_decoded_utf8(raw: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                i += 3;
            }
            b' '..=b'~' => i += 1,
            _ => return None,
        }
    }
    percent_encoding::percent_decode(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A parsed `If-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: the entry must exist.
    Any,
    /// One or more strong ETags `"<revision>"` (weak ones never match: `None`).
    Revisions(Vec<Option<u64>>),
}

impl IfMatch {
    /// The revision a conditional write must find: a single strong tag names
    /// it; `*` or a list of tags takes the current revision (`current()`, None
    /// when the key is absent) if it matches. `Err(current)` when it does not.
    pub fn pinned(
        &self,
        current: impl FnOnce() -> Option<safemap::Revision>,
    ) -> Result<safemap::Revision, Option<safemap::Revision>> {
        match self {
            IfMatch::Revisions(tags) => {
                let strong: Vec<u64> = tags.iter().flatten().copied().collect();
                match strong.as_slice() {
                    [one] => Ok(safemap::Revision::new(*one)),
                    _ => match current() {
                        Some(cur) if strong.contains(&cur.get()) => Ok(cur),
                        cur => Err(cur),
                    },
                }
            }
            IfMatch::Any => current().ok_or(None),
        }
    }

    /// Whether an entry at `revision` matches (`If-None-Match` on a read).
    pub fn matches(&self, revision: safemap::Revision) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Revisions(tags) => tags.iter().flatten().any(|r| *r == revision.get()),
        }
    }
}

/// Parses an entity-tag list of `If-Match`/`If-None-Match`: `*` or `"<n>"`, `W/"<n>"`, comma separated.
pub fn parse_etags(v: &str) -> Option<IfMatch> {
    let v = v.trim();
    if v == "*" {
        return Some(IfMatch::Any);
    }
    let mut out = Vec::new();
    for part in v.split(',') {
        let part = part.trim();
        let (weak, tag) = match part.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, part),
        };
        let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
        let n: u64 = inner.parse().ok()?;
        if inner.starts_with('+') {
            return None;
        }
        out.push(if weak { None } else { Some(n) });
    }
    (!out.is_empty()).then_some(IfMatch::Revisions(out))
}

/// `X-Min-Revision: N` (decimal, cluster.md): `None` when absent; 400
/// `invalid_header` when malformed. Cluster mode waits for N; a single server
/// checks the syntax only (it always reads its own writes).
pub fn min_revision_header(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("x-min-revision") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_header",
                "X-Min-Revision must be a decimal revision (e.g. 42)",
            )
            .with_details(serde_json::json!({"header": "X-Min-Revision"}))
        })
}

/// `If-Match` of a request: 400 `invalid_header` when malformed.
pub fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
    etag_header(headers, "if-match")
}

/// `If-None-Match` of a request: 400 `invalid_header` when malformed.
pub fn if_none_match(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
    etag_header(headers, "if-none-match")
}

fn etag_header(headers: &HeaderMap, name: &str) -> Result<Option<IfMatch>, ApiError> {
    match header_str(headers, name)? {
        None => Ok(None),
        Some(v) => parse_etags(v).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_header",
                format!("{name} must be * or a list of \"<revision>\" entity tags"),
            )
            .with_details(serde_json::json!({"header": name}))
        }),
    }
}

/// Validates a `limit` query value: 1..=max, default max.
pub fn limit(raw: Option<&str>, max: usize) -> Result<usize, ApiError> {
    let Some(raw) = raw else { return Ok(max) };
    match raw.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be an integer in 1..={max}"),
        )
        .with_details(serde_json::json!({"max": max}))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn etags() {
        assert_eq!(parse_etags("*"), Some(IfMatch::Any));
        assert_eq!(
            parse_etags("\"5\""),
            Some(IfMatch::Revisions(vec![Some(5)]))
        );
        assert_eq!(
            parse_etags("\"5\", W/\"6\""),
            Some(IfMatch::Revisions(vec![Some(5), None]))
        );
        for bad in ["5", "\"x\"", "\"\"", "", "\"5", "\"-1\"", "\"+1\""] {
            assert_eq!(parse_etags(bad), None, "{bad}");
        }
    }

    #[test]
    fn reasons() {
        let mut h = HeaderMap::new();
        assert_eq!(
            reason(&h, true).err().map(|e| e.code),
            Some("reason_required")
        );
        assert_eq!(reason(&h, false).ok(), Some(None));
        h.insert("x-reason", "  ".parse().expect("header"));
        assert_eq!(
            reason(&h, true).err().map(|e| e.code),
            Some("reason_required")
        );
        h.insert("x-reason", "a".repeat(513).parse().expect("header"));
        assert_eq!(
            reason(&h, true).err().map(|e| e.code),
            Some("reason_too_long")
        );
        h.insert("x-reason", "a".repeat(512).parse().expect("header"));
        assert!(reason(&h, true).is_ok());
    }

    #[test]
    fn encoded_reasons() {
        let mut h = HeaderMap::new();
        // "回滚 bad deploy" as encodeURIComponent sends it.
        h.insert(
            "x-reason-encoded",
            "%E5%9B%9E%E6%BB%9A%20bad%20deploy".parse().expect("header"),
        );
        assert_eq!(
            reason(&h, true).ok().flatten().as_deref(),
            Some("回滚 bad deploy")
        );
        h.insert("x-reason", "plain".parse().expect("header"));
        assert_eq!(
            reason(&h, true).err().map(|e| e.code),
            Some("invalid_header")
        );
        h.remove("x-reason");
        for bad in ["%", "%E5%9B", "%zz", "50%", "%FF%FE"] {
            h.insert("x-reason-encoded", bad.parse().expect("header"));
            assert_eq!(
                reason(&h, true).err().map(|e| e.code),
                Some("invalid_header"),
                "{bad}"
            );
        }
        // The limit counts decoded characters: 512 Chinese characters pass,
        // though they take 4608 bytes encoded.
        h.insert(
            "x-reason-encoded",
            "%E5%9B%9E".repeat(512).parse().expect("header"),
        );
        assert_eq!(
            reason(&h, true).ok().flatten().map(|s| s.chars().count()),
            Some(512)
        );
        h.insert(
            "x-reason-encoded",
            "%E5%9B%9E".repeat(513).parse().expect("header"),
        );
        assert_eq!(
            reason(&h, true).err().map(|e| e.code),
            Some("reason_too_long")
        );
        h.insert("x-reason-encoded", "%20%20".parse().expect("header"));
        assert_eq!(
            reason(&h, true).err().map(|e| e.code),
            Some("reason_required")
        );
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None, 1000).ok(), Some(1000));
        assert_eq!(limit(Some("1"), 1000).ok(), Some(1));
        for bad in ["0", "1001", "-1", "x", ""] {
            assert!(limit(Some(bad), 1000).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn header_decoders_never_panic(s in ".{0,64}") {
            let _ = parse_etags(&s);
            let _ = limit(Some(&s), 1000);
            if let Ok(v) = s.parse::<axum::http::HeaderValue>() {
                let mut h = HeaderMap::new();
                h.insert("x-reason-encoded", v.clone());
                let _ = reason(&h, true);
                h.remove("x-reason-encoded");
                h.insert("x-reason", v.clone());
                h.insert("if-match", v);
                let _ = reason(&h, true);
                let _ = if_match(&h);
            }
        }

        #[test]
        fn body_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_json::<serde_json::Value>(&bytes);
            if let Err(e) = parse_json::<crate::routes::plans::PlanBody>(&bytes) {
                prop_assert!(e.code == "invalid_json" || e.code == "invalid_body");
            }
        }
    }
}
