//! Operations: health, readiness, metrics, CPU profiles, the OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Authed, IsAdmin, Q, authenticate, authorize};
use crate::state::AppState;

/// Longest CPU profile, in seconds.
pub const MAX_PROFILE_SECONDS: u64 = 60;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: storage is open, recovered and committing.
pub async fn readyz(State(st): State<AppState>) -> Response {
    if st.ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        st.not_ready().into_response()
    }
}

/// `GET /metrics`: Prometheus text. No token on a loopback listener; otherwise `read`.
pub async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if !st.loopback {
        let p = authenticate(&st, &headers)?;
        authorize(&p, Role::Read)?;
    }
    let body = crate::metrics::render(&st);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// `GET /v1/openapi.json`: this API as OpenAPI 3.1.
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::DOCUMENT,
    )
        .into_response()
}

/// Query of a profile.
#[derive(Debug, Deserialize)]
pub struct ProfileParams {
    seconds: Option<String>,
    format: Option<String>,
}

/// `GET /debug/pprof/profile?seconds=N&format=pprof|flamegraph` (admin, N ≤ 60, default 10).
pub async fn profile(
    _a: Authed<IsAdmin>,
    State(st): State<AppState>,
    Q(p): Q<ProfileParams>,
) -> ApiResult<Response> {
    let seconds = match p.seconds.as_deref() {
        None => 10,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=MAX_PROFILE_SECONDS).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("seconds must be an integer in 1..={MAX_PROFILE_SECONDS}"),
                ));
            }
        },
    };
    let flamegraph = match p.format.as_deref() {
        None | Some("pprof") | Some("proto") => false,
        Some("flamegraph") | Some("svg") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("format {other:?} is not one of pprof, flamegraph"),
            ));
        }
    };
    if !st.start_profile() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "profile_in_progress",
            "another CPU profile is being taken; try again when it ends",
        ));
    }
    let st2 = st.clone();
    let result = tokio::task::spawn_blocking(move || {
        let r = take_profile(Duration::from_secs(seconds), flamegraph);
        st2.end_profile();
        r
    })
    .await
    .map_err(|e| ApiError::internal(format!("profiler task failed: {e}")))?;
    let (bytes, ctype) = result.map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, ctype)], bytes).into_response())
}

fn take_profile(d: Duration, flamegraph: bool) -> Result<(Vec<u8>, &'static str), String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(99)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| format!("cannot start the profiler: {e}"))?;
    std::thread::sleep(d);
    let report = guard
        .report()
        .build()
        .map_err(|e| format!("cannot build the profile: {e}"))?;
    if flamegraph {
        let mut svg = Vec::new();
        if report.data.is_empty() {
            // inferno draws nothing for an empty profile: say so in the image.
            svg.extend_from_slice(
                format!(
                    "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"40\"><text x=\"10\" y=\"25\" font-family=\"monospace\">no CPU samples in {} s: the process was idle</text></svg>\n",
                    d.as_secs()
                )
                .as_bytes(),
            );
        } else {
            report
                .flamegraph(&mut svg)
                .map_err(|e| format!("cannot draw the flamegraph: {e}"))?;
        }
        Ok((svg, "image/svg+xml"))
    } else {
        use pprof::protos::Message;
        let profile = report
            .pprof()
            .map_err(|e| format!("cannot encode the profile: {e}"))?;
        Ok((profile.encode_to_vec(), "application/octet-stream"))
    }
}
