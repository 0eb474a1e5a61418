//! safemap: reads with `get` (lock-free, copies the small value), refreshes
//! with `refresh` (upsert in place, the recommended API), removes with a
//! `Reason`. The `safemap` variant is what `SafeMap::builder()` gives (the
//! journal on, as shipped: removals recorded with their values, puts only
//! while watched); `safemap-bare` is built `without_journal()` (no audit,
//! restore or watch; revisions are still assigned).

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

/// A safemap as the default builder makes it (journal on), `capacity`
/// pre-allocated (0: none).
pub fn shipped(capacity: usize) -> Map {
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

/// safemap without journal, refreshed with `refresh` (in place).
pub struct BareRefresh(Map);

impl IncidentMap for BareRefresh {
    const VARIANT: &'static str = "safemap-bare";
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

/// safemap as shipped, refreshed with `refresh` (nobody watches, so the
/// journal records no put).
pub struct Refresh(Map);

impl IncidentMap for Refresh {
    const VARIANT: &'static str = "safemap";
    const STYLE: &'static str =
        "`refresh` of the stale keys (upsert in place; default builder, journal on)";
    fn build(keys: u64) -> Self {
        let m = shipped(0);
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

bustle_table!(BareTable, BareHandle, Map, bare, |m, k| {
    get: m.pin().get(&k).is_some(),
    insert: m.insert(k, k).is_ok_and(|w| w.created()),
    remove: m.remove(&k, reason()).is_ok(),
    update: update(m, k),
});

bustle_table!(Table, Handle, Map, shipped, |m, k| {
    get: m.pin().get(&k).is_some(),
    insert: m.insert(k, k).is_ok_and(|w| w.created()),
    remove: m.remove(&k, reason()).is_ok(),
    update: update(m, k),
});

/// A memory-workload adapter over a map made by `$make`.
macro_rules! memory_peer {
    ($(#[$doc:meta])* $name:ident, $variant:literal, $make:expr) => {
        $(#[$doc])*
        pub struct $name(Map);

        impl MemoryMap for $name {
            const VARIANT: &'static str = $variant;
            const RECLAIM: &'static str = "nothing to call; 200 ms wait for reclamation";
            fn build(n: u64) -> Self {
                let m: Map = $make;
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
    };
}

memory_peer!(
    /// safemap as shipped (journal on; its removals stay in the journal, with
    /// their values, for the retention).
    Memory,
    "safemap",
    shipped(0)
);
memory_peer!(
    /// safemap without journal.
    BareMemory,
    "safemap-bare",
    bare(0)
);

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
