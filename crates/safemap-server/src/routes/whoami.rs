//! `GET /v1/whoami`: what the presented token may do (the console shows only
//! the controls it can use; the server still checks every request).

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiResult;
use crate::extract::{AnyRole, Authed};

/// `GET /v1/whoami` (any valid token) → 200 `{"name","roles"}`.
///
/// Any role will do: a token holding only `write` still learns its own name
/// and roles.
pub async fn whoami(a: Authed<AnyRole>) -> ApiResult<Response> {
    let who = a.0;
    let roles: Vec<&str> = who.roles.iter().map(|r| r.as_str()).collect();
    Ok(Json(json!({"name": who.name, "roles": roles})).into_response())
}
