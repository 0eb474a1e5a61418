//! Cluster mode (`--store etcd`, cluster.md): the truth lives in etcd, this
//! server keeps a replica of every map fed by etcd's watch and runs the safety
//! rules before it writes through.
//!
//! - [`layout`]: which etcd key holds what (STORAGE.md, "The etcd store");
//! - [`replica`]: the range read at start, then the watch that applies every
//!   committed change to the server's maps and tokens, in revision order;
//! - [`txn`]: writes, each one etcd transaction comparing the key's
//!   `mod_revision` with the revision its guards judged, with its audit record
//!   in the same transaction;
//! - [`plans`]: delete plans stored in etcd, executed once cluster-wide as one
//!   transaction;
//! - [`refs`]: references between maps, judged on the replica and kept exact
//!   by the transaction's compares.
//!
//! # Consistency
//!
//! A write is acknowledged only after etcd committed it (quorum) *and* this
//! server's replica applied it ([`Cluster::wait_applied`]), so a server always
//! reads its own writes. Reads through another server see it once that
//! server's replica reached the write's revision: `X-Min-Revision` waits for it.
//! The replica's revision ([`Cluster::applied`]) never goes backwards.

pub mod layout;
pub mod plans;
pub mod policies;
pub mod prune;
pub mod refs;
pub mod replica;
pub mod txn;
pub mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::error::ApiError;
use crate::etcd_access::EtcdAccess;
use crate::etcd_limits::TxnLimits;
use layout::Layout;

/// Longest wait of `X-Min-Revision` (and of a write for its own replica).
pub const MIN_REVISION_WAIT: Duration = Duration::from_secs(5);
/// Timeout of one etcd request: a write without quorum answers 503 after it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of connecting to one etcd endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A conditional write retries its transaction at most this many times when
/// the replica's view was stale (each retry uses the state etcd returned).
pub const MAX_TXN_ATTEMPTS: usize = 8;
/// Largest transaction the server sends, in bytes (see
/// [`crate::etcd_limits::MAX_TXN_BYTES`]).
pub const MAX_TXN_BYTES: usize = crate::etcd_limits::MAX_TXN_BYTES;
/// Most deletes a map's breaker admits per window in cluster mode (each is a
/// slot key read by every delete of the map).
pub const MAX_CLUSTER_BREAKER: usize = 1000;
/// Audit ids per etcd revision: the record at index `i` of the transaction
/// committed at revision `R` has id `R * AUDIT_IDS_PER_REVISION + i`. One
/// transaction writes one record, except a plan's execution (one per deleted
/// key, at most [`TxnLimits::plan_keys`], which stays at most
/// `AUDIT_IDS_PER_REVISION` for every accepted `max_txn_ops`) and a refresh
/// of a map with references (fewer); so ids are unique and increase in
/// commit order, and `id / AUDIT_IDS_PER_REVISION` is the write's revision.
pub const AUDIT_IDS_PER_REVISION: u64 = crate::etcd_limits::AUDIT_IDS_PER_REVISION;
/// Entries read per page of the range read at start.
pub const RANGE_PAGE: i64 = 1000;

/// The etcd store of one server.
pub struct Cluster {
    client: Client,
    layout: Layout,
    /// Limits of one transaction, from `[store] max_txn_ops`.
    limits: TxnLimits,
    /// The highest etcd revision the replica has applied (everything at or
    /// below it under the prefix is in the maps). Written only by the replica
    /// task; `send_modify` keeps it monotonic.
    applied: tokio::sync::watch::Sender<u64>,
    /// The etcd revision of the range read at start; `/readyz` answers 200
    /// once the replica applied it.
    start_revision: AtomicU64,
    /// Set once the range read at start is applied.
    loaded: AtomicBool,
    /// The newest audit records (by id = commit revision), at most
    /// `audit_capacity`, for audit queries.
    audit: std::sync::RwLock<std::collections::BTreeMap<u64, std::sync::Arc<crate::state::Record>>>,
    audit_capacity: usize,
    /// Every audit id at or below it was dropped from `audit` for capacity.
    dropped: AtomicU64,
}

