//! The router and `run(listener, options, shutdown)`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::config::{Config, StoreConfig};
use crate::error::{ApiError, ErrorCode};
use crate::limits::LimitedListener;
use crate::routes::{audit, entries, ops, plans, referrers, restore, tokens, watch, whoami};
use crate::state::{AppState, Shared};
use crate::trace::TraceCtx;

/// Options of `safemap serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The data directory (created if absent).
    pub data_dir: PathBuf,
    /// The configuration.
    pub config: Config,
}

/// Why a binary without the `etcd` feature refuses `--store etcd`.
pub const NO_ETCD: &str = "this safemap was built without the etcd store: build it with `cargo build --release -p safemap-server --features etcd` (needs protoc, Debian's protobuf-compiler) to use --store etcd";

/// Errors that stop the server.
pub type ServeError = Box<dyn std::error::Error + Send + Sync>;

/// Every route the server serves: (method, path, handler). The router is built
/// from this table and a test checks it against the OpenAPI document both ways.
pub fn route_table() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    vec![
        (
            Method::GET,
            "/v1/maps/{map}/keys/{key}",
            get(entries::get_entry),
        ),
        (
            Method::PUT,
            "/v1/maps/{map}/keys/{key}",
            put(entries::put_entry),
        ),
        (
            Method::DELETE,
            "/v1/maps/{map}/keys/{key}",
            delete(entries::delete_entry),
        ),
        (
            Method::GET,
            "/v1/maps/{map}/keys/{key}/referrers",
            get(referrers::referrers),
        ),
        (
            Method::GET,
            "/v1/maps/{map}/keys",
            get(entries::list_entries),
        ),
        (
            Method::POST,
            "/v1/maps/{map}/refresh",
            post(entries::refresh),
        ),
        (
            Method::POST,
            "/v1/maps/{map}/delete-plans",
            post(plans::create_plan),
        ),
        (
            Method::POST,
            "/v1/maps/{map}/delete-plans/{plan_id}/execute",
            post(plans::execute_plan),
        ),
        (
            Method::GET,
            "/v1/delete-plans/{plan_id}/tree",
            get(plans::plan_tree),
        ),
        (
            Method::POST,
            "/v1/maps/{map}/restore",
            post(restore::restore),
        ),
        (Method::GET, "/v1/maps/{map}/watch", get(watch::watch)),
        (Method::GET, "/v1/audit", get(audit::audit)),
        (Method::POST, "/v1/tokens", post(tokens::create)),
        (Method::GET, "/v1/tokens", get(tokens::list)),
        (Method::DELETE, "/v1/tokens/{name}", delete(tokens::revoke)),
        (Method::GET, "/v1/whoami", get(whoami::whoami)),
        (Method::GET, "/healthz", get(ops::healthz)),
        (Method::GET, "/readyz", get(ops::readyz)),
        (Method::GET, "/metrics", get(ops::metrics)),
        (Method::GET, "/debug/pprof/profile", get(ops::profile)),
        (Method::GET, "/v1/openapi.json", get(ops::openapi)),
    ]
}

/// Builds the router over a state.
pub fn router(state: AppState) -> Router {
    let mut r: Router<AppState> = Router::new();
    for (_, path, handler) in route_table() {
        r = r.route(path, handler);
    }
    let r = r
        .merge(crate::console::routes())
        .route_layer(middleware::from_fn(observe))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed);
    // Not in cluster mode: X-Min-Revision's syntax on /v1/.
    let r = r.layer(middleware::from_fn_with_state(
        state.clone(),
        local_min_revision,
    ));
    // Cluster mode: X-Min-Revision and X-Safemap-Revision on /v1/.
    #[cfg(feature = "etcd")]
    let r = r.layer(middleware::from_fn_with_state(
        state.clone(),
        crate::cluster::revisions,
    ));
    r.layer(tower_http::catch_panic::CatchPanicLayer::custom(
        |_: Box<dyn std::any::Any + Send>| {
            ApiError::internal("the request handler panicked; this is a bug").into_response()
        },
    ))
    .with_state(state)
}

/// `X-Min-Revision` on `/v1/` when not in cluster mode (cluster mode has its
/// own layer, `cluster::revisions`, with feature `etcd`): one server
/// always reads its own writes, so a valid value is accepted and nothing
/// waits; a malformed one is 400 `invalid_header` as in cluster mode, before
/// the handler runs (nothing changes), to a caller with a valid token (the
/// others get their 401 from the handler).
async fn local_min_revision(State(st): State<AppState>, req: Request, next: Next) -> Response {
    #[cfg(feature = "etcd")]
    if st.cluster().is_some() {
        return next.run(req).await;
    }
    if req.uri().path().starts_with("/v1/")
        && let Err(e) = crate::extract::min_revision_header(req.headers())
        && crate::extract::authenticate(&st, req.headers()).is_ok()
    {
        return e.into_response();
    }
    next.run(req).await
}

