//! Audit history across the journal's in-memory window and redb (local
//! store): pages of `GET /v1/audit`, and the records a restore needs.
//!
//! The journal holds the newest `server.journal_capacity` records; the older
//! ones within retention are in redb's `audit` table (STORAGE.md). Invariants:
//!
//! - **The seam.** The journal is queried first, together with the id `F` of
//!   the oldest record it holds, read under the same lock
//!   (`Journal::query_held`). redb answers ids `after + 1 ..= F - 1`, the
//!   journal ids from `F` on: no gap and no duplicate, whatever is evicted
//!   meanwhile.
//! - **Evicted but not yet folded.** Before redb is read up to an id, the
//!   reader waits until the checkpoint has folded it (`Storage::wait_folded`,
//!   which asks the checkpointer to fold at once): a record that left memory
//!   before it reached redb is waited for, never skipped. The wait is bounded
//!   ([`FOLD_WAIT`]): 503 `storage_unavailable` when it can no longer be
//!   folded (a fold failed, or the log failed before the record was durable;
//!   records durable before a log failure are still folded and served), 503
//!   `checkpoint_behind` (`Retry-After`) when the time passed.
//! - **Bounded scans.** A page examines at most [`SCAN_MAX`] rows of redb.
//!   With filters it may then hold fewer than `limit` records (none, even)
//!   while `next` is set: a client follows `next` until it is null, as with
//!   etcd's `more` on a limited range.
//! - Everything read from redb is durable (a row is folded from the log only
//!   after it was durable); records from memory are shown once durable (the
//!   route waits for the last one).

use std::sync::Arc;

use axum::http::StatusCode;
use safemap::{AuditQuery, PlanId};

use super::{Record, Shared, from_stored};
use crate::error::ApiError;
use crate::storage::{DiskQuery, FOLD_WAIT, FoldWait, ScanEnd, Storage, now_ms};

/// Most redb rows one audit page examines, matching the filters or not.
pub const SCAN_MAX: usize = 10_000;

/// One page of the audit journal.
#[derive(Debug)]
pub struct AuditPage {
    /// The records, oldest first, at most `limit`.
    pub records: Vec<Arc<Record>>,
    /// Pass as `after` for the next page; None when nothing follows.
    pub next: Option<u64>,
}

/// The 503 of a fold that was not reached.
pub fn fold_error(e: FoldWait) -> ApiError {
    match e {
        FoldWait::Failed => ApiError::storage_unavailable(),
        FoldWait::TimedOut => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "checkpoint_behind",
            format!(
                "older audit records are read from the checkpoint, which did not catch up within {} s; retry",
                FOLD_WAIT.as_secs()
            ),
        )
        .with_retry_after(1),
    }
}

/// A read of redb that failed.
pub fn read_error(e: crate::storage::StorageError) -> ApiError {
    tracing::error!(error = %e, "reading audit history from the checkpoint failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        format!("reading audit history from storage failed: {e}"),
    )
    .with_retry_after(5)
}

/// Joins the redb part of a page (`disk`, which stopped at `end`) and the
/// journal's (`memory`, the matches from the window's oldest record on, at
/// least `limit + 1` of them when there are that many): the seam.
pub fn assemble(
    disk: Vec<Arc<Record>>,
    end: ScanEnd,
    memory: Vec<Arc<Record>>,
    limit: usize,
) -> AuditPage {
    let mut records = disk;
    match end {
        // The scan stopped short of the window: the page ends where it stopped.
        ScanEnd::Capped { last_scanned } if records.len() <= limit => {
            return AuditPage {
                records,
                next: Some(last_scanned),
            };
        }
        ScanEnd::Exhausted => records.extend(memory),
        ScanEnd::Capped { .. } | ScanEnd::Full => {}
    }
    let more = records.len() > limit;
    records.truncate(limit);
    let next = if more {
        records.last().map(|r| r.id.get())
    } else {
        None
    };
    AuditPage { records, next }
}

