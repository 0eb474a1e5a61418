//! `hashbrown::HashMap` on one thread, no synchronisation at all: the
//! ceiling every concurrent map is measured against.

use std::sync::{Arc, Mutex, PoisonError};

use super::{Hasher, IncidentMap, MemoryMap, RefreshBatch, value_of};

/// `hashbrown::HashMap<u64, u64>` with foldhash.
pub type Map = hashbrown::HashMap<u64, u64, Hasher>;

fn build_map(keys: u64) -> Map {
    let mut m = Map::with_hasher(Hasher::default());
    for k in 0..keys {
        m.insert(k, value_of(k, 0));
    }
    m
}

/// The ceiling in the incident: one reader, no refresher.
pub struct Ceiling(Map);

impl IncidentMap for Ceiling {
    const VARIANT: &'static str = "hashbrown";
    const STYLE: &'static str = "none: one thread, no refresher (the ceiling)";
    const CONCURRENT: bool = false;
    fn build(keys: u64) -> Self {
        Self(build_map(keys))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key).copied()
    }
    fn refresh(&self, _batch: &RefreshBatch) {
        // Never called: CONCURRENT is false, so the incident runs no refresher.
    }
}

/// The ceiling in the mixes: one thread only. bustle pins a handle for the
/// prefill and another for the mix; each handle owns the table while it
/// lives and hands it back when dropped, so no lock is on the hot path.
pub struct Table(Arc<Mutex<Map>>);

/// The single thread's handle: owns the table outright while it lives.
pub struct Handle {
    map: Map,
    home: Arc<Mutex<Map>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut home = self.home.lock().unwrap_or_else(PoisonError::into_inner);
        *home = std::mem::take(&mut self.map);
    }
}

impl bustle::Collection for Table {
    type Handle = Handle;
    fn with_capacity(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(Map::with_capacity_and_hasher(
            capacity,
            Hasher::default(),
        ))))
    }
    fn pin(&self) -> Handle {
        let map = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        Handle {
            map,
            home: Arc::clone(&self.0),
        }
    }
}

impl bustle::CollectionHandle for Handle {
    type Key = u64;
    fn get(&mut self, key: &u64) -> bool {
        self.map.contains_key(key)
    }
    fn insert(&mut self, key: &u64) -> bool {
        self.map.insert(*key, *key).is_none()
    }
    fn remove(&mut self, key: &u64) -> bool {
        self.map.remove(key).is_some()
    }
    fn update(&mut self, key: &u64) -> bool {
        self.map
            .get_mut(key)
            .map(|v| *v = v.wrapping_add(1))
            .is_some()
    }
}

/// hashbrown for the memory workload; reclaims with `shrink_to_fit`.
pub struct Memory(Map);

impl MemoryMap for Memory {
    const VARIANT: &'static str = "hashbrown";
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
