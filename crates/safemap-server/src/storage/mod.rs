//! Durable storage: a write-ahead log with group commit as the durability
//! point, redb as the checkpoint the log is folded into in the background.
//!
//! The on-disk layout is described in `crates/safemap-server/STORAGE.md`.
//! In short: `<data-dir>/wal/` holds log segments of checksummed records
//! ([`wal`]); `<data-dir>/safemap.redb` holds seven tables, `entries`
//! ((map, key) → [`StoredEntry`] JSON), `audit` (audit id → [`StoredRecord`]
//! JSON), `plan_audit` ((plan id, audit id) → (), the index of planned
//! records), `audit_maps` (map → time of its newest record), `tokens`
//! (name → [`StoredToken`] JSON), `plans` (plan id → [`StoredPlan`] JSON)
//! and `meta` (name → u64:
//! `last_revision`, `last_audit_id`, `checkpoint_lsn`, `clean_shutdown`,
//! `format`). Threads: the log writer (`writer`) and the checkpointer
//! (`checkpoint`); recovery (`recovery`, then `readback`, bounded by the
//! journal's capacity and the breakers' windows) runs before both. Audit history
//! older than the journal in memory is read back by `history`.
//!
//! Visibility versus durability: the library makes a write visible to readers
//! the moment it is applied in memory; the record then travels to the writer
//! thread and is written with the next batch. A value may thus be readable
//! shortly before it is durable (as with Redis), but the HTTP layer never
//! acknowledges a write before [`Storage::wait_durable`] says it is on disk.

mod breakers;
mod checkpoint;
pub mod codec;
mod history;
mod readback;
mod recovery;
mod tables;
pub mod wal;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::Database;
use tokio::sync::{oneshot, watch};

pub use codec::{StoredEntry, StoredNode, StoredOp, StoredPlan, StoredRecord, StoredToken};
pub use history::{DiskPage, DiskQuery, FOLD_WAIT, FoldWait, ScanEnd};
pub use readback::Bounds;
pub use writer::{Msg, Persist, TokenOp, now_ms};

/// Default redb page cache (64 MiB; redb's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Default interval between folds of the log into redb.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Batches that may wait for the checkpointer before the log writer waits too.
const FOLD_QUEUE: usize = 1024;

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "safemap.redb";

/// Default number of audit records read back for the journal at start
/// (the default `server.journal_capacity`).
pub const DEFAULT_JOURNAL_CAPACITY: usize = 100_000;

/// Settings of the storage.
#[derive(Debug, Clone)]
pub struct Options {
    /// redb page cache in bytes.
    pub cache_bytes: usize,
    /// How often the log is folded into redb (also when 65 536 records wait).
    pub checkpoint_interval: Duration,
    /// A log segment is sealed, and a new one started, at this size.
    pub segment_bytes: u64,
    /// What recovery reads of the audit history: the newest
    /// `journal_capacity` records and the breakers' windows.
    pub recovery: Bounds,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_BYTES,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            segment_bytes: wal::SEGMENT_BYTES,
            recovery: Bounds {
                journal_capacity: DEFAULT_JOURNAL_CAPACITY,
                breakers: Vec::new(),
            },
        }
    }
}

/// What the log has made durable so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durable {
    /// Highest audit id on disk.
    pub audit_id: u64,
    /// Highest revision on disk.
    pub revision: u64,
    /// Highest audit id folded into redb: every record up to it is in the
    /// `audit` table (or was pruned past retention).
    pub folded_audit_id: u64,
    /// A fold failed: nothing more will be folded.
    pub fold_failed: bool,
    /// A write or a fold failed: nothing more will become durable.
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

/// The durable write failed; the write must not be acknowledged.
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
    /// The newest audit records within retention, at most
    /// `Options::recovery.journal_capacity` of them, in id order (older ones
    /// stay in redb).
    pub records: Vec<StoredRecord>,
    /// Times (ms since the epoch, newest first) of the single-key deletes
    /// inside each breaker's window, at most its `max_deletes`, by map.
    pub breaker_deletes: HashMap<String, Vec<u64>>,
    /// Maps with an audit record within retention (from `audit_maps`).
    pub audit_maps: Vec<String>,
    /// Plans whose row is not marked executed but whose deletes are stored.
    pub executed_plans: HashSet<String>,
    /// Audit rows examined at start (the journal's and the breakers').
    pub audit_rows_read: usize,
    /// Tokens.
    pub tokens: Vec<StoredToken>,
    /// Delete plans, pending or executed, whose rows are not yet forgotten.
    pub plans: Vec<StoredPlan>,
    /// Highest revision ever made durable (plus the skip after a crash).
    pub last_revision: u64,
    /// Highest audit id ever made durable.
    pub last_audit_id: u64,
    /// The previous process did not shut down cleanly.
    pub unclean: bool,
    /// redb had to repair the file (an interrupted commit was rolled back).
    pub repaired: bool,
    /// Log records past the checkpoint that were folded at start.
    pub log_records_replayed: usize,
    /// The torn tail dropped from the log, described (file, byte, reason).
    pub torn_tail: Option<String>,
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
    /// The database, for reads of history (the checkpointer writes it).
    /// Let go of when the threads stop, so the file is released as before.
    db: Mutex<Option<Arc<Database>>>,
    /// To the checkpointer, for `Fold::Want` only (the writer sends the rest).
    fold: std::sync::mpsc::SyncSender<checkpoint::Fold>,
    durable: watch::Receiver<Durable>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    fail_next: Arc<AtomicBool>,
}

