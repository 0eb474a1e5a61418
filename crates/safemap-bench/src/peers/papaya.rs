//! papaya 0.2: a lock-free map with guard-scoped reads (`pin()` per
//! operation, the pattern its docs show).
//!
//! Two incident styles: `papaya` upserts with `insert`, and
//! `papaya-remove-insert` removes every stale key, then inserts them again.

use super::{Hasher, IncidentMap, MemoryMap, RefreshBatch, bustle_table, value_of};

/// `papaya::HashMap<u64, u64>` with foldhash.
pub type Map = papaya::HashMap<u64, u64, Hasher>;

fn build_map(keys: u64) -> Map {
    let m = papaya::HashMap::builder().hasher(Hasher::default()).build();
    {
        let g = m.pin();
        for k in 0..keys {
            g.insert(k, value_of(k, 0));
        }
    }
    m
}

/// papaya refreshed by `insert` (upsert in place).
pub struct Upsert(Map);

impl IncidentMap for Upsert {
    const VARIANT: &'static str = "papaya";
    const STYLE: &'static str = "`insert` of each stale key (upsert in place)";
    fn build(keys: u64) -> Self {
        Self(build_map(keys))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.pin().get(&key).copied()
    }
    fn refresh(&self, batch: &RefreshBatch) {
        let g = self.0.pin();
        for (k, v) in &batch.entries {
            g.insert(*k, *v);
        }
    }
}

/// papaya refreshed by removing every stale key, then inserting them again.
pub struct RemoveInsert(Map);

impl IncidentMap for RemoveInsert {
    const VARIANT: &'static str = "papaya-remove-insert";
    const STYLE: &'static str = "`remove` of each stale key, then `insert` of each";
    fn build(keys: u64) -> Self {
        Self(build_map(keys))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.pin().get(&key).copied()
    }
    fn refresh(&self, batch: &RefreshBatch) {
        let g = self.0.pin();
        for (k, _) in &batch.entries {
            g.remove(k);
        }
        for (k, v) in &batch.entries {
            g.insert(*k, *v);
        }
    }
}

bustle_table!(Table, Handle, Map, |cap| papaya::HashMap::builder()
    .capacity(cap)
    .hasher(Hasher::default())
    .build(), |m, k| {
    get: m.pin().get(&k).is_some(),
    insert: m.pin().insert(k, k).is_none(),
    remove: m.pin().remove(&k).is_some(),
    update: m.pin().update(k, |v| v.wrapping_add(1)).is_some(),
});

/// papaya for the memory workload: it has no shrink API, so its users can
/// only drop their guards and wait for reclamation.
pub struct Memory(Map);

impl MemoryMap for Memory {
    const VARIANT: &'static str = "papaya";
    const RECLAIM: &'static str = "no shrink API; guards dropped, 200 ms wait for reclamation";
    fn build(n: u64) -> Self {
        Self(build_map(n))
    }
    fn remove_where(&mut self, n: u64, drop: &dyn Fn(u64) -> bool) {
        let g = self.0.pin();
        for k in (0..n).filter(|k| drop(*k)) {
            g.remove(&k);
        }
    }
    fn reclaim(&mut self) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}
