//! The shared state of a running server and its recovery at start.
//!
//! One `Journal<String, Value>` is shared by all maps, so there is one revision
//! counter and one sequence of audit ids for the whole server. The journal's
//! sink forwards every record to the storage writer (it only enqueues; it is
//! called under the library's write lock).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use safemap::{AuditId, AuditRecord, Journal, JournalSink, Op, PlanId, Revision, SafeMap};
use serde_json::Value;

use crate::auth::{self, Role, Tokens};
use crate::config::{Config, MapPolicy};
use crate::error::ApiError;
use crate::storage::{
    Msg, Options as StorageOptions, Persist, Recovered, Storage, StorageError, StoredOp,
    StoredRecord, TokenOp,
};

/// The map type the server serves.
pub type Map = SafeMap<String, Value>;
/// The audit record type the server stores.
pub type Record = AuditRecord<String, Value>;

/// Shared state of the server.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// The journal shared by all maps.
    pub journal: Journal<String, Value>,
    /// Maps by name.
    pub maps: RwLock<HashMap<String, Arc<Map>>>,
    /// Durable storage.
    pub storage: Storage,
    /// Tokens.
    pub tokens: Tokens,
    /// Serialises token changes.
    pub token_admin: tokio::sync::Mutex<()>,
    /// Whether the listener is on a loopback address (then /metrics needs no token).
    pub loopback: bool,
    /// Flips to true when the server shuts down (ends watch streams).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Only one CPU profile at a time.
    pub profiling: AtomicBool,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Revisions below this were written before the last start and are not
    /// held by the journal (0: nothing is missing). Watches from before it get
    /// 410 `compacted`; evictions after the start are the journal's own business.
    pub history_floor: u64,
}

/// Cheap handle to the shared state.
pub type AppState = Arc<Shared>;

struct StorageSink(std::sync::mpsc::Sender<Msg>);

struct RecordRef(Arc<Record>);

impl Persist for RecordRef {
    fn to_stored(&self) -> StoredRecord {
        to_stored(&self.0)
    }
}

