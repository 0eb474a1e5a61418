//! Delete plans (two-step bulk deletion).
//!
//! Plans live in the library's memory: a restart forgets plans that were not
//! executed (the client plans again; nothing was deleted).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use safemap::{ExecuteError, PlanId, Selector};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{reason_of, rfc3339};
use crate::config::is_json_pointer;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Authed, DELETE, JsonBody, MapName, Params, Trace, header_str, param, reason};
use crate::names::check_key;
use crate::state::AppState;
use crate::storage::Target;

/// Keys listed in a plan's `sample`.
pub const SAMPLE_KEYS: usize = 20;

/// `where` of a plan: the value at `pointer` equals `equals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Where {
    pointer: String,
    equals: Value,
}

/// Body of `POST /v1/maps/{map}/delete-plans`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    prefix: Option<String>,
    keys: Option<Vec<String>>,
    #[serde(rename = "where")]
    where_: Option<Where>,
}

fn no_map(map: &str) -> ApiError {
    ApiError::not_found(format!("no map {map:?}")).with_details(json!({"map": map}))
}

fn no_plan(plan: &str) -> ApiError {
    ApiError::not_found(format!("no delete plan {plan:?}")).with_details(json!({"plan_id": plan}))
}

/// `POST /v1/maps/{map}/delete-plans` → 201 with the dry run. Nothing is deleted.
pub async fn create_plan(
    _a: Authed<DELETE>,
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
    let plan = m.plan_remove(sel);
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
    a: Authed<DELETE>,
    State(st): State<AppState>,
    Trace(trace): Trace,
    MapName(map): MapName,
    Params(params): Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let text = reason(&headers, true)?;
    // A missing X-Confirm-Count cannot equal the plan's count: it is answered
    // 412 confirm_count_mismatch (after 404/410, as the library orders them),
    // while a malformed one is a 400.
    let count: Option<usize> = match header_str(&headers, "x-confirm-count")? {
        None => None,
        Some(v) => Some(v.trim().parse::<usize>().map_err(|_| {
            ApiError::bad_request("invalid_header", "X-Confirm-Count must be an integer")
                .with_details(json!({"header": "X-Confirm-Count"}))
        })?),
    };
    let raw = param(&params, "plan_id")?;
    let m = st.map(&map).ok_or_else(|| no_map(&map))?;
    let plan: PlanId = raw.parse().map_err(|_| no_plan(&raw))?;
    st.check_writable()?;
    let report = m
        .execute(
            plan,
            count.unwrap_or(usize::MAX),
            reason_of(text, &a.0, &trace),
        )
        .map_err(|e| match e {
            ExecuteError::NotFound => no_plan(&raw),
            ExecuteError::Gone => ApiError::new(
                StatusCode::GONE,
                "plan_gone",
                "the plan expired or was already executed; plan again",
            )
            .with_details(json!({"plan_id": raw})),
            ExecuteError::ConfirmCountMismatch { expected, .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "confirm_count_mismatch",
                match count {
                    Some(got) => {
                        format!("X-Confirm-Count is {got} but the plan deletes {expected} keys")
                    }
                    None => format!(
                        "X-Confirm-Count is required and must equal the plan's count ({expected})"
                    ),
                },
            )
            .with_details(json!({"expected": expected, "got": count})),
            ExecuteError::ReasonRequired => {
                ApiError::bad_request("reason_required", "X-Reason is required")
            }
            ExecuteError::ReasonTooLong => {
                ApiError::bad_request("reason_too_long", "X-Reason is too long")
            }
            other => ApiError::internal(other.to_string()),
        })?;
    if let Some((_, last)) = report.audit_ids {
        st.durable(Target::AuditId(last.get())).await?;
    }
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
