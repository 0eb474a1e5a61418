//! The single storage writer thread: group commit.
//!
//! Every durable change reaches this thread through one unbounded channel:
//! audit records (sent by the journal sink under the library's write lock, so
//! in audit-id order) and token changes. The thread blocks for the first
//! message, drains whatever else is queued (at most [`MAX_BATCH`] messages),
//! applies all of it in ONE redb write transaction with immediate durability
//! (one fsync), and only then publishes the highest durable audit id and
//! revision on a `tokio::sync::watch`. Handlers wait on that watch before they
//! answer 2xx, so concurrent writers share fsyncs and nothing is acknowledged
//! before it is on disk.
//!
//! If a commit fails, the writer publishes `failed = true`, logs the error and
//! stops committing: readiness turns 503 and every write is answered 503
//! `storage_unavailable` until the process is restarted.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, WriteTransaction};
use tokio::sync::{oneshot, watch};

use super::codec::{StoredEntry, StoredOp, StoredRecord, StoredToken, encode};
use super::{AUDIT, Durable, ENTRIES, META, TOKENS};

/// Most messages applied in one transaction.
pub const MAX_BATCH: usize = 8192;
/// How often old audit rows (past retention) are pruned from disk.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

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
    /// A token change, acknowledged after its commit.
    Token(TokenOp, oneshot::Sender<Result<(), String>>),
    /// Commit what is queued, mark the database cleanly closed and stop.
    Shutdown,
}

pub(crate) struct Writer {
    pub db: std::sync::Arc<Database>,
    pub rx: Receiver<Msg>,
    pub durable: watch::Sender<Durable>,
    pub retention: Duration,
    pub state: Durable,
    /// Fault injection (tests): the next commit fails as an fsync error would.
    pub fail_next: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    pub(crate) fn run(mut self) {
        let mut last_prune = Instant::now();
        loop {
            let first = match self.rx.recv_timeout(PRUNE_EVERY) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.prune();
                    last_prune = Instant::now();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let shutdown = batch.iter().any(|m| matches!(m, Msg::Shutdown));
            self.commit(batch, shutdown);
            if shutdown {
                return;
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                self.prune();
                last_prune = Instant::now();
            }
        }
    }

    fn commit(&mut self, batch: Vec<Msg>, clean_close: bool) {
        let mut acks = Vec::new();
        if self.state.failed {
            for m in batch {
                if let Msg::Token(_, ack) = m {
                    let _ = ack.send(Err("storage failed earlier; restart the server".into()));
                }
            }
            return;
        }
        let mut next = self.state;
        let mut records = 0u64;
        let result = (|| -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            {
                let mut audit = txn.open_table(AUDIT)?;
                let mut entries = txn.open_table(ENTRIES)?;
                let mut tokens = txn.open_table(TOKENS)?;
                for m in batch {
                    match m {
                        Msg::Record(r) => {
                            let r = r.to_stored();
                            apply_record(&mut audit, &mut entries, &r)?;
                            next.audit_id = next.audit_id.max(r.id);
                            next.revision = next.revision.max(r.revision);
                            records += 1;
                        }
                        Msg::Token(op, ack) => {
                            match &op {
                                TokenOp::Put(t) => {
                                    tokens.insert(t.name.as_str(), encode(t).as_slice())?;
                                }
                                TokenOp::Remove(name) => {
                                    tokens.remove(name.as_str())?;
                                }
                            }
                            acks.push(ack);
                        }
                        Msg::Shutdown => {}
                    }
                }
            }
            write_meta(&txn, &next, clean_close)?;
            if self
                .fail_next
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                txn.abort()?;
                return Err(redb::Error::Io(std::io::Error::other(
                    "injected fsync failure",
                )));
            }
            let started = Instant::now();
            txn.commit()?;
            metrics::histogram!("safemap_fsync_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.state = next;
                metrics::counter!("safemap_audit_records_total").increment(records);
                self.durable.send_replace(next);
                for ack in acks {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "durable commit failed; refusing writes from now on");
                self.state.failed = true;
                self.durable.send_replace(self.state);
                for ack in acks {
                    let _ = ack.send(Err(format!("durable commit failed: {e}")));
                }
            }
        }
    }

    /// Removes audit rows older than the retention (ids grow with time, so it
    /// stops at the first younger row).
    fn prune(&mut self) {
        if self.state.failed {
            return;
        }
        let cutoff = now_ms().saturating_sub(self.retention.as_millis() as u64);
        let result = (|| -> Result<usize, redb::Error> {
            let txn = self.db.begin_write()?;
            let mut n = 0;
            {
                let mut audit = txn.open_table(AUDIT)?;
                let mut old = Vec::new();
                for row in audit.iter()? {
                    let (k, v) = row?;
                    let at = super::codec::decode::<StoredRecord>(v.value())
                        .map(|r| r.at_ms)
                        .unwrap_or(0);
                    if at >= cutoff || old.len() >= 100_000 {
                        break;
                    }
                    old.push(k.value());
                }
                for id in old {
                    audit.remove(id)?;
                    n += 1;
                }
            }
            txn.commit()?;
            Ok(n)
        })();
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned audit records past retention"),
            Err(e) => tracing::warn!(error = %e, "pruning audit records failed"),
        }
    }
}

fn apply_record(
    audit: &mut redb::Table<'_, u64, &'static [u8]>,
    entries: &mut redb::Table<'_, (&'static str, &'static str), &'static [u8]>,
    r: &StoredRecord,
) -> Result<(), redb::Error> {
    audit.insert(r.id, encode(r).as_slice())?;
    match r.op {
        StoredOp::Put | StoredOp::Restore => {
            let e = StoredEntry {
                value: r.value.clone().unwrap_or(serde_json::Value::Null),
                revision: r.revision,
                create_revision: r.create_revision,
                version: r.version,
            };
            entries.insert((r.map.as_str(), r.key.as_str()), encode(&e).as_slice())?;
        }
        StoredOp::Delete => {
            entries.remove((r.map.as_str(), r.key.as_str()))?;
        }
    }
    Ok(())
}

pub(crate) fn write_meta(
    txn: &WriteTransaction,
    d: &Durable,
    clean: bool,
) -> Result<(), redb::Error> {
    let mut meta = txn.open_table(META)?;
    let prev_rev = meta.get("last_revision")?.map_or(0, |v| v.value());
    let prev_id = meta.get("last_audit_id")?.map_or(0, |v| v.value());
    meta.insert("last_revision", d.revision.max(prev_rev))?;
    meta.insert("last_audit_id", d.audit_id.max(prev_id))?;
    meta.insert("clean_shutdown", u64::from(clean))?;
    meta.insert("format", super::codec::FORMAT_VERSION)?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
