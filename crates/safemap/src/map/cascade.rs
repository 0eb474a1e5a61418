//! Cascading plans: the tree of a plan (who would go with each root), and its
//! execution, one root's subtree as one atomic step.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use super::SafeMap;
use crate::ids::{PlanId, Revision};
use crate::plan::{Blocked, BlockedWhy, ChangeKind, Changed, Conflict, ExecuteReport, TreeNode};
use crate::reason::Reason;
use crate::refs::{Link, Linked, OnDelete, Referrer, lock_stripes};

/// A map of the journal: this one, or another found by name.
pub(super) enum Handle<'a, K, V> {
    Own(&'a dyn Linked<K, V>),
    Other(Link<K, V>),
}

impl<K, V> Handle<'_, K, V> {
    pub(super) fn get(&self) -> &dyn Linked<K, V> {
        match self {
            Handle::Own(map) => *map,
            Handle::Other(map) => &**map,
        }
    }
}

type NodeId<K> = (Arc<str>, K);

/// What a planned root's tree looks like, or why it is blocked.
type Planned<K> = Result<Vec<TreeNode<K>>, Blocked<K>>;

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Clone + Debug + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Send + Sync,
{
    /// The map named `name` on this map's journal.
    pub(super) fn handle(&self, name: &str) -> Option<Handle<'_, K, V>> {
        if name == &*self.name {
            Some(Handle::Own(self))
        } else {
            self.journal.refs().find(name).map(Handle::Other)
        }
    }
}

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Ord + Clone + Debug + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Send + Sync,
{
    fn on_delete(&self, referrer: &Referrer<K>) -> OnDelete {
        self.handle(&referrer.map)
            .and_then(|h| {
                h.get()
                    .refs()
                    .declared
                    .iter()
                    .find(|d| d.name == referrer.reference)
                    .map(|d| d.on_delete)
            })
            // A referrer whose map cannot be reached cannot be cascaded to.
            .unwrap_or(OnDelete::Restrict)
    }

    /// Plans every root's subtree (see `plan_remove_cascade`): the roots kept,
    /// the tree (each kept root's subtree contiguous, parents first), and the
    /// blocked roots. Weakly consistent, like any plan: execution re-checks
    /// everything under the keys' stripes.
    #[allow(clippy::type_complexity)]
    pub(super) fn cascade_tree(
        &self,
        roots: Vec<(K, Revision)>,
    ) -> (Vec<(K, Revision)>, Vec<TreeNode<K>>, Vec<Blocked<K>>) {
        let mut planned: HashSet<NodeId<K>> = HashSet::new();
        let (mut kept, mut tree, mut blocked) = (Vec::new(), Vec::new(), Vec::new());
        for (root, revision) in roots {
            if planned.contains(&(Arc::clone(&self.name), root.clone())) {
                // Already planned under an earlier root that reaches it.
                continue;
            }
            match self.plan_root(&root, revision, &planned) {
                Ok(nodes) => {
                    planned.extend(nodes.iter().map(|n| (Arc::clone(&n.map), n.key.clone())));
                    kept.push((root, revision));
                    tree.extend(nodes);
                }
                Err(block) => blocked.push(block),
            }
        }
        (kept, tree, blocked)
    }

    fn plan_root(&self, root: &K, revision: Revision, planned: &HashSet<NodeId<K>>) -> Planned<K> {
        let mut nodes = vec![TreeNode {
            map: Arc::clone(&self.name),
            key: root.clone(),
            revision,
            parent: None,
            depth: 1,
        }];
        let mut parents: Vec<Option<usize>> = vec![None];
        let mut index: HashMap<NodeId<K>, usize> = HashMap::new();
        index.insert((Arc::clone(&self.name), root.clone()), 0);
        let mut restricting: Vec<(usize, Referrer<K>)> = Vec::new();
        let path =
            |nodes: &[TreeNode<K>], parents: &[Option<usize>], mut at: usize, last: NodeId<K>| {
                let mut path = vec![last];
                loop {
                    path.push((Arc::clone(&nodes[at].map), nodes[at].key.clone()));
                    match parents[at] {
                        Some(up) => at = up,
                        None => break,
                    }
                }
                path.reverse();
                path
            };
        let mut at = 0;
        while at < nodes.len() {
            let (map, key, depth) = (
                Arc::clone(&nodes[at].map),
                nodes[at].key.clone(),
                nodes[at].depth,
            );
            let Some(handle) = self.handle(&map) else {
                at += 1;
                continue;
            };
            let mut referrers = handle.get().refs().referrers(&key);
            referrers.sort();
            for r in referrers {
                if r.map == map && r.key == key {
                    continue;
                }
                if self.on_delete(&r) == OnDelete::Restrict {
                    restricting.push((at, r));
                    continue;
                }
                let id = (Arc::clone(&r.map), r.key.clone());
                if index.contains_key(&id) || planned.contains(&id) {
                    continue;
                }
                let Some(of) = self.handle(&r.map) else {
                    continue;
                };
                let Some((value, revision)) = of.get().current(&r.key) else {
                    continue;
                };
                if let Some(rule) = of.get().would_veto(&r.key, &value) {
                    return Err(Blocked {
                        key: root.clone(),
                        why: BlockedWhy::Vetoed { rule },
                        path: path(&nodes, &parents, at, id),
                    });
                }
                index.insert(id, nodes.len());
                parents.push(Some(at));
                nodes.push(TreeNode {
                    map: r.map,
                    key: r.key,
                    revision,
                    parent: Some((Arc::clone(&map), key.clone())),
                    depth: depth + 1,
                });
            }
            at += 1;
        }
        // A restrict reference blocks only from outside the root's own subtree.
        for (at, r) in restricting {
            let id = (Arc::clone(&r.map), r.key.clone());
            if !index.contains_key(&id) {
                return Err(Blocked {
                    key: root.clone(),
                    why: BlockedWhy::Restricted {
                        reference: r.reference.to_string(),
                    },
                    path: path(&nodes, &parents, at, id),
                });
            }
        }
        Ok(nodes)
    }

    /// Executes a cascading plan's tree, root by root in key order. Each
    /// root's subtree is one atomic step: under the references lock and the
    /// stripes of every key of the subtree and of every key they refer to, it
    /// checks that each key still has its pinned revision and that no key
    /// outside the subtree refers into it; then removes the subtree children
    /// first, or nothing of it.
    pub(super) fn execute_tree(
        &self,
        plan: PlanId,
        tree: &[TreeNode<K>],
        reason: &Reason,
    ) -> ExecuteReport<K> {
        let mut report = ExecuteReport {
            deleted: 0,
            conflicts: Vec::new(),
            vetoed: Vec::new(),
            audit_ids: None,
        };
        // Each root's subtree runs from the root (depth 1) to the next root.
        for subtree in tree.chunk_by(|_, next| next.depth != 1) {
            self.execute_root(plan, subtree, reason, &mut report);
        }
        report
    }

    fn execute_root(
        &self,
        plan: PlanId,
        subtree: &[TreeNode<K>],
        reason: &Reason,
        report: &mut ExecuteReport<K>,
    ) {
        let root = &subtree[0];
        let _references = self.journal.refs().lock();
        let handles: Vec<Option<Handle<'_, K, V>>> =
            subtree.iter().map(|n| self.handle(&n.map)).collect();
        // The keys the subtree's values refer to: their index entries go with them.
        let mut targets: Vec<(Handle<'_, K, V>, K)> = Vec::new();
        for (node, handle) in subtree.iter().zip(&handles) {
            let Some(handle) = handle else { continue };
            let Some((value, _)) = handle.get().current(&node.key) else {
                continue;
            };
            for (decl, key) in handle.get().refs().targets(&value) {
                let to = &handle.get().refs().declared[decl].to;
                if let Some(target) = self.handle(to) {
                    targets.push((target, key));
                }
            }
        }
        let mut keys: Vec<(&dyn Linked<K, V>, &K)> = subtree
            .iter()
            .zip(&handles)
            .filter_map(|(n, h)| h.as_ref().map(|h| (h.get(), &n.key)))
            .collect();
        keys.extend(targets.iter().map(|(h, k)| (h.get(), k)));
        let stripes = lock_stripes(&keys, None);
        let members: HashSet<NodeId<K>> = subtree
            .iter()
            .map(|n| (Arc::clone(&n.map), n.key.clone()))
            .collect();
        let root_current = handles[0]
            .as_ref()
            .and_then(|h| h.get().current(&root.key))
            .map(|(_, r)| r);
        let conflict = |changed: Changed<K>| Conflict {
            key: root.key.clone(),
            planned_revision: root.revision,
            current_revision: root_current,
            changed: Some(changed),
        };
        for (node, handle) in subtree.iter().zip(&handles) {
            let current = handle.as_ref().and_then(|h| h.get().current(&node.key));
            let changed = |current_revision, why| Changed {
                map: Arc::clone(&node.map),
                key: node.key.clone(),
                planned_revision: Some(node.revision),
                current_revision,
                why,
            };
            let (handle, value) = match (handle, current) {
                (Some(h), Some((value, revision))) if revision == node.revision => (h, value),
                (_, Some((_, revision))) => {
                    report
                        .conflicts
                        .push(conflict(changed(Some(revision), ChangeKind::Changed)));
                    return;
                }
                (_, None) => {
                    report
                        .conflicts
                        .push(conflict(changed(None, ChangeKind::Deleted)));
                    return;
                }
            };
            if let Some(rule) = handle.get().would_veto(&node.key, &value) {
                report.vetoed.push((root.key.clone(), rule));
                return;
            }
            let mut outside: Vec<Referrer<K>> = handle
                .get()
                .refs()
                .referrers(&node.key)
                .into_iter()
                .filter(|r| !members.contains(&(Arc::clone(&r.map), r.key.clone())))
                .collect();
            outside.sort();
            if let Some(r) = outside.into_iter().next() {
                report.conflicts.push(conflict(Changed {
                    map: r.map,
                    key: r.key,
                    planned_revision: None,
                    current_revision: None,
                    why: ChangeKind::NewReferrer,
                }));
                return;
            }
        }
        // Children before parents (the tree lists parents first).
        for (node, handle) in subtree.iter().zip(&handles).rev() {
            let Some(handle) = handle else { continue };
            let Ok(audit_id) = handle.get().remove_held(&stripes, &node.key, reason, plan) else {
                continue;
            };
            if let Some(id) = audit_id {
                let first = report.audit_ids.map_or(id, |(first, _)| first);
                report.audit_ids = Some((first, id));
            }
            report.deleted += 1;
        }
    }
}
