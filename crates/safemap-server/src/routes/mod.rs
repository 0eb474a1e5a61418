//! Route groups, one file each: parse → apply (library call) → wait durable → respond.

pub mod audit;
pub mod entries;
pub mod ops;
pub mod plans;
pub mod referrers;
pub mod restore;
pub mod tokens;
pub mod watch;
pub mod whoami;

use std::time::SystemTime;

use axum::http::{HeaderValue, header};
use axum::response::Response;
use safemap::{Reason, Revision};

use crate::auth::Principal;
use crate::trace::TraceCtx;

/// RFC 3339 UTC time with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A reason carrying the caller's name and trace id.
pub fn reason_of(text: Option<String>, who: &Principal, trace: &TraceCtx) -> Reason {
    Reason::new(text.unwrap_or_default())
        .with_actor(who.name.clone())
        .with_trace_id(trace.trace_id.clone())
}

/// Sets `ETag: "<revision>"`.
pub fn set_etag(resp: &mut Response, rev: Revision) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", rev.get())) {
        resp.headers_mut().insert(header::ETAG, v);
    }
}