impl JournalSink<String, Value> for StorageSink {
    fn append(&self, record: &Arc<Record>) {
        // Only enqueue: this runs under the library's write lock.
        let _ = self
            .0
            .send(Msg::Record(Box::new(RecordRef(Arc::clone(record)))));
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The stored form of a journal record.
pub fn to_stored(r: &Record) -> StoredRecord {
    StoredRecord {
        id: r.id.get(),
        at_ms: ms(r.at),
        map: r.map.to_string(),
        key: r.key.clone(),
        op: match r.op {
            Op::Put => StoredOp::Put,
            Op::Delete => StoredOp::Delete,
            Op::Restore => StoredOp::Restore,
        },
        revision: r.revision.get(),
        previous_revision: r.previous_revision.map(Revision::get),
        create_revision: r.create_revision.get(),
        version: r.version,
        reason: r.reason.clone(),
        actor: r.actor.clone(),
        trace_id: r.trace_id.clone(),
        plan_id: r.plan_id.map(|p| p.to_string()),
        value: r.value.clone(),
        previous_value: r.previous_value.clone(),
    }
}

/// The journal form of a stored record.
pub fn from_stored(r: StoredRecord) -> Record {
    AuditRecord {
        id: AuditId::new(r.id),
        at: UNIX_EPOCH + Duration::from_millis(r.at_ms),
        map: Arc::from(r.map.as_str()),
        key: r.key,
        op: match r.op {
            StoredOp::Put => Op::Put,
            StoredOp::Delete => Op::Delete,
            StoredOp::Restore => Op::Restore,
        },
        revision: Revision::new(r.revision),
        previous_revision: r.previous_revision.map(Revision::new),
        create_revision: Revision::new(r.create_revision),
        version: r.version,
        reason: r.reason,
        actor: r.actor,
        trace_id: r.trace_id,
        plan_id: r.plan_id.and_then(|p| p.parse::<PlanId>().ok()),
        value: r.value,
        previous_value: r.previous_value,
    }
}

impl Shared {
    /// Opens storage in `data_dir`, recovers maps, journal, breakers and tokens.
    pub fn open(
        data_dir: &Path,
        config: Config,
        loopback: bool,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Shared, StorageError> {
        let retention = config.max_retention();
        let options = StorageOptions {
            cache_bytes: config.server.storage_cache_bytes,
            checkpoint_interval: config.server.checkpoint_interval,
            ..StorageOptions::default()
        };
        let (storage, rec) = Storage::open_with(data_dir, retention, options)?;
        log_recovery(&rec, &storage);
        let Recovered {
            entries,
            records,
            tokens,
            last_revision,
            last_audit_id,
            skipped_revisions: skip,
            ..
        } = rec;
        // Writes in flight at a crash were visible to readers (GET, list) for a
        // moment before they were durable. So that no client ever sees one
        // revision number stand for two different writes, storage has moved the
        // counter (`last_revision`) over every revision such a write could have had.
        if skip > 0 {
            tracing::warn!(
                from = last_revision - skip + 1,
                to = last_revision,
                "skipping revisions after an unclean shutdown (writes in flight at the crash may have been read)"
            );
        }
        let sink = Arc::new(StorageSink(storage.sender()));
        let newest_loaded = records.last().map(|r| r.id);
        let builder = Journal::builder()
            .retention(retention)
            .capacity(config.server.journal_capacity)
            .sink(sink as Arc<dyn JournalSink<String, Value>>);
        // The journal ignores loaded records at or below its start, so start it just
        // below the first record held, unless the newest records are not held at all.
        let (journal, history_floor) = match (records.first(), newest_loaded) {
            (Some(first), Some(newest)) if newest == last_audit_id => (
                builder
                    .start_after(
                        Revision::new(if skip > 0 {
                            last_revision
                        } else {
                            first.revision.saturating_sub(1)
                        }),
                        AuditId::new(first.id.saturating_sub(1)),
                    )
                    .build(),
                if first.id <= 1 { 0 } else { first.revision },
            ),
            _ => (
                builder
                    .start_after(Revision::new(last_revision), AuditId::new(last_audit_id))
                    .build(),
                if last_revision == 0 {
                    0
                } else {
                    last_revision + 1
                },
            ),
        };
        let mut map_names: BTreeSet<String> = config.maps.keys().cloned().collect();
        map_names.extend(entries.iter().map(|(m, _, _)| m.clone()));
        map_names.extend(records.iter().map(|r| r.map.clone()));
        let mut breaker_seeds: HashMap<String, Vec<SystemTime>> = HashMap::new();
        for r in &records {
            if r.op == StoredOp::Delete && r.plan_id.is_none() {
                breaker_seeds
                    .entry(r.map.clone())
                    .or_default()
                    .push(UNIX_EPOCH + Duration::from_millis(r.at_ms));
            }
        }
        let loaded = journal.load(records.into_iter().map(from_stored));
        if journal.current_revision().get() < last_revision {
            tracing::warn!(
                journal = journal.current_revision().get(),
                stored = last_revision,
                "journal revision below the stored counter"
            );
        }
        let shared = Shared {
            config,
            journal,
            maps: RwLock::new(HashMap::new()),
            storage,
            tokens: Tokens::from_stored(&tokens),
            token_admin: tokio::sync::Mutex::new(()),
            loopback,
            shutdown,
            profiling: AtomicBool::new(false),
            data_dir: data_dir.to_path_buf(),
            history_floor,
        };
        {
            let mut maps = shared.maps.write().unwrap_or_else(|e| e.into_inner());
            for name in &map_names {
                maps.insert(name.clone(), Arc::new(shared.build_map(name)));
            }
            let n_entries = entries.len();
            for (map, key, e) in entries {
                if let Some(m) = maps.get(&map) {
                    m.load_entry(
                        key,
                        e.value,
                        Revision::new(e.revision),
                        Revision::new(e.create_revision),
                        e.version,
                    );
                }
            }
            for (map, times) in breaker_seeds {
                if let Some(m) = maps.get(&map) {
                    m.seed_breaker(times);
                }
            }
            tracing::info!(
                maps = maps.len(),
                entries = n_entries,
                audit_records = loaded,
                revision = shared.journal.current_revision().get(),
                "storage recovered"
            );
        }
        Ok(shared)
    }

    /// Builds a map with its policy (configured or default) over the shared journal.
    fn build_map(&self, name: &str) -> Map {
        let MapPolicy {
            retention,
            breaker,
            deny,
            plan_ttl,
        } = self.config.policy_for(name);
        let mut b = SafeMap::builder()
            .name(name)
            .journal(self.journal.clone())
            .retain_deleted_for(retention)
            .plan_ttl(plan_ttl);
        if let Some((max, window)) = breaker {
            b = b.delete_breaker(max, window);
        }
        for rule in deny {
            let pointer = rule.pointer;
            let equals = rule.equals;
            b = b.deny_delete(rule.name, move |_k: &String, v: &Value| {
                v.pointer(&pointer) == Some(&equals)
            });
        }
        b.build()
    }

    /// The map, if it exists.
    pub fn map(&self, name: &str) -> Option<Arc<Map>> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        maps.get(name).cloned()
    }

    /// The map, created with its policy if absent (bounded by `max_maps`).
    pub fn map_or_create(&self, name: &str) -> Result<Arc<Map>, ApiError> {
        if let Some(m) = self.map(name) {
            return Ok(m);
        }
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = maps.get(name) {
            return Ok(Arc::clone(m));
        }
        if maps.len() >= self.config.server.max_maps {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "too_many_maps",
                format!(
                    "the server holds its limit of {} maps (server.max_maps)",
                    self.config.server.max_maps
                ),
            ));
        }
        let m = Arc::new(self.build_map(name));
        maps.insert(name.to_string(), Arc::clone(&m));
        Ok(m)
    }

