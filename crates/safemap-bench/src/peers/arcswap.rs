//! Copy-on-write `arc_swap::ArcSwap<HashMap>`: what many Rust services use
//! for config caches. Reads `load()` the current map; a refresh clones it,
//! applies the batch and `store`s the new map (rebuild and swap). Not run in
//! the mixes: every write there would copy the whole table.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Hasher, IncidentMap, MemoryMap, RefreshBatch, value_of};

type Inner = HashMap<u64, u64, Hasher>;

fn build_inner(keys: u64) -> Inner {
    let mut m = HashMap::with_hasher(Hasher::default());
    for k in 0..keys {
        m.insert(k, value_of(k, 0));
    }
    m
}

/// `ArcSwap<HashMap<u64, u64>>` refreshed by rebuild and swap.
pub struct RebuildSwap(ArcSwap<Inner>);

impl IncidentMap for RebuildSwap {
    const VARIANT: &'static str = "arcswap";
    const STYLE: &'static str = "clone the map, `insert` each stale key, `store` the new map";
    fn build(keys: u64) -> Self {
        Self(ArcSwap::from_pointee(build_inner(keys)))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.load().get(&key).copied()
    }
    fn refresh(&self, batch: &RefreshBatch) {
        let mut next: Inner = (**self.0.load()).clone();
        for (k, v) in &batch.entries {
            next.insert(*k, *v);
        }
        self.0.store(Arc::new(next));
    }
}

/// ArcSwap for the memory workload: built once and swapped in; deletes
/// rebuild a filtered map (right-sized by construction) and swap it in.
pub struct Memory(ArcSwap<Inner>);

impl MemoryMap for Memory {
    const VARIANT: &'static str = "arcswap";
    const RECLAIM: &'static str = "a filtered rebuild is swapped in (right-sized by construction)";
    fn build(n: u64) -> Self {
        Self(ArcSwap::from_pointee(build_inner(n)))
    }
    fn remove_where(&mut self, _n: u64, drop: &dyn Fn(u64) -> bool) {
        let next: Inner = self
            .0
            .load()
            .iter()
            .filter(|(k, _)| !drop(**k))
            .map(|(k, v)| (*k, *v))
            .collect();
        self.0.store(Arc::new(next));
    }
    fn reclaim(&mut self) {}
    fn len(&self) -> usize {
        self.0.load().len()
    }
}
