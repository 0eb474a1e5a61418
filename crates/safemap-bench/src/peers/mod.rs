//! Peer adapters: one file per peer map, each implementing the workload
//! traits below the way that peer's users would write the code.
//!
//! | variant | type | refresh in the incident |
//! |---|---|---|
//! | `safemap` / `safemap-bare` | `safemap::SafeMap`, default builder / `without_journal()` | `refresh` (upsert in place) |
//! | `dashmap` / `dashmap-retain` | `dashmap::DashMap` | `insert` in place / `retain` then `insert` |
//! | `papaya` / `papaya-remove-insert` | `papaya::HashMap` | `insert` in place / `remove` then `insert` |
//! | `scc` | `scc::HashMap` | `upsert_sync` |
//! | `rwlock-hashmap` | `std::sync::RwLock<std::collections::HashMap>` | write lock: `retain`, then write lock: insert |
//! | `arcswap` | `arc_swap::ArcSwap<HashMap>` | clone, update, `store` (rebuild and swap) |
//! | `moka` | `moka::sync::Cache` | `insert` (upsert) |
//! | `hashbrown` | `hashbrown::HashMap`, one thread, no lock | none (the ceiling) |
//!
//! Every peer is built with [`Hasher`] (foldhash), the stated hasher policy.

pub mod arcswap;
pub mod dashmap;
pub mod hashbrown;
pub mod moka;
pub mod papaya;
pub mod rwlock;
pub mod safemap;
pub mod scc;

/// Each peer's configuration, as the report states it: the defaults its
/// docs recommend, with the hasher set to [`Hasher`].
pub const CONFIGURATIONS: [(&str, &str); 8] = [
    (
        "safemap",
        "`SafeMap::builder().hasher(foldhash)`: the default journal for `safemap` (as shipped: removals recorded with their \
         values, puts only while watched), `without_journal()` for `safemap-bare`; reads with `get` (copies the u64), removes \
         with a `Reason`",
    ),
    (
        "dashmap",
        "`DashMap::with_hasher` (default shard count: 4 × cores, rounded up to a power of two)",
    ),
    (
        "papaya",
        "`HashMap::builder().hasher(..)` (default incremental resize); `pin()` per operation",
    ),
    (
        "scc",
        "`scc::HashMap::with_hasher`; `read_sync` for reads, `upsert_sync` for refreshes",
    ),
    (
        "rwlock-hashmap",
        "`std::sync::RwLock<std::collections::HashMap>`",
    ),
    (
        "arcswap",
        "`ArcSwap<HashMap>`, reads through `load()`, writes by clone + `store`",
    ),
    (
        "moka",
        "`moka::sync::Cache` with `max_capacity` = 2 × the key count (headroom: nothing evicted by the policy), no TTL",
    ),
    (
        "hashbrown",
        "`hashbrown::HashMap`, one thread, no lock (the ceiling)",
    ),
];

/// The hasher every in-process peer is built with.
pub type Hasher = foldhash::fast::RandomState;

/// The hasher policy, as stated under every table of the report.
pub const HASHER_POLICY: &str =
    "foldhash 0.2 (`foldhash::fast::RandomState`) for every in-process peer";

/// One refresh of the incident: the keys to bring to a new value this round.
#[derive(Debug, Clone)]
pub struct RefreshBatch {
    /// Refresh round, starting at 1 (round 0 is the prefill).
    pub round: u64,
    /// Percentage of the key space refreshed per round.
    pub pct: u64,
    /// The stale keys with their new values, in key order.
    pub entries: Vec<(u64, u64)>,
}

impl RefreshBatch {
    /// The batch of round `round` over keys `0..keys`: every key with
    /// [`RefreshBatch::is_stale_in`] true, valued [`value_of`]`(key, round)`.
    pub fn new(round: u64, pct: u64, keys: u64) -> Self {
        let entries = (0..keys)
            .filter(|k| Self::is_stale_in(round, pct, *k))
            .map(|k| (k, value_of(k, round)))
            .collect();
        Self {
            round,
            pct,
            entries,
        }
    }