    /// All maps, sorted by name.
    pub fn all_maps(&self) -> Vec<(String, Arc<Map>)> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = maps
            .iter()
            .map(|(k, m)| (k.clone(), Arc::clone(m)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Whether storage is healthy.
    pub fn ready(&self) -> bool {
        !self.storage.is_failed()
    }

    /// Refuses writes while storage is failed (503).
    pub fn check_writable(&self) -> Result<(), ApiError> {
        if self.storage.is_failed() {
            return Err(ApiError::storage_unavailable());
        }
        Ok(())
    }

    /// Waits until `target` is durable, or answers 503.
    pub async fn durable(&self, target: crate::storage::Target) -> Result<(), ApiError> {
        self.storage
            .wait_durable(target)
            .await
            .map_err(|_| ApiError::storage_unavailable())
    }

    /// On first start (no tokens at all): creates the `admin` token and writes it
    /// to `<data-dir>/admin.token` with mode 0600.
    pub async fn bootstrap_admin(&self) -> Result<Option<PathBuf>, String> {
        if !self.tokens.is_empty() {
            return Ok(None);
        }
        let token = auth::generate_token()?;
        let path = self.data_dir.join("admin.token");
        write_secret(&path, &token).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let stored = auth::stored_token(auth::ADMIN_TOKEN_NAME, &[Role::Admin], &token);
        self.storage.token(TokenOp::Put(stored.clone())).await?;
        self.tokens.insert(&stored);
        Ok(Some(path))
    }

    /// Whether a profile is running; sets the flag if not.
    pub fn start_profile(&self) -> bool {
        !self.profiling.swap(true, Ordering::AcqRel)
    }

    /// Clears the profiling flag.
    pub fn end_profile(&self) {
        self.profiling.store(false, Ordering::Release);
    }
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode of an existing file is not changed by open: set it explicitly.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(f, "{secret}")?;
    f.sync_all()
}

fn log_recovery(rec: &Recovered, storage: &Storage) {
    let path = storage.path().display().to_string();
    if rec.fresh {
        tracing::info!(%path, "created a new database");
        return;
    }
    if rec.unclean || rec.repaired {
        tracing::warn!(
            %path,
            repaired = rec.repaired,
            last_revision = rec.last_revision,
            last_audit_id = rec.last_audit_id,
            "recovering after an unclean shutdown: the last committed transaction is kept, an interrupted one (torn tail) is rolled back"
        );
    }
    if rec.skipped_rows > 0 {
        tracing::error!(
            rows = rec.skipped_rows,
            "skipped unreadable rows during recovery"
        );
    }
}
