//! References between maps that share a journal: declarations, the referrer
//! index, and the journal-wide registry through which maps find each other.
//!
//! # The protocol (why a put that adds a reference and a delete of its target
//! never both succeed)
//!
//! * A map's **referrer index** lists, per key of that map, who refers to it
//!   (`map`, `key`, `reference`). It is changed only while the thread holds
//!   the *target key's* stripe (of the target map's [`KeyLocks`]).
//! * A **write to a map that declares references** (put, restore, removal)
//!   takes the journal's references lock first, then its own key's stripe,
//!   then the stripes of every key its old and new value refer to. With all of
//!   them held it checks that the new targets exist, writes, and moves its
//!   entries in the targets' indexes. So for each target, its presence check
//!   and the index entry happen under the target's stripe, atomically with
//!   the write's publication.
//! * A **removal in a map that is referred to** holds its key's stripe (as
//!   every write does) and, under it, refuses when the index lists a referrer.
//!   A put that referred to the key either took the stripe before (then the
//!   index shows it and the removal is refused) or after (then the key is
//!   gone and the put is refused): never both succeed.
//! * **Deadlock freedom**: only holders of the references lock hold more than
//!   one stripe, and there is one such holder at a time per journal; every
//!   other write holds a single stripe and waits for nothing but the
//!   sequencer (a leaf). Nobody takes the references lock while holding a
//!   stripe. Within its hold, a writer takes stripes in (map order, stripe)
//!   order, each at most once.
//! * **Cost**: reads take nothing. Writes to maps that declare no reference
//!   never take the references lock; removals in maps nobody ever referred to
//!   read one flag.
//!
//! [`KeyLocks`]: crate::engine::KeyLocks

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::engine::KeyGuard;
use crate::ids::{AuditId, PlanId, Revision};
use crate::reason::Reason;
use crate::sync::{Mutex, MutexGuard};

/// What a cascading plan does with a key that refers to a planned key through
/// this reference. Single-key removals of a referenced key are refused
/// whatever this says: a cascade happens only through a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnDelete {
    /// The referrer blocks the removal of its target (the default).
    #[default]
    Restrict,
    /// A cascading plan removes the referrer with its target.
    Cascade,
}

impl OnDelete {
    /// `"restrict"` or `"cascade"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDelete::Restrict => "restrict",
            OnDelete::Cascade => "cascade",
        }
    }
}

/// Who refers to a key: a key of a map, through one of its references.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Referrer<K> {
    /// The referring map's name.
    pub map: Arc<str>,
    /// The referring key.
    pub key: K,
    /// The name of the reference (unique within the referring map).
    pub reference: Arc<str>,
}

impl<K: Ord> PartialOrd for Referrer<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Ord> Ord for Referrer<K> {
    /// (map, key, reference) order, maps and references by name.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&*self.map, &self.key, &*self.reference).cmp(&(&*other.map, &other.key, &*other.reference))
    }
}

type Extract<K, V> = Box<dyn Fn(&V) -> Option<K> + Send + Sync>;

/// One reference a map declares: values of the map name a key of map `to`.
pub(crate) struct Declared<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) to: Arc<str>,
    pub(crate) on_delete: OnDelete,
    pub(crate) extract: Extract<K, V>,
}

impl<K, V> fmt::Debug for Declared<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Declared")
            .field("name", &self.name)
            .field("to", &self.to)
            .field("on_delete", &self.on_delete)
            .finish_non_exhaustive()
    }
}

/// A map's side of references: what it declares, and who refers to its keys.
pub(crate) struct MapRefs<K, V> {
    pub(crate) declared: Vec<Declared<K, V>>,
    /// The map's place in the stripe lock order (unique per process).
    pub(crate) order: u64,
    /// Who refers to each key. Invariant: changed only by a thread that holds
    /// the key's stripe in this map (see the module documentation); the mutex
    /// only makes the map itself safe to share.
    index: Mutex<HashMap<K, Vec<Referrer<K>>>>,
    /// Set (under the key's stripe) before the first index entry is added.
    /// Relaxed suffices: a removal reads it under the key's stripe, whose
    /// mutex orders it after the adding thread's release of that stripe.
    referred: AtomicBool,
}