impl Shared {
    /// A page of the journal: `query.limit` is the page size; `next` as in
    /// http-api.md. Local store: from redb below the window (module doc).
    pub async fn audit_page(&self, query: AuditQuery<String>) -> Result<AuditPage, ApiError> {
        let limit = query.limit;
        let one_more = AuditQuery {
            limit: limit.saturating_add(1),
            ..query.clone()
        };
        let Ok(storage) = self.local_storage("audit history") else {
            // The etcd store keeps its own window of records (STORAGE.md).
            let memory = self.audit_query(&one_more);
            return Ok(assemble(Vec::new(), ScanEnd::Exhausted, memory, limit));
        };
        let held = self.journal.query_held(&one_more);
        let after = query.after.map_or(0, |a| a.get());
        let first_held = held.first_held.get();
        if after.saturating_add(1) >= first_held {
            return Ok(assemble(
                Vec::new(),
                ScanEnd::Exhausted,
                held.records,
                limit,
            ));
        }
        let through = first_held - 1;
        storage.wait_folded(through).await.map_err(fold_error)?;
        let retention = self.config.max_retention().as_millis() as u64;
        let page = storage
            .history_page(DiskQuery {
                after,
                through,
                map: query.map,
                key: query.key,
                plan_id: query.plan_id.map(|p| p.to_string()),
                want: limit.saturating_add(1),
                scan_max: SCAN_MAX.max(limit.saturating_add(1)),
                cutoff_ms: now_ms().saturating_sub(retention),
            })
            .await
            .map_err(read_error)?;
        let disk = page
            .records
            .into_iter()
            .map(|r| Arc::new(from_stored(r)))
            .collect();
        Ok(assemble(disk, page.end, held.records, limit))
    }

    /// Every record of `plan` that redb holds, for a restore by plan; empty
    /// when the journal never evicted anything. Waits until every record
    /// appended so far is folded first, so a record the journal evicts before
    /// the library looks is in what this returns (the library keeps, of
    /// these, the ids below its window: `SafeMap::restore_plan_with`).
    pub(super) async fn plan_history(
        &self,
        storage: &Storage,
        plan: PlanId,
    ) -> Result<Vec<Record>, ApiError> {
        if self.journal.first_held_id().get() <= 1 {
            return Ok(Vec::new());
        }
        let last = self.journal.last_audit_id().get();
        storage.wait_folded(last).await.map_err(fold_error)?;
        let rows = storage
            .history_plan(plan.to_string(), u64::MAX)
            .await
            .map_err(read_error)?;
        Ok(rows.into_iter().map(from_stored).collect())
    }

    /// The record with audit id `id` as redb holds it (None: pruned), after
    /// waiting until it is folded.
    pub(super) async fn stored_record(
        &self,
        storage: &Storage,
        id: u64,
    ) -> Result<Option<Record>, ApiError> {
        storage.wait_folded(id).await.map_err(fold_error)?;
        let row = storage.history_record(id).await.map_err(read_error)?;
        Ok(row.map(from_stored))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use safemap::{AuditId, Op, Revision};
    use std::time::SystemTime;

    fn r(id: u64) -> Arc<Record> {
        Arc::new(Record {
            id: AuditId::new(id),
            at: SystemTime::now(),
            map: "m".into(),
            key: format!("k{id}"),
            op: Op::Put,
            revision: Revision::new(id),
            previous_revision: None,
            create_revision: Revision::new(id),
            version: 1,
            reason: None,
            actor: None,
            trace_id: None,
            plan_id: None,
            value: None,
            previous_value: None,
        })
    }

    fn ids(p: &AuditPage) -> Vec<u64> {
        p.records.iter().map(|r| r.id.get()).collect()
    }

    #[test]
    fn a_page_continues_from_disk_into_memory_without_gap_or_duplicate() {
        let disk = vec![r(3), r(4)];
        let memory = vec![r(5), r(6), r(7)];
        let p = assemble(disk.clone(), ScanEnd::Exhausted, memory.clone(), 3);
        assert_eq!((ids(&p), p.next), (vec![3, 4, 5], Some(5)));
        let p = assemble(disk.clone(), ScanEnd::Exhausted, memory.clone(), 5);
        assert_eq!((ids(&p), p.next), (vec![3, 4, 5, 6, 7], None));
        // Only memory: the journal's own paging.
        let p = assemble(Vec::new(), ScanEnd::Exhausted, memory, 2);
        assert_eq!((ids(&p), p.next), (vec![5, 6], Some(6)));
    }

    #[test]
    fn a_full_disk_page_never_reaches_memory() {
        let p = assemble(vec![r(1), r(2), r(3)], ScanEnd::Full, vec![r(9)], 2);
        assert_eq!((ids(&p), p.next), (vec![1, 2], Some(2)));
    }

    #[test]
    fn a_capped_scan_ends_the_page_where_it_stopped() {
        let p = assemble(
            vec![r(2)],
            ScanEnd::Capped { last_scanned: 40 },
            vec![r(90)],
            5,
        );
        assert_eq!((ids(&p), p.next), (vec![2], Some(40)));
        let p = assemble(
            Vec::new(),
            ScanEnd::Capped { last_scanned: 40 },
            vec![r(90)],
            5,
        );
        assert_eq!((ids(&p), p.next), (Vec::<u64>::new(), Some(40)));
    }
}
