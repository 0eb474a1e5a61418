//! Counters of what a map did. Reads are counted in sharded cells (see
//! `engine::ReadCounters`); writes, which hold the write lock anyway, in plain
//! atomics. Everything is summed only when [`SafeMap::stats`](crate::SafeMap::stats) asks.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::DeleteError;

/// Removal outcomes, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteCounts {
    /// Removals that happened (single-key, planned, `retain`).
    pub deleted: u64,
    /// Removals refused by a deny rule.
    pub vetoed: u64,
    /// Conditional removals refused for a revision mismatch.
    pub mismatch: u64,
    /// Removals refused by the delete breaker.
    pub breaker: u64,
    /// Removals of an absent key.
    pub not_found: u64,
    /// Removals refused because other keys refer to the key.
    pub referenced: u64,
}

/// A map's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries now.
    pub entries: usize,
    /// Reads that found the key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Successful puts (inserts, replaces, refreshed entries, restores).
    pub puts: u64,
    /// Removal outcomes.
    pub deletes: DeleteCounts,
    /// Vetoes by deny rule name.
    pub vetoes_by_rule: Vec<(String, u64)>,
    /// Times the delete breaker went from closed to open.
    pub breaker_trips: u64,
    /// Records the journal holds now.
    pub journal_len: usize,
    /// Records the journal has evicted.
    pub journal_evicted: u64,
}

/// Write-side counters.
#[derive(Default)]
pub(crate) struct WriteCounters {
    puts: AtomicU64,
    deleted: AtomicU64,
    vetoed: AtomicU64,
    mismatch: AtomicU64,
    breaker: AtomicU64,
    not_found: AtomicU64,
    referenced: AtomicU64,
}

// Relaxed throughout: these are statistics; they publish no other memory.
impl WriteCounters {
    pub(crate) fn put(&self) {
        self.puts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn deleted(&self) {
        self.deleted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused removal by its cause.
    pub(crate) fn refused(&self, error: &DeleteError) {
        let counter = match error {
            DeleteError::NotFound => &self.not_found,
            DeleteError::Vetoed { .. } => &self.vetoed,
            DeleteError::RevisionMismatch { .. } => &self.mismatch,
            DeleteError::BreakerOpen { .. } => &self.breaker,
            DeleteError::Referenced { .. } => &self.referenced,
            DeleteError::ReasonRequired | DeleteError::ReasonTooLong => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    pub(crate) fn deletes(&self) -> DeleteCounts {
        DeleteCounts {
            deleted: self.deleted.load(Ordering::Relaxed),
            vetoed: self.vetoed.load(Ordering::Relaxed),
            mismatch: self.mismatch.load(Ordering::Relaxed),
            breaker: self.breaker.load(Ordering::Relaxed),
            not_found: self.not_found.load(Ordering::Relaxed),
            referenced: self.referenced.load(Ordering::Relaxed),
        }
    }
}
