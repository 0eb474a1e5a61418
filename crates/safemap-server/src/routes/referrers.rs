//! `GET /v1/maps/{map}/keys/{key}/referrers`: who refers to a key, directly
//! (references.md, "Integrity").

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use safemap::Referrer;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::extract::{Authed, CanRead, MapKey, Q, limit};
use crate::library_errors::referrer_json;
use crate::references::{decode_cursor, encode_cursor};
use crate::state::AppState;

/// Query of a referrers page.
#[derive(Debug, Deserialize)]
pub struct ReferrersQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// The referrer a cursor names: map, key, reference.
fn cursor_referrer(after: &str) -> ApiResult<Referrer<String>> {
    let mut parts = decode_cursor(after, 3)?.into_iter();
    let mut next = || parts.next().unwrap_or_default();
    Ok(Referrer {
        map: Arc::from(next()),
        key: next(),
        reference: Arc::from(next()),
    })
}

/// `GET /v1/maps/{map}/keys/{key}/referrers?limit=&after=` (role `read`):
/// `{"items":[{"map","key","reference"}],"next"}` in (map, key, reference)
/// order; `next` is an opaque cursor, null on the last page. A key nothing
/// refers to (absent, or of a map that does not exist) has `[]`.
pub async fn referrers(
    _a: Authed<CanRead>,
    State(st): State<AppState>,
    MapKey(map, key): MapKey,
    Q(q): Q<ReferrersQuery>,
) -> ApiResult<Response> {
    let limit = limit(q.limit.as_deref(), st.config.server.max_list_limit)?;
    let after = q.after.as_deref().map(cursor_referrer).transpose()?;
    let Some(m) = st.map(&map) else {
        return Ok(Json(json!({"items": [], "next": null})).into_response());
    };
    let mut page = m.referrers(&key, after.as_ref(), limit.saturating_add(1));
    let more = page.len() > limit;
    page.truncate(limit);
    let next = page
        .last()
        .filter(|_| more)
        .map(|r| encode_cursor(&[&r.map, &r.key, &r.reference]));
    let items: Vec<Value> = page.iter().map(referrer_json).collect();
    Ok(Json(json!({"items": items, "next": next})).into_response())
}
