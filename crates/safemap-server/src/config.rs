//! The TOML configuration file (http-api.md, "Running it").
//!
//! ```toml
//! [server]                         # optional; every field has a default
//! max_body_bytes = 1048576         # 413 body_too_large above this
//! max_list_limit = 1000            # largest `limit` of a list or audit page
//! max_connections = 1024           # concurrent TCP connections; more wait in the accept queue
//! max_maps = 10000                 # maps created on first write beyond the configured ones
//! plan_ttl = "1h"                  # default lifetime of a delete plan
//! watch_keepalive = "15s"          # SSE keep-alive comment interval
//! header_read_timeout = "30s"      # time to send request headers (and HTTP/1 keep-alive idle limit)
//! journal_capacity = 100000        # audit records held in memory, ~1-2 KiB each (watch replays only these)
//! storage_cache_bytes = 67108864   # redb page cache (64 MiB)
//! checkpoint_interval = "1s"       # how often the write-ahead log is folded into redb
//! tls_cert = "/etc/safemap/cert.pem"  # serve HTTPS (rustls) when both are set
//! tls_key = "/etc/safemap/key.pem"
//!
//! [store]                          # optional; default: the local store in the data directory
//! kind = "etcd"                    # "local" (default) or "etcd" (cluster.md; cargo feature `etcd`)
//! endpoints = ["http://127.0.0.1:2379"]  # etcd client URLs (kind = "etcd")
//! prefix = "/safemap/"             # every key under it; must end with '/'
//! ca = "/etc/safemap/etcd-ca.pem"  # TLS to etcd (https:// endpoints): the CA of etcd's certificates
//! cert = "/etc/safemap/etcd-client.pem"  # client certificate (etcd --client-cert-auth), with key
//! key = "/etc/safemap/etcd-client-key.pem"
//! user = "safemap"                 # etcd user; its password only from SAFEMAP_ETCD_PASSWORD
//! max_txn_ops = 128                # etcd's --max-txn-ops (32..=1028): a delete plan holds this - 28 keys
//!
//! [maps.orders]
//! retention = "7d"
//! delete_breaker = { max_deletes = 100, per_seconds = 60 }
//! plan_ttl = "1h"
//!
//! [[maps.orders.deny_delete]]
//! name = "archived"
//! pointer = "/status"
//! equals = "archived"
//!
//! [maps.order_items]
//!
//! [[maps.order_items.references]] # references.md
//! name = "order"                   # unique within the map
//! pointer = "/order_id"            # a string there names a key...
//! to = "orders"                    # ...of this map (declared in the same file)
//! on_delete = "cascade"            # "restrict" (default) or "cascade"
//! ```
//!
//! Unknown fields, bad durations, invalid pointers, invalid map names and bad
//! references (to a map not declared in the file, an unknown `on_delete`, a
//! duplicate name) stop startup with an error naming the file, the line, the
//! field and the offending value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::etcd_access::EtcdAccess;
use crate::etcd_limits::TxnLimits;
use crate::names::is_valid_name;

/// Default retention of deleted values (7 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default plan lifetime (1 hour).
pub const DEFAULT_PLAN_TTL: Duration = Duration::from_secs(3600);

/// Server-wide limits and settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest accepted request body in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// Largest page of a list or audit query (default 1000).
    pub max_list_limit: usize,
    /// Concurrent TCP connections served (default 1024).
    pub max_connections: usize,
    /// Most maps the server holds (default 10 000).
    pub max_maps: usize,
    /// Lifetime of a delete plan unless the map says otherwise (default 1 h).
    pub plan_ttl: Duration,
    /// Interval of SSE keep-alive comments (default 15 s).
    pub watch_keepalive: Duration,
    /// Time a client may take to send request headers; also the idle limit of
    /// a kept-alive HTTP/1 connection (default 30 s). Bounds slowloris clients.
    pub header_read_timeout: Duration,
    /// Audit records held in memory, what a watch replays
    /// (default 100 000, about 1–2 KiB each with small values); older ones stay
    /// on disk until retention prunes them: audit queries and restores read
    /// them there, a watch does not replay them (410 `compacted`).
    pub journal_capacity: usize,
    /// redb page cache in bytes (default 64 MiB).
    pub storage_cache_bytes: usize,
    /// How often the write-ahead log is folded into redb and truncated
    /// (default 1 s). Longer: less background work, a longer log to replay
    /// after a crash.
    pub checkpoint_interval: Duration,
    /// PEM certificate chain and private key: serve TLS when set.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_list_limit: 1000,
            max_connections: 1024,
            max_maps: 10_000,
            plan_ttl: DEFAULT_PLAN_TTL,
            watch_keepalive: Duration::from_secs(15),
            header_read_timeout: Duration::from_secs(30),
            journal_capacity: crate::storage::DEFAULT_JOURNAL_CAPACITY,
            storage_cache_bytes: crate::storage::DEFAULT_CACHE_BYTES,
            checkpoint_interval: crate::storage::DEFAULT_CHECKPOINT_INTERVAL,
            tls: None,
        }
    }
}

