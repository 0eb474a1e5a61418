//! Entries: GET/PUT/DELETE one key, list keys, refresh many.

use std::collections::BinaryHeap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use safemap::{DeleteError, Expect, PutError, Revision};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{reason_of, set_etag};
use crate::error::{ApiError, ApiResult};
use crate::extract::{
    Authed, DELETE, IfMatch, JsonBody, MapKey, MapName, Q, READ, Trace, WRITE, if_match,
    if_none_match, limit, reason,
};
use crate::names::check_key;
use crate::state::AppState;
use crate::storage::Target;

/// Most entries in one refresh.
pub const MAX_REFRESH_ENTRIES: usize = 1000;

fn no_key(map: &str, key: &str) -> ApiError {
    ApiError::not_found(format!("no key {key:?} in map {map:?}"))
        .with_details(json!({"map": map, "key": key}))
}

fn mismatch(current: Option<Revision>) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "revision_mismatch",
        match current {
            Some(r) => format!("If-Match does not match: the key is at revision {r}"),
            None => "If-Match does not match: the key does not exist".to_string(),
        },
    )
    .with_details(json!({"current_revision": current.map(Revision::get)}))
}

/// `GET /v1/maps/{map}/keys/{key}`
pub async fn get_entry(
    _a: Authed<READ>,
    State(st): State<AppState>,
    MapKey(map, key): MapKey,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let inm = if_none_match(&headers)?;
    let m = st.map(&map).ok_or_else(|| no_key(&map, &key))?;
    let e = m.get(&key).ok_or_else(|| no_key(&map, &key))?;
    let rev = e.revision();
    let not_modified = match inm {
        Some(IfMatch::Any) => true,
        Some(IfMatch::Revisions(rs)) => rs.iter().flatten().any(|r| *r == rev.get()),
        None => false,
    };
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(json!({
            "key": key,
            "value": e.value(),
            "revision": rev.get(),
            "create_revision": e.create_revision().get(),
            "version": e.version(),
        }))
        .into_response()
    };
    set_etag(&mut resp, rev);
    Ok(resp)
}

/// `PUT /v1/maps/{map}/keys/{key}`
pub async fn put_entry(
    a: Authed<WRITE>,
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
    st.check_writable()?;
    let m = st.map_or_create(&map)?;
    let why = reason_of(text, &a.0, &trace);
    let current = || m.get(&key).map(|e| e.revision());
    let expect = match (&im, &inm) {
        (Some(_), Some(IfMatch::Any)) => {
            // Both can never hold at once: answer as RFC 9110 would (412), write nothing.
            return Err(match current() {
                None => mismatch(None),
                Some(cur) => already_exists(cur),
            });
        }
        (None, Some(IfMatch::Any)) => Expect::Absent,
        (Some(IfMatch::Any), None) => match current() {
            Some(cur) => Expect::Revision(cur),
            None => return Err(mismatch(None)),
        },
        (Some(IfMatch::Revisions(rs)), None) => {
            let strong: Vec<u64> = rs.iter().flatten().copied().collect();
            match strong.as_slice() {
                [one] => Expect::Revision(Revision::new(*one)),
                _ => match current() {
                    Some(cur) if strong.contains(&cur.get()) => Expect::Revision(cur),
                    cur => return Err(mismatch(cur)),
                },
            }
        }
        _ => Expect::Any,
    };
    let w = m
        .put(key.clone(), value, expect, &why)
        .map_err(|e| match e {
            PutError::RevisionMismatch { current } => mismatch(current),
            PutError::AlreadyExists { current } => already_exists(current),
            other => ApiError::internal(other.to_string()),
        })?;
    st.durable(durable_target(w.audit_id(), w.revision()))
        .await?;
    let status = if w.created() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (
        status,
        Json(json!({
            "key": key,
            "revision": w.revision().get(),
            "create_revision": w.create_revision().get(),
            "version": w.version(),
        })),
    )
        .into_response();
    set_etag(&mut resp, w.revision());
    Ok(resp)
}

