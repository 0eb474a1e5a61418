//! `std::sync::RwLock<std::collections::HashMap>`: the map most services
//! start with. The incident refresh takes the write lock to drop the stale
//! keys, then takes it again to load the new values (invalidate, then
//! reload), which is how the seed's cache was written.

use std::collections::HashMap;
use std::sync::RwLock;

use super::{Hasher, IncidentMap, MemoryMap, RefreshBatch, bustle_table, value_of};

/// `RwLock<HashMap<u64, u64>>` with foldhash.
pub type Map = RwLock<HashMap<u64, u64, Hasher>>;

fn build_inner(keys: u64) -> HashMap<u64, u64, Hasher> {
    let mut m = HashMap::with_hasher(Hasher::default());
    for k in 0..keys {
        m.insert(k, value_of(k, 0));
    }
    m
}

/// Recover the guard from a poisoned lock: a panicking benchmark thread has
/// already failed the run loudly, and the data (plain integers) is intact.
macro_rules! unpoison {
    ($e:expr) => {
        $e.unwrap_or_else(std::sync::PoisonError::into_inner)
    };
}

/// `RwLock<HashMap>` refreshed by a write-locked delete, then a write-locked insert.
pub struct DeleteInsert(Map);

impl IncidentMap for DeleteInsert {
    const VARIANT: &'static str = "rwlock-hashmap";
    const STYLE: &'static str =
        "write lock: `retain` dropping the stale keys; write lock again: `insert` of each";
    fn build(keys: u64) -> Self {
        Self(RwLock::new(build_inner(keys)))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        unpoison!(self.0.read()).get(&key).copied()
    }
    fn refresh(&self, batch: &RefreshBatch) {
        unpoison!(self.0.write()).retain(|k, _| !batch.is_stale(*k));
        let mut w = unpoison!(self.0.write());
        for (k, v) in &batch.entries {
            w.insert(*k, *v);
        }
    }
}

bustle_table!(Table, Handle, Map, |cap| RwLock::new(HashMap::with_capacity_and_hasher(cap, Hasher::default())), |m, k| {
    get: unpoison!(m.read()).contains_key(&k),
    insert: unpoison!(m.write()).insert(k, k).is_none(),
    remove: unpoison!(m.write()).remove(&k).is_some(),
    update: unpoison!(m.write()).get_mut(&k).map(|v| *v = v.wrapping_add(1)).is_some(),
});

/// `RwLock<HashMap>` for the memory workload; reclaims with `shrink_to_fit`.
pub struct Memory(Map);

impl MemoryMap for Memory {
    const VARIANT: &'static str = "rwlock-hashmap";
    const RECLAIM: &'static str = "`shrink_to_fit` under the write lock";
    fn build(n: u64) -> Self {
        Self(RwLock::new(build_inner(n)))
    }
    fn remove_where(&mut self, n: u64, drop: &dyn Fn(u64) -> bool) {
        let mut w = unpoison!(self.0.write());
        for k in (0..n).filter(|k| drop(*k)) {
            w.remove(&k);
        }
    }
    fn reclaim(&mut self) {
        unpoison!(self.0.write()).shrink_to_fit();
    }
    fn len(&self) -> usize {
        unpoison!(self.0.read()).len()
    }
}
