//! The log writer thread: group commit into the write-ahead log.
//!
//! Every durable change reaches this thread through one unbounded channel:
//! audit records (sent by the journal sink under the library's write lock, so
//! in audit-id order), token changes and delete plans. The thread blocks for the first
//! message, drains whatever else is queued (at most [`MAX_BATCH`] messages),
//! frames all of it into one buffer, writes it with ONE `write` and makes it
//! durable with ONE `fdatasync`, and only then publishes the highest durable
//! audit id and revision on a `tokio::sync::watch`. Handlers wait on that
//! watch before they answer 2xx, so concurrent writers share fsyncs and
//! nothing is acknowledged before it is on disk. The batch then goes to the
//! checkpointer, which folds it into redb in the background.
//!
//! If a write or sync fails, the writer publishes `failed = true`, logs the
//! error and stops writing: readiness turns 503 and every write is answered
//! 503 `storage_unavailable` until the process is restarted.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{oneshot, watch};

use super::checkpoint::Fold;
use super::codec::{StoredPlan, StoredRecord, StoredToken};
use super::tables::Logged;
use super::wal::{self, Entry, frame};
use super::{Durable, StorageError};

/// Most messages written in one batch.
pub const MAX_BATCH: usize = 8192;

/// Something that becomes an audit row. Conversion happens on the writer
/// thread, outside the library's write lock.
pub trait Persist: Send + 'static {
    /// The row to store.
    fn to_stored(&self) -> StoredRecord;
}

impl Persist for StoredRecord {
    fn to_stored(&self) -> StoredRecord {
        self.clone()
    }
}

/// A change to the tokens table.
#[derive(Debug)]
pub enum TokenOp {
    /// Insert or replace a token.
    Put(StoredToken),
    /// Remove a token by name.
    Remove(String),
}

/// A message to the writer.
pub enum Msg {
    /// An audit record to persist (and apply to the entries table).
    Record(Box<dyn Persist>),
    /// A token change, acknowledged once durable.
    Token(TokenOp, oneshot::Sender<Result<(), String>>),
    /// A delete plan's row, acknowledged once durable.
    Plan(StoredPlan, oneshot::Sender<Result<(), String>>),
    /// Write what is queued, have the checkpointer fold everything and mark
    /// a clean shutdown, and stop.
    Shutdown,
    /// Write what is queued and stop as a crash would: nothing more is
    /// folded and the shutdown is not marked clean (tests of recovery).
    Halt,
}

/// The open segment being appended to.
pub(crate) struct Segment {
    pub dir: PathBuf,
    pub file: File,
    pub path: PathBuf,
    pub len: u64,
    /// Sealed at this size.
    pub max_len: u64,
}

pub(crate) struct Writer {
    pub rx: Receiver<Msg>,
    pub durable: Arc<watch::Sender<Durable>>,
    pub segment: Segment,
    /// Lsn of the next record written.
    pub next_lsn: u64,
    pub fold: SyncSender<Fold>,
    pub checkpointer: JoinHandle<()>,
    /// Fault injection (tests): the next sync fails as an fsync error would.
    pub fail_next: Arc<AtomicBool>,
}