fn already_exists(current: Revision) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "already_exists",
        format!("If-None-Match: * but the key exists at revision {current}"),
    )
    .with_details(json!({"current_revision": current.get()}))
}

/// What to wait for before acknowledging a write.
pub fn durable_target(audit_id: Option<safemap::AuditId>, rev: Revision) -> Target {
    match audit_id {
        Some(id) => Target::AuditId(id.get()),
        None => Target::Revision(rev.get()),
    }
}

/// `DELETE /v1/maps/{map}/keys/{key}`
pub async fn delete_entry(
    a: Authed<DELETE>,
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
    let result = match im {
        None => m.remove(&key, why),
        Some(IfMatch::Any) => m.remove(&key, why),
        Some(IfMatch::Revisions(rs)) => {
            let strong: Vec<u64> = rs.iter().flatten().copied().collect();
            match strong.as_slice() {
                [one] => m.remove_if(&key, Revision::new(*one), why),
                _ => match m.get(&key).map(|e| e.revision()) {
                    None => Err(DeleteError::NotFound),
                    Some(cur) if strong.contains(&cur.get()) => m.remove_if(&key, cur, why),
                    Some(cur) => Err(DeleteError::RevisionMismatch { current: Some(cur) }),
                },
            }
        }
    };
    let removed = result.map_err(|e| delete_error(e, &map, &key))?;
    st.durable(durable_target(removed.audit_id(), removed.revision()))
        .await?;
    let mut resp = Json(json!({
        "key": key,
        "revision": removed.revision().get(),
        "audit_id": removed.audit_id().map(|a| a.get()),
        "previous": {"value": removed.value(), "revision": removed.previous_revision().get()},
    }))
    .into_response();
    set_etag(&mut resp, removed.revision());
    Ok(resp)
}

/// Maps a library delete error to the API error.
pub fn delete_error(e: DeleteError, map: &str, key: &str) -> ApiError {
    match e {
        DeleteError::NotFound => no_key(map, key),
        DeleteError::RevisionMismatch { current } => mismatch(current),
        DeleteError::Vetoed { rule } => ApiError::new(
            StatusCode::CONFLICT,
            "delete_vetoed",
            format!("delete refused by deny rule {rule:?}"),
        )
        .with_details(json!({"rule": rule})),
        DeleteError::BreakerOpen { retry_after } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "delete_breaker_open",
                format!("the delete breaker of map {map:?} is open; retry in {secs} s"),
            )
            .with_details(json!({"retry_after_seconds": secs.max(1)}))
            .with_retry_after(secs)
        }
        DeleteError::ReasonRequired => {
            ApiError::bad_request("reason_required", "a delete needs a non-empty X-Reason")
        }
        DeleteError::ReasonTooLong => {
            ApiError::bad_request("reason_too_long", "X-Reason is longer than 512 characters")
        }
        other => ApiError::internal(other.to_string()),
    }
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
    _a: Authed<READ>,
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
            items.push(json!({
                "key": k,
                "value": e.value(),
                "revision": e.revision().get(),
                "create_revision": e.create_revision().get(),
                "version": e.version(),
            }));
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
    a: Authed<WRITE>,
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
    for k in body.entries.keys() {
        check_key(k)
            .map_err(|m| ApiError::bad_request("invalid_key", m).with_details(json!({"key": k})))?;
    }
    st.check_writable()?;
    let m = st.map_or_create(&map)?;
    let why = reason_of(text, &a.0, &trace);
    let keys: Vec<String> = body.entries.keys().cloned().collect();
    let revs = m.refresh_with(body.entries, &why);
    if let Some(max) = revs.iter().max() {
        st.durable(Target::Revision(max.get())).await?;
    }
    let mut out = serde_json::Map::new();
    for (k, r) in keys.into_iter().zip(revs) {
        out.insert(k, json!(r.get()));
    }
    Ok(Json(json!({"revisions": out})).into_response())
}
