//! The shared state of a running server, one job per module: `recovery`
//! (rebuilding it at start), `persist` (records to storage), `maps` (the map
//! registry), `durable` (what a route waits for before answering), `plans`
//! (delete plans kept across restarts), `history` (audit pages and records
//! below the journal's in-memory window, read from redb) and `restore`
//! (restore from either).
//!
//! One `Journal<String, Value>` is shared by all maps, so there is one revision
//! counter and one sequence of audit ids for the whole server. The journal's
//! sink forwards every record to the storage writer (it only enqueues; it is
//! called under the library's write lock).

mod durable;
pub mod history;
mod maps;
mod persist;
mod plans;
mod recovery;
mod restore;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use safemap::{AuditRecord, Journal, SafeMap};
use serde_json::Value;

pub use durable::DurablePoint;
pub use persist::{from_stored, to_stored};
#[cfg(feature = "etcd")]
pub(crate) use plans::{pending_row, plan_nodes};
pub use store::{DeleteOutcome, MapWatcher, PutOutcome, Store, cluster_unsupported};

use crate::auth::{self, Role, Tokens};
use crate::config::Config;
use crate::error::ApiError;

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
    /// Where the data lives (local storage or etcd).
    pub store: Store,
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

impl Shared {
    /// Whether storage is healthy (local), or the replica has caught up with
    /// the revision read at start (etcd).
    pub fn ready(&self) -> bool {
        match &self.store {
            Store::Local(s) => !s.is_failed(),
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => c.ready(),
        }
    }

    /// Refuses writes while local storage is failed (503). In cluster mode
    /// etcd answers each write itself.
    pub fn check_writable(&self) -> Result<(), ApiError> {
        match &self.store {
            Store::Local(s) if s.is_failed() => Err(ApiError::storage_unavailable()),
            _ => Ok(()),
        }
    }

    /// On first start (no tokens at all): creates the `admin` token and writes it
    /// to `<data-dir>/admin.token` with mode 0600.
    pub async fn bootstrap_admin(&self) -> Result<Option<PathBuf>, String> {
        if !self.tokens.is_empty() {
            return Ok(None);
        }
        let token = auth::generate_token()?;
        let stored = auth::stored_token(auth::ADMIN_TOKEN_NAME, &[Role::Admin], &token);
        let path = self.data_dir.join("admin.token");
        let write =
            || write_secret(&path, &token).map_err(|e| format!("writing {}: {e}", path.display()));
        // The file first, so a crash between leaves a file for a token that
        // does not exist (the next start creates a new one), never a token
        // nobody holds. In a cluster, a server whose transaction lost (another
        // created the admin token first) removes its file again.
        write()?;
        if !self.save_admin(&stored).await? {
            if let Err(e) = std::fs::remove_file(&path) {
                return Err(format!("removing {}: {e}", path.display()));
            }
            return Ok(None);
        }
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
