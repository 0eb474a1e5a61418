//! Planned removal: a dry run that pins what it would remove, then an execution
//! that removes exactly that, or reports why not.

use std::collections::HashMap;
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

    /// How many keys the plan will remove (vetoed keys not counted): the number
    /// an execution must confirm.
    pub fn count(&self) -> usize {
        self.keys.len()
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