static NEXT_ORDER: AtomicU64 = AtomicU64::new(1);

impl<K, V> MapRefs<K, V> {
    pub(crate) fn new(declared: Vec<Declared<K, V>>) -> Self {
        MapRefs {
            declared,
            // Relaxed: only uniqueness matters, which the atomic RMW gives.
            order: NEXT_ORDER.fetch_add(1, Ordering::Relaxed),
            index: Mutex::new(HashMap::new()),
            referred: AtomicBool::new(false),
        }
    }

    /// Whether the map declares references (its writes take the references lock).
    pub(crate) fn declares(&self) -> bool {
        !self.declared.is_empty()
    }

    /// The targets a value refers to: `(reference index, target key)`.
    pub(crate) fn targets(&self, value: &V) -> Vec<(usize, K)> {
        self.declared
            .iter()
            .enumerate()
            .filter_map(|(i, d)| (d.extract)(value).map(|k| (i, k)))
            .collect()
    }
}

impl<K: std::hash::Hash + Eq + Clone, V> MapRefs<K, V> {
    /// The referrers of `key` other than `key` itself in map `own` (a value
    /// referring to its own key never blocks its own removal). The caller
    /// holds `key`'s stripe, so the answer holds until it lets go.
    pub(crate) fn referrers_except_self(&self, own: &str, key: &K) -> Vec<Referrer<K>> {
        // Relaxed: see `referred`.
        if !self.referred.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let index = self.index.lock();
        index.get(key).map_or_else(Vec::new, |list| {
            list.iter()
                .filter(|r| !(&*r.map == own && r.key == *key))
                .cloned()
                .collect()
        })
    }

    /// Every referrer of `key` (unordered). Weakly consistent unless the
    /// caller holds `key`'s stripe.
    pub(crate) fn referrers(&self, key: &K) -> Vec<Referrer<K>> {
        if !self.referred.load(Ordering::Relaxed) {
            return Vec::new();
        }
        self.index.lock().get(key).cloned().unwrap_or_default()
    }

    /// Adds `referrer` to `key`'s list. The caller holds `key`'s stripe.
    pub(crate) fn add(&self, key: K, referrer: Referrer<K>) {
        self.referred.store(true, Ordering::Relaxed);
        self.index.lock().entry(key).or_default().push(referrer);
    }

    /// Removes one occurrence of `referrer` from `key`'s list. The caller
    /// holds `key`'s stripe.
    pub(crate) fn remove(&self, key: &K, referrer: &Referrer<K>) {
        let mut index = self.index.lock();
        if let Some(list) = index.get_mut(key) {
            if let Some(at) = list.iter().position(|r| r == referrer) {
                list.swap_remove(at);
            }
            if list.is_empty() {
                index.remove(key);
            }
        }
    }
}

