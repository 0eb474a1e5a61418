//! Durable storage: one redb file, one writer thread with group commit, recovery on start.
//!
//! The on-disk layout is described in `crates/safemap-server/STORAGE.md`.
//! In short: `<data-dir>/safemap.redb` holds four tables,
//! `entries` ((map, key) → [`StoredEntry`] JSON), `audit` (audit id → [`StoredRecord`] JSON),
//! `tokens` (name → [`StoredToken`] JSON) and `meta` (name → u64:
//! `last_revision`, `last_audit_id`, `clean_shutdown`, `format`).
//!
//! Visibility versus durability: the library makes a write visible to readers
//! the moment it is applied in memory; the record then travels to the writer
//! thread and is committed with the next batch. A value may thus be readable
//! shortly before it is durable (as with Redis), but the HTTP layer never
//! acknowledges a write before [`Storage::wait_durable`] says it is on disk.

pub mod codec;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{oneshot, watch};

pub use codec::{StoredEntry, StoredOp, StoredRecord, StoredToken};
pub use writer::{Msg, Persist, TokenOp, now_ms};

pub(crate) const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("entries");
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Default redb page cache (64 MiB; redb's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "safemap.redb";

/// What the writer has made durable so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durable {
    /// Highest audit id on disk.
    pub audit_id: u64,
    /// Highest revision on disk.
    pub revision: u64,
    /// A commit failed: nothing more will become durable.
    pub failed: bool,
}

/// What a durable wait waits for.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The record with this audit id (and all before it).
    AuditId(u64),
    /// Every record up to this revision.
    Revision(u64),
}

/// The durable commit failed; the write must not be acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct StorageUnavailable;

/// Errors opening the storage.
#[derive(Debug)]
pub struct StorageError(pub String);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for StorageError {}

fn se<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StorageError {
    move |e| StorageError(format!("{what}: {e}"))
}

/// Everything read back at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Live entries: (map, key, entry).
    pub entries: Vec<(String, String, StoredEntry)>,
    /// Audit records within retention, in id order.
    pub records: Vec<StoredRecord>,
    /// Tokens.
    pub tokens: Vec<StoredToken>,
    /// Highest revision ever made durable.
    pub last_revision: u64,
    /// Highest audit id ever made durable.
    pub last_audit_id: u64,
    /// The previous process did not shut down cleanly.
    pub unclean: bool,
    /// redb had to repair the file (an interrupted commit was rolled back).
    pub repaired: bool,
    /// Rows that could not be decoded and were skipped (logged one by one).
    pub skipped_rows: usize,
    /// The data directory was new (no database file existed).
    pub fresh: bool,
    /// Revisions skipped because the previous process died (already added to
    /// `last_revision`, and made durable before serving).
    pub skipped_revisions: u64,
}

/// How far the revision counter jumps after an unclean shutdown: more than
/// the revisions that can be in flight (assigned and visible to readers, not
/// yet durable) at a crash. 2^24 leaves 2^29 crashes before revisions pass
/// 2^53, the largest integer a JavaScript client reads exactly. The jump is
/// written to `meta` before serving, so a second crash before any new commit
/// jumps again from there.
pub const REVISION_SKIP_AFTER_CRASH: u64 = 1 << 24;

/// Handle to the storage; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Sender<Msg>,
    durable: watch::Receiver<Durable>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    fail_next: Arc<std::sync::atomic::AtomicBool>,
}

impl Storage {
    /// Opens (or creates) the database in `dir`, recovers it and starts the writer.
    /// Audit rows older than `retention` are not loaded.
    pub fn open(dir: &Path, retention: Duration) -> Result<(Storage, Recovered), StorageError> {
        Self::open_with(dir, retention, DEFAULT_CACHE_BYTES)
    }

