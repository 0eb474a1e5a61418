//! Restore on the local store, from the journal's window or, for a delete
//! older than it (within retention), from the record redb holds: written
//! back exactly as a recent one (only where the key is still absent, else
//! skipped `recreated`; audited), and 410 `retention_expired` past retention.

use safemap::{AuditId, PlanId, Reason, RestoreError, RestoreReport};

use super::{Map, Shared};
use crate::error::ApiError;
use crate::storage::Storage;

impl Shared {
    /// Restores one delete (`Ok`: its audit id) or a plan's deletes (`Err`:
    /// the plan id as given) of map `m`; `refuse` turns a library refusal
    /// into the answer.
    pub(super) async fn restore_local(
        &self,
        storage: &Storage,
        m: &Map,
        which: &Result<u64, String>,
        why: Reason,
        refuse: impl Fn(RestoreError) -> ApiError,
    ) -> Result<RestoreReport<String>, ApiError> {
        match which {
            Ok(id) => {
                self.restore_one(storage, m, AuditId::new(*id), why, refuse)
                    .await
            }
            Err(p) => {
                let Ok(plan) = p.parse::<PlanId>() else {
                    return Err(refuse(RestoreError::NotFound));
                };
                let older = self.plan_history(storage, plan).await?;
                m.restore_plan_with(plan, older, why).map_err(refuse)
            }
        }
    }

    async fn restore_one(
        &self,
        storage: &Storage,
        m: &Map,
        id: AuditId,
        why: Reason,
        refuse: impl Fn(RestoreError) -> ApiError,
    ) -> Result<RestoreReport<String>, ApiError> {
        // Ids at or above the window's oldest (and 0, and ids never written)
        // are the journal's to answer. One evicted between this check and the
        // library's look answers RetentionExpired there: it is then read from
        // redb like any older one.
        if id.get() == 0 || id >= self.journal.first_held_id() {
            match m.restore(id, why.clone()) {
                Err(RestoreError::RetentionExpired) if id < self.journal.first_held_id() => {}
                other => return other.map_err(refuse),
            }
        }
        // Every id below the window was written (ids are contiguous), so a
        // row redb no longer holds was pruned past retention.
        match self.stored_record(storage, id.get()).await? {
            Some(record) => m.restore_record(record, why).map_err(refuse),
            None => Err(refuse(RestoreError::RetentionExpired)),
        }
    }
}