/// A deny rule: a delete of a value whose `pointer` equals `equals` is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct DenyRule {
    /// Name reported in `details.rule` of 409 `delete_vetoed`.
    pub name: String,
    /// JSON pointer into the value (RFC 6901).
    pub pointer: String,
    /// The JSON value that vetoes the delete.
    pub equals: serde_json::Value,
}

/// A reference (references.md): a value whose `pointer` holds a string
/// refers to the key of that name in map `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Unique within the map; reported in errors and referrer lists.
    pub name: String,
    /// JSON pointer into the value (RFC 6901).
    pub pointer: String,
    /// The map the key belongs to (declared in the same file).
    pub to: String,
    /// What a cascading plan does with the referrer.
    pub on_delete: safemap::OnDelete,
}

/// The policy of one map.
#[derive(Debug, Clone, PartialEq)]
pub struct MapPolicy {
    /// How long deleted values stay restorable.
    pub retention: Duration,
    /// At most `.0` successful single-key deletes per sliding window of `.1`.
    pub breaker: Option<(usize, Duration)>,
    /// Deny rules, checked in order.
    pub deny: Vec<DenyRule>,
    /// Lifetime of delete plans of this map.
    pub plan_ttl: Duration,
    /// References to keys of other maps (or of this one).
    pub references: Vec<Reference>,
}

impl MapPolicy {
    /// The default policy: reason required, no deny rules, no breaker, 7-day retention.
    pub fn default_with(settings: &ServerSettings) -> Self {
        Self {
            retention: DEFAULT_RETENTION,
            breaker: None,
            deny: Vec::new(),
            plan_ttl: settings.plan_ttl,
            references: Vec::new(),
        }
    }
}

/// Default prefix of the etcd store.
pub const DEFAULT_ETCD_PREFIX: &str = "/safemap/";

/// Where entries, audit records and tokens live (`[store]`, `--store`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded log + checkpoint in the data directory (STORAGE.md).
    #[default]
    Local,
    /// An etcd cluster (cluster.md): the truth lives there, the server keeps a replica.
    Etcd {
        /// Client URLs of the etcd members (at least one).
        endpoints: Vec<String>,
        /// Every key the server touches starts with it; ends with `/`.
        prefix: String,
        /// TLS files and etcd user (checked at start by [`EtcdAccess::check`]).
        access: EtcdAccess,
        /// etcd's `--max-txn-ops` as the operator declared it, and the
        /// limits of plans and refreshes derived from it.
        limits: TxnLimits,
    },
}

impl StoreConfig {
    /// The etcd store, checked: at least one endpoint, each an `http://` URL,
    /// and a prefix that ends with `/`.
    pub fn etcd(endpoints: Vec<String>, prefix: Option<String>) -> Result<Self, String> {
        let prefix = prefix.unwrap_or_else(|| DEFAULT_ETCD_PREFIX.to_string());
        check_etcd_prefix(&prefix)?;
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err("the etcd store needs at least one endpoint (--etcd-endpoints http://HOST:PORT,...)".into());
        }
        if let Some(bad) = endpoints
            .iter()
            .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(format!(
                "etcd endpoint {bad:?} is not a URL (http://HOST:PORT)"
            ));
        }
        Ok(StoreConfig::Etcd {
            endpoints,
            prefix,
            access: EtcdAccess::default(),
            limits: TxnLimits::default(),
        })
    }
}

/// The etcd prefix rule: non-empty, ends with `/` (so `/a/` never matches `/ab/`).
pub fn check_etcd_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.ends_with('/') {
        return Err(format!(
            "the etcd prefix {prefix:?} must end with '/' (e.g. \"{DEFAULT_ETCD_PREFIX}\")"
        ));
    }
    Ok(())
}

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Server-wide settings.
    pub server: ServerSettings,
    /// The store (local or etcd).
    pub store: StoreConfig,
    /// Policies of configured maps, by name.
    pub maps: BTreeMap<String, MapPolicy>,
}

