//! `GET /v1/whoami`: what the presented token may do (the console shows only
//! the controls it can use; the server still checks every request).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiResult;
use crate::extract::authenticate;
use crate::state::AppState;

/// `GET /v1/whoami` (any valid token) → 200 `{"name","roles"}`.
///
/// Any role will do, so this authenticates without authorizing: a token holding
/// only `write` still learns its own name and roles.
pub async fn whoami(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let who = authenticate(&st, &headers)?;
    let roles: Vec<&str> = who.roles.iter().map(|r| r.as_str()).collect();
    Ok(Json(json!({"name": who.name, "roles": roles})).into_response())
}