impl Cluster {
    /// Connects to `endpoints` over TLS and as the etcd user when `access`
    /// says so, and makes one request (a read under the prefix) so that a wrong CA,
    /// a refused client certificate or a wrong password stop the start here
    /// with a message that names the cause.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        audit_capacity: usize,
        access: &EtcdAccess,
        limits: TxnLimits,
    ) -> Result<Cluster, String> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_require_leader(true);
        if let Some(tls) = access.check(endpoints)? {
            let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(tls.ca));
            if let Some((cert, key)) = tls.identity {
                t = t.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(t);
        }
        if let (Some(user), Some(password)) = (&access.user, &access.password) {
            options = options.with_user(user.clone(), password.expose().to_string());
        }
        let at = endpoints.join(",");
        let mut client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| connect_error(&at, access, &e))?;
        // One key read under the prefix: reaches a member through TLS, as
        // the user, and needs read permission on the prefix.
        let probe = etcd_client::GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_limit(1);
        client
            .get(prefix, Some(probe))
            .await
            .map_err(|e| connect_error(&at, access, &e))?;
        let (applied, _) = tokio::sync::watch::channel(0);
        Ok(Cluster {
            client,
            layout: Layout::new(prefix),
            limits,
            applied,
            start_revision: AtomicU64::new(u64::MAX),
            loaded: AtomicBool::new(false),
            audit: std::sync::RwLock::new(std::collections::BTreeMap::new()),
            audit_capacity: audit_capacity.max(1),
            dropped: AtomicU64::new(0),
        })
    }

    /// Holds the audit records of one etcd audit key committed at `revision`
    /// (the oldest are dropped beyond capacity): a record (JSON object) or a
    /// plan execution's batch (JSON array, in deletion order). Each gets its
    /// id from the revision and its index ([`AUDIT_IDS_PER_REVISION`]).
    /// `Err` when the value does not decode.
    pub(crate) fn hold_records(&self, revision: u64, value: &[u8]) -> Result<(), String> {
        let records = crate::cluster::plans::decode_audit(value)?;
        let mut audit = self.audit.write().unwrap_or_else(|e| e.into_inner());
        for (i, mut r) in records.into_iter().enumerate() {
            r.id = audit_id(revision, i);
            r.revision = revision;
            if r.create_revision == 0 {
                r.create_revision = revision;
            }
            audit.insert(r.id, std::sync::Arc::new(crate::state::from_stored(r)));
        }
        while audit.len() > self.audit_capacity {
            if let Some((id, _)) = audit.pop_first() {
                self.dropped.fetch_max(id, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    /// The id of the newest audit record held (0: none).
    pub fn last_audit_id(&self) -> u64 {
        let audit = self.audit.read().unwrap_or_else(|e| e.into_inner());
        audit.last_key_value().map_or(0, |(id, _)| *id)
    }

    /// The held audit records that match `query`, oldest first (as the
    /// journal's query does).
    pub fn audit_query(
        &self,
        query: &safemap::AuditQuery<String>,
    ) -> Vec<std::sync::Arc<crate::state::Record>> {
        let audit = self.audit.read().unwrap_or_else(|e| e.into_inner());
        let from = query.after.map_or(0, |a| a.get().saturating_add(1));
        audit
            .range(from..)
            .map(|(_, r)| r)
            .filter(|r| query.map.as_deref().is_none_or(|m| &*r.map == m))
            .filter(|r| query.key.as_ref().is_none_or(|k| &r.key == k))
            .filter(|r| query.plan_id.is_none_or(|p| r.plan_id == Some(p)))
            .take(query.limit)
            .cloned()
            .collect()
    }

    /// The limits of one transaction.
    pub fn limits(&self) -> TxnLimits {
        self.limits
    }

    /// The key layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A client handle (cheap clone of the shared channel).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// The revision the replica has applied.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Moves the applied revision up to `revision` (never down).
    pub(crate) fn advance(&self, revision: u64) {
        self.applied.send_if_modified(|cur| {
            if revision > *cur {
                *cur = revision;
                true
            } else {
                false
            }
        });
    }

    /// Whether the replica has applied the revision read at start.
    pub fn ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
            && self.applied() >= self.start_revision.load(Ordering::Acquire)
    }

    /// Waits until the replica applied `revision`, at most `limit`; `Err` with
    /// the replica's revision when it did not in time.
    pub async fn wait_applied(&self, revision: u64, limit: Duration) -> Result<u64, u64> {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(limit, rx.wait_for(|r| *r >= revision)).await;
        match reached {
            Ok(Ok(r)) => Ok(*r),
            _ => Err(self.applied()),
        }
    }

    /// `X-Min-Revision`: waits up to [`MIN_REVISION_WAIT`], then 504 `replica_behind`.
    pub async fn min_revision(&self, revision: u64) -> Result<(), ApiError> {
        self.wait_applied(revision, MIN_REVISION_WAIT)
            .await
            .map(|_| ())
            .map_err(replica_behind)
    }
}

/// The id of the audit record at `index` of the transaction committed at `revision`.
pub fn audit_id(revision: u64, index: usize) -> u64 {
    revision
        .saturating_mul(AUDIT_IDS_PER_REVISION)
        .saturating_add(index as u64)
}

/// 504 `replica_behind`: the replica did not reach the revision in time.
pub fn replica_behind(replica_revision: u64) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::GATEWAY_TIMEOUT,
        "replica_behind",
        format!(
            "this server's replica did not reach the revision within {} s; retry, or ask another server",
            MIN_REVISION_WAIT.as_secs()
        ),
    )
    .with_details(serde_json::json!({"replica_revision": replica_revision}))
}