    /// Whether `key` is stale in round `round`: `pct` keys out of every 100,
    /// a window that moves by `pct` each round so that rounds cover the whole space.
    #[inline]
    pub fn is_stale_in(round: u64, pct: u64, key: u64) -> bool {
        (key.wrapping_add(round.wrapping_mul(pct))) % 100 < pct
    }

    /// Whether `key` is stale in this batch.
    #[inline]
    pub fn is_stale(&self, key: u64) -> bool {
        Self::is_stale_in(self.round, self.pct, key)
    }
}

/// The value of `key` after refresh round `round` (round 0: the prefill).
#[inline]
pub fn value_of(key: u64, round: u64) -> u64 {
    key ^ (round << 40)
}

/// A map the incident workload drives: prefilled keys, concurrent point
/// reads, and a refresher that brings a batch of keys to new values.
pub trait IncidentMap: Send + Sync + Sized + 'static {
    /// The `variant` name in JSON output.
    const VARIANT: &'static str;
    /// How this peer refreshes, in words, for the report.
    const STYLE: &'static str;
    /// Whether the map may be shared by readers and a refresher at once
    /// (`false` for the single-thread ceiling, which runs one reader and no refresher).
    const CONCURRENT: bool = true;

    /// A map holding keys `0..keys`, each valued [`value_of`]`(key, 0)`.
    fn build(keys: u64) -> Self;
    /// The value of `key`, if present.
    fn get(&self, key: u64) -> Option<u64>;
    /// Apply one refresh batch the way this peer's users would.
    fn refresh(&self, batch: &RefreshBatch);
}

/// A map the memory workload fills and empties in a child process.
pub trait MemoryMap: Sized {
    /// The `variant` name in JSON output.
    const VARIANT: &'static str;
    /// What the peer does after the deletes to give memory back, for the report.
    const RECLAIM: &'static str;

    /// A map holding keys `0..n` (value = key), built the way users build it
    /// (one insert at a time, no presizing).
    fn build(n: u64) -> Self;
    /// Remove every key in `0..n` for which `drop` is true.
    fn remove_where(&mut self, n: u64, drop: &dyn Fn(u64) -> bool);
    /// Whatever this peer's users do to give memory back after mass deletes.
    fn reclaim(&mut self);
    /// Number of entries (to check that the workload did what it says).
    fn len(&self) -> usize;
    /// Whether the map is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Implements the bustle `Collection`/`CollectionHandle` pair for a peer
/// whose handle is an `Arc` of the table with per-operation methods.
macro_rules! bustle_table {
    ($table:ident, $handle:ident, $inner:ty, $new:expr, |$m:ident, $k:ident| {
        get: $get:expr,
        insert: $insert:expr,
        remove: $remove:expr,
        update: $update:expr $(,)?
    }) => {
        /// bustle adapter (a table shared by every thread).
        pub struct $table(std::sync::Arc<$inner>);
        /// bustle per-thread handle.
        pub struct $handle(std::sync::Arc<$inner>);

        impl bustle::Collection for $table {
            type Handle = $handle;
            fn with_capacity(capacity: usize) -> Self {
                let f: fn(usize) -> $inner = $new;
                Self(std::sync::Arc::new(f(capacity)))
            }
            fn pin(&self) -> Self::Handle {
                $handle(std::sync::Arc::clone(&self.0))
            }
        }

        impl bustle::CollectionHandle for $handle {
            type Key = u64;
            fn get(&mut self, key: &u64) -> bool {
                let $m = &*self.0;
                let $k = *key;
                $get
            }
            fn insert(&mut self, key: &u64) -> bool {
                let $m = &*self.0;
                let $k = *key;
                $insert
            }
            fn remove(&mut self, key: &u64) -> bool {
                let $m = &*self.0;
                let $k = *key;
                $remove
            }
            fn update(&mut self, key: &u64) -> bool {
                let $m = &*self.0;
                let $k = *key;
                $update
            }
        }
    };
}
pub(crate) use bustle_table;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// What a user of the adapter would check: prefilled values, then every
    /// stale key at its new value and every other key untouched.
    fn refresh_brings_stale_keys_to_new_values<M: IncidentMap>() {
        let m = M::build(500);
        assert_eq!(m.get(7), Some(value_of(7, 0)), "{}", M::VARIANT);
        assert_eq!(m.get(500), None, "{}", M::VARIANT);
        if !M::CONCURRENT {
            return;
        }
        let batch = RefreshBatch::new(1, 30, 500);
        m.refresh(&batch);
        for k in 0..500 {
            let want = if batch.is_stale(k) {
                value_of(k, 1)
            } else {
                value_of(k, 0)
            };
            assert_eq!(m.get(k), Some(want), "{} key {k}", M::VARIANT);
        }
    }

