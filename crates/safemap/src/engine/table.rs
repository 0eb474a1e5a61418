use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use papaya::{Guard, HashMap, LocalGuard};

use super::KeyGuard;
use crate::entry::Versioned;

/// A papaya table of versioned entries.
///
/// Invariant: every mutation of a key happens while the caller holds that key's
/// stripe of [`KeyLocks`](super::KeyLocks) (each mutator takes a `&KeyGuard` as
/// proof). Writes to one key are therefore serialised, which makes every
/// read-check-write sequence above this layer atomic, while readers never take
/// any lock.
pub(crate) struct Table<K, V, S> {
    inner: HashMap<K, Versioned<V>, S>,
}

impl<K, V, S> Table<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    pub(crate) fn new(capacity: usize, hasher: S) -> Self {
        Table {
            inner: HashMap::builder().capacity(capacity).hasher(hasher).build(),
        }
    }

    /// Pins the current epoch: entries seen through this guard stay valid until it drops.
    pub(crate) fn guard(&self) -> LocalGuard<'_> {
        self.inner.guard()
    }

    pub(crate) fn get<'g, Q>(
        &self,
        key: &Q,
        guard: &'g impl Guard,
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

    pub(crate) fn iter<'g, G: Guard>(
        &self,
        guard: &'g G,
    ) -> impl Iterator<Item = (&'g K, &'g Versioned<V>)> + use<'g, K, V, S, G>
    where
        K: 'g,
        V: 'g,
    {
        self.inner.iter(guard)
    }

    /// Publishes `value` under `key`, replacing any previous entry in one step:
    /// a concurrent reader sees either the old entry or the new one, never neither.
    pub(crate) fn publish(
        &self,
        _held: &KeyGuard<'_>,
        key: K,
        value: Versioned<V>,
        guard: &impl Guard,
    ) {
        self.inner.insert(key, value, guard);
    }

    /// Removes `key`; readers that already hold the entry keep it until their guard drops.
    pub(crate) fn unpublish<Q>(&self, _held: &KeyGuard<'_>, key: &Q, guard: &impl Guard)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.remove(key, guard);
    }
}