/// The start-up error of a failed connection: the error and its causes (a
/// TLS or authentication failure is often only in the innermost one), with a
/// hint at the setting to check.
fn connect_error(at: &str, access: &EtcdAccess, e: &etcd_client::Error) -> String {
    // A gRPC status's Display carries its source's Debug form: its message
    // says the same in words.
    let mut text = match e {
        etcd_client::Error::GRpcStatus(status) => status.message().to_string(),
        other => other.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    let lower = text.to_lowercase();
    let hint = if lower.contains("authentication failed") || lower.contains("invalid user") {
        format!(
            " (etcd refused user {:?}: check --etcd-user and {})",
            access.user.as_deref().unwrap_or(""),
            crate::etcd_access::PASSWORD_ENV
        )
    } else if lower.contains("user name is empty") {
        format!(
            " (etcd has authentication enabled: set --etcd-user and {})",
            crate::etcd_access::PASSWORD_ENV
        )
    } else if lower.contains("permission denied") {
        format!(
            " (etcd user {:?} needs read and write permission on the prefix: etcdctl role grant-permission ROLE --prefix=true readwrite PREFIX)",
            access.user.as_deref().unwrap_or("")
        )
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        " (TLS to etcd failed: check --etcd-ca, --etcd-cert and --etcd-key against etcd's certificates)".to_string()
    } else {
        String::new()
    };
    format!("connecting to etcd at {at}: {text}{hint}")
}

/// The answer to a failed etcd request: 503 `etcd_limit_mismatch` when etcd
/// refused the transaction for its size (its `--max-txn-ops` or
/// `--max-request-bytes` is lower than this server assumes: etcd checks that
/// before anything commits), else 503 `store_unavailable`.
pub fn request_failed(e: &etcd_client::Error, limits: TxnLimits) -> ApiError {
    let message = match e {
        etcd_client::Error::GRpcStatus(status) => status.message().to_lowercase(),
        other => other.to_string().to_lowercase(),
    };
    if message.contains("too many operations in txn request") {
        tracing::error!(error = %e, max_txn_ops = limits.max_txn_ops(), "etcd refused a transaction: its --max-txn-ops is lower than [store] max_txn_ops");
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "etcd_limit_mismatch",
            format!(
                "etcd refused the transaction as too many operations: its --max-txn-ops is lower than this server's max_txn_ops = {n} (from {setting}); nothing was written. The operator must raise etcd's --max-txn-ops on every member to at least {n}, or set max_txn_ops to etcd's value",
                n = limits.max_txn_ops(),
                setting = crate::etcd_limits::SETTING,
            ),
        )
        .with_details(limits.details(serde_json::json!({})));
    }
    if message.contains("request is too large") || message.contains("message larger than max") {
        tracing::error!(error = %e, "etcd refused a request as too large: its --max-request-bytes is below 1.5 MiB");
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "etcd_limit_mismatch",
            format!(
                "etcd refused the request as too large: its --max-request-bytes is lower than the {} bytes this server sends at most (etcd's default is 1.5 MiB); nothing was written. The operator must set etcd's --max-request-bytes to at least 1572864",
                MAX_TXN_BYTES
            ),
        )
        .with_details(serde_json::json!({
            "limit": MAX_TXN_BYTES,
            "etcd_flag": "--max-request-bytes",
        }));
    }
    store_unavailable(e)
}

