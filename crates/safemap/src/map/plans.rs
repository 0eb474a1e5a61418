//! Planned removal: `plan_remove` (dry run) and `execute`.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::time::{Instant, SystemTime};

use super::SafeMap;
use super::remove::Removal;
use crate::error::{DeleteError, ExecuteError};
use crate::ids::{PlanId, Revision};
use crate::plan::{
    Blocked, BlockedWhy, ChangeKind, Changed, Conflict, ExecuteReport, Plan, PlanSlot, Selector,
};
use crate::reason::Reason;

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Ord + Clone + Debug + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Send + Sync,
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
    ///
    /// A selected key that other keys refer to is not planned: it is listed
    /// under [`Plan::blocked`] (why `Referenced`, with the path to its first
    /// referrer). To remove it with its referrers, see
    /// [`SafeMap::plan_remove_cascade`].
    pub fn plan_remove(&self, selector: Selector<K, V>) -> Plan<K> {
        self.plan(selector, false)
    }

    /// A cascading dry run: the selected keys (the roots) and, transitively,
    /// every key that refers to a planned key through a
    /// [`OnDelete::Cascade`](crate::OnDelete::Cascade) reference, in any map of
    /// the journal. A root whose subtree holds a key referred to through a
    /// `restrict` reference from outside the subtree, or a key vetoed below
    /// the root, is blocked (listed with the path to the blocking key, not
    /// counted, nothing of it planned). A key reachable from two roots is
    /// planned once, under the first root in key order. Nothing is removed:
    /// the whole tree is shown ([`Plan::tree`], [`Plan::tree_counts`],
    /// [`Plan::depth`]) before [`SafeMap::execute`] confirms its count.
    pub fn plan_remove_cascade(&self, selector: Selector<K, V>) -> Plan<K> {
        self.plan(selector, true)
    }

    fn plan(&self, selector: Selector<K, V>, cascade: bool) -> Plan<K> {
        let _span =
            tracing::debug_span!("safemap.plan_remove", map = %self.name, cascade).entered();
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
        let (keys, tree, blocked) = match cascade {
            true => self.cascade_tree(keys),
            false => self.block_referenced(keys),
        };
        let id = PlanId::fresh();
        let expires = Instant::now() + self.plan_ttl;
        let mut book = self.plans.lock();
        book.retire_expired(Instant::now());
        book.slots.insert(
            id,
            PlanSlot::Pending {
                keys: keys.clone(),
                tree: tree.clone(),
                expires,
            },
        );
        let plan = Plan {
            id,
            at_revision,
            keys,
            vetoed,
            expires_at: SystemTime::now() + self.plan_ttl,
            map: std::sync::Arc::clone(&self.name),
            tree,
            blocked,
        };
        tracing::debug!(
            plan = %id,
            count = plan.count(),
            depth = plan.depth(),
            tree = ?plan.tree_counts(),
            vetoed = plan.vetoed.len(),
            blocked = plan.blocked.len(),
            "planned"
        );
        plan
    }

    /// Splits selected keys into those without referrers (planned) and those
    /// with (blocked, `Referenced`), for a plan that does not cascade.
    #[allow(clippy::type_complexity)]
    fn block_referenced(
        &self,
        keys: Vec<(K, Revision)>,
    ) -> (
        Vec<(K, Revision)>,
        Vec<crate::plan::TreeNode<K>>,
        Vec<Blocked<K>>,
    ) {
        let mut planned = Vec::with_capacity(keys.len());
        let mut blocked = Vec::new();
        for (key, revision) in keys {
            let mut referrers = self.refs().referrers_except_self(&self.name, &key);
            referrers.sort();
            match referrers.into_iter().next() {
                Some(first) => blocked.push(Blocked {
                    path: vec![
                        (std::sync::Arc::clone(&self.name), key.clone()),
                        (first.map, first.key),
                    ],
                    key,
                    why: BlockedWhy::Referenced,
                }),
                None => planned.push((key, revision)),
            }
        }
        (planned, Vec::new(), blocked)
    }

    /// The keys a pending plan would remove, parents before children, each
    /// with its pinned revision, parent and depth (a plan that does not
    /// cascade: its keys, each a root at depth 1). For paging a plan's tree
    /// after it was made.
    ///
    /// # Errors
    ///
    /// [`ExecuteError::NotFound`] for an unknown plan, [`ExecuteError::Gone`]
    /// for an executed or expired one.
    pub fn planned_tree(
        &self,
        plan: PlanId,
    ) -> Result<Vec<crate::plan::TreeNode<K>>, ExecuteError> {
        let mut book = self.plans.lock();
        book.retire_expired(Instant::now());
        match book.slots.get(&plan).ok_or(ExecuteError::NotFound)? {
            PlanSlot::Used { .. } => Err(ExecuteError::Gone),
            PlanSlot::Pending { tree, .. } if !tree.is_empty() => Ok(tree.clone()),
            PlanSlot::Pending { keys, .. } => Ok(keys
                .iter()
                .map(|(key, revision)| crate::plan::TreeNode {
                    map: std::sync::Arc::clone(&self.name),
                    key: key.clone(),
                    revision: *revision,
                    parent: None,
                    depth: 1,
                })
                .collect()),
        }
    }

    /// Puts back a plain (not cascading) plan made before a restart
    /// (recovery), under its original id: pending until `expires_at`,
    /// executable with the same confirmation count. A plan already expired
    /// answers `Gone`, as it would have. A cascading plan is put back with
    /// [`SafeMap::load_plan_tree`].
    pub fn load_plan(&self, id: PlanId, keys: Vec<(K, Revision)>, expires_at: SystemTime) {
        self.load_plan_tree(id, keys, Vec::new(), expires_at);
    }

    /// Puts back a cascading plan made before a restart (recovery): its roots
    /// (`keys`) and its whole tree as [`Plan::tree`] gave it (parents before
    /// children, each root's subtree contiguous), under its original id and
    /// executable until `expires_at` with the tree's count. An empty `tree`
    /// is a plain plan ([`SafeMap::load_plan`]). The tree is not re-checked:
    /// execution checks every key's pinned revision and referrers anyway.
    pub fn load_plan_tree(
        &self,
        id: PlanId,
        keys: Vec<(K, Revision)>,
        tree: Vec<crate::plan::TreeNode<K>>,
        expires_at: SystemTime,
    ) {
        let now = Instant::now();
        let left = expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let slot = match left.is_zero() {
            true => PlanSlot::Used { since: now },
            false => PlanSlot::Pending {
                keys,
                tree,
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
        // A cascading plan's tree size per map and depth are recorded on the
        // span itself (references.md, "Observability").
        let span = tracing::debug_span!(
            "safemap.execute",
            map = %self.name,
            plan = %plan,
            tree = tracing::field::Empty,
            depth = tracing::field::Empty,
        )
        .entered();
        reason.check_for_removal()?;
        let (keys, tree) = {
            let mut book = self.plans.lock();
            book.retire_expired(Instant::now());
            let slot = book.slots.get_mut(&plan).ok_or(ExecuteError::NotFound)?;
            match slot {
                PlanSlot::Used { .. } => return Err(ExecuteError::Gone),
                PlanSlot::Pending { keys, tree, .. } => {
                    let count = if tree.is_empty() {
                        keys.len()
                    } else {
                        tree.len()
                    };
                    if count != confirm_count {
                        return Err(ExecuteError::ConfirmCountMismatch {
                            expected: count,
                            got: confirm_count,
                        });
                    }
                    let taken = (std::mem::take(keys), std::mem::take(tree));
                    *slot = PlanSlot::Used {
                        since: Instant::now(),
                    };
                    taken
                }
            }
        };
        if !tree.is_empty() {
            let mut counts = std::collections::BTreeMap::<&str, usize>::new();
            for node in &tree {
                *counts.entry(&node.map).or_insert(0) += 1;
            }
            let depth = tree.iter().map(|n| n.depth).max().unwrap_or(0);
            span.record("tree", tracing::field::debug(&counts));
            span.record("depth", depth);
            let report = self.execute_tree(plan, &tree, &reason);
            tracing::debug!(
                tree = ?counts,
                depth,
                deleted = report.deleted,
                conflicts = report.conflicts.len(),
                outcome = "executed"
            );
            return Ok(report);
        }
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
                        changed: None,
                    });
                }
                Err(DeleteError::Referenced { .. }) => {
                    let mut referrers = self.refs().referrers_except_self(&self.name, key);
                    referrers.sort();
                    report.conflicts.push(Conflict {
                        key: key.clone(),
                        planned_revision: *planned,
                        current_revision: Some(*planned),
                        changed: referrers.into_iter().next().map(|r| Changed {
                            map: r.map,
                            key: r.key,
                            planned_revision: None,
                            current_revision: None,
                            why: ChangeKind::NewReferrer,
                        }),
                    });
                }
                Err(_) => report.conflicts.push(Conflict {
                    key: key.clone(),
                    planned_revision: *planned,
                    current_revision: None,
                    changed: None,
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