async fn fallback(State(_): State<AppState>) -> Response {
    ApiError::not_found("no such route; see /v1/openapi.json")
        .with_details(serde_json::json!({"route": null}))
        .into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not support the method; see /v1/openapi.json",
    )
    .into_response()
}

/// Per request: trace context, a log span with the trace id, metrics, `x-trace-id`.
async fn observe(mut req: Request, next: Next) -> Response {
    let ctx = TraceCtx::from_header(
        req.headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok()),
    );
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    let span = tracing::info_span!("request", trace_id = %ctx.trace_id, %method, route = %route);
    let trace_id = ctx.trace_id.clone();
    #[cfg(feature = "otlp")]
    crate::otel::link_span(&span, &ctx.trace_id, ctx.parent_id.as_deref());
    req.extensions_mut().insert(ctx);
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    metrics::counter!("safemap_requests_total", "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    let route_for_log = route.clone();
    metrics::histogram!("safemap_request_duration_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(
                status,
                code,
                elapsed_ms = elapsed.as_millis() as u64,
                "request failed"
            );
        } else if status < 400 && is_polled(&route_for_log) {
            tracing::debug!(
                status,
                code,
                elapsed_ms = elapsed.as_millis() as u64,
                "request"
            );
        } else {
            tracing::info!(
                status,
                code,
                elapsed_ms = elapsed.as_millis() as u64,
                "request"
            );
        }
    });
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        resp.headers_mut().insert("x-trace-id", v);
    }
    resp
}

/// Routes that monitors and the console poll every few seconds: their
/// successful requests are logged at debug, so the info log shows what people
/// and services did rather than the polling.
fn is_polled(route: &str) -> bool {
    matches!(route, "/metrics" | "/healthz" | "/readyz" | "/v1/whoami") || route.starts_with("/ui")
}

/// Serves on `listener` until `shutdown` resolves: opens and recovers storage,
/// creates the admin token on first start, prints `listening on <addr>`, then
/// drains connections, ends watch streams and closes storage cleanly.
pub async fn run(
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    run_with_state(listener, opts, shutdown, None).await
}

/// As [`run`], and hands the server's state to `started` once it serves
/// (tests use it to inject storage faults).
pub async fn run_with_state(
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    started: Option<tokio::sync::oneshot::Sender<AppState>>,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    // Install the metrics recorder first, so the commits of startup are counted.
    crate::metrics::handle();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let max_connections = opts.config.server.max_connections;
    let listener = match &opts.config.server.tls {
        None => LimitedListener::new(listener, max_connections)?,
        Some((cert, key)) => {
            let acceptor = crate::limits::tls_acceptor(cert, key)?;
            LimitedListener::tls(listener, max_connections, acceptor)?
        }
    };
    let scheme = if opts.config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let data_dir = opts.data_dir.clone();
    let loopback = addr.ip().is_loopback();
    let state: AppState = match opts.config.store.clone() {
        StoreConfig::Local => Arc::new(
            tokio::task::spawn_blocking(move || {
                Shared::open(&data_dir, opts.config, loopback, stop_rx)
            })
            .await??,
        ),
        #[cfg(feature = "etcd")]
        StoreConfig::Etcd { .. } => {
            let shared =
                crate::cluster::open_shared(&data_dir, opts.config, loopback, stop_rx).await?;
            let state = Arc::new(shared);
            if let Some(c) = state.cluster().cloned() {
                crate::cluster::replica::start(&state, &c).await?;
            }
            state
        }
        #[cfg(not(feature = "etcd"))]
        StoreConfig::Etcd { .. } => return Err(NO_ETCD.into()),
    };
    if let Some(path) = state.bootstrap_admin().await? {
        println!("admin token written to {}", path.display());
        tracing::info!(path = %path.display(), "created the admin token");
    }
    let app = router(state.clone());
    if let Some(tx) = started {
        let _ = tx.send(state.clone());
    }
    println!("listening on {addr}");
    println!("console at {scheme}://{addr}/ui");
    tracing::info!(%addr, scheme, data_dir = %opts.data_dir.display(), "listening on {addr}");
    let header_timeout = state.config.server.header_read_timeout;
    serve_connections(listener, app, header_timeout, async move {
        shutdown.await;
        tracing::info!("shutting down: draining connections");
        let _ = stop_tx.send(true);
    })
    .await;
    if let Ok(storage) = state.local_storage("closing") {
        let storage = storage.clone();
        tokio::task::spawn_blocking(move || storage.close()).await?;
        tracing::info!("storage closed cleanly");
    }
    Ok(())
}

/// The accept loop: HTTP/1.1 and HTTP/2 (prior knowledge or ALPN) per
/// connection, with a header read timeout; on shutdown, stops accepting and
/// waits for open connections to finish their current requests.
async fn serve_connections(
    mut listener: LimitedListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use axum::serve::Listener as _;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (io, addr) = listener.accept() => {
                let svc = TowerToHyperService::new(app.clone());
                let conn = builder.serve_connection(TokioIo::new(io), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%addr, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}
