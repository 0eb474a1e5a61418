//! dashmap 6: a sharded `RwLock<HashMap>`; its default shard count.
//!
//! Two incident styles: `dashmap` upserts with `insert` (what its docs
//! suggest), `dashmap-retain` invalidates with `retain` and reloads with
//! `insert` (the incident's pattern, common in cache-refresh code).

use dashmap::DashMap;

use super::{Hasher, IncidentMap, MemoryMap, RefreshBatch, bustle_table, value_of};

/// `DashMap<u64, u64>` with foldhash.
pub type Map = DashMap<u64, u64, Hasher>;

fn build_map(keys: u64) -> Map {
    let m = Map::with_hasher(Hasher::default());
    for k in 0..keys {
        m.insert(k, value_of(k, 0));
    }
    m
}

/// dashmap refreshed by `insert` (upsert in place).
pub struct Upsert(Map);

impl IncidentMap for Upsert {
    const VARIANT: &'static str = "dashmap";
    const STYLE: &'static str = "`insert` of each stale key (upsert in place)";
    fn build(keys: u64) -> Self {
        Self(build_map(keys))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key).map(|v| *v)
    }
    fn refresh(&self, batch: &RefreshBatch) {
        for (k, v) in &batch.entries {
            self.0.insert(*k, *v);
        }
    }
}

/// dashmap refreshed by `retain` (drop stale keys) then `insert`.
pub struct Retain(Map);

impl IncidentMap for Retain {
    const VARIANT: &'static str = "dashmap-retain";
    const STYLE: &'static str = "`retain` dropping the stale keys, then `insert` of each";
    fn build(keys: u64) -> Self {
        Self(build_map(keys))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key).map(|v| *v)
    }
    fn refresh(&self, batch: &RefreshBatch) {
        self.0.retain(|k, _| !batch.is_stale(*k));
        for (k, v) in &batch.entries {
            self.0.insert(*k, *v);
        }
    }
}

bustle_table!(Table, Handle, Map, |cap| Map::with_capacity_and_hasher(cap, Hasher::default()), |m, k| {
    get: m.get(&k).is_some(),
    insert: m.insert(k, k).is_none(),
    remove: m.remove(&k).is_some(),
    update: m.get_mut(&k).map(|mut v| *v = v.wrapping_add(1)).is_some(),
});

/// dashmap for the memory workload; reclaims with `shrink_to_fit`.
pub struct Memory(Map);

impl MemoryMap for Memory {
    const VARIANT: &'static str = "dashmap";
    const RECLAIM: &'static str = "`shrink_to_fit`";
    fn build(n: u64) -> Self {
        Self(build_map(n))
    }
    fn remove_where(&mut self, n: u64, drop: &dyn Fn(u64) -> bool) {
        for k in (0..n).filter(|k| drop(*k)) {
            self.0.remove(&k);
        }
    }
    fn reclaim(&mut self) {
        self.0.shrink_to_fit();
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}