/// A map as other maps of its journal see it (type-erased over the hasher).
pub(crate) trait Linked<K, V>: Send + Sync {
    fn name(&self) -> &Arc<str>;
    fn refs(&self) -> &MapRefs<K, V>;
    fn stripe_of(&self, key: &K) -> usize;
    fn lock_stripe(&self, stripe: usize) -> KeyGuard<'_>;
    /// The current revision and a copy of the value (lock-free read).
    fn current(&self, key: &K) -> Option<(V, Revision)>;
    /// Whether `key` is present (lock-free read).
    fn contains(&self, key: &K) -> bool;
    /// The deny rule that would veto removing `value`, if any.
    fn would_veto(&self, key: &K, value: &V) -> Option<String>;
    /// Removes `key` as part of a plan; the caller holds the references lock
    /// and the stripes of `key` and of every key its value refers to, and has
    /// checked the revision. Journals the removal with `plan`.
    fn remove_held(
        &self,
        stripes: &Stripes<'_>,
        key: &K,
        reason: &Reason,
        plan: PlanId,
    ) -> Result<Option<AuditId>, NotRemoved>;
    /// Writes `value` under `key` if absent (`only_if_absent`) or always, as
    /// `op`, moving the key's index entries; the caller holds the references
    /// lock and the stripes of `key` and of every key its old and new values
    /// refer to, and has checked the new targets. `None`: the key is present
    /// and `only_if_absent`, or its stripe is not held; nothing written.
    fn write_held(
        &self,
        stripes: &Stripes<'_>,
        key: K,
        value: V,
        only_if_absent: bool,
        reason: &Reason,
        op: crate::journal::Op,
    ) -> Option<Revision>;
}

/// A planned removal found its key absent or its stripe not held (neither
/// happens when the caller keeps the contract); nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NotRemoved;

pub(crate) type Link<K, V> = Arc<dyn Linked<K, V>>;
type WeakLink<K, V> = Weak<dyn Linked<K, V>>;

/// The journal-wide part: the references lock and the maps by name.
pub(crate) struct Registry<K, V> {
    /// Held by every write to a map that declares references (see the module
    /// documentation), and by cascade executions and plan restores.
    lock: Mutex<()>,
    maps: Mutex<HashMap<Arc<str>, WeakLink<K, V>>>,
}

impl<K, V> Registry<K, V> {
    pub(crate) fn new() -> Self {
        Registry {
            lock: Mutex::new(()),
            maps: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock()
    }

    /// The live map of this name, if one was registered.
    pub(crate) fn find(&self, name: &str) -> Option<Link<K, V>> {
        self.maps.lock().get(name).and_then(Weak::upgrade)
    }

    /// Registers `map` under its name; refused while another live map has it.
    pub(crate) fn register(&self, map: Weak<dyn Linked<K, V>>, name: &Arc<str>) -> bool {
        let mut maps = self.maps.lock();
        if maps.get(name).is_some_and(|m| m.strong_count() > 0) {
            return false;
        }
        maps.insert(Arc::clone(name), map);
        true
    }
}

/// Stripes held across maps, taken in (map order, stripe) order, each once.
pub(crate) struct Stripes<'a> {
    held: Vec<(u64, usize, KeyGuard<'a>)>,
}

impl Stripes<'_> {
    /// The guard of stripe `stripe` of the map of order `order`, if held.
    pub(crate) fn guard(&self, order: u64, stripe: usize) -> Option<&KeyGuard<'_>> {
        self.held
            .iter()
            .find(|(o, s, _)| (*o, *s) == (order, stripe))
            .map(|(_, _, g)| g)
    }
}

/// Locks the stripes of `keys` (each `(map, key)`), skipping `(skip_order,
/// skip_stripe)` (the stripe the caller already holds). The caller holds the
/// references lock.
pub(crate) fn lock_stripes<'a, K, V>(
    keys: &[(&'a dyn Linked<K, V>, &K)],
    skip: Option<(u64, usize)>,
) -> Stripes<'a> {
    let mut wanted: Vec<(u64, usize, &'a dyn Linked<K, V>)> = keys
        .iter()
        .map(|(map, key)| (map.refs().order, map.stripe_of(key), *map))
        .filter(|(order, stripe, _)| Some((*order, *stripe)) != skip)
        .collect();
    wanted.sort_by_key(|(order, stripe, _)| (*order, *stripe));
    wanted.dedup_by_key(|(order, stripe, _)| (*order, *stripe));
    Stripes {
        held: wanted
            .into_iter()
            .map(|(order, stripe, map)| (order, stripe, map.lock_stripe(stripe)))
            .collect(),
    }
}
