//! Delete plans (two-step bulk deletion).
//!
//! Plans live in the library's memory and in storage: a plan is answered
//! only once it is durable, and survives a restart until it expires; an
//! executed plan stays `plan_gone` across a restart too.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use safemap::{PlanId, Selector};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::{reason_of, rfc3339};
use crate::config::is_json_pointer;
use crate::error::{ApiError, ApiResult};
use crate::extract::{
    Authed, CanDelete, JsonBody, MapName, Params, Trace, header_str, param, reason,
};
use crate::library_errors::{execute_error, no_map, no_plan};
use crate::names::check_key;
use crate::state::AppState;

/// Keys listed in a plan's `sample`.
pub const SAMPLE_KEYS: usize = 20;

/// `where` of a plan: the value at `pointer` equals `equals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Where {
    pointer: String,
    equals: Value,
}

/// Body of `POST /v1/maps/{map}/delete-plans`. A selector may be absent,
/// not `null` (the OpenAPI document says so too).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    #[serde(default, deserialize_with = "not_null")]
    prefix: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    keys: Option<Vec<String>>,
    #[serde(rename = "where", default, deserialize_with = "not_null")]
    where_: Option<Where>,
}

/// A field that is present must hold a `T`: JSON `null` is refused.
fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `POST /v1/maps/{map}/delete-plans` → 201 with the dry run. Nothing is deleted.
pub async fn create_plan(
    _a: Authed<CanDelete>,
    State(st): State<AppState>,
    MapName(map): MapName,
    JsonBody(body): JsonBody<PlanBody>,
) -> ApiResult<Response> {
    if body.prefix.is_none() && body.keys.is_none() && body.where_.is_none() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "a plan needs at least one selector: prefix, keys or where",
        ));
    }
    let mut sel: Selector<String, Value> = Selector::all();
    if let Some(keys) = body.keys {
        for k in &keys {
            check_key(k).map_err(|m| {
                ApiError::bad_request("invalid_key", m).with_details(json!({"key": k}))
            })?;
        }
        sel = sel.keys(keys);
    }
    if let Some(p) = body.prefix {
        sel = sel.prefix(p);
    }
    if let Some(w) = body.where_ {
        if !is_json_pointer(&w.pointer) {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("where.pointer {:?} is not a JSON pointer", w.pointer),
            ));
        }
        let (pointer, equals) = (w.pointer, w.equals);
        sel = sel.filter(move |_k, v: &Value| v.pointer(&pointer) == Some(&equals));
    }
    let m = st.map(&map).ok_or_else(|| no_map(&map))?;
    st.check_writable()?;
    let plan = m.plan_remove(sel);
    st.persist_plan(&map, &plan).await?;
    let vetoed: Vec<Value> = plan
        .vetoed()
        .iter()
        .map(|(k, rule)| json!({"key": k, "rule": rule}))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "plan_id": plan.id().to_string(),
            "at_revision": plan.at_revision().get(),
            "count": plan.count(),
            "sample": plan.sample(SAMPLE_KEYS),
            "vetoed": vetoed,
            "expires_at": rfc3339(plan.expires_at()),
        })),
    )
        .into_response())
}

/// `POST /v1/maps/{map}/delete-plans/{plan_id}/execute` with `X-Reason` and `X-Confirm-Count`.
pub async fn execute_plan(
    a: Authed<CanDelete>,
    State(st): State<AppState>,
    Trace(trace): Trace,
    MapName(map): MapName,
    Params(params): Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let text = reason(&headers, true)?;
    // A missing X-Confirm-Count is malformed input: 400, before 404 and 412.
    let bad_count = |why: &str| {
        ApiError::bad_request("invalid_header", why)
            .with_details(json!({"header": "X-Confirm-Count"}))
    };
    let count: usize = header_str(&headers, "x-confirm-count")?
        .ok_or_else(|| {
            bad_count("X-Confirm-Count is required: the number of keys the plan deletes")
        })?
        .trim()
        .parse()
        .map_err(|_| bad_count("X-Confirm-Count must be an integer"))?;
    let raw = param(&params, "plan_id")?;
    let m = st.map(&map).ok_or_else(|| no_map(&map))?;
    let plan: PlanId = raw.parse().map_err(|_| no_plan(&raw))?;
    st.check_writable()?;
    let report = m
        .execute(plan, count, reason_of(text, &a.0, &trace))
        .map_err(|e| execute_error(e, &raw, count))?;
    st.until_durable(&report).await?;
    st.persist_executed(&map, plan).await?;
    let conflicts: Vec<Value> = report
        .conflicts
        .iter()
        .map(|c| {
            json!({"key": c.key, "planned_revision": c.planned_revision.get(),
                   "current_revision": c.current_revision.map(|r| r.get())})
        })
        .collect();
    let vetoed: Vec<Value> = report
        .vetoed
        .iter()
        .map(|(k, rule)| json!({"key": k, "rule": rule}))
        .collect();
    let ids: Vec<u64> = report
        .audit_ids
        .map(|(a, b)| vec![a.get(), b.get()])
        .unwrap_or_default();
    Ok(Json(json!({
        "deleted": report.deleted,
        "conflicts": conflicts,
        "vetoed": vetoed,
        "audit_ids": ids,
    }))
    .into_response())
}