/// 503 `store_unavailable`: etcd did not answer (no quorum, no member reachable).
pub fn store_unavailable(e: &etcd_client::Error) -> ApiError {
    tracing::warn!(error = %e, "etcd request failed");
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "etcd did not commit the write (no quorum or no member reachable); its outcome is unknown: retry with If-Match / If-None-Match",
    )
    .with_retry_after(1)
}

/// What cluster mode refuses in the configuration, by name: a delete
/// breaker above [`MAX_CLUSTER_BREAKER`].
pub fn check_config(config: &crate::config::Config) -> Result<(), String> {
    for (name, policy) in &config.maps {
        if let Some((max, _)) = policy.breaker
            && max > MAX_CLUSTER_BREAKER
        {
            return Err(format!(
                "maps.{name}.delete_breaker: with --store etcd max_deletes is at most {MAX_CLUSTER_BREAKER} (each admitted delete holds a slot key in etcd), got {max}"
            ));
        }
    }
    Ok(())
}

/// The shared state of a server in cluster mode: maps (the replica, loaded by
/// [`replica::start`]), tokens (from etcd) and a journal that holds no records
/// (audit records live in etcd). The etcd endpoints, prefix, access and
/// transaction limits are those of `config.store`, which must be
/// [`crate::config::StoreConfig::Etcd`].
pub async fn open_shared(
    data_dir: &std::path::Path,
    config: crate::config::Config,
    loopback: bool,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<crate::state::Shared, String> {
    let crate::config::StoreConfig::Etcd {
        endpoints,
        prefix,
        access,
        limits,
    } = config.store.clone()
    else {
        return Err("cluster mode needs [store] kind = \"etcd\"".into());
    };
    check_config(&config)?;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let cluster = Cluster::connect(
        &endpoints,
        &prefix,
        config.server.journal_capacity,
        &access,
        limits,
    )
    .await?;
    cluster.check_policies(&config).await?;
    let journal = safemap::Journal::builder()
        .retention(config.max_retention())
        .capacity(1)
        .record_puts(false)
        .build();
    let names: Vec<String> = config.maps.keys().cloned().collect();
    let shared = crate::state::Shared {
        config,
        journal,
        maps: std::sync::RwLock::new(std::collections::HashMap::new()),
        store: crate::state::Store::Etcd(std::sync::Arc::new(cluster)),
        tokens: crate::auth::Tokens::from_stored(&[]),
        token_admin: tokio::sync::Mutex::new(()),
        loopback,
        shutdown,
        profiling: AtomicBool::new(false),
        data_dir: data_dir.to_path_buf(),
        history_floor: 0,
    };
    // Every configured map is built (and registered on the journal) before
    // the replica loads any entry, so that loading an entry indexes its
    // references in the map it refers to (as local recovery does).
    for name in &names {
        shared.replica_map(name)?;
    }
    Ok(shared)
}

/// Middleware of cluster mode on `/v1/`: waits for `X-Min-Revision`, and sets
/// `X-Safemap-Revision` (the replica's revision when answering) on every answer.
pub async fn revisions(
    axum::extract::State(st): axum::extract::State<crate::state::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(c) = st.cluster().cloned() else {
        return next.run(req).await;
    };
    if !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let waited = match crate::extract::min_revision_header(req.headers()) {
        Ok(None) => Ok(()),
        // Only a caller with a valid token waits or gets the 400 (the others
        // get their 401 first, from the handler): no one without a token
        // holds a connection for 5 s.
        _ if crate::extract::authenticate(&st, req.headers()).is_err() => Ok(()),
        Err(e) => Err(e),
        Ok(Some(n)) => c.min_revision(n).await,
    };
    let mut resp = match waited {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    let applied = c.applied();
    resp.headers_mut()
        .insert("x-safemap-revision", axum::http::HeaderValue::from(applied));
    resp
}
