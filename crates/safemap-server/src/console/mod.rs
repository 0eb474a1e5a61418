//! The console: a web page at `/ui`, served from this binary, for the on-call
//! engineer (recent deletes, restore, delete plans, maps, a key's history,
//! live charts).
//!
//! - [`assets`] serves the page's files, embedded at build time (no CDN, no
//!   Node build step). The page runs only our own scripts (a strict
//!   `Content-Security-Policy`) and writes untrusted text only as text.
//! - [`data`] serves two read-only JSON views the v1 API has no shape for:
//!   recent deletes newest first with their previous values and retention, and
//!   each map's counters, breaker and policy.
//!
//! Every change the console makes (restore, plan, execute) goes through the v1
//! API with the operator's token, so the server checks each role; the page only
//! hides what `GET /v1/whoami` says the token cannot do. The token travels in
//! `Authorization` only, never in a URL: the live view polls with `fetch`.
//!
//! These routes are not part of the v1 API contract (http-api.md) and are not
//! in the OpenAPI document.

pub mod assets;
pub mod data;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

/// The console's routes, merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(assets::index))
        .route("/ui/", get(assets::index))
        .route("/ui/assets/{file}", get(assets::asset))
        .route("/ui/data/deletes", get(data::deletes))
        .route("/ui/data/maps", get(data::maps))
}
