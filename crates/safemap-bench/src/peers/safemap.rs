//! safemap: reads with `get` (lock-free, copies the small value), refreshes
//! with `refresh` (upsert in place, the recommended API), removes with a
//! `Reason`. The plain `safemap` variant is built `without_journal()` (no
//! audit, restore or watch; revisions are still assigned) so that it
//! compares map to map; `safemap-journal` keeps the default journal and
//! pays for the audit trail.

use safemap::{Expect, Journal, Reason, SafeMap};

use super::{Hasher, IncidentMap, MemoryMap, RefreshBatch, bustle_table, value_of};

/// `SafeMap<u64, u64>` with foldhash.
pub type Map = SafeMap<u64, u64, Hasher>;

/// A safemap without a journal, with `capacity` pre-allocated (0: none).
pub fn bare(capacity: usize) -> Map {
    let b = SafeMap::builder()
        .hasher(Hasher::default())
        .without_journal();
    if capacity > 0 {
        b.capacity(capacity).build()
    } else {
        b.build()
    }
}

/// A safemap with the default journal (every write recorded), `capacity`
/// pre-allocated (0: none).
pub fn journaled(capacity: usize) -> Map {
    let b = SafeMap::builder().hasher(Hasher::default());
    if capacity > 0 {
        b.capacity(capacity).build()
    } else {
        b.build()
    }
}

/// The reason every benchmark removal carries (removals require one).
pub fn reason() -> Reason {
    Reason::new("benchmark")
}

fn fill(m: &Map, keys: u64) {
    m.refresh((0..keys).map(|k| (k, value_of(k, 0))));
}

/// safemap refreshed with `refresh` (in place).
pub struct Refresh(Map);

impl IncidentMap for Refresh {
    const VARIANT: &'static str = "safemap";
    const STYLE: &'static str = "`refresh` of the stale keys (upsert in place; journal off)";
    fn build(keys: u64) -> Self {
        let m = bare(0);
        fill(&m, keys);
        Self(m)
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key).map(|e| *e.value())
    }
    fn refresh(&self, batch: &RefreshBatch) {
        let _ = self.0.refresh(batch.entries.iter().copied());
    }
}

/// safemap with its default journal, refreshed with `refresh`: every
/// refreshed key is an audit record (the journal keeps its default 1M).
pub struct JournalRefresh(Map);

impl IncidentMap for JournalRefresh {
    const VARIANT: &'static str = "safemap-journal";
    const STYLE: &'static str =
        "`refresh` of the stale keys (upsert in place; default journal records every put)";
    fn build(keys: u64) -> Self {
        let m = journaled(0);
        fill(&m, keys);
        Self(m)
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key).map(|e| *e.value())
    }
    fn refresh(&self, batch: &RefreshBatch) {
        let _ = self.0.refresh(batch.entries.iter().copied());
    }
}

fn update(m: &Map, k: u64) -> bool {
    let current = m.pin().get(&k).map(|e| (e.revision(), *e.value()));
    match current {
        Some((rev, v)) => m
            .put(k, v.wrapping_add(1), Expect::Revision(rev), &Reason::none())
            .is_ok(),
        None => false,
    }
}

bustle_table!(Table, Handle, Map, bare, |m, k| {
    get: m.pin().get(&k).is_some(),
    insert: m.insert(k, k).is_ok_and(|w| w.created()),
    remove: m.remove(&k, reason()).is_ok(),
    update: update(m, k),
});

bustle_table!(JournalTable, JournalHandle, Map, journaled, |m, k| {
    get: m.pin().get(&k).is_some(),
    insert: m.insert(k, k).is_ok_and(|w| w.created()),
    remove: m.remove(&k, reason()).is_ok(),
    update: update(m, k),
});

/// safemap (journal off) for the memory workload.
pub struct Memory(Map);

impl MemoryMap for Memory {
    const VARIANT: &'static str = "safemap";
    const RECLAIM: &'static str = "nothing to call; 200 ms wait for reclamation";
    fn build(n: u64) -> Self {
        let m = bare(0);
        for k in 0..n {
            let _ = m.insert(k, value_of(k, 0));
        }
        Self(m)
    }
    fn remove_where(&mut self, n: u64, drop: &dyn Fn(u64) -> bool) {
        for k in (0..n).filter(|k| drop(*k)) {
            let _ = self.0.remove(&k, reason());
        }
    }
    fn reclaim(&mut self) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Journal records kept by the `safemap-journal` memory variant.
pub const JOURNAL_HELD: u64 = 100_000;

/// safemap with a journal capped at [`JOURNAL_HELD`] records, built so that
/// the journal holds that many deleted entries (with their values) when
/// measured: `n` live keys plus 100k extra keys inserted and removed.
pub struct JournalMemory(Map);

impl MemoryMap for JournalMemory {
    const VARIANT: &'static str = "safemap-journal";
    const RECLAIM: &'static str =
        "nothing to call; the journal keeps its last 100k records; 200 ms wait";
    fn build(n: u64) -> Self {
        let journal = Journal::builder().capacity(JOURNAL_HELD as usize).build();
        let m = SafeMap::builder()
            .hasher(Hasher::default())
            .journal(journal)
            .build();
        for k in 0..n + JOURNAL_HELD {
            let _ = m.insert(k, value_of(k, 0));
        }
        for k in n..n + JOURNAL_HELD {
            let _ = m.remove(&k, reason());
        }
        Self(m)
    }
    fn remove_where(&mut self, n: u64, drop: &dyn Fn(u64) -> bool) {
        for k in (0..n).filter(|k| drop(*k)) {
            let _ = self.0.remove(&k, reason());
        }
    }
    fn reclaim(&mut self) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}
