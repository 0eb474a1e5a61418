//! Tokens: create (shown once), list, revoke (effective at once).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{MAX_TOKENS, Role, generate_token, stored_token};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Authed, IsAdmin, JsonBody, Params, param};
use crate::names::is_valid_name;
use crate::state::AppState;
use crate::storage::TokenOp;

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    roles: Vec<String>,
}

fn bad_name(name: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_name",
        format!("token name {name:?} does not match [a-z0-9][a-z0-9_-]{{0,63}}"),
    )
}

/// `POST /v1/tokens` → 201 `{"name","roles","token"}`.
pub async fn create(
    _a: Authed<IsAdmin>,
    State(st): State<AppState>,
    JsonBody(body): JsonBody<NewToken>,
) -> ApiResult<Response> {
    if !is_valid_name(&body.name) {
        return Err(bad_name(&body.name));
    }
    let mut roles = Vec::new();
    for r in &body.roles {
        let role = Role::parse(r).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_body",
                format!("unknown role {r:?}; roles are read, write, delete, admin"),
            )
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "a token needs at least one role",
        ));
    }
    roles.sort();
    st.check_writable()?;
    let _serial = st.token_admin.lock().await;
    if st.tokens.contains(&body.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("a token named {:?} exists; revoke it first", body.name),
        ));
    }
    if st.tokens.len() >= MAX_TOKENS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_tokens",
            format!("the server holds at most {MAX_TOKENS} tokens"),
        ));
    }
    let token = generate_token().map_err(ApiError::internal)?;
    let stored = stored_token(&body.name, &roles, &token);
    st.save_token(TokenOp::Put(stored.clone())).await?;
    st.tokens.insert(&stored);
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": body.name, "roles": names, "token": token})),
    )
        .into_response())
}

/// `GET /v1/tokens` → `{"tokens": [{"name","roles"}]}`.
pub async fn list(_a: Authed<IsAdmin>, State(st): State<AppState>) -> ApiResult<Response> {
    let tokens: Vec<_> = st
        .tokens
        .list()
        .into_iter()
        .map(|(name, roles)| {
            let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            json!({"name": name, "roles": roles})
        })
        .collect();
    Ok(Json(json!({"tokens": tokens})).into_response())
}

/// `DELETE /v1/tokens/{name}`: revokes at once. The last admin token cannot be
/// revoked (409 `last_admin_token`), so the server never locks its operator out.
pub async fn revoke(
    _a: Authed<IsAdmin>,
    State(st): State<AppState>,
    Params(params): Params,
) -> ApiResult<Response> {
    let name = param(&params, "name")?;
    if !is_valid_name(&name) {
        return Err(bad_name(&name));
    }
    let _serial = st.token_admin.lock().await;
    if !st.tokens.contains(&name) {
        return Err(ApiError::not_found(format!("no token named {name:?}")));
    }
    if st.tokens.is_last_admin(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "last_admin_token",
            "this is the only admin token; create another admin token before revoking it",
        ));
    }
    // Revoke in memory first: effective at once, even if storage then fails.
    st.tokens.remove(&name);
    st.save_token(TokenOp::Remove(name.clone())).await?;
    Ok(Json(json!({"name": name, "revoked": true})).into_response())
}
