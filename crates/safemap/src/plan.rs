//! Planned removal: a dry run that pins what it would remove, then an execution
//! that removes exactly that, or reports why not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::ids::{AuditId, PlanId, Revision};

type Filter<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Which entries a plan selects: every part given must match (AND).
///
/// # Examples
///
/// ```
/// use safemap::Selector;
/// let stale: Selector<String, u32> = Selector::all().prefix("order-").filter(|_k, v| *v == 0);
/// # let _ = stale;
/// ```
pub struct Selector<K, V> {
    pub(crate) keys: Option<Vec<K>>,
    pub(crate) filters: Vec<Filter<K, V>>,
}

impl<K, V> Selector<K, V> {
    /// Every entry (narrow it with the other methods).
    pub fn all() -> Self {
        Selector {
            keys: None,
            filters: Vec::new(),
        }
    }

    /// Only these keys (those present).
    #[must_use]
    pub fn keys(mut self, keys: Vec<K>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Only entries for which `filter` is true.
    #[must_use]
    pub fn filter(mut self, filter: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filters.push(Box::new(filter));
        self
    }

    pub(crate) fn matches(&self, key: &K, value: &V) -> bool {
        self.filters.iter().all(|f| f(key, value))
    }
}

impl<K: AsRef<str>, V> Selector<K, V> {
    /// Only keys that start with `prefix`.
    #[must_use]
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.filter(move |k, _| k.as_ref().starts_with(&prefix))
    }
}

/// The result of a dry run: what an execution would remove, pinned at revisions.
#[must_use = "a plan does nothing until executed"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<K> {
    pub(crate) id: PlanId,
    pub(crate) at_revision: Revision,
    pub(crate) keys: Vec<(K, Revision)>,
    pub(crate) vetoed: Vec<(K, String)>,
    pub(crate) expires_at: SystemTime,
    /// The map's name (the roots' map).
    pub(crate) map: Arc<str>,
    /// A cascading plan's whole tree, parents before children, each root's
    /// subtree contiguous and in root key order; empty for other plans.
    pub(crate) tree: Vec<TreeNode<K>>,
    pub(crate) blocked: Vec<Blocked<K>>,
}

/// One planned key of a cascading plan's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeNode<K> {
    /// Its map.
    pub map: Arc<str>,
    /// The key.
    pub key: K,
    /// The revision it must still have when the plan executes.
    pub revision: Revision,
    /// The planned key it refers to (through a `cascade` reference); `None`
    /// for a root.
    pub parent: Option<(Arc<str>, K)>,
    /// 1 for a root, its parent's depth + 1 otherwise.
    pub depth: usize,
}

/// Why a selected root is not planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockedWhy {
    /// A key of its subtree is held by a `restrict` reference from outside
    /// the subtree; `reference` names that reference.
    Restricted {
        /// The reference's name.
        reference: String,
    },
    /// A key below the root is vetoed by a deny rule of its map.
    Vetoed {
        /// The rule's name.
        rule: String,
    },
    /// The plan does not cascade and the root has referrers.
    Referenced,
}

impl BlockedWhy {
    /// `"restricted"`, `"vetoed"` or `"referenced"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BlockedWhy::Restricted { .. } => "restricted",
            BlockedWhy::Vetoed { .. } => "vetoed",
            BlockedWhy::Referenced => "referenced",
        }
    }
}

/// A selected root that is not planned (and not counted), nor anything of its subtree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked<K> {
    /// The root.
    pub key: K,
    /// Why.
    pub why: BlockedWhy,
    /// From the root (first) to the key that blocks (last): the outside
    /// referrer for restricted/referenced, the vetoed key for vetoed.
    pub path: Vec<(Arc<str>, K)>,
}

impl<K> Plan<K> {
    /// The id to execute it by.
    pub fn id(&self) -> PlanId {
        self.id
    }

    /// The map's revision when the plan was made.
    pub fn at_revision(&self) -> Revision {
        self.at_revision
    }

    /// How many keys the plan will remove (vetoed and blocked keys not
    /// counted), over every map of a cascading plan's tree: the number an
    /// execution must confirm.
    pub fn count(&self) -> usize {
        if self.tree.is_empty() {
            self.keys.len()
        } else {
            self.tree.len()
        }
    }