    /// As [`Storage::open`], with a page cache of `cache_bytes`.
    pub fn open_with(
        dir: &Path,
        retention: Duration,
        cache_bytes: usize,
    ) -> Result<(Storage, Recovered), StorageError> {
        if !dir.exists() {
            // A new data directory is private to the server's user (0700).
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(se("creating the data directory"))?;
        }
        let path = dir.join(DB_FILE);
        let fresh = !path.exists();
        let repaired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = repaired.clone();
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .set_repair_callback(move |s| {
                if !flag.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        "database was not closed cleanly; redb is repairing it (an interrupted commit, if any, is rolled back)"
                    );
                }
                let _ = s.progress();
            })
            .create(&path)
            .map_err(se("opening the database"))?;
        let db = Arc::new(db);
        let mut rec = Self::recover(&db, retention)?;
        rec.fresh = fresh;
        rec.repaired = repaired.load(std::sync::atomic::Ordering::Relaxed);
        if rec.unclean && rec.last_revision > 0 {
            rec.skipped_revisions = REVISION_SKIP_AFTER_CRASH;
            rec.last_revision += REVISION_SKIP_AFTER_CRASH;
        }
        let state = Durable {
            audit_id: rec.last_audit_id,
            revision: rec.last_revision,
            failed: false,
        };
        // Mark the database as in use (clean_shutdown = 0) before serving.
        {
            let txn = db.begin_write().map_err(se("starting"))?;
            txn.open_table(ENTRIES).map_err(se("creating tables"))?;
            txn.open_table(AUDIT).map_err(se("creating tables"))?;
            txn.open_table(TOKENS).map_err(se("creating tables"))?;
            writer::write_meta(&txn, &state, false).map_err(se("writing meta"))?;
            txn.commit().map_err(se("committing"))?;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (dtx, drx) = watch::channel(state);
        let fail_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w = writer::Writer {
            fail_next: fail_next.clone(),
            db,
            rx,
            durable: dtx,
            retention,
            state,
        };
        let thread = std::thread::Builder::new()
            .name("safemap-storage".into())
            .spawn(move || w.run())
            .map_err(se("starting the writer thread"))?;
        Ok((
            Storage {
                inner: Arc::new(Inner {
                    tx,
                    durable: drx,
                    thread: Mutex::new(Some(thread)),
                    path,
                    fail_next,
                }),
            },
            rec,
        ))
    }

    fn recover(db: &Database, retention: Duration) -> Result<Recovered, StorageError> {
        let mut rec = Recovered::default();
        let txn = db.begin_read().map_err(se("reading"))?;
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        let mut max_rev = 0u64;
        let mut max_id = 0u64;
        match txn.open_table(META) {
            Ok(meta) => {
                let get = |k: &str| -> Result<Option<u64>, StorageError> {
                    Ok(meta.get(k).map_err(se("reading meta"))?.map(|v| v.value()))
                };
                max_rev = get("last_revision")?.unwrap_or(0);
                max_id = get("last_audit_id")?.unwrap_or(0);
                rec.unclean = get("clean_shutdown")? == Some(0);
                if let Some(f) = get("format")?
                    && f > codec::FORMAT_VERSION
                {
                    return Err(StorageError(format!(
                        "the database was written by a newer safemap (format {f}, this one reads {})",
                        codec::FORMAT_VERSION
                    )));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(se("opening meta")(e)),
        }
        match txn.open_table(ENTRIES) {
            Ok(t) => {
                for row in t.iter().map_err(se("reading entries"))? {
                    let (k, v) = row.map_err(se("reading entries"))?;
                    let (map, key) = k.value();
                    match codec::decode::<StoredEntry>(v.value()) {
                        Ok(e) => {
                            max_rev = max_rev.max(e.revision);
                            rec.entries.push((map.to_string(), key.to_string(), e));
                        }
                        Err(why) => {
                            rec.skipped_rows += 1;
                            tracing::error!(map, key, %why, "skipping an unreadable entry row");
                        }
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(se("opening entries")(e)),
        }
        match txn.open_table(AUDIT) {
            Ok(t) => {
                for row in t.iter().map_err(se("reading audit"))? {
                    let (k, v) = row.map_err(se("reading audit"))?;
                    let id = k.value();
                    max_id = max_id.max(id);
                    match codec::decode::<StoredRecord>(v.value()) {
                        Ok(r) => {
                            max_rev = max_rev.max(r.revision);
                            if r.at_ms >= cutoff {
                                rec.records.push(r);
                            }
                        }
                        Err(why) => {
                            rec.skipped_rows += 1;
                            tracing::error!(id, %why, "skipping an unreadable audit row");
                        }
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(se("opening audit")(e)),
        }
        match txn.open_table(TOKENS) {
            Ok(t) => {
                for row in t.iter().map_err(se("reading tokens"))? {
                    let (k, v) = row.map_err(se("reading tokens"))?;
                    match codec::decode::<StoredToken>(v.value()) {
                        Ok(tok) => rec.tokens.push(tok),
                        Err(why) => {
                            rec.skipped_rows += 1;
                            tracing::error!(name = k.value(), %why, "skipping an unreadable token row");
                        }
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(se("opening tokens")(e)),
        }
        rec.last_revision = max_rev;
        rec.last_audit_id = max_id;
        Ok(rec)
    }

    /// Queues an audit record for the next group commit. Never blocks.
    pub fn enqueue(&self, record: Box<dyn Persist>) {
        // A send fails only after shutdown; the write is then simply not acknowledged.
        let _ = self.inner.tx.send(Msg::Record(record));
    }

    /// A sender for the journal sink.
    pub fn sender(&self) -> Sender<Msg> {
        self.inner.tx.clone()
    }

    /// Waits until `target` is durable. Err if the storage failed first.
    pub async fn wait_durable(&self, target: Target) -> Result<(), StorageUnavailable> {
        let mut rx = self.inner.durable.clone();
        let reached = |d: &Durable| match target {
            Target::AuditId(id) => d.audit_id >= id,
            Target::Revision(r) => d.revision >= r,
        };
        match rx.wait_for(|d| d.failed || reached(d)).await {
            Ok(d) if reached(&d) => Ok(()),
            _ => Err(StorageUnavailable),
        }
    }

    /// Current durable state.
    pub fn durable(&self) -> Durable {
        *self.inner.durable.borrow()
    }

    /// Whether the writer failed (writes are refused), or is gone.
    pub fn is_failed(&self) -> bool {
        self.inner.durable.borrow().failed || self.inner.durable.has_changed().is_err()
    }

    /// Applies a token change durably.
    pub async fn token(&self, op: TokenOp) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Token(op, tx))
            .map_err(|_| "storage is shut down".to_string())?;
        rx.await.map_err(|_| "storage writer stopped".to_string())?
    }

    /// Fault injection for tests: the next durable commit fails as an fsync
    /// error would, which puts the storage in the failed state for good.
    #[doc(hidden)]
    pub fn inject_commit_failure(&self) {
        self.inner
            .fail_next
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Commits what is queued, marks a clean shutdown and stops the writer.
    /// Blocks until the writer thread has finished.
    pub fn close(&self) {
        let _ = self.inner.tx.send(Msg::Shutdown);
        let handle = self
            .inner
            .thread
            .lock()
            .map(|mut g| g.take())
            .unwrap_or(None);
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn rec(id: u64, key: &str, op: StoredOp, value: Option<serde_json::Value>) -> StoredRecord {
        StoredRecord {
            id,
            at_ms: now_ms(),
            map: "m".into(),
            key: key.into(),
            op,
            revision: id + 10,
            previous_revision: None,
            create_revision: id + 10,
            version: 1,
            reason: None,
            actor: Some("admin".into()),
            trace_id: None,
            plan_id: None,
            value,
            previous_value: None,
        }
    }

    #[tokio::test]
    async fn records_are_durable_and_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let week = Duration::from_secs(7 * 86400);
        let (s, r) = Storage::open(dir.path(), week).unwrap();
        assert!(r.fresh && r.entries.is_empty());
        s.enqueue(Box::new(rec(1, "a", StoredOp::Put, Some(json!(1)))));
        s.enqueue(Box::new(rec(2, "b", StoredOp::Put, Some(json!(2)))));
        s.enqueue(Box::new(rec(3, "a", StoredOp::Delete, None)));
        s.wait_durable(Target::AuditId(3)).await.unwrap();
        s.wait_durable(Target::Revision(13)).await.unwrap();
        s.token(TokenOp::Put(StoredToken {
            name: "admin".into(),
            roles: vec!["admin".into()],
            sha256: "00".repeat(32),
        }))
        .await
        .unwrap();
        s.close();
        drop(s);
        let (s, r) = Storage::open(dir.path(), week).unwrap();
        assert!(!r.unclean && !r.fresh);
        assert_eq!(r.last_audit_id, 3);
        assert_eq!(r.last_revision, 13);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.entries[0].1, "b");
        assert_eq!(r.records.len(), 3);
        assert_eq!(r.tokens.len(), 1);
        drop(s); // not closed: the next open reports an unclean shutdown
        let r = loop {
            // The writer thread lets go of the file once its channel is closed.
            match Storage::open(dir.path(), week) {
                Ok((_s, r)) => break r,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        assert!(r.unclean);
        assert_eq!(r.last_revision, 13 + REVISION_SKIP_AFTER_CRASH);
        // A second crash before any new commit jumps again from the first jump.
        let r = loop {
            match Storage::open(dir.path(), week) {
                Ok((_s, r)) => break r,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        assert_eq!(r.last_revision, 13 + 2 * REVISION_SKIP_AFTER_CRASH);
    }
}

#[cfg(test)]
mod failure_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_failed_commit_is_never_acknowledged_and_sticks() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Storage::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let rec = |id: u64| StoredRecord {
            id,
            at_ms: now_ms(),
            map: "m".into(),
            key: format!("k{id}"),
            op: StoredOp::Put,
            revision: id,
            previous_revision: None,
            create_revision: id,
            version: 1,
            reason: None,
            actor: None,
            trace_id: None,
            plan_id: None,
            value: Some(serde_json::json!(id)),
            previous_value: None,
        };
        s.enqueue(Box::new(rec(1)));
        s.wait_durable(Target::AuditId(1)).await.unwrap();
        s.inject_commit_failure();
        s.enqueue(Box::new(rec(2)));
        assert!(s.wait_durable(Target::AuditId(2)).await.is_err());
        assert!(s.is_failed());
        // Later writes are refused too, and nothing after the failure lands on disk.
        s.enqueue(Box::new(rec(3)));
        assert!(s.wait_durable(Target::AuditId(3)).await.is_err());
        s.close();
        drop(s);
        let (_s, r) = Storage::open(dir.path(), Duration::from_secs(3600)).unwrap();
        assert_eq!(r.last_audit_id, 1);
        assert_eq!(r.entries.len(), 1);
    }
}
