//! Planned removal: `plan_remove` (dry run) and `execute`.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::time::{Instant, SystemTime};

use super::SafeMap;
use super::remove::Removal;
use crate::error::{DeleteError, ExecuteError};
use crate::ids::{PlanId, Revision};
use crate::plan::{Conflict, ExecuteReport, Plan, PlanSlot, Selector};
use crate::reason::Reason;

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Ord + Clone + Debug,
    V: Clone,
    S: BuildHasher,
{
    /// A dry run: selects entries, pins each one's revision and notes which a
    /// deny rule would veto. Nothing is removed. The plan is kept by the map
    /// until executed or expired ([`Builder::plan_ttl`](crate::Builder::plan_ttl)).
    ///
    /// The selection is weakly consistent (a scan that does not stop writers);
    /// that is safe because execution removes a key only at its pinned revision.
    ///
    /// # Examples
    ///
    /// ```
    /// use safemap::{Reason, SafeMap, Selector};
    /// let map: SafeMap<String, u32> = SafeMap::new();
    /// for i in 0..5 { let _ = map.insert(format!("o-{i}"), i); }
    /// let plan = map.plan_remove(Selector::all().prefix("o-").filter(|_, v| *v < 3));
    /// assert_eq!(plan.count(), 3);
    /// let report = map.execute(plan.id(), 3, Reason::new("cleanup")).unwrap();
    /// assert_eq!(report.deleted, 3);
    /// ```
    pub fn plan_remove(&self, selector: Selector<K, V>) -> Plan<K> {
        let _span = tracing::debug_span!("safemap.plan_remove", map = %self.name).entered();
        let at_revision = self.current_revision();
        let mut keys = Vec::new();
        let mut vetoed = Vec::new();
        {
            let view = self.pin();
            let mut consider = |key: &K, value: &V, revision: Revision| {
                if !selector.matches(key, value) {
                    return;
                }
                match self.deny.would_veto(key, value) {
                    Some(rule) => vetoed.push((key.clone(), rule.to_owned())),
                    None => keys.push((key.clone(), revision)),
                }
            };
            match &selector.keys {
                Some(wanted) => {
                    for key in wanted {
                        if let Some(e) = view.get(key) {
                            consider(e.key(), e.value(), e.revision());
                        }
                    }
                }
                None => {
                    for e in view.iter() {
                        consider(e.key(), e.value(), e.revision());
                    }
                }
            }
        }
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys.dedup_by(|a, b| a.0 == b.0);
        vetoed.sort();
        vetoed.dedup();
        let id = PlanId::fresh();
        let expires = Instant::now() + self.plan_ttl;
        let mut book = self.plans.lock();
        book.retire_expired(Instant::now());
        book.slots.insert(
            id,
            PlanSlot::Pending {
                keys: keys.clone(),
                expires,
            },
        );
        tracing::debug!(plan = %id, count = keys.len(), vetoed = vetoed.len(), "planned");
        Plan {
            id,
            at_revision,
            keys,
            vetoed,
            expires_at: SystemTime::now() + self.plan_ttl,
        }
    }

    /// Puts back a plan made before a restart (recovery), under its original
    /// id: pending until `expires_at`, executable with the same confirmation
    /// count. A plan already expired answers `Gone`, as it would have.
    pub fn load_plan(&self, id: PlanId, keys: Vec<(K, Revision)>, expires_at: SystemTime) {
        let now = Instant::now();
        let left = expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let slot = match left.is_zero() {
            true => PlanSlot::Used { since: now },
            false => PlanSlot::Pending {
                keys,
                expires: now + left,
            },
        };
        self.plans.lock().slots.insert(id, slot);
    }

    /// Executes a plan: removes each planned key that still has its pinned
    /// revision, through the deny rules but not the breaker (the confirmation is
    /// the deliberate act). Keys that changed or vanished since the plan are
    /// skipped and reported, never removed. A plan executes at most once.
    ///
    /// # Errors
    ///
    /// [`ExecuteError::ReasonRequired`] / [`ExecuteError::ReasonTooLong`] and
    /// [`ExecuteError::ConfirmCountMismatch`] leave the plan usable;
    /// [`ExecuteError::NotFound`] for an unknown plan, [`ExecuteError::Gone`]
    /// for an expired or used one.
    ///
    /// # Panics
    ///
    /// Only if a deny rule panics; the plan is then used up, and the keys removed
    /// before the panic are journaled with the plan's id, so `restore_plan` can
    /// undo them.
    pub fn execute(
        &self,
        plan: PlanId,
        confirm_count: usize,
        reason: impl Into<Reason>,
    ) -> Result<ExecuteReport<K>, ExecuteError> {
        let reason = reason.into();
        let _span =
            tracing::debug_span!("safemap.execute", map = %self.name, plan = %plan).entered();
        reason.check_for_removal()?;
        let keys = {
            let mut book = self.plans.lock();
            book.retire_expired(Instant::now());
            let slot = book.slots.get_mut(&plan).ok_or(ExecuteError::NotFound)?;
            match slot {
                PlanSlot::Used { .. } => return Err(ExecuteError::Gone),
                PlanSlot::Pending { keys, .. } if keys.len() != confirm_count => {
                    return Err(ExecuteError::ConfirmCountMismatch {
                        expected: keys.len(),
                        got: confirm_count,
                    });
                }
                PlanSlot::Pending { keys, .. } => {
                    let keys = std::mem::take(keys);
                    *slot = PlanSlot::Used {
                        since: Instant::now(),
                    };
                    keys
                }
            }
        };
        let mut report = ExecuteReport {
            deleted: 0,
            conflicts: Vec::new(),
            vetoed: Vec::new(),
            audit_ids: None,
        };
        for (key, planned) in &keys {
            let removal = Removal {
                expect: Some(*planned),
                reason: &reason,
                plan: Some(plan),
                breaker: false,
            };
            match self.remove_one(key, &removal) {
                Ok(removed) => {
                    report.deleted += 1;
                    if let Some(id) = removed.audit_id {
                        let first = report.audit_ids.map_or(id, |(first, _)| first);
                        report.audit_ids = Some((first, id));
                    }
                }
                Err(DeleteError::Vetoed { rule }) => report.vetoed.push((key.clone(), rule)),
                Err(DeleteError::RevisionMismatch { current }) => {
                    report.conflicts.push(Conflict {
                        key: key.clone(),
                        planned_revision: *planned,
                        current_revision: current,
                    });
                }
                Err(_) => report.conflicts.push(Conflict {
                    key: key.clone(),
                    planned_revision: *planned,
                    current_revision: None,
                }),
            }
        }
        tracing::debug!(
            deleted = report.deleted,
            conflicts = report.conflicts.len(),
            outcome = "executed"
        );
        Ok(report)
    }
}
