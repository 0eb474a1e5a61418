//! moka 0.12 `sync::Cache`: a concurrent cache (TinyLFU admission, bounded
//! by entry count). Run where the workload is a cache: the incident (a
//! config cache refreshed by `insert`) and the memory workload. Its capacity
//! is twice the key count, so that nothing is evicted by the policy (at
//! exactly the key count its reads were a third slower here).

use moka::sync::Cache;

use super::{Hasher, IncidentMap, MemoryMap, RefreshBatch, value_of};

/// `moka::sync::Cache<u64, u64>` with foldhash.
pub type Map = Cache<u64, u64, Hasher>;

fn build_map(keys: u64) -> Map {
    let m = Cache::builder()
        .max_capacity(keys.max(1) * 2)
        .build_with_hasher(Hasher::default());
    for k in 0..keys {
        m.insert(k, value_of(k, 0));
    }
    m.run_pending_tasks();
    m
}

/// moka refreshed by `insert` (upsert).
pub struct Upsert(Map);

impl IncidentMap for Upsert {
    const VARIANT: &'static str = "moka";
    const STYLE: &'static str = "`insert` of each stale key (upsert)";
    fn build(keys: u64) -> Self {
        Self(build_map(keys))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    fn refresh(&self, batch: &RefreshBatch) {
        for (k, v) in &batch.entries {
            self.0.insert(*k, *v);
        }
    }
}

/// moka for the memory workload; reclaims with `run_pending_tasks`.
pub struct Memory(Map);

impl MemoryMap for Memory {
    const VARIANT: &'static str = "moka";
    const RECLAIM: &'static str = "`run_pending_tasks`, 200 ms wait";
    fn build(n: u64) -> Self {
        Self(build_map(n))
    }
    fn remove_where(&mut self, n: u64, drop: &dyn Fn(u64) -> bool) {
        for k in (0..n).filter(|k| drop(*k)) {
            self.0.invalidate(&k);
        }
    }
    fn reclaim(&mut self) {
        self.0.run_pending_tasks();
        std::thread::sleep(std::time::Duration::from_millis(200));
        self.0.run_pending_tasks();
    }
    fn len(&self) -> usize {
        self.0.run_pending_tasks();
        usize::try_from(self.0.entry_count()).unwrap_or(usize::MAX)
    }
}
