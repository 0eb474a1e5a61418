//! Delete plans outlive a restart (STORAGE.md, "Delete plans"): each plan is
//! written to storage when it is made (a cascading plan with its whole tree)
//! and again when it is executed, and the plans not yet forgotten are put
//! back into their maps at recovery.
//!
//! Invariant: a plan is acknowledged (201) only once its row is durable, and
//! an execution only once its deletes and the executed row are durable; the
//! row is queued after the deletes' records, so the log never holds an
//! executed row without them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use safemap::{ExecuteError, Plan, PlanId, Revision, TreeNode};

use super::{Map, Shared};
use crate::error::ApiError;
use crate::storage::{StoredNode, StoredPlan, now_ms};

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A stored plan's roots and (cascading plan) tree, as the library takes them
/// (the inverse of [`pending_row`]).
#[allow(clippy::type_complexity)]
pub(crate) fn plan_nodes(p: &StoredPlan) -> (Vec<(String, Revision)>, Vec<TreeNode<String>>) {
    let keys = p
        .keys
        .iter()
        .map(|(k, r)| (k.clone(), Revision::new(*r)))
        .collect();
    let tree = p
        .tree
        .iter()
        .map(|n| TreeNode {
            map: Arc::from(n.map.as_str()),
            key: n.key.clone(),
            revision: Revision::new(n.revision),
            parent: n.parent.clone().map(|(m, k)| (Arc::from(m.as_str()), k)),
            depth: usize::try_from(n.depth).unwrap_or(usize::MAX),
        })
        .collect();
    (keys, tree)
}

/// The stored row of a plan just made (not executed), as both stores keep it.
pub(crate) fn pending_row(map: &str, plan: &Plan<String>) -> StoredPlan {
    StoredPlan {
        id: plan.id().to_string(),
        map: map.to_string(),
        keys: plan
            .keys()
            .iter()
            .map(|(k, r)| (k.clone(), r.get()))
            .collect(),
        expires_at_ms: ms(plan.expires_at()),
        executed: false,
        tree: plan
            .tree()
            .iter()
            .map(|n| StoredNode {
                map: n.map.to_string(),
                key: n.key.clone(),
                revision: n.revision.get(),
                parent: n.parent.as_ref().map(|(m, k)| (m.to_string(), k.clone())),
                depth: n.depth as u64,
            })
            .collect(),
    }
}

impl Shared {
    /// Makes a new plan of `map` durable (503 if storage has failed); in
    /// cluster mode, writes it to etcd (`cluster::plans`).
    /// `creator` names the token that made it (kept with the plan in etcd).
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    pub async fn persist_plan(
        &self,
        map: &str,
        plan: &Plan<String>,
        creator: &str,
    ) -> Result<(), ApiError> {
        #[cfg(feature = "etcd")]
        if let Some(c) = self.cluster() {
            return c.store_plan(self, map, plan, creator).await;
        }
        self.write_plan(pending_row(map, plan)).await
    }

    /// Records durably that `plan` of `map` was executed: after a restart it
    /// answers `plan_gone`, as it did before.
    pub async fn persist_executed(&self, map: &str, plan: PlanId) -> Result<(), ApiError> {
        let row = StoredPlan {
            id: plan.to_string(),
            map: map.to_string(),
            keys: Vec::new(),
            expires_at_ms: now_ms(),
            executed: true,
            tree: Vec::new(),
        };
        self.write_plan(row).await
    }

    /// In cluster mode, waits until the replica applied etcd's current
    /// revision, so that a plan selects what etcd holds now (a plan made
    /// right after a write through another server sees it). Local: nothing.
    pub async fn catch_up(&self) -> Result<(), ApiError> {
        #[cfg(feature = "etcd")]
        if let Some(c) = self.cluster() {
            return c.catch_up().await;
        }
        Ok(())
    }

    /// Executes `plan` of `map` (its replica or local map `m`) once,
    /// answering once durable (local) or committed and applied (etcd).
    pub async fn execute_plan(
        &self,
        m: &Map,
        map: &str,
        plan: PlanId,
        raw: &str,
        count: usize,
        reason: safemap::Reason,
    ) -> Result<safemap::ExecuteReport<String>, ApiError> {
        #[cfg(feature = "etcd")]
        if let Some(c) = self.cluster() {
            let _ = (m, plan);
            return c.execute_plan(self, map, raw, count, &reason).await;
        }
        let report = m
            .execute(plan, count, reason)
            .map_err(|e| crate::library_errors::execute_error(e, raw, count))?;
        self.until_durable(&report).await?;
        self.persist_executed(map, plan).await?;
        Ok(report)
    }

    /// The planned keys of a pending plan of any map, parents before
    /// children (a plain plan's keys are roots). `NotFound` when no map
    /// knows the plan, `Gone` when it was executed or expired.
    pub fn planned_tree(&self, plan: PlanId) -> Result<Vec<TreeNode<String>>, ExecuteError> {
        let mut gone = false;
        for (_, map) in self.all_maps() {
            match map.planned_tree(plan) {
                Ok(tree) => return Ok(tree),
                Err(ExecuteError::Gone) => gone = true,
                Err(_) => {}
            }
        }
        Err(if gone {
            ExecuteError::Gone
        } else {
            ExecuteError::NotFound
        })
    }

    async fn write_plan(&self, row: StoredPlan) -> Result<(), ApiError> {
        self.local_storage("delete plans")?
            .plan(row)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "writing a delete plan failed");
                ApiError::storage_unavailable()
            })
    }
}

/// Puts the stored plans back into their maps; returns how many are pending.
///
/// A plan whose deletes are in the audit journal (`executed_plans`) counts as
/// executed even when its executed row is missing: a crash between the
/// deletes becoming durable and that row must not make it executable again.
pub(super) fn load_plans(
    maps: &HashMap<String, Arc<Map>>,
    plans: Vec<StoredPlan>,
    executed_plans: &HashSet<String>,
) -> usize {
    let now = SystemTime::now();
    let mut pending = 0;
    for p in plans {
        let Ok(id) = p.id.parse::<PlanId>() else {
            tracing::error!(plan_id = %p.id, "skipping a plan row whose id is not 16 hex digits");
            continue;
        };
        let Some(map) = maps.get(&p.map) else {
            continue;
        };
        let expires_at = UNIX_EPOCH + Duration::from_millis(p.expires_at_ms);
        if p.executed || executed_plans.contains(&p.id) {
            // Past its expiry, the library keeps it as used: `plan_gone`.
            map.load_plan(id, Vec::new(), UNIX_EPOCH);
            continue;
        }
        if expires_at > now {
            pending += 1;
        }
        let (keys, tree) = plan_nodes(&p);
        map.load_plan_tree(id, keys, tree, expires_at);
    }
    pending
}
