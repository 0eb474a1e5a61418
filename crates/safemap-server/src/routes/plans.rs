//! Delete plans (two-step bulk deletion).
//!
//! Plans live in the library's memory and in storage: a plan is answered
//! only once it is durable, and survives a restart until it expires; an
//! executed plan stays `plan_gone` across a restart too.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use safemap::{Blocked, BlockedWhy, Conflict, PlanId, Selector};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::{reason_of, rfc3339};
use crate::config::is_json_pointer;
use crate::error::{ApiError, ApiResult};
use crate::extract::{
    Authed, CanDelete, CanRead, JsonBody, MapName, Params, Q, Trace, header_str, limit, param,
    reason,
};
use crate::library_errors::{execute_error, no_map, no_plan};
use crate::names::check_key;
use crate::references::bad_cursor;
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
    /// Also plan, transitively, every key that refers to a planned key
    /// through a `cascade` reference (references.md).
    #[serde(default)]
    cascade: bool,
}

/// A field that is present must hold a `T`: JSON `null` is refused.
fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `POST /v1/maps/{map}/delete-plans` → 201 with the dry run. Nothing is deleted.
pub async fn create_plan(
    a: Authed<CanDelete>,
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
    st.catch_up().await?;
    let m = st.map(&map).ok_or_else(|| no_map(&map))?;
    st.check_writable()?;
    let plan = match body.cascade {
        true => m.plan_remove_cascade(sel),
        false => m.plan_remove(sel),
    };
    st.persist_plan(&map, &plan, &a.0.name).await?;
    let vetoed: Vec<Value> = plan
        .vetoed()
        .iter()
        .map(|(k, rule)| json!({"key": k, "rule": rule}))
        .collect();
    let blocked: Vec<Value> = plan.blocked().iter().map(blocked_json).collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "plan_id": plan.id().to_string(),
            "at_revision": plan.at_revision().get(),
            "count": plan.count(),
            "sample": plan.sample(SAMPLE_KEYS),
            "vetoed": vetoed,
            "expires_at": rfc3339(plan.expires_at()),
            "tree": plan.tree_counts(),
            "depth": plan.depth(),
            "blocked": blocked,
        })),
    )
        .into_response())
}

/// A blocked root: `{"key","why","path":[{map,key}],"reference"?,"rule"?}`.
fn blocked_json(b: &Blocked<String>) -> Value {
    let path: Vec<Value> = b
        .path
        .iter()
        .map(|(map, key)| json!({"map": &**map, "key": key}))
        .collect();
    let mut out = json!({"key": b.key, "why": b.why.as_str(), "path": path});
    match &b.why {
        BlockedWhy::Restricted { reference } => out["reference"] = json!(reference),
        BlockedWhy::Vetoed { rule } => out["rule"] = json!(rule),
        _ => {}
    }
    out
}

/// Query of a plan's tree page.
#[derive(Debug, Deserialize)]
pub struct TreeQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/delete-plans/{plan_id}/tree?after=&limit=` (role `read`): the
/// planned keys, parents before children, a page at a time. `next` is an
/// opaque cursor (the position of the page's last key; the tree of a pending
/// plan never changes, so positions are stable).
pub async fn plan_tree(
    _a: Authed<CanRead>,
    State(st): State<AppState>,
    Params(params): Params,
    Q(q): Q<TreeQuery>,
) -> ApiResult<Response> {
    let limit = limit(q.limit.as_deref(), st.config.server.max_list_limit)?;
    // The cursor is the position of the last key of the previous page.
    let start = match q.after.as_deref() {
        None => 0,
        Some(after) => after
            .trim()
            .parse::<u64>()
            .map_err(|_| bad_cursor())?
            .try_into()
            .unwrap_or(usize::MAX)
            .saturating_add(1),
    };
    let raw = param(&params, "plan_id")?;
    let plan: PlanId = raw.parse().map_err(|_| no_plan(&raw))?;
    let tree = st
        .planned_tree(plan)
        .map_err(|e| execute_error(e, &raw, 0))?;
    let end = start.saturating_add(limit).min(tree.len());
    let items: Vec<Value> = tree
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|n| {
            json!({
                "map": &*n.map,
                "key": n.key,
                "revision": n.revision.get(),
                "parent": n.parent.as_ref().map(|(map, key)| json!({"map": &**map, "key": key})),
                "depth": n.depth,
            })
        })
        .collect();
    let next = (end < tree.len()).then(|| (end - 1).to_string());
    Ok(Json(json!({"items": items, "next": next})).into_response())
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
    let report = st
        .execute_plan(&m, &map, plan, &raw, count, reason_of(text, &a.0, &trace))
        .await?;
    let conflicts: Vec<Value> = report.conflicts.iter().map(conflict_json).collect();
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

/// A conflict of an execution; a cascading root's names the key of its
/// subtree that `changed` (or the new referrer).
fn conflict_json(c: &Conflict<String>) -> Value {
    let mut out = json!({
        "key": c.key,
        "planned_revision": c.planned_revision.get(),
        "current_revision": c.current_revision.map(|r| r.get()),
    });
    if let Some(ch) = &c.changed {
        out["changed"] = json!({
            "map": &*ch.map,
            "key": ch.key,
            "planned_revision": ch.planned_revision.map(|r| r.get()),
            "current_revision": ch.current_revision.map(|r| r.get()),
            "why": ch.why.as_str(),
        });
    }
    out
}
