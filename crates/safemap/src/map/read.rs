//! Reads: lock-free, never waiting for a writer.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use super::SafeMap;
use crate::engine::Guard;
use crate::entry::{Entry, EntryRef};
use crate::ids::Revision;

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// A copy of the entry under `key`.
    ///
    /// Lock-free: it never waits for a writer, a resize, a removal or an
    /// iteration. To read without copying the value, use [`SafeMap::pin`].
    ///
    /// # Examples
    ///
    /// ```
    /// let map = safemap::SafeMap::new();
    /// let written = map.insert("a", 1).unwrap();
    /// let entry = map.get("a").unwrap();
    /// assert_eq!((*entry.value(), entry.revision()), (1, written.revision()));
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<Entry<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let guard = self.table.guard();
        let found = self
            .table
            .get(key, &guard)
            .map(|(_, stored)| Entry::from_versioned(stored));
        self.reads.record(found.is_some());
        found
    }

    /// Whether `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.table.guard();
        let found = self.table.get(key, &guard).is_some();
        self.reads.record(found);
        found
    }

    /// The number of entries (a moving figure under concurrent writes).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shrinks the table to what its entries need and frees the removed
    /// entries no reader holds any more. The table also shrinks on its own (a
    /// shard's array halves once it is less than 1/8 full); this also releases
    /// the small arrays of emptied shards. Takes each write stripe in turn:
    /// writes wait for at most one shard's rebuild, reads never wait.
    ///
    /// Only with the cargo feature `sharded-table` (the default engine,
    /// papaya, cannot shrink on request).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = safemap::SafeMap::new();
    /// for k in 0..1000 {
    ///     let _ = map.insert(k, k);
    /// }
    /// let _ = map.retain(|_, _| false, safemap::Reason::new("drop all"));
    /// map.shrink_to_fit();
    /// assert!(map.is_empty());
    /// ```
    #[cfg(feature = "sharded-table")]
    pub fn shrink_to_fit(&self) {
        self.table.shrink_to_fit();
    }

    /// A pinned view: reads through it borrow entries instead of copying them.
    /// Entries seen through it stay valid (though maybe replaced or removed
    /// since) while it lives; memory retired meanwhile is reclaimed after it
    /// drops, so do not keep a view for long.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = safemap::SafeMap::new();
    /// let _ = map.insert("a".to_string(), 1);
    /// let _ = map.insert("b".to_string(), 2);
    /// let view = map.pin();
    /// let total: i32 = view.iter().map(|e| *e.value()).sum();
    /// assert_eq!(total, 3);
    /// ```
    pub fn pin(&self) -> Pinned<'_, K, V, S> {
        Pinned {
            map: self,
            guard: self.table.guard(),
        }
    }
}

/// A pinned view of a [`SafeMap`]; see [`SafeMap::pin`].
pub struct Pinned<'m, K, V, S> {
    map: &'m SafeMap<K, V, S>,
    guard: Guard<'m>,
}

impl<K, V, S> Pinned<'_, K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// The entry under `key`, borrowed.
    pub fn get<Q>(&self, key: &Q) -> Option<EntryRef<'_, K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = self
            .map
            .table
            .get(key, &self.guard)
            .map(|(key, stored)| EntryRef { key, stored });
        self.map.reads.record(found.is_some());
        found
    }

    /// Every entry, in no particular order, weakly consistent:
    ///
    /// * an entry present for the whole iteration is yielded exactly once;
    /// * an entry inserted or removed during the iteration may or may not be;
    /// * removing or inserting (from this thread or others) while iterating is
    ///   allowed and never blocks or panics.
    ///
    /// Starting an iteration waits for an in-progress resize to finish (it
    /// helps move entries); reads never wait for either.
    pub fn iter(&self) -> impl Iterator<Item = EntryRef<'_, K, V>> {
        self.map
            .table
            .iter(&self.guard)
            .map(|(key, stored)| EntryRef { key, stored })
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A point-in-time copy of a map; see [`SafeMap::snapshot`].
#[derive(Clone, Debug)]
pub struct Snapshot<K, V> {
    revision: Revision,
    entries: HashMap<K, Entry<V>>,
}

impl<K: Hash + Eq, V> Snapshot<K, V> {
    /// The revision the copy reflects: every write up to it and none after.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the copy is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&Entry<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Entry<V>)> {
        self.entries.iter()
    }
}

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// A consistent copy of the whole map at one revision.
    ///
    /// Cost: it copies every entry (O(n) time and memory) with the journal
    /// quiesced (writes in flight finish first, new ones wait), so writers of
    /// every map sharing the journal wait for the copy; readers do not. Use [`Pinned::iter`] where weak consistency will do.
    pub fn snapshot(&self) -> Snapshot<K, V> {
        self.journal.quiesced(|| {
            let guard = self.table.guard();
            let entries = self
                .table
                .iter(&guard)
                .map(|(k, stored)| (k.clone(), Entry::from_versioned(stored)))
                .collect();
            Snapshot {
                revision: self.journal.current_revision(),
                entries,
            }
        })
    }
}
