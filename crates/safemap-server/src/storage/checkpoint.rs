//! The checkpointer thread: folds what the log made durable into redb in the
//! background, then deletes the log segments the checkpoint covers.
//!
//! Invariant: a segment is deleted only after a redb commit whose
//! `meta.checkpoint_lsn` is at or above its last lsn, so every record is on
//! disk in the log, in redb, or both. A fold failure stops writes (503), as a
//! failed log write does: the log would otherwise grow without bound.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable};
use tokio::sync::watch;

use super::codec::{self, RecordHead, StoredPlan};
use super::tables::{self, AUDIT, AUDIT_MAPS, Logged, Meta, PLAN_AUDIT, PLANS};
use super::{Durable, now_ms};

/// Most records held before a fold, whatever the interval.
pub const FOLD_MAX_RECORDS: usize = 65_536;
/// How often old audit rows (past retention) are pruned from redb.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// A message from the log writer, in log order.
pub(crate) enum Fold {
    /// Records that are durable in the log.
    Batch(Vec<Logged>),
    /// A segment is complete; its last record has lsn `last_lsn`.
    Sealed { path: PathBuf, last_lsn: u64 },
    /// Fold everything, record whether the shutdown is clean, and stop.
    Close { clean: bool },
    /// Stop as a crash would: fold nothing more.
    Halt,
    /// A reader waits for the record with this audit id to be in redb: fold
    /// as soon as records past the last fold are here, without waiting for
    /// the interval (see `Storage::wait_folded`).
    Want(u64),
}

pub(crate) struct Checkpointer {
    pub db: Arc<Database>,
    pub rx: Receiver<Fold>,
    pub durable: Arc<watch::Sender<Durable>>,
    pub meta: Meta,
    pub interval: Duration,
    pub retention: Duration,
}

