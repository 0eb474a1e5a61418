//! Delete plans outlive a restart (STORAGE.md, "Delete plans"): each plan is
//! written to storage when it is made and again when it is executed, and the
//! plans not yet forgotten are put back into their maps at recovery.
//!
//! Invariant: a plan is acknowledged (201) only once its row is durable, and
//! an execution only once its deletes and the executed row are durable; the
//! row is queued after the deletes' records, so the log never holds an
//! executed row without them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use safemap::{Plan, PlanId, Revision};

use super::{Map, Shared};
use crate::error::ApiError;
use crate::storage::{StoredPlan, now_ms};

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Shared {
    /// Makes a new plan of `map` durable (503 if storage has failed).
    pub async fn persist_plan(&self, map: &str, plan: &Plan<String>) -> Result<(), ApiError> {
        let row = StoredPlan {
            id: plan.id().to_string(),
            map: map.to_string(),
            keys: plan
                .keys()
                .iter()
                .map(|(k, r)| (k.clone(), r.get()))
                .collect(),
            expires_at_ms: ms(plan.expires_at()),
            executed: false,
        };
        self.write_plan(row).await
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
        };
        self.write_plan(row).await
    }

    async fn write_plan(&self, row: StoredPlan) -> Result<(), ApiError> {
        self.storage.plan(row).await.map_err(|e| {
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
        let keys = p
            .keys
            .into_iter()
            .map(|(k, r)| (k, Revision::new(r)))
            .collect();
        map.load_plan(id, keys, expires_at);
    }
    pending
}
