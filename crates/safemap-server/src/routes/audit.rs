//! `GET /v1/audit`: the journal, filtered and paged by audit id.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use safemap::{AuditId, AuditQuery, PlanId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Authed, CanRead, Q, limit};
use crate::names::is_valid_name;
use crate::state::{AppState, Record};

/// Query of the audit route.
#[derive(Debug, Deserialize)]
pub struct AuditParams {
    map: Option<String>,
    key: Option<String>,
    plan_id: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// The API form of an audit record.
pub fn record_json(r: &Record) -> Value {
    json!({
        "id": r.id.get(),
        "at": rfc3339(r.at),
        "map": &*r.map,
        "key": r.key,
        "op": r.op.as_str(),
        "revision": r.revision.get(),
        "previous_revision": r.previous_revision.map(|x| x.get()),
        "reason": r.reason.as_deref().filter(|s| !s.is_empty()),
        "actor": r.actor,
        "trace_id": r.trace_id,
        "plan_id": r.plan_id.map(|p| p.to_string()),
    })
}

/// `GET /v1/audit?map=&key=&plan_id=&after=&limit=` → `{"records", "next"}`;
/// `next` is the id to pass as `after` when more records may follow (the
/// last of the page, or the last examined by a scan that stopped at its
/// bound), else null. Without `after` the history starts at its oldest
/// record within retention, on disk or in memory.
pub async fn audit(
    _a: Authed<CanRead>,
    State(st): State<AppState>,
    Q(p): Q<AuditParams>,
) -> ApiResult<Response> {
    let bad = |what: &str| ApiError::bad_request("invalid_query", what.to_string());
    if let Some(m) = &p.map
        && !is_valid_name(m)
    {
        return Err(ApiError::bad_request(
            "invalid_map_name",
            format!("map name {m:?} does not match [a-z0-9][a-z0-9_-]{{0,63}}"),
        ));
    }
    let plan_id = match &p.plan_id {
        None => None,
        Some(s) => Some(
            s.parse::<PlanId>()
                .map_err(|_| bad("plan_id is 16 hexadecimal digits"))?,
        ),
    };
    let after = match &p.after {
        None => None,
        Some(s) => Some(AuditId::new(
            s.parse::<u64>()
                .map_err(|_| bad("after is an audit id (an integer)"))?,
        )),
    };
    let limit = limit(p.limit.as_deref(), st.config.server.max_list_limit)?;
    // No audit id follows u64::MAX. (The library's query computes `after + 1`,
    // which overflows there: a panic in debug builds.)
    if after.is_some_and(|a| a.get() == u64::MAX) {
        return Ok(Json(json!({"records": [], "next": null})).into_response());
    }
    // Below the journal's in-memory window the page is read from redb and
    // continues into the window (state/history.rs). A page may hold fewer
    // than `limit` records with `next` set (a bounded scan): follow `next`.
    let page = st
        .audit_page(AuditQuery {
            map: p.map,
            key: p.key,
            plan_id,
            after,
            limit,
        })
        .await?;
    let (records, next) = (page.records, page.next);
    // Only durable records are shown: a reader never sees one that a crash
    // could take back (at most one group commit of waiting).
    if let Some(last) = records.last() {
        st.until_durable(&**last).await?;
    }
    let out: Vec<Value> = records.iter().map(|r| record_json(r)).collect();
    Ok(Json(json!({"records": out, "next": next})).into_response())
}