    #[test]
    fn every_incident_adapter_refreshes_correctly() {
        refresh_brings_stale_keys_to_new_values::<safemap::Refresh>();
        refresh_brings_stale_keys_to_new_values::<safemap::BareRefresh>();
        refresh_brings_stale_keys_to_new_values::<dashmap::Upsert>();
        refresh_brings_stale_keys_to_new_values::<dashmap::Retain>();
        refresh_brings_stale_keys_to_new_values::<papaya::Upsert>();
        refresh_brings_stale_keys_to_new_values::<papaya::RemoveInsert>();
        refresh_brings_stale_keys_to_new_values::<scc::Upsert>();
        refresh_brings_stale_keys_to_new_values::<rwlock::DeleteInsert>();
        refresh_brings_stale_keys_to_new_values::<arcswap::RebuildSwap>();
        refresh_brings_stale_keys_to_new_values::<moka::Upsert>();
        refresh_brings_stale_keys_to_new_values::<hashbrown::Ceiling>();
    }

    fn memory_adapter_keeps_a_tenth<M: MemoryMap>() {
        let mut m = M::build(1000);
        assert_eq!(m.len(), 1000, "{}", M::VARIANT);
        m.remove_where(1000, &|k| k % 10 != 0);
        assert_eq!(m.len(), 100, "{}", M::VARIANT);
        assert!(!m.is_empty());
    }

    #[test]
    fn every_memory_adapter_removes_what_it_is_told() {
        memory_adapter_keeps_a_tenth::<safemap::Memory>();
        memory_adapter_keeps_a_tenth::<dashmap::Memory>();
        memory_adapter_keeps_a_tenth::<papaya::Memory>();
        memory_adapter_keeps_a_tenth::<scc::Memory>();
        memory_adapter_keeps_a_tenth::<rwlock::Memory>();
        memory_adapter_keeps_a_tenth::<arcswap::Memory>();
        memory_adapter_keeps_a_tenth::<moka::Memory>();
        memory_adapter_keeps_a_tenth::<hashbrown::Memory>();
    }

    #[test]
    fn the_journaled_memory_variant_holds_deleted_entries() {
        let m = safemap::JournalMemory::build(1000);
        assert_eq!(m.len(), 1000);
    }

    #[test]
    fn a_batch_holds_pct_of_the_keys_and_rounds_move_the_window() {
        let b1 = RefreshBatch::new(1, 30, 1000);
        assert_eq!(b1.entries.len(), 300);
        assert!(
            b1.entries
                .iter()
                .all(|(k, v)| b1.is_stale(*k) && *v == value_of(*k, 1))
        );
        let b2 = RefreshBatch::new(2, 30, 1000);
        assert_ne!(b1.entries[0].0, b2.entries[0].0);
        assert_ne!(value_of(5, 1), value_of(5, 0));
    }
}
