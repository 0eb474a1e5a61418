//! Audit history read back from redb: the pages, records and plan records
//! below the journal's in-memory window (`state::history` joins the two).
//!
//! Invariants:
//! - only rows of redb's `audit` table are read, and a row is there only
//!   after its log record was durable: everything read here is durable;
//! - a reader that needs ids up to `n` first waits until the checkpoint has
//!   folded them ([`Storage::wait_folded`]), so a record evicted from memory
//!   but not yet in redb is waited for, never skipped;
//! - reads are redb read transactions (snapshots that never block the
//!   checkpointer), run on a blocking thread;
//! - a page scan examines at most `scan_max` rows, whatever the filters.

use std::ops::RangeInclusive;
use std::time::Duration;

use redb::ReadableDatabase;

use super::codec::{self, RecordHead, StoredRecord};
use super::tables::{AUDIT, PLAN_AUDIT};
use super::{Storage, StorageError, checkpoint::Fold};

/// Longest wait for the checkpoint to fold a record a reader needs (it folds
/// at once when asked, so this is reached only when redb is very slow).
pub const FOLD_WAIT: Duration = Duration::from_secs(10);

/// Why [`Storage::wait_folded`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldWait {
    /// The storage failed: the record will never be folded.
    Failed,
    /// [`FOLD_WAIT`] passed first.
    TimedOut,
}

/// A page of audit rows: ids in `after + 1 ..= through`, oldest first.
#[derive(Debug, Clone, Default)]
pub struct DiskQuery {
    /// Only ids above this one.
    pub after: u64,
    /// Only ids up to this one (the caller holds the ones above in memory).
    pub through: u64,
    /// Only records of this map.
    pub map: Option<String>,
    /// Only records of this key.
    pub key: Option<String>,
    /// Only records of this plan (16 hex digits).
    pub plan_id: Option<String>,
    /// Stop once this many records matched.
    pub want: usize,
    /// Stop once this many rows were examined (matching or not).
    pub scan_max: usize,
    /// Rows older than this (milliseconds since the epoch) are past every
    /// retention: skipped, as if already pruned.
    pub cutoff_ms: u64,
}

/// Where a page scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every row up to `through` was examined.
    Exhausted,
    /// `want` records matched; the last of them ends the scan.
    Full,
    /// `scan_max` rows were examined; the last had this id. Rows after it,
    /// up to `through`, were not looked at.
    Capped {
        /// Id of the last row examined.
        last_scanned: u64,
    },
}

/// What a page scan found.
#[derive(Debug, Clone)]
pub struct DiskPage {
    /// The matching records, oldest first, at most `want`.
    pub records: Vec<StoredRecord>,
    /// Why it stopped.
    pub end: ScanEnd,
}

fn io(what: &'static str) -> impl Fn(redb::Error) -> StorageError {
    move |e| StorageError(format!("{what}: {e}"))
}

impl DiskQuery {
    fn matches(&self, head: &RecordHead<'_>) -> bool {
        head.at_ms >= self.cutoff_ms
            && self.map.as_deref().is_none_or(|m| head.map == m)
            && self.key.as_deref().is_none_or(|k| head.key == k)
            && self
                .plan_id
                .as_deref()
                .is_none_or(|p| head.plan_id.as_deref() == Some(p))
    }
}