impl Storage {
    /// Opens (or creates) the storage in `dir`, recovers it and starts its
    /// threads. Of the audit history only the newest rows and the breakers'
    /// windows are read back (`Options::recovery`, [`Bounds`]); rows older
    /// than `retention` are not loaded.
    pub fn open(dir: &Path, retention: Duration) -> Result<(Storage, Recovered), StorageError> {
        Self::open_with(dir, retention, Options::default())
    }

    /// As [`Storage::open`], with `options`.
    pub fn open_with(
        dir: &Path,
        retention: Duration,
        options: Options,
    ) -> Result<(Storage, Recovered), StorageError> {
        create_private_dir(dir, "the data directory")?;
        let path = dir.join(DB_FILE);
        let fresh = !path.exists();
        let repaired = Arc::new(AtomicBool::new(false));
        let flag = repaired.clone();
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .set_repair_callback(move |s| {
                // Relaxed: the flag is read after `create` returns, on this thread.
                if !flag.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "database was not closed cleanly; redb is repairing it (an interrupted commit, if any, is rolled back)"
                    );
                }
                let _ = s.progress();
            })
            .create(&path)
            .map_err(se("opening the database"))?;
        let db = Arc::new(db);
        let wal_dir = dir.join(wal::DIR);
        create_private_dir(&wal_dir, "the log directory")?;

        // Recovery: fold the log past the checkpoint into redb, skip revisions
        // after a crash, mark the database in use, then read the tables.
        let stored = recovery::read_meta(&db)?;
        let (logged, torn_tail) = recovery::read_log(&wal_dir, stored.meta.checkpoint_lsn)?;
        if let Some(t) = &torn_tail {
            tracing::warn!(
                "the log ends in a torn tail (an interrupted write, never acknowledged); recovered to the last good record: {t}"
            );
        }
        let unclean = !stored.clean_shutdown;
        let skip = if unclean {
            REVISION_SKIP_AFTER_CRASH
        } else {
            0
        };
        let meta = recovery::fold_and_mark_in_use(&db, &logged, stored.meta, skip, stored.format)?;
        let mut rec = readback::read_tables(&db, retention, &options.recovery)?;
        rec.fresh = fresh;
        // Relaxed: set (if at all) by redb's callback on this thread during `create`.
        rec.repaired = repaired.load(Ordering::Relaxed);
        rec.unclean = unclean;
        rec.log_records_replayed = logged.len();
        rec.torn_tail = torn_tail;
        if unclean && meta.last_revision > 0 {
            rec.skipped_revisions = skip;
        }
        drop(logged);

        // Everything in the log is in redb now: start an empty log after it.
        for (_, old) in wal::list_segments(&wal_dir)? {
            std::fs::remove_file(&old)
                .map_err(|e| StorageError(format!("removing {}: {e}", old.display())))?;
        }
        let file = wal::create_segment(&wal_dir, meta.checkpoint_lsn + 1)?;

        let state = Durable {
            audit_id: rec.last_audit_id,
            revision: rec.last_revision,
            // Recovery folded the whole log.
            folded_audit_id: meta.last_audit_id,
            fold_failed: false,
            failed: false,
        };
        let (dtx, drx) = watch::channel(state);
        let dtx = Arc::new(dtx);
        let (fold_tx, fold_rx) = std::sync::mpsc::sync_channel(FOLD_QUEUE);
        let checkpointer = checkpoint::Checkpointer {
            db: db.clone(),
            rx: fold_rx,
            durable: dtx.clone(),
            meta,
            interval: options.checkpoint_interval,
            retention,
        };
        let checkpointer = std::thread::Builder::new()
            .name("safemap-checkpoint".into())
            .spawn(move || checkpointer.run())
            .map_err(se("starting the checkpointer thread"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let fail_next = Arc::new(AtomicBool::new(false));
        let w = writer::Writer {
            rx,
            durable: dtx,
            segment: writer::Segment {
                path: wal::segment_path(&wal_dir, meta.checkpoint_lsn + 1),
                dir: wal_dir,
                file,
                len: wal::MAGIC.len() as u64,
                max_len: options.segment_bytes,
            },
            next_lsn: meta.checkpoint_lsn + 1,
            fold: fold_tx.clone(),
            checkpointer,
            fail_next: fail_next.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("safemap-storage".into())
            .spawn(move || w.run())
            .map_err(se("starting the writer thread"))?;
        Ok((
            Storage {
                inner: Arc::new(Inner {
                    tx,
                    db: Mutex::new(Some(db)),
                    fold: fold_tx,
                    durable: drx,
                    thread: Mutex::new(Some(thread)),
                    path,
                    fail_next,
                }),
            },
            rec,
        ))
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

    /// Whether the storage failed (writes are refused), or is gone.
    pub fn is_failed(&self) -> bool {
        self.inner.durable.borrow().failed || self.inner.durable.has_changed().is_err()
    }

    /// Applies a token change durably.
    pub async fn token(&self, op: TokenOp) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.send_acked(Msg::Token(op, tx), rx).await
    }

    /// Writes a delete plan's row (created or executed) durably. Queued after
    /// every record already sent, so it is durable only once they are too.
    pub async fn plan(&self, plan: StoredPlan) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.send_acked(Msg::Plan(plan, tx), rx).await
    }

    async fn send_acked(
        &self,
        msg: Msg,
        rx: oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), String> {
        self.inner
            .tx
            .send(msg)
            .map_err(|_| "storage is shut down".to_string())?;
        rx.await.map_err(|_| "storage writer stopped".to_string())?
    }

    /// Fault injection for tests: the next durable write fails as an fsync
    /// error would, which puts the storage in the failed state for good.
    #[doc(hidden)]
    pub fn inject_commit_failure(&self) {
        // Release pairs with the writer's AcqRel swap: the flag is seen by
        // the next batch the writer takes after this call.
        self.inner.fail_next.store(true, Ordering::Release);
    }

    /// Stops as a crash right after the last durable write would (tests of
    /// recovery): nothing more is folded, the shutdown is not marked clean.
    /// Blocks until the threads have finished.
    #[doc(hidden)]
    pub fn halt_as_crash(&self) {
        let _ = self.inner.tx.send(Msg::Halt);
        self.join();
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes what is queued, folds the log into redb, marks a clean
    /// shutdown and stops both threads. Blocks until they have finished.
    pub fn close(&self) {
        let _ = self.inner.tx.send(Msg::Shutdown);
        self.join();
    }

    fn join(&self) {
        let handle = self
            .inner
            .thread
            .lock()
            .map(|mut g| g.take())
            .unwrap_or(None);
        if let Some(h) = handle {
            let _ = h.join();
        }
        if let Ok(mut db) = self.inner.db.lock() {
            *db = None;
        }
    }

    /// The database for a read, unless the storage was closed.
    fn reader(&self) -> Result<Arc<Database>, StorageError> {
        self.inner
            .db
            .lock()
            .ok()
            .and_then(|db| db.clone())
            .ok_or_else(|| StorageError("the storage is closed".into()))
    }
}

/// Creates `dir` (mode 0700: private to the server's user) if it is missing.
fn create_private_dir(dir: &Path, what: &str) -> Result<(), StorageError> {
    if dir.exists() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StorageError(format!("creating {what} {}: {e}", dir.display())))
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
mod plan_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn plan(id: &str, expires_at_ms: u64, executed: bool) -> StoredPlan {
        StoredPlan {
            id: id.into(),
            map: "orders".into(),
            keys: if executed {
                vec![]
            } else {
                vec![("o-1".into(), 7), ("o-2".into(), 9)]
            },
            expires_at_ms,
            executed,
            tree: Vec::new(),
        }
    }

    #[tokio::test]
    async fn plans_outlive_a_crash_and_are_forgotten_a_day_after_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let week = Duration::from_secs(7 * 86400);
        let (s, _) = Storage::open(dir.path(), week).unwrap();
        let later = now_ms() + 3_600_000;
        s.plan(plan("00000000000000a1", later, false))
            .await
            .unwrap();
        s.plan(plan("00000000000000a2", later, false))
            .await
            .unwrap();
        s.plan(plan("00000000000000a2", now_ms(), true))
            .await
            .unwrap();
        let long_ago = now_ms() - codec::PLAN_ROW_KEPT_MS - 1000;
        s.plan(plan("00000000000000a3", long_ago, false))
            .await
            .unwrap();
        // Acknowledged rows are in the log; the crash leaves them to recovery.
        s.halt_as_crash();
        drop(s);
        let (s, r) = Storage::open(dir.path(), week).unwrap();
        let mut plans = r.plans;
        plans.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(
            plans,
            vec![
                plan("00000000000000a1", later, false),
                StoredPlan {
                    expires_at_ms: plans[1].expires_at_ms,
                    ..plan("00000000000000a2", 0, true)
                },
            ]
        );
        // And from redb after a clean shutdown.
        s.close();
        drop(s);
        let (_s, r) = Storage::open(dir.path(), week).unwrap();
        assert_eq!(r.plans.len(), 2);
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
