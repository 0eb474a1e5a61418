//! scc 3: `scc::HashMap`, a lock-free-resizing map with bucket locks; read
//! through `read_sync` (no copy of the entry), upsert with `upsert_sync`.

use super::{Hasher, IncidentMap, MemoryMap, RefreshBatch, bustle_table, value_of};

/// `scc::HashMap<u64, u64>` with foldhash.
pub type Map = scc::HashMap<u64, u64, Hasher>;

fn build_map(keys: u64) -> Map {
    let m = Map::with_hasher(Hasher::default());
    for k in 0..keys {
        m.upsert_sync(k, value_of(k, 0));
    }
    m
}

/// scc refreshed by `upsert_sync` (in place).
pub struct Upsert(Map);

impl IncidentMap for Upsert {
    const VARIANT: &'static str = "scc";
    const STYLE: &'static str = "`upsert_sync` of each stale key (in place)";
    fn build(keys: u64) -> Self {
        Self(build_map(keys))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.read_sync(&key, |_, v| *v)
    }
    fn refresh(&self, batch: &RefreshBatch) {
        for (k, v) in &batch.entries {
            self.0.upsert_sync(*k, *v);
        }
    }
}

bustle_table!(Table, Handle, Map, |cap| Map::with_capacity_and_hasher(cap, Hasher::default()), |m, k| {
    get: m.read_sync(&k, |_, _| ()).is_some(),
    insert: m.insert_sync(k, k).is_ok(),
    remove: m.remove_sync(&k).is_some(),
    update: m.update_sync(&k, |_, v| *v = v.wrapping_add(1)).is_some(),
});

/// scc for the memory workload: it shrinks its bucket array on its own as
/// entries go; users do nothing more.
pub struct Memory(Map);

impl MemoryMap for Memory {
    const VARIANT: &'static str = "scc";
    const RECLAIM: &'static str =
        "nothing to call (shrinks on its own); 200 ms wait for reclamation";
    fn build(n: u64) -> Self {
        Self(build_map(n))
    }
    fn remove_where(&mut self, n: u64, drop: &dyn Fn(u64) -> bool) {
        for k in (0..n).filter(|k| drop(*k)) {
            self.0.remove_sync(&k);
        }
    }
    fn reclaim(&mut self) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}