impl Storage {
    /// Waits until every record up to audit id `id` is in redb. Asks the
    /// checkpointer to fold at once rather than at its next interval.
    /// [`FoldWait::Failed`] when that can no longer happen.
    pub async fn wait_folded(&self, id: u64) -> Result<(), FoldWait> {
        let folded = |d: &super::Durable| d.folded_audit_id >= id;
        if folded(&self.durable()) {
            return Ok(());
        }
        // Never blocks: when 1024 batches wait for the checkpointer it is
        // folding anyway, and the wait below is bounded.
        let _ = self.inner.fold.try_send(Fold::Want(id));
        // Hopeless once the checkpointer failed, or once the log writer
        // failed before `id` was durable. (After a log failure the records
        // that were durable are still folded.)
        let hopeless = |d: &super::Durable| d.fold_failed || (d.failed && d.audit_id < id);
        let mut rx = self.inner.durable.clone();
        let waited =
            tokio::time::timeout(FOLD_WAIT, rx.wait_for(|d| hopeless(d) || folded(d))).await;
        match waited {
            Err(_) => Err(FoldWait::TimedOut),
            Ok(Ok(d)) if folded(&d) => Ok(()),
            Ok(_) => Err(FoldWait::Failed),
        }
    }

    /// The matching rows of `q`, oldest first (see [`DiskQuery`], [`ScanEnd`]).
    pub async fn history_page(&self, q: DiskQuery) -> Result<DiskPage, StorageError> {
        let db = self.reader()?;
        blocking(move || {
            let mut page = DiskPage {
                records: Vec::new(),
                end: ScanEnd::Exhausted,
            };
            if q.after >= q.through || q.want == 0 {
                return Ok(page);
            }
            let txn = db.begin_read().map_err(|e| io("reading")(e.into()))?;
            let table = match txn.open_table(AUDIT) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(page),
                Err(e) => return Err(io("opening audit")(e.into())),
            };
            let mut scanned = 0usize;
            let range: RangeInclusive<u64> = q.after + 1..=q.through;
            for row in table
                .range(range)
                .map_err(|e| io("reading audit")(e.into()))?
            {
                let (k, v) = row.map_err(|e| io("reading audit")(e.into()))?;
                let id = k.value();
                scanned += 1;
                // An unreadable row is skipped (recovery reports it at start).
                if let Ok(head) = codec::decode::<RecordHead<'_>>(v.value())
                    && q.matches(&head)
                    && let Ok(r) = codec::decode::<StoredRecord>(v.value())
                {
                    page.records.push(r);
                    if page.records.len() >= q.want {
                        page.end = ScanEnd::Full;
                        break;
                    }
                }
                if scanned >= q.scan_max {
                    page.end = ScanEnd::Capped { last_scanned: id };
                    break;
                }
            }
            // Capped on the very last row is exhausted all the same.
            if let ScanEnd::Capped { last_scanned } = page.end
                && last_scanned >= q.through
            {
                page.end = ScanEnd::Exhausted;
            }
            Ok(page)
        })
        .await
    }

    /// The audit row with id `id`, if redb holds it (it may have been pruned).
    pub async fn history_record(&self, id: u64) -> Result<Option<StoredRecord>, StorageError> {
        let db = self.reader()?;
        blocking(move || {
            let txn = db.begin_read().map_err(|e| io("reading")(e.into()))?;
            let table = match txn.open_table(AUDIT) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(io("opening audit")(e.into())),
            };
            let row = table.get(id).map_err(|e| io("reading audit")(e.into()))?;
            Ok(row.and_then(|v| codec::decode::<StoredRecord>(v.value()).ok()))
        })
        .await
    }

    /// Every audit row of plan `plan` with an id below `below`, oldest first,
    /// found through the `plan_audit` index (no scan of other rows).
    pub async fn history_plan(
        &self,
        plan: String,
        below: u64,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let db = self.reader()?;
        blocking(move || {
            let txn = db.begin_read().map_err(|e| io("reading")(e.into()))?;
            let (index, audit) = match (txn.open_table(PLAN_AUDIT), txn.open_table(AUDIT)) {
                (Ok(i), Ok(a)) => (i, a),
                (Err(redb::TableError::TableDoesNotExist(_)), _)
                | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(Vec::new()),
                (Err(e), _) | (_, Err(e)) => return Err(io("opening audit")(e.into())),
            };
            let mut out = Vec::new();
            let rows = index
                .range((plan.as_str(), 0)..(plan.as_str(), below))
                .map_err(|e| io("reading plan_audit")(e.into()))?;
            for row in rows {
                let (k, _) = row.map_err(|e| io("reading plan_audit")(e.into()))?;
                let (_, id) = k.value();
                let found = audit.get(id).map_err(|e| io("reading audit")(e.into()))?;
                if let Some(r) = found.and_then(|v| codec::decode::<StoredRecord>(v.value()).ok()) {
                    out.push(r);
                }
            }
            Ok(out)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError(format!("reading history: {e}")))?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::{Target, now_ms};

    fn rec(id: u64, key: &str, plan: Option<&str>) -> StoredRecord {
        let map = if id.is_multiple_of(2) { "even" } else { "odd" };
        StoredRecord::test_delete(id, now_ms(), map, key, plan)
    }

    #[tokio::test]
    async fn pages_filter_stop_at_the_scan_limit_and_find_plans() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Storage::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let plan = "00000000000000ab";
        for id in 1..=20 {
            let p = (id > 15).then_some(plan);
            s.enqueue(Box::new(rec(id, &format!("k{}", id % 3), p)));
        }
        s.wait_durable(Target::AuditId(20)).await.unwrap();
        s.wait_folded(20).await.unwrap();
        let q = DiskQuery {
            through: 20,
            want: 100,
            scan_max: 100,
            ..DiskQuery::default()
        };
        let all = s.history_page(q.clone()).await.unwrap();
        assert_eq!(all.end, ScanEnd::Exhausted);
        assert_eq!(
            all.records.iter().map(|r| r.id).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
        let full = s
            .history_page(DiskQuery {
                after: 4,
                want: 3,
                ..q.clone()
            })
            .await
            .unwrap();
        assert_eq!(full.end, ScanEnd::Full);
        assert_eq!(full.records.last().unwrap().id, 7);
        // Map "even", key "k1": ids 4, 10, 16; 5 rows scanned per page.
        let capped = s
            .history_page(DiskQuery {
                map: Some("even".into()),
                key: Some("k1".into()),
                scan_max: 5,
                ..q.clone()
            })
            .await
            .unwrap();
        assert_eq!(capped.end, ScanEnd::Capped { last_scanned: 5 });
        assert_eq!(capped.records.len(), 1);
        let through = s
            .history_page(DiskQuery {
                after: 15,
                through: 16,
                map: Some("even".into()),
                ..q.clone()
            })
            .await
            .unwrap();
        assert_eq!(through.end, ScanEnd::Exhausted);
        assert_eq!(through.records.len(), 1);
        let planned = s.history_plan(plan.into(), 19).await.unwrap();
        assert_eq!(
            planned.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![16, 17, 18]
        );
        assert_eq!(s.history_record(7).await.unwrap().unwrap().id, 7);
        assert!(s.history_record(21).await.unwrap().is_none());
        s.close();
    }

    #[tokio::test]
    async fn a_format_4_file_gets_its_plan_index_at_start() {
        use crate::storage::tables::{META, PLAN_AUDIT};
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let plan = "00000000000000cd";
        {
            let (s, _) = Storage::open(dir.path(), hour).unwrap();
            for id in 1..=6 {
                s.enqueue(Box::new(rec(
                    id,
                    "k",
                    (!id.is_multiple_of(2)).then_some(plan),
                )));
            }
            s.wait_durable(Target::AuditId(6)).await.unwrap();
            s.close();
        }
        // What a format-4 server left: no index.
        {
            let db = redb::Database::create(dir.path().join(super::super::DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(PLAN_AUDIT).unwrap();
            txn.open_table(META).unwrap().insert("format", 4).unwrap();
            txn.commit().unwrap();
        }
        let (s, _) = Storage::open(dir.path(), hour).unwrap();
        let found = s.history_plan(plan.into(), u64::MAX).await.unwrap();
        assert_eq!(
            found.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 3, 5]
        );
        s.close();
    }
}