impl Checkpointer {
    pub(crate) fn run(mut self) {
        let mut pending: Vec<Logged> = Vec::new();
        let mut sealed: Vec<(PathBuf, u64)> = Vec::new();
        let mut last_fold = Instant::now();
        let mut last_prune = Instant::now();
        let mut failed = false;
        // The highest audit id a reader waits to see folded.
        let mut wanted = 0u64;
        loop {
            let wait = self.interval.saturating_sub(last_fold.elapsed());
            let close = match self.rx.recv_timeout(wait) {
                Ok(Fold::Batch(b)) => {
                    pending.extend(b);
                    None
                }
                Ok(Fold::Sealed { path, last_lsn }) => {
                    sealed.push((path, last_lsn));
                    None
                }
                Ok(Fold::Close { clean }) => Some(clean),
                Ok(Fold::Halt) => return,
                Ok(Fold::Want(id)) => {
                    wanted = wanted.max(id);
                    None
                }
                Err(RecvTimeoutError::Timeout) => None,
                // The writer is gone without a Close: stop as a crash would.
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if failed {
                pending.clear();
                if close.is_some() {
                    return;
                }
                continue;
            }
            let due = close.is_some()
                || pending.len() >= FOLD_MAX_RECORDS
                || (wanted > self.meta.last_audit_id && !pending.is_empty())
                || last_fold.elapsed() >= self.interval;
            if due {
                last_fold = Instant::now();
                if let Err(e) = self.fold(&pending, close == Some(true)) {
                    tracing::error!(error = %e, "folding the log into the checkpoint failed; refusing writes from now on");
                    self.durable.send_modify(|d| {
                        d.failed = true;
                        d.fold_failed = true;
                    });
                    failed = true;
                    continue;
                }
                pending.clear();
                sealed.retain(|(path, last)| {
                    if *last > self.meta.checkpoint_lsn {
                        return true;
                    }
                    if let Err(e) = std::fs::remove_file(path) {
                        tracing::warn!(path = %path.display(), error = %e, "removing a folded log segment failed");
                    }
                    false
                });
            }
            if close.is_some() {
                return;
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                self.prune();
                last_prune = Instant::now();
            }
        }
    }

    /// One redb transaction: the records, then `meta`; durable on return.
    fn fold(&mut self, pending: &[Logged], clean: bool) -> Result<(), redb::Error> {
        if pending.is_empty() && !clean {
            return Ok(());
        }
        let started = Instant::now();
        let txn = self.db.begin_write()?;
        let meta = tables::fold(&txn, pending, self.meta)?;
        tables::write_meta(&txn, &meta, clean)?;
        txn.commit()?;
        self.meta = meta;
        self.durable
            .send_modify(|d| d.folded_audit_id = d.folded_audit_id.max(meta.last_audit_id));
        metrics::histogram!("safemap_checkpoint_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Removes audit rows older than the retention, the `audit_maps` rows
    /// whose newest record is, and plan rows past the time they are
    /// remembered (see [`prune_tables`]).
    fn prune(&mut self) {
        let result = prune_tables(&self.db, now_ms(), self.retention);
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                rows = n,
                "pruned audit records past retention and forgotten plans"
            ),
            Err(e) => tracing::warn!(error = %e, "pruning audit records failed"),
        }
    }
}

/// Most audit rows one prune pass removes (the rest wait for the next pass,
/// [`PRUNE_EVERY`] later), so a pass never holds the writer long.
pub const PRUNE_MAX_ROWS: usize = 100_000;

/// One prune pass, one transaction: removes audit rows older than
/// `retention` as of `now` (ids grow with time, so it stops at the first
/// younger row; at most [`PRUNE_MAX_ROWS`]) with their `plan_audit` rows, the
/// `audit_maps` rows whose newest record is that old, and plan rows past the
/// time they are remembered ([`codec::PLAN_ROW_KEPT_MS`] after they expired or
/// were executed). Returns the audit and plan rows removed.
pub(crate) fn prune_tables(
    db: &Database,
    now: u64,
    retention: Duration,
) -> Result<usize, redb::Error> {
    let cutoff = now.saturating_sub(retention.as_millis() as u64);
    let txn = db.begin_write()?;
    let mut n = 0;
    {
        let mut audit = txn.open_table(AUDIT)?;
        let mut plan_audit = txn.open_table(PLAN_AUDIT)?;
        let mut old = Vec::new();
        for row in audit.iter()? {
            let (k, v) = row?;
            // An unreadable row is kept (never deleted unread: it is left
            // for the history reader and an operator to see), and the rows
            // after it are judged on their own.
            let Ok((at, plan)) = codec::decode::<RecordHead<'_>>(v.value())
                .map(|r| (r.at_ms, r.plan_id.map(|p| p.into_owned())))
            else {
                continue;
            };
            if at >= cutoff || old.len() >= PRUNE_MAX_ROWS {
                break;
            }
            old.push((k.value(), plan));
        }
        for (id, plan) in old {
            audit.remove(id)?;
            // The index keeps no row for a pruned record.
            if let Some(plan) = plan {
                plan_audit.remove((plan.as_str(), id))?;
            }
            n += 1;
        }
        // A map whose newest record is past retention has no history that
        // recovery would load (older rows left by the cap are past it too).
        let mut audit_maps = txn.open_table(AUDIT_MAPS)?;
        let mut gone = Vec::new();
        for row in audit_maps.iter()? {
            let (k, v) = row?;
            if v.value() < cutoff {
                gone.push(k.value().to_string());
            }
        }
        for map in gone {
            audit_maps.remove(map.as_str())?;
        }
        let mut plans = txn.open_table(PLANS)?;
        let mut forgotten = Vec::new();
        for row in plans.iter()? {
            let (k, v) = row?;
            // An unreadable row is left for recovery to report.
            if codec::decode::<StoredPlan>(v.value()).is_ok_and(|p| p.forgotten_at(now)) {
                forgotten.push(k.value().to_string());
            }
        }
        for id in forgotten {
            plans.remove(id.as_str())?;
            n += 1;
        }
    }
    txn.commit()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::{DB_FILE, Storage, StoredRecord, Target};
    use redb::{ReadableDatabase, ReadableTableMetadata};

    fn rec(id: u64, at_ms: u64, map: &str, plan: Option<&str>) -> StoredRecord {
        StoredRecord::test_delete(id, at_ms, map, &format!("k{id}"), plan)
    }

    /// A pass removes the rows past retention, their `plan_audit` rows and
    /// the `audit_maps` row of a map whose newest record is past it; a map
    /// with a younger record keeps its row, with that record's time.
    #[tokio::test]
    async fn a_prune_pass_drops_old_rows_and_maps_with_no_history_left() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let now = now_ms();
        let old = now - 2 * 3_600_000;
        let plan = "00000000000000ee";
        {
            let (s, _) = Storage::open(dir.path(), hour).unwrap();
            s.enqueue(Box::new(rec(1, old, "gone", Some(plan))));
            s.enqueue(Box::new(rec(2, old + 1, "kept", None)));
            s.enqueue(Box::new(rec(3, now - 1000, "kept", None)));
            s.wait_durable(Target::AuditId(3)).await.unwrap();
            s.close();
        }
        let db = Database::create(dir.path().join(DB_FILE)).unwrap();
        let maps = |db: &Database| -> Vec<(String, u64)> {
            let txn = db.begin_read().unwrap();
            let t = txn.open_table(AUDIT_MAPS).unwrap();
            t.iter()
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.value().to_string(), v.value())
                })
                .collect()
        };
        assert_eq!(
            maps(&db),
            [("gone".to_string(), old), ("kept".to_string(), now - 1000)]
        );
        assert_eq!(prune_tables(&db, now, hour).unwrap(), 2);
        assert_eq!(maps(&db), [("kept".to_string(), now - 1000)]);
        let txn = db.begin_read().unwrap();
        let audit = txn.open_table(AUDIT).unwrap();
        let ids: Vec<u64> = audit
            .iter()
            .unwrap()
            .map(|r| r.unwrap().0.value())
            .collect();
        assert_eq!(ids, [3]);
        assert!(txn.open_table(PLAN_AUDIT).unwrap().is_empty().unwrap());
    }

    /// An audit row that cannot be read is never pruned unread: it stays,
    /// and the readable rows past retention around it still go.
    #[tokio::test]
    async fn a_prune_pass_keeps_an_unreadable_row() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let now = now_ms();
        let old = now - 2 * 3_600_000;
        {
            let (s, _) = Storage::open(dir.path(), hour).unwrap();
            for id in 1..=3 {
                s.enqueue(Box::new(rec(id, old + id, "m", None)));
            }
            s.wait_durable(Target::AuditId(3)).await.unwrap();
            s.close();
        }
        let db = Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(AUDIT)
            .unwrap()
            .insert(2, b"{not json".as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert_eq!(prune_tables(&db, now, hour).unwrap(), 2);
        let txn = db.begin_read().unwrap();
        let audit = txn.open_table(AUDIT).unwrap();
        let rows: Vec<(u64, Vec<u8>)> = audit
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value(), v.value().to_vec())
            })
            .collect();
        assert_eq!(rows, [(2, b"{not json".to_vec())]);
    }
}