impl Writer {
    pub(crate) fn run(mut self) {
        let mut buf = Vec::new();
        loop {
            let Ok(first) = self.rx.recv() else {
                // Every sender is gone without a Shutdown (the handle was
                // dropped): stop as a crash would, leaving the log to recovery.
                return self.halt();
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let shutdown = batch.iter().any(|m| matches!(m, Msg::Shutdown));
            let halt = batch.iter().any(|m| matches!(m, Msg::Halt));
            self.append(batch, &mut buf);
            if halt {
                return self.halt();
            }
            if shutdown {
                let clean = !self.durable.borrow().failed;
                let _ = self.fold.send(Fold::Close { clean });
                drop(self.fold);
                let _ = self.checkpointer.join();
                return;
            }
        }
    }

    /// Stops both threads, leaving what the checkpoint lacks to the log.
    fn halt(self) {
        // Said explicitly: the storage handle keeps a sender of its own
        // (for `Fold::Want`), so the channel does not close here.
        let _ = self.fold.send(Fold::Halt);
        drop(self.fold);
        let _ = self.checkpointer.join();
    }

    /// Frames, writes and syncs one batch, then acknowledges it.
    fn append(&mut self, batch: Vec<Msg>, buf: &mut Vec<u8>) {
        let mut acks = Vec::new();
        if self.durable.borrow().failed {
            for m in batch {
                if let Msg::Token(_, ack) | Msg::Plan(_, ack) = m {
                    let _ = ack.send(Err("storage failed earlier; restart the server".into()));
                }
            }
            return;
        }
        buf.clear();
        let mut logged = Vec::with_capacity(batch.len());
        let (mut audit_id, mut revision) = (0, 0);
        for m in batch {
            let entry = match m {
                Msg::Record(r) => {
                    let r = r.to_stored();
                    audit_id = audit_id.max(r.id);
                    revision = revision.max(r.revision);
                    Entry::Record(r)
                }
                Msg::Token(op, ack) => {
                    acks.push(ack);
                    match op {
                        TokenOp::Put(t) => Entry::TokenPut(t),
                        TokenOp::Remove(name) => Entry::TokenRemove(name),
                    }
                }
                Msg::Plan(plan, ack) => {
                    acks.push(ack);
                    Entry::Plan(plan)
                }
                Msg::Shutdown | Msg::Halt => continue,
            };
            let payload = entry.payload();
            let lsn = self.next_lsn;
            self.next_lsn += 1;
            frame::encode(lsn, entry.kind(), &payload, buf);
            logged.push(Logged {
                lsn,
                entry,
                payload,
            });
        }
        if logged.is_empty() {
            return;
        }
        let records = logged
            .iter()
            .filter(|l| matches!(l.entry, Entry::Record(_)))
            .count() as u64;
        if let Err(e) = self.write_and_sync(buf) {
            tracing::error!(error = %e, path = %self.segment.path.display(), "writing the log failed; refusing writes from now on");
            self.durable.send_modify(|d| d.failed = true);
            for ack in acks {
                let _ = ack.send(Err(format!("durable write failed: {e}")));
            }
            return;
        }
        self.durable.send_modify(|d| {
            d.audit_id = d.audit_id.max(audit_id);
            d.revision = d.revision.max(revision);
        });
        metrics::counter!("safemap_audit_records_total").increment(records);
        for ack in acks {
            let _ = ack.send(Ok(()));
        }
        self.segment.len += buf.len() as u64;
        // The checkpointer applies back-pressure here when it falls behind.
        if self.fold.send(Fold::Batch(logged)).is_err() {
            tracing::error!("the checkpointer stopped; refusing writes from now on");
            self.durable.send_modify(|d| d.failed = true);
            return;
        }
        if self.segment.len >= self.segment.max_len
            && let Err(e) = self.rotate()
        {
            tracing::error!(error = %e, "starting a new log segment failed; refusing writes from now on");
            self.durable.send_modify(|d| d.failed = true);
        }
    }

    fn write_and_sync(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.fail_next.swap(false, Ordering::AcqRel) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.segment.file.write_all(buf)?;
        let started = Instant::now();
        self.segment.file.sync_data()?;
        metrics::histogram!("safemap_fsync_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Seals the current segment and starts the next one at `next_lsn`.
    fn rotate(&mut self) -> Result<(), StorageError> {
        let file = wal::create_segment(&self.segment.dir, self.next_lsn)?;
        let path = wal::segment_path(&self.segment.dir, self.next_lsn);
        let old = std::mem::replace(&mut self.segment.path, path);
        self.segment.file = file;
        self.segment.len = wal::MAGIC.len() as u64;
        let _ = self.fold.send(Fold::Sealed {
            path: old,
            last_lsn: self.next_lsn - 1,
        });
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