impl Config {
    /// The policy for `map`: configured, or the default one.
    pub fn policy_for(&self, map: &str) -> MapPolicy {
        self.maps
            .get(map)
            .cloned()
            .unwrap_or_else(|| MapPolicy::default_with(&self.server))
    }

    /// The longest retention of any map (the shared journal keeps records this long).
    pub fn max_retention(&self) -> Duration {
        self.maps
            .values()
            .map(|p| p.retention)
            .chain([DEFAULT_RETENTION])
            .max()
            .unwrap_or(DEFAULT_RETENTION)
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses configuration text; `file` is only used in error messages.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError {
                file: file.to_path_buf(),
                line,
                column,
                field: field_of(e.message()),
                message: e.message().trim().to_string(),
            }
        })?;
        let err = |span: std::ops::Range<usize>, field: String, message: String| {
            let (line, column) = line_col(text, span.start);
            ConfigError {
                file: file.to_path_buf(),
                line,
                column,
                field,
                message,
            }
        };
        let mut server = ServerSettings::default();
        if let Some(s) = raw.server {
            if let Some(v) = s.max_body_bytes {
                server.max_body_bytes = v;
            }
            if let Some(v) = s.max_list_limit {
                server.max_list_limit = v.max(1);
            }
            if let Some(v) = s.max_connections {
                server.max_connections = v.max(1);
            }
            match (s.tls_cert, s.tls_key) {
                (None, None) => {}
                (Some(c), Some(k)) => {
                    // Relative paths are relative to the configuration file.
                    let base = file.parent().unwrap_or(Path::new("."));
                    server.tls = Some((base.join(c.into_inner()), base.join(k.into_inner())));
                }
                (Some(c), None) => {
                    return Err(err(
                        c.span(),
                        "server.tls_key".into(),
                        "tls_cert is set but tls_key is missing".into(),
                    ));
                }
                (None, Some(k)) => {
                    return Err(err(
                        k.span(),
                        "server.tls_cert".into(),
                        "tls_key is set but tls_cert is missing".into(),
                    ));
                }
            }
            if let Some(v) = s.storage_cache_bytes {
                server.storage_cache_bytes = v;
            }
            if let Some(v) = s.journal_capacity {
                server.journal_capacity = v.max(1);
            }
            if let Some(v) = s.max_maps {
                server.max_maps = v;
            }
            if let Some(d) = s.plan_ttl {
                server.plan_ttl = parse_duration(d.get_ref())
                    .map_err(|m| err(d.span(), "server.plan_ttl".into(), m))?;
            }
            if let Some(d) = s.header_read_timeout {
                server.header_read_timeout = parse_duration(d.get_ref())
                    .map_err(|m| err(d.span(), "server.header_read_timeout".into(), m))?;
            }
            if let Some(d) = s.checkpoint_interval {
                server.checkpoint_interval = parse_duration(d.get_ref())
                    .map_err(|m| err(d.span(), "server.checkpoint_interval".into(), m))?;
            }
            if let Some(d) = s.watch_keepalive {
                server.watch_keepalive = parse_duration(d.get_ref())
                    .map_err(|m| err(d.span(), "server.watch_keepalive".into(), m))?;
            }
        }
        let raw_names: std::collections::BTreeSet<String> =
            raw.maps.keys().map(|n| n.get_ref().clone()).collect();
        let mut maps = BTreeMap::new();
        for (name, m) in raw.maps {
            if !is_valid_name(name.get_ref()) {
                return Err(err(
                    name.span(),
                    format!("maps.{}", name.get_ref()),
                    "map names match [a-z0-9][a-z0-9_-]{0,63}".into(),
                ));
            }
            let name = name.into_inner();
            let mut policy = MapPolicy::default_with(&server);
            if let Some(r) = m.retention {
                policy.retention = parse_duration(r.get_ref())
                    .map_err(|msg| err(r.span(), format!("maps.{name}.retention"), msg))?;
            }
            if let Some(t) = m.plan_ttl {
                policy.plan_ttl = parse_duration(t.get_ref())
                    .map_err(|msg| err(t.span(), format!("maps.{name}.plan_ttl"), msg))?;
            }
            if let Some(b) = m.delete_breaker {
                let span = b.span();
                let b = b.into_inner();
                if b.max_deletes == 0 || b.per_seconds == 0 {
                    return Err(err(
                        span,
                        format!("maps.{name}.delete_breaker"),
                        "max_deletes and per_seconds must both be at least 1".into(),
                    ));
                }
                policy.breaker = Some((b.max_deletes, Duration::from_secs(b.per_seconds)));
            }
            for (i, rule) in m.deny_delete.into_iter().enumerate() {
                let p = &rule.pointer;
                if !is_json_pointer(p.get_ref()) {
                    return Err(err(
                        p.span(),
                        format!("maps.{name}.deny_delete[{i}].pointer"),
                        format!(
                            "{:?} is not a JSON pointer (RFC 6901: empty, or starting with '/')",
                            p.get_ref()
                        ),
                    ));
                }
                if rule.name.get_ref().is_empty() {
                    return Err(err(
                        rule.name.span(),
                        format!("maps.{name}.deny_delete[{i}].name"),
                        "a deny rule needs a non-empty name".into(),
                    ));
                }
                policy.deny.push(DenyRule {
                    name: rule.name.into_inner(),
                    pointer: rule.pointer.into_inner(),
                    equals: rule.equals,
                });
            }
            for (i, r) in m.references.into_iter().enumerate() {
                let field = |f: &str| format!("maps.{name}.references[{i}].{f}");
                let n = r.name.get_ref();
                if n.is_empty() {
                    return Err(err(
                        r.name.span(),
                        field("name"),
                        "a reference needs a non-empty name".into(),
                    ));
                }
                if policy.references.iter().any(|d| d.name == *n) {
                    return Err(err(
                        r.name.span(),
                        field("name"),
                        format!("duplicate reference name {n:?} in map {name:?}"),
                    ));
                }
                if !is_json_pointer(r.pointer.get_ref()) {
                    return Err(err(
                        r.pointer.span(),
                        field("pointer"),
                        format!(
                            "{:?} is not a JSON pointer (RFC 6901: empty, or starting with '/')",
                            r.pointer.get_ref()
                        ),
                    ));
                }
                if !raw_names.contains(r.to.get_ref().as_str()) {
                    return Err(err(
                        r.to.span(),
                        field("to"),
                        format!(
                            "{:?} is not a map declared in this file (declare it as [maps.{}])",
                            r.to.get_ref(),
                            r.to.get_ref()
                        ),
                    ));
                }
                let on_delete = match r.on_delete.as_ref().map(|o| o.get_ref().as_str()) {
                    None | Some("restrict") => safemap::OnDelete::Restrict,
                    Some("cascade") => safemap::OnDelete::Cascade,
                    Some(other) => {
                        let span = r.on_delete.as_ref().map_or(0..0, |o| o.span());
                        return Err(err(
                            span,
                            field("on_delete"),
                            format!("{other:?} is not \"restrict\" or \"cascade\""),
                        ));
                    }
                };
                policy.references.push(Reference {
                    name: r.name.into_inner(),
                    pointer: r.pointer.into_inner(),
                    to: r.to.into_inner(),
                    on_delete,
                });
            }
            maps.insert(name, policy);
        }
        let store = match raw.store {
            None => StoreConfig::Local,
            Some(st) => match st.kind.as_ref().map(|k| k.get_ref().as_str()) {
                None | Some("local") => {
                    let strings = [&st.prefix, &st.ca, &st.cert, &st.key, &st.user];
                    if let Some(e) = st
                        .endpoints
                        .as_ref()
                        .map(Spanned::span)
                        .or(strings.iter().find_map(|f| f.as_ref().map(Spanned::span)))
                        .or(st.password.as_ref().map(Spanned::span))
                        .or(st.max_txn_ops.as_ref().map(Spanned::span))
                    {
                        return Err(err(
                            e,
                            "store".into(),
                            "endpoints, prefix, ca, cert, key, user and max_txn_ops apply only to kind = \"etcd\"".into(),
                        ));
                    }
                    StoreConfig::Local
                }
                Some("etcd") => {
                    let span = st.kind.as_ref().map_or(0..0, Spanned::span);
                    if let Some(p) = &st.prefix {
                        check_etcd_prefix(p.get_ref())
                            .map_err(|m| err(p.span(), "store.prefix".into(), m))?;
                    }
                    let field = if st.endpoints.is_some() {
                        "store.endpoints"
                    } else {
                        "store"
                    };
                    if let Some(p) = &st.password {
                        return Err(err(
                            p.span(),
                            "store.password".into(),
                            format!(
                                "the etcd password is read only from the environment variable {}, never from the file",
                                crate::etcd_access::PASSWORD_ENV
                            ),
                        ));
                    }
                    let limits = match &st.max_txn_ops {
                        None => TxnLimits::default(),
                        Some(n) => match n.get_ref() {
                            toml::Value::Integer(i) => TxnLimits::new(*i),
                            other => Err(format!(
                                "max_txn_ops must be an integer between {} and {} (etcd's --max-txn-ops), got {other}",
                                crate::etcd_limits::MIN_MAX_TXN_OPS,
                                crate::etcd_limits::MAX_MAX_TXN_OPS
                            )),
                        }
                        .map_err(|m| err(n.span(), "store.max_txn_ops".into(), m))?,
                    };
                    let access = EtcdAccess {
                        ca: st.ca.map(|p| PathBuf::from(p.into_inner())),
                        cert: st.cert.map(|p| PathBuf::from(p.into_inner())),
                        key: st.key.map(|p| PathBuf::from(p.into_inner())),
                        user: st.user.map(Spanned::into_inner),
                        password: None,
                    };
                    match StoreConfig::etcd(
                        st.endpoints.map(Spanned::into_inner).unwrap_or_default(),
                        st.prefix.map(Spanned::into_inner),
                    )
                    .map_err(|m| err(span, field.into(), m))?
                    {
                        StoreConfig::Etcd {
                            endpoints, prefix, ..
                        } => StoreConfig::Etcd {
                            endpoints,
                            prefix,
                            access,
                            limits,
                        },
                        StoreConfig::Local => StoreConfig::Local,
                    }
                }
                Some(other) => {
                    let span = st.kind.as_ref().map_or(0..0, Spanned::span);
                    return Err(err(
                        span,
                        "store.kind".into(),
                        format!("{other:?} is not \"local\" or \"etcd\""),
                    ));
                }
            },
        };
        Ok(Config {
            server,
            store,
            maps,
        })
    }
}

