//! Entries: GET/PUT/DELETE one key, list keys, refresh many.

use std::collections::BinaryHeap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use safemap::{DeleteError, Expect};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{reason_of, set_etag};
use crate::error::{ApiError, ApiResult};
use crate::extract::{
    Authed, CanDelete, CanRead, CanWrite, IfMatch, JsonBody, MapKey, MapName, Q, Trace, if_match,
    if_none_match, limit, reason,
};
use crate::library_errors::{already_exists, delete_error, no_key, revision_mismatch};
use crate::names::check_key;
use crate::references::{check_value, target_of};
use crate::state::AppState;

/// Most entries in one refresh.
pub const MAX_REFRESH_ENTRIES: usize = 1000;

/// The JSON of an entry, as GET and list show it.
fn entry_json(key: &str, e: &safemap::Entry<Value>) -> Value {
    json!({
        "key": key,
        "value": e.value(),
        "revision": e.revision().get(),
        "create_revision": e.create_revision().get(),
        "version": e.version(),
    })
}

/// `GET /v1/maps/{map}/keys/{key}`
pub async fn get_entry(
    _a: Authed<CanRead>,
    State(st): State<AppState>,
    MapKey(map, key): MapKey,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let inm = if_none_match(&headers)?;
    let m = st.map(&map).ok_or_else(|| no_key(&map, &key))?;
    let e = m.get(&key).ok_or_else(|| no_key(&map, &key))?;
    let rev = e.revision();
    let mut resp = if inm.is_some_and(|t| t.matches(rev)) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(entry_json(&key, &e)).into_response()
    };
    set_etag(&mut resp, rev);
    Ok(resp)
}

/// `PUT /v1/maps/{map}/keys/{key}`
pub async fn put_entry(
    a: Authed<CanWrite>,
    State(st): State<AppState>,
    Trace(trace): Trace,
    MapKey(map, key): MapKey,
    headers: HeaderMap,
    JsonBody(value): JsonBody<Value>,
) -> ApiResult<Response> {
    let im = if_match(&headers)?;
    let inm = if_none_match(&headers)?;
    if matches!(inm, Some(IfMatch::Revisions(_))) {
        return Err(ApiError::bad_request(
            "invalid_header",
            "on PUT, If-None-Match supports only * (create only if absent)",
        )
        .with_details(json!({"header": "If-None-Match"})));
    }
    let text = reason(&headers, false)?;
    let references = st.config.references_of(&map);
    check_value(references, &value, None)?;
    st.check_writable()?;
    let m = st.map_or_create(&map)?;
    let why = reason_of(text, &a.0, &trace);
    let current = || m.get(&key).map(|e| e.revision());
    let expect = match (&im, &inm) {
        (Some(_), Some(IfMatch::Any)) => {
            // Both can never hold at once: answer as RFC 9110 would (412), write nothing.
            return Err(match current() {
                None => revision_mismatch(None),
                Some(cur) => already_exists(cur),
            });
        }
        (None, Some(IfMatch::Any)) => Expect::Absent,
        (Some(im), None) => Expect::Revision(im.pinned(current).map_err(revision_mismatch)?),
        _ => Expect::Any,
    };
    // The keys the value refers to, for a 409 `reference_missing` (nothing
    // for a map without references).
    let targets: Vec<(&str, Option<String>)> = references
        .iter()
        .map(|r| (r.name.as_str(), target_of(references, &value, &r.name)))
        .collect();
    let target = |reference: &str| {
        targets
            .iter()
            .find(|(name, _)| *name == reference)
            .and_then(|(_, key)| key.clone())
    };
    let w = st
        .put_entry(&map, key.clone(), value, expect, &why, target)
        .await?;
    let status = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (
        status,
        Json(json!({
            "key": key,
            "revision": w.revision.get(),
            "create_revision": w.create_revision.get(),
            "version": w.version,
        })),
    )
        .into_response();
    set_etag(&mut resp, w.revision);
    Ok(resp)
}

