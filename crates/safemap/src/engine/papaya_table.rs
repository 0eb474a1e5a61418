//! The default engine: a [`papaya`] table behind the same API as the
//! sharded table of `table` (see `docs/design.md` for why papaya stays the
//! default: the sharded table did not measurably win).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use papaya::HashMap;

use super::{KeyGuard, KeyLocks};
use crate::entry::Versioned;

/// Stripes of key locks: a key's writes hold the stripe its hash picks.
const STRIPES: usize = 256;

/// A pin of papaya's reclaimer: entries seen through it stay valid while it lives.
pub(crate) type Guard<'a> = papaya::LocalGuard<'a>;

/// A papaya table of versioned entries, and the key locks of its writers.
///
/// Invariant: every mutation of a key happens while the caller holds that key's
/// stripe of [`KeyLocks`] (each mutator takes a `&KeyGuard` as
/// proof). Writes to one key are therefore serialised, which makes every
/// read-check-write sequence above this layer atomic, while readers never take
/// any lock.
pub(crate) struct Table<K, V, S> {
    inner: HashMap<K, Versioned<V>, S>,
    locks: KeyLocks,
    /// Picks a key's stripe. Seeded per map: keys an attacker chose to share a
    /// stripe only serialise their own writes, never a reader.
    stripe_hasher: foldhash::fast::FixedState,
}

impl<K, V, S> Table<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    pub(crate) fn new(capacity: usize, hasher: S) -> Self {
        Table {
            inner: HashMap::builder().capacity(capacity).hasher(hasher).build(),
            locks: KeyLocks::new(STRIPES),
            stripe_hasher: foldhash::fast::FixedState::with_seed(stripe_seed()),
        }
    }

    /// The stripe of `key`.
    pub(crate) fn stripe_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        self.stripe_hasher.hash_one(key) as usize % STRIPES
    }

    /// Locks `key`'s stripe.
    pub(crate) fn lock<Q: Hash + ?Sized>(&self, key: &Q) -> KeyGuard<'_> {
        self.locks.lock_stripe(self.stripe_of(key))
    }

    /// Locks stripe `stripe` (from [`Table::stripe_of`]).
    pub(crate) fn lock_stripe(&self, stripe: usize) -> KeyGuard<'_> {
        self.locks.lock_stripe(stripe)
    }

    /// Pins the current epoch: entries seen through this guard stay valid until it drops.
    pub(crate) fn guard(&self) -> Guard<'_> {
        self.inner.guard()
    }

    pub(crate) fn get<'g, Q>(
        &'g self,
        key: &Q,
        guard: &'g Guard<'_>,
    ) -> Option<(&'g K, &'g Versioned<V>)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.get_key_value(key, guard)
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }

    pub(crate) fn iter<'g>(
        &'g self,
        guard: &'g Guard<'_>,
    ) -> impl Iterator<Item = (&'g K, &'g Versioned<V>)> + use<'g, K, V, S> {
        self.inner.iter(guard)
    }

    /// Publishes `value` under `key`, replacing any previous entry in one step:
    /// a concurrent reader sees either the old entry or the new one, never neither.
    pub(crate) fn publish(
        &self,
        held: &KeyGuard<'_>,
        key: K,
        value: Versioned<V>,
        guard: &Guard<'_>,
    ) {
        debug_assert!(held.is_of(&self.locks, self.stripe_of(&key)));
        self.inner.insert(key, value, guard);
    }

    /// Removes `key`; readers that already hold the entry keep it until their guard drops.
    pub(crate) fn unpublish<Q>(&self, held: &KeyGuard<'_>, key: &Q, guard: &Guard<'_>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        debug_assert!(held.is_of(&self.locks, self.stripe_of(key)));
        self.inner.remove(key, guard);
    }
}

/// A random seed per map; a fixed one under the model checker, whose replays
/// need the same behaviour for the same schedule.
fn stripe_seed() -> u64 {
    if cfg!(feature = "shuttle") {
        0
    } else {
        std::hash::RandomState::new().hash_one(0u64)
    }
}