/// Whether `p` is a syntactically valid JSON pointer (RFC 6901).
pub fn is_json_pointer(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    if !p.starts_with('/') {
        return false;
    }
    // `~` must be followed by 0 or 1.
    let b = p.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// Parses a duration such as `7d`, `90s`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("bad duration {s:?} ({e}); write e.g. \"7d\", \"12h\", \"90s\""))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

/// A configuration error naming file, line, column and field.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Dotted path of the field, when known.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "field `{}`: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Pulls the field name out of messages such as "unknown field `foo`, expected ...".
fn field_of(message: &str) -> String {
    for marker in ["unknown field `", "missing field `", "duplicate key `"] {
        if let Some(rest) = message.split(marker).nth(1)
            && let Some(end) = rest.find('`')
        {
            return rest[..end].to_string();
        }
    }
    String::new()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: Option<RawServer>,
    store: Option<RawStore>,
    #[serde(default)]
    maps: BTreeMap<Spanned<String>, RawMap>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Option<Spanned<String>>,
    endpoints: Option<Spanned<Vec<String>>>,
    prefix: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    /// Refused with a message: the password comes from the environment only.
    password: Option<Spanned<toml::Value>>,
    /// Checked by hand, so that a wrong type names the field and the range.
    max_txn_ops: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    max_body_bytes: Option<usize>,
    max_list_limit: Option<usize>,
    max_connections: Option<usize>,
    max_maps: Option<usize>,
    journal_capacity: Option<usize>,
    storage_cache_bytes: Option<usize>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    plan_ttl: Option<Spanned<String>>,
    watch_keepalive: Option<Spanned<String>>,
    header_read_timeout: Option<Spanned<String>>,
    checkpoint_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    retention: Option<Spanned<String>>,
    plan_ttl: Option<Spanned<String>>,
    delete_breaker: Option<Spanned<RawBreaker>>,
    #[serde(default)]
    deny_delete: Vec<RawDeny>,
    #[serde(default)]
    references: Vec<RawReference>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReference {
    name: Spanned<String>,
    pointer: Spanned<String>,
    to: Spanned<String>,
    on_delete: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    max_deletes: usize,
    per_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeny {
    name: Spanned<String>,
    pointer: Spanned<String>,
    equals: serde_json::Value,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
[maps.orders]
retention = "7d"
delete_breaker = { max_deletes = 100, per_seconds = 60 }

[[maps.orders.deny_delete]]
name = "archived"
pointer = "/status"
equals = "archived"
"#;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("safemap.toml"), t)
    }

    #[test]
    fn max_txn_ops_is_checked_and_sets_the_limits() {
        let etcd = "[store]\nkind = \"etcd\"\nendpoints = [\"http://e:2379\"]\n";
        let limits = |c: Config| match c.store {
            StoreConfig::Etcd { limits, .. } => limits,
            StoreConfig::Local => panic!("etcd store expected"),
        };
        assert_eq!(limits(parse(etcd).unwrap()), TxnLimits::default());
        let l = limits(parse(&format!("{etcd}max_txn_ops = 512\n")).unwrap());
        assert_eq!((l.max_txn_ops(), l.plan_keys()), (512, 484));
        for bad in ["31", "0", "-5", "1029", "100000000000"] {
            let e = parse(&format!("{etcd}max_txn_ops = {bad}\n")).unwrap_err();
            assert_eq!((e.field.as_str(), e.line), ("store.max_txn_ops", 4), "{e}");
            assert!(e.message.contains("between 32 and 1028"), "{e}");
            assert!(e.message.contains("--max-txn-ops"), "{e}");
        }
        for bad in ["\"512\"", "512.0", "true"] {
            let e = parse(&format!("{etcd}max_txn_ops = {bad}\n")).unwrap_err();
            assert_eq!((e.field.as_str(), e.line), ("store.max_txn_ops", 4), "{e}");
            assert!(e.message.contains("integer between 32 and 1028"), "{e}");
        }
        let e = parse("[store]\nmax_txn_ops = 512\n").unwrap_err();
        assert!(e.message.contains("only to kind"), "{e}");
    }

    #[test]
    fn store_section_is_checked() {
        assert_eq!(parse("").unwrap().store, StoreConfig::Local);
        let c =
            parse("[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n").unwrap();
        assert_eq!(
            c.store,
            StoreConfig::Etcd {
                endpoints: vec!["http://127.0.0.1:2379".into()],
                prefix: DEFAULT_ETCD_PREFIX.into(),
                access: EtcdAccess::default(),
                limits: TxnLimits::default(),
            }
        );
        let e = parse("[store]\nkind = \"etcd\"\nendpoints = [\"http://a:1\"]\nprefix = \"/x\"\n")
            .unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("store.prefix", 4));
        assert!(e.message.contains("must end with '/'"), "{e}");
        let e = parse("[store]\nkind = \"etcd\"\n").unwrap_err();
        assert!(e.message.contains("at least one endpoint"), "{e}");
        let e = parse("[store]\nkind = \"zookeeper\"\n").unwrap_err();
        assert_eq!(e.field, "store.kind");
        let e = parse("[store]\nprefix = \"/a/\"\n").unwrap_err();
        assert!(e.message.contains("only to kind"), "{e}");
        let e = parse("[store]\nuser = \"root\"\n").unwrap_err();
        assert!(e.message.contains("only to kind"), "{e}");
        // TLS files and the etcd user; the password never comes from the file.
        let c = parse(
            "[store]\nkind = \"etcd\"\nendpoints = [\"https://e:2379\"]\nca = \"/ca.pem\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nuser = \"u\"\n",
        )
        .unwrap();
        let StoreConfig::Etcd { access, .. } = c.store else {
            panic!("etcd store expected");
        };
        assert_eq!(access.ca.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(access.cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(access.key.as_deref(), Some(Path::new("/k.pem")));
        assert_eq!(
            (access.user.as_deref(), &access.password),
            (Some("u"), &None)
        );
        let e = parse(
            "[store]\nkind = \"etcd\"\nendpoints = [\"http://e:2379\"]\nuser = \"u\"\npassword = \"p\"\n",
        )
        .unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("store.password", 5));
        assert!(e.message.contains("SAFEMAP_ETCD_PASSWORD"), "{e}");
    }

    #[test]
    fn spec_example_parses() {
        let c = parse(GOOD).unwrap();
        let p = &c.maps["orders"];
        assert_eq!(p.retention, Duration::from_secs(7 * 86400));
        assert_eq!(p.breaker, Some((100, Duration::from_secs(60))));
        assert_eq!(p.deny[0].name, "archived");
        assert_eq!(p.deny[0].equals, serde_json::json!("archived"));
        assert_eq!(c.policy_for("other").retention, DEFAULT_RETENTION);
        assert!(parse("").unwrap().maps.is_empty());
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let e = parse("[maps.orders]\nretention = \"1d\"\nretension = \"2d\"\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("safemap.toml:3:"), "{s}");
        assert!(s.contains("retension"), "{s}");
    }

    #[test]
    fn bad_duration_and_pointer() {
        let e = parse("[maps.a]\n\nretention = \"7 fortnights\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (3, "maps.a.retention"));
        let e = parse("[[maps.a.deny_delete]]\nname = \"x\"\npointer = \"status\"\nequals = 1\n")
            .unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.field, "maps.a.deny_delete[0].pointer");
        let e = parse("[maps.Bad]\n").unwrap_err();
        assert_eq!(e.line, 1);
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parser_never_panics_and_errors_point_into_the_file(text in "[\\[\\]a-z_.=\"0-9 {},\n/~-]{0,120}") {
            match parse(&text) {
                Ok(_) => {}
                Err(e) => {
                    let lines = text.lines().count().max(1);
                    prop_assert!(e.line <= lines + 1, "{e} (text has {lines} lines)");
                    prop_assert!(e.to_string().starts_with("safemap.toml:"));
                }
            }
        }

        #[test]
        fn generated_policies_round_trip(
            name in "[a-z0-9][a-z0-9_-]{0,20}",
            days in 1u64..400,
            max in 1usize..10_000,
            per in 1u64..86_400,
            rule in "[a-z]{1,10}",
            pointer in "(/[a-z0-9]{1,6}){1,3}",
            equals in any::<i64>(),
        ) {
            let text = format!(
                "[maps.{name}]\nretention = \"{days}d\"\ndelete_breaker = {{ max_deletes = {max}, per_seconds = {per} }}\n\n[[maps.{name}.deny_delete]]\nname = \"{rule}\"\npointer = \"{pointer}\"\nequals = {equals}\n"
            );
            let c = parse(&text).unwrap();
            let p = &c.maps[&name];
            prop_assert_eq!(p.retention, Duration::from_secs(days * 86_400));
            prop_assert_eq!(p.breaker, Some((max, Duration::from_secs(per))));
            prop_assert_eq!(&p.deny[0].pointer, &pointer);
            prop_assert_eq!(&p.deny[0].equals, &serde_json::json!(equals));
        }
    }

    #[test]
    fn references_parse_and_bad_ones_name_line_field_and_value() {
        let good = "[maps.orders]\n[maps.items]\n[[maps.items.references]]\nname = \"order\"\npointer = \"/order_id\"\nto = \"orders\"\non_delete = \"cascade\"\n[[maps.items.references]]\nname = \"self\"\npointer = \"/up\"\nto = \"items\"\n";
        let c = parse(good).unwrap();
        let r = &c.maps["items"].references;
        assert_eq!(r[0].to, "orders");
        assert_eq!(r[0].on_delete, safemap::OnDelete::Cascade);
        assert_eq!(r[1].on_delete, safemap::OnDelete::Restrict);

        let base =
            "[maps.orders]\n[[maps.items.references]]\nname = \"order\"\npointer = \"/order_id\"\n";
        let e = parse(&format!("{base}to = \"shipments\"\n")).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (5, "maps.items.references[0].to")
        );
        assert!(e.to_string().contains("\"shipments\""), "{e}");
        let e = parse(&format!("{base}to = \"orders\"\non_delete = \"nullify\"\n")).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (6, "maps.items.references[0].on_delete")
        );
        assert!(e.to_string().contains("nullify"), "{e}");
        let e = parse(&format!(
            "{base}to = \"orders\"\n{}",
            base.replace("[maps.orders]\n", "").to_string() + "to = \"orders\"\n"
        ))
        .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (7, "maps.items.references[1].name")
        );
        let e = parse("[maps.orders]\n[[maps.items.references]]\nname = \"o\"\npointer = \"order_id\"\nto = \"orders\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (4, "maps.items.references[0].pointer")
        );
        assert!(e.to_string().contains("order_id"), "{e}");
    }

    #[test]
    fn pointers() {
        assert!(is_json_pointer(""));
        assert!(is_json_pointer("/a/~0b/~1c"));
        assert!(!is_json_pointer("a"));
        assert!(!is_json_pointer("/a~"));
        assert!(!is_json_pointer("/a~2"));
    }
}
