//! Read-only JSON views of the console (role `read`), shaped for its pages:
//!
//! - `GET /ui/data/deletes?map=&key=&prefix=&actor=&reason=&plan_id=&since=&until=&after=&limit=`
//!   → `{"rows": [...], "latest_id"}`: delete records, **newest first**, each
//!   with the value it removed and until when it can be restored. `after` gives
//!   only records newer than that audit id (the live view polls with it);
//!   `latest_id` is the highest audit id the journal held at the time of the
//!   query, to poll from next.
//! - `GET /ui/data/maps` → `{"maps": [...]}`: each map's entry count, read,
//!   write and delete counters, breaker state and policy.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use safemap::{AuditId, AuditQuery, Op, PlanId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Authed, CanRead, Q};
use crate::names::is_valid_name;
use crate::routes::rfc3339;
use crate::state::{AppState, Record};

/// Most rows one query of recent deletes returns (and its default).
pub const MAX_ROWS: usize = 500;

/// Query of recent deletes; every filter is optional and they combine with AND.
#[derive(Debug, Deserialize)]
pub struct DeletesParams {
    map: Option<String>,
    /// Exactly this key.
    key: Option<String>,
    /// Keys starting with this.
    prefix: Option<String>,
    /// Exactly this token name.
    actor: Option<String>,
    /// Reasons containing this text, ignoring case.
    reason: Option<String>,
    plan_id: Option<String>,
    /// RFC 3339: deletes at or after.
    since: Option<String>,
    /// RFC 3339: deletes at or before.
    until: Option<String>,
    /// Only records with a higher audit id.
    after: Option<String>,
    limit: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

fn time(raw: Option<&str>, name: &str) -> Result<Option<SystemTime>, ApiError> {
    raw.filter(|s| !s.is_empty())
        .map(|s| {
            humantime::parse_rfc3339_weak(s).map_err(|_| {
                bad(format!(
                    "{name} is an RFC 3339 time such as 2026-01-31T12:00:00Z"
                ))
            })
        })
        .transpose()
}

/// Empty filters from a form count as absent.
fn given(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// One row of recent deletes.
fn row(r: &Record, retention: Duration, now: SystemTime) -> Value {
    let until = r.at.checked_add(retention);
    json!({
        "id": r.id.get(),
        "at": rfc3339(r.at),
        "map": &*r.map,
        "key": r.key,
        "revision": r.revision.get(),
        "previous_revision": r.previous_revision.map(|x| x.get()),
        "previous_value": r.previous_value,
        "reason": r.reason.as_deref().filter(|s| !s.is_empty()),
        "actor": r.actor,
        "trace_id": r.trace_id,
        "plan_id": r.plan_id.map(|p| p.to_string()),
        "restorable_until": until.map(rfc3339),
        // Within retention now; a restore may still skip a key that was recreated.
        "restorable": until.is_none_or(|u| now <= u),
    })
}

/// `GET /ui/data/deletes`: recent deletes, newest first.
pub async fn deletes(
    _a: Authed<CanRead>,
    State(st): State<AppState>,
    Q(p): Q<DeletesParams>,
) -> ApiResult<Response> {
    let map = given(p.map);
    if let Some(m) = &map
        && !is_valid_name(m)
    {
        return Err(ApiError::bad_request(
            "invalid_map_name",
            format!("map name {m:?} does not match [a-z0-9][a-z0-9_-]{{0,63}}"),
        ));
    }
    let plan_id = given(p.plan_id)
        .map(|s| {
            s.parse::<PlanId>()
                .map_err(|_| bad("plan_id is 16 hexadecimal digits"))
        })
        .transpose()?;
    let after = given(p.after)
        .map(|s| {
            s.parse::<u64>()
                .map(AuditId::new)
                .map_err(|_| bad("after is an audit id (an integer)"))
        })
        .transpose()?;
    let since = time(p.since.as_deref(), "since")?;
    let until = time(p.until.as_deref(), "until")?;
    let limit = crate::extract::limit(p.limit.as_deref(), MAX_ROWS)?;
    let prefix = given(p.prefix);
    let actor = given(p.actor);
    let reason = given(p.reason).map(|s| s.to_lowercase());

    let latest_id = st.last_audit_id();
    let query = AuditQuery {
        map,
        key: given(p.key),
        plan_id,
        after,
        limit,
    };
    let newest = st.audit_newest(&query, |r| {
        r.op == Op::Delete
            && prefix
                .as_ref()
                .is_none_or(|x| r.key.starts_with(x.as_str()))
            && actor.as_ref().is_none_or(|a| r.actor.as_ref() == Some(a))
            && reason.as_ref().is_none_or(|t| {
                r.reason
                    .as_ref()
                    .is_some_and(|have| have.to_lowercase().contains(t.as_str()))
            })
            && since.is_none_or(|s| r.at >= s)
            && until.is_none_or(|u| r.at <= u)
    });
    // Only durable records are shown (as in GET /v1/audit): never one a crash
    // could take back.
    if let Some(top) = newest.first() {
        st.until_durable(&**top).await?;
    }
    let now = SystemTime::now();
    let rows: Vec<Value> = newest
        .iter()
        .map(|r| {
            let retention = st
                .map(&r.map)
                .map_or_else(|| st.config.policy_for(&r.map).retention, |m| m.retention());
            row(r, retention, now)
        })
        .collect();
    Ok(Json(json!({"rows": rows, "latest_id": latest_id})).into_response())
}

/// `GET /ui/data/maps`: each map's counters, breaker and policy, by name.
pub async fn maps(_a: Authed<CanRead>, State(st): State<AppState>) -> ApiResult<Response> {
    let maps: Vec<Value> = st
        .all_maps()
        .into_iter()
        .map(|(name, m)| {
            let s = m.stats();
            let policy = st.config.policy_for(&name);
            let breaker = m.breaker_state().map(|b| {
                json!({
                    "open": b.open,
                    "in_window": b.in_window,
                    "max": b.max,
                    "window_seconds": b.window.as_secs_f64(),
                    "retry_after_seconds": b.retry_after.map(|d| d.as_secs_f64()),
                    "trips": b.trips,
                })
            });
            let deny: Vec<Value> = policy
                .deny
                .iter()
                .map(|d| json!({"name": d.name, "pointer": d.pointer, "equals": d.equals}))
                .collect();
            json!({
                "name": name,
                "entries": s.entries,
                "reads": s.hits + s.misses,
                "writes": s.puts,
                "deletes": {
                    "deleted": s.deletes.deleted,
                    "vetoed": s.deletes.vetoed,
                    "mismatch": s.deletes.mismatch,
                    "breaker": s.deletes.breaker,
                    "not_found": s.deletes.not_found,
                    "referenced": s.deletes.referenced,
                },
                "breaker": breaker,
                "policy": {
                    "retention_seconds": m.retention().as_secs_f64(),
                    "deny": deny,
                    "plan_ttl_seconds": policy.plan_ttl.as_secs_f64(),
                },
            })
        })
        .collect();
    Ok(Json(json!({"maps": maps})).into_response())
}
