//! Restore: put deleted values back, by audit id or for a whole plan.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use serde::Deserialize;
use serde_json::{Value, json};

use super::reason_of;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Authed, IsAdmin, JsonBody, MapName, Trace, reason};
use crate::library_errors::no_map;
use crate::state::AppState;

/// Body of a restore: exactly one of `audit_id`, `plan_id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    #[serde(default, deserialize_with = "integer")]
    audit_id: Option<u64>,
    plan_id: Option<String>,
}

/// A JSON integer, also when written with a fraction of zero (`5.0`): JSON
/// Schema's `integer`, which the OpenAPI document uses.
fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    let exact = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(f))
            .map(|f| f as u64)
    });
    exact.map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "audit_id {n} is not an audit id (a non-negative integer)"
        ))
    })
}

/// `POST /v1/maps/{map}/restore` (admin) with `X-Reason`.
pub async fn restore(
    a: Authed<IsAdmin>,
    State(st): State<AppState>,
    Trace(trace): Trace,
    MapName(map): MapName,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RestoreBody>,
) -> ApiResult<Response> {
    let text = reason(&headers, true)?;
    let which = match (body.audit_id, body.plan_id) {
        (Some(id), None) => Ok(id),
        (None, Some(p)) => Err(p),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "give exactly one of audit_id and plan_id",
            ));
        }
    };
    st.map(&map).ok_or_else(|| no_map(&map))?;
    st.check_writable()?;
    let why = reason_of(text, &a.0, &trace);
    let report = st.restore_map(&map, &which, why).await?;
    // A plan of a map that takes part in references may span maps: every
    // item names its map (references.md), restored ones in the order they
    // were written (parents first). Other restores keep http-api.md's shape.
    let with_map =
        (which.is_err() && st.config.has_references(&map)) || !report.other_maps.is_empty();
    let item = |map: &str, key: &str, field: &str, value: Value| {
        let mut item = json!({"key": key, field: value});
        if with_map {
            item["map"] = json!(map);
        }
        item
    };
    let mut restored: Vec<(u64, Value)> = report
        .restored
        .iter()
        .map(|(k, r)| (r.get(), item(&map, k, "revision", json!(r.get()))))
        .collect();
    let mut skipped: Vec<Value> = report
        .skipped
        .iter()
        .map(|(k, why)| item(&map, k, "why", json!(why.as_str())))
        .collect();
    for other in &report.other_maps {
        match other.outcome {
            Ok(r) => restored.push((
                r.get(),
                item(&other.map, &other.key, "revision", json!(r.get())),
            )),
            Err(why) => skipped.push(item(&other.map, &other.key, "why", json!(why.as_str()))),
        }
    }
    restored.sort_by_key(|(revision, _)| *revision);
    let restored: Vec<Value> = restored.into_iter().map(|(_, item)| item).collect();
    Ok(Json(json!({"restored": restored, "skipped": skipped})).into_response())
}
