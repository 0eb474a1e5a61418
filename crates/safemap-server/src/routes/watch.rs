//! `GET /v1/maps/{map}/watch`: server-sent events from the library's `Watcher`.
//!
//! Each write of the map at or after `from_revision` (or from the next write)
//! becomes `id: <revision>` + `data: {"op","key","revision","value"?}`. A
//! `Last-Event-ID` header resumes after that revision. Idle streams get a
//! keep-alive comment every `server.watch_keepalive` (15 s by default). The
//! stream ends when the server shuts down, or with an `event: error` if the
//! watcher falls so far behind that the journal dropped events it had not read.
//! Watching a map that does not exist yet creates it (default policy), so a
//! client can watch before the first write.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use safemap::Op;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Authed, CanRead, MapName, Q, header_str};
use crate::library_errors::compacted;
use crate::state::AppState;

/// Query of a watch.
#[derive(Debug, Deserialize)]
pub struct WatchParams {
    from_revision: Option<String>,
    prefix: Option<String>,
}

/// `GET /v1/maps/{map}/watch?from_revision=&prefix=`
pub async fn watch(
    _a: Authed<CanRead>,
    State(st): State<AppState>,
    MapName(map): MapName,
    Q(p): Q<WatchParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let mut from = match &p.from_revision {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid_query", "from_revision is a revision (an integer)")
        })?),
    };
    if let Some(last) = header_str(&headers, "last-event-id")? {
        let last: u64 = last.trim().parse().map_err(|_| {
            ApiError::bad_request("invalid_header", "Last-Event-ID is a revision (an integer)")
        })?;
        from = Some(last.saturating_add(1));
    }
    if let Some(f) = from
        && st.history_floor > 0
        && f < st.history_floor
    {
        return Err(compacted(st.history_floor));
    }
    let watcher = st.watch_map(&map, from)?;
    let prefix = p.prefix.unwrap_or_default();
    let shutdown = st.shutdown.clone();
    let keepalive = st.config.server.watch_keepalive;
    let events = stream::unfold(
        (watcher, shutdown, prefix, false),
        move |(mut w, mut stop, prefix, done)| {
            let st = st.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    if *stop.borrow() {
                        return None;
                    }
                    let next = tokio::select! {
                        e = w.next() => e,
                        _ = stop.changed() => return None,
                    };
                    match next {
                        Ok(rec) => {
                            if !rec.key.starts_with(&prefix) {
                                continue;
                            }
                            // Only durable events are sent: a watcher never sees a
                            // write that a crash could take back.
                            let durable = tokio::select! {
                                d = st.until_durable(&*rec) => d,
                                _ = stop.changed() => return None,
                            };
                            if durable.is_err() {
                                let ev = Event::default().event("error").data(
                                json!({"error": {"code": "storage_unavailable", "message": "storage failed; the stream ends", "details": {}}})
                                    .to_string(),
                            );
                                return Some((Ok(ev), (w, stop, prefix, true)));
                            }
                            let mut data = json!({
                                "op": rec.op.as_str(),
                                "key": rec.key,
                                "revision": rec.revision.get(),
                            });
                            if matches!(rec.op, Op::Put | Op::Restore)
                                && let Some(v) = &rec.value
                            {
                                data["value"] = v.clone();
                            }
                            let ev = Event::default()
                                .id(rec.revision.get().to_string())
                                .data(data.to_string());
                            return Some((Ok::<_, Infallible>(ev), (w, stop, prefix, false)));
                        }
                        Err(e) => {
                            let ev = Event::default().event("error").data(
                            json!({"error": {"code": "compacted", "message": e.to_string(), "details": {}}})
                                .to_string(),
                        );
                            return Some((Ok(ev), (w, stop, prefix, true)));
                        }
                    }
                }
            }
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keepalive).text("keep-alive"))
        .into_response())
}