/// `DELETE /v1/maps/{map}/keys/{key}`
pub async fn delete_entry(
    a: Authed<CanDelete>,
    State(st): State<AppState>,
    Trace(trace): Trace,
    MapKey(map, key): MapKey,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let text = reason(&headers, true)?;
    let im = if_match(&headers)?;
    let m = st.map(&map).ok_or_else(|| no_key(&map, &key))?;
    st.check_writable()?;
    let why = reason_of(text, &a.0, &trace);
    let expect = match im {
        None | Some(IfMatch::Any) => None,
        Some(im) => match im.pinned(|| m.get(&key).map(|e| e.revision())) {
            Ok(rev) => Some(rev),
            // An absent key is a 404 before it is a 412 (the spec's precedence).
            Err(None) => return Err(delete_error(DeleteError::NotFound, &map, &key, Vec::new)),
            Err(current) => {
                let e = DeleteError::RevisionMismatch { current };
                return Err(delete_error(e, &map, &key, Vec::new));
            }
        },
    };
    let removed = st.delete_entry(&map, &key, expect, why).await?;
    let mut resp = Json(json!({
        "key": key,
        "revision": removed.revision.get(),
        "audit_id": removed.audit_id.map(|a| a.get()),
        "previous": {"value": removed.value, "revision": removed.previous_revision.get()},
    }))
    .into_response();
    set_etag(&mut resp, removed.revision);
    Ok(resp)
}

/// Query of a list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/maps/{map}/keys?prefix=&after=&limit=`: keys in order, `next` = last key
/// of the page when more follow. A map that does not exist lists as empty.
pub async fn list_entries(
    _a: Authed<CanRead>,
    State(st): State<AppState>,
    MapName(map): MapName,
    Q(q): Q<ListQuery>,
) -> ApiResult<Response> {
    let limit = limit(q.limit.as_deref(), st.config.server.max_list_limit)?;
    let Some(m) = st.map(&map) else {
        return Ok(Json(json!({"items": [], "next": null})).into_response());
    };
    let prefix = q.prefix.unwrap_or_default();
    let after = q.after;
    // Keep the `limit + 1` smallest matching keys (a max-heap), so memory stays O(limit).
    let mut heap: BinaryHeap<String> = BinaryHeap::new();
    {
        let pinned = m.pin();
        for e in pinned.iter() {
            let k = e.key();
            if !k.starts_with(&prefix) || after.as_ref().is_some_and(|a| k <= a) {
                continue;
            }
            if heap.len() <= limit {
                heap.push(k.clone());
            } else if heap.peek().is_some_and(|top| k < top) {
                heap.pop();
                heap.push(k.clone());
            }
        }
    }
    let mut keys = heap.into_sorted_vec();
    let more = keys.len() > limit;
    keys.truncate(limit);
    let mut items = Vec::with_capacity(keys.len());
    for k in &keys {
        // A key removed since the scan is simply left out.
        if let Some(e) = m.get(k) {
            items.push(entry_json(k, &e));
        }
    }
    let next = if more { keys.last().cloned() } else { None };
    Ok(Json(json!({"items": items, "next": next})).into_response())
}

/// Body of a refresh.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    entries: serde_json::Map<String, Value>,
}

/// `POST /v1/maps/{map}/refresh`: upsert many in place; all or nothing on bad input.
pub async fn refresh(
    a: Authed<CanWrite>,
    State(st): State<AppState>,
    Trace(trace): Trace,
    MapName(map): MapName,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Response> {
    let text = reason(&headers, false)?;
    if body.entries.len() > MAX_REFRESH_ENTRIES {
        return Err(ApiError::bad_request(
            "too_many_entries",
            format!(
                "a refresh carries at most {MAX_REFRESH_ENTRIES} entries, got {}",
                body.entries.len()
            ),
        ));
    }
    let references = st.config.references_of(&map);
    for (k, v) in &body.entries {
        check_key(k)
            .map_err(|m| ApiError::bad_request("invalid_key", m).with_details(json!({"key": k})))?;
        check_value(references, v, Some(k))?;
    }
    st.check_writable()?;
    let why = reason_of(text, &a.0, &trace);
    let revs = st.refresh_entries(&map, body.entries, &why).await?;
    let mut out = serde_json::Map::new();
    for (k, r) in revs {
        out.insert(k, json!(r.get()));
    }
    Ok(Json(json!({"revisions": out})).into_response())
}