    /// Planned keys per map (the roots' map included, even at 0).
    pub fn tree_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        counts.insert(self.map.to_string(), 0);
        if self.tree.is_empty() {
            counts.insert(self.map.to_string(), self.keys.len());
        }
        for node in &self.tree {
            *counts.entry(node.map.to_string()).or_insert(0) += 1;
        }
        counts
    }

    /// The number of keys on the longest root-to-leaf path: 1 for roots
    /// alone, 0 for an empty plan.
    pub fn depth(&self) -> usize {
        match self.tree.iter().map(|n| n.depth).max() {
            Some(depth) => depth,
            None => usize::from(!self.keys.is_empty()),
        }
    }

    /// A cascading plan's whole tree, parents before children (empty for a
    /// plan that does not cascade: its keys are [`Plan::keys`]).
    pub fn tree(&self) -> &[TreeNode<K>] {
        &self.tree
    }

    /// Selected roots that are not planned, with why and the path to the blocking key.
    pub fn blocked(&self) -> &[Blocked<K>] {
        &self.blocked
    }

    /// The keys it will remove, in key order, each with the revision it must
    /// still have.
    pub fn keys(&self) -> &[(K, Revision)] {
        &self.keys
    }

    /// The first `n` keys, in key order.
    pub fn sample(&self, n: usize) -> Vec<&K> {
        self.keys.iter().take(n).map(|(k, _)| k).collect()
    }

    /// Keys selected but refused by a deny rule, with the rule's name.
    pub fn vetoed(&self) -> &[(K, String)] {
        &self.vetoed
    }

    /// When the plan stops being executable.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

/// A planned key that was not removed because it changed after the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict<K> {
    /// The key.
    pub key: K,
    /// The revision the plan pinned.
    pub planned_revision: Revision,
    /// Its revision now (`None`: removed meanwhile).
    pub current_revision: Option<Revision>,
    /// For a cascading root, the key of its subtree that changed (possibly
    /// the root itself); for a root that gained a referrer, that referrer.
    pub changed: Option<Changed<K>>,
}

/// What made a planned root conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed<K> {
    /// The map of the key that changed.
    pub map: Arc<str>,
    /// The key.
    pub key: K,
    /// Its planned revision (`None` for a new referrer).
    pub planned_revision: Option<Revision>,
    /// Its revision now (`None`: deleted).
    pub current_revision: Option<Revision>,
    /// What happened to it.
    pub why: ChangeKind,
}

/// What happened to a key of a planned subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Written since the plan.
    Changed,
    /// Removed since the plan.
    Deleted,
    /// Refers to a planned key and is not planned with it.
    NewReferrer,
}

impl ChangeKind {
    /// `"changed"`, `"deleted"` or `"new_referrer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Changed => "changed",
            ChangeKind::Deleted => "deleted",
            ChangeKind::NewReferrer => "new_referrer",
        }
    }
}

/// What an execution did.
#[must_use = "an execution report lists the keys that were skipped"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecuteReport<K> {
    /// Keys removed.
    pub deleted: usize,
    /// Keys skipped because they changed since the plan.
    pub conflicts: Vec<Conflict<K>>,
    /// Keys skipped because a deny rule refused them.
    pub vetoed: Vec<(K, String)>,
    /// The first and last audit ids of the removals (`None` when none, or no journal).
    pub audit_ids: Option<(AuditId, AuditId)>,
}

/// A plan as the map keeps it.
pub(crate) enum PlanSlot<K> {
    Pending {
        keys: Vec<(K, Revision)>,
        /// A cascading plan's tree (see `Plan::tree`); empty otherwise.
        tree: Vec<TreeNode<K>>,
        expires: Instant,
    },
    /// Executing, executed or expired: a plan runs at most once. Kept as a
    /// tombstone (no keys) for [`TOMBSTONE_TTL`] so that it answers `Gone`.
    Used { since: Instant },
}

/// How long a used or expired plan is remembered (answering `Gone`); after
/// that it answers `NotFound`. Bounds the memory of plan bookkeeping.
pub(crate) const TOMBSTONE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The plans of one map.
pub(crate) struct PlanBook<K> {
    pub(crate) slots: HashMap<PlanId, PlanSlot<K>>,
}

impl<K> PlanBook<K> {
    pub(crate) fn new() -> Self {
        PlanBook {
            slots: HashMap::new(),
        }
    }

    /// Drops the keys of pending plans that expired before `now`, keeping a
    /// tombstone so that they answer `Gone` (not `NotFound`), and forgets
    /// tombstones older than [`TOMBSTONE_TTL`].
    pub(crate) fn retire_expired(&mut self, now: Instant) {
        self.slots.retain(|_, slot| match slot {
            PlanSlot::Pending { expires, .. } => {
                if *expires <= now {
                    *slot = PlanSlot::Used { since: *expires };
                }
                true
            }
            PlanSlot::Used { since } => now.saturating_duration_since(*since) < TOMBSTONE_TTL,
        });
    }
}
