//! Counters of what a map did. Reads are counted in sharded cells (see
//! `engine::ReadCounters`), and so are writes (`engine::ShardedCounters`). Everything is summed only when [`SafeMap::stats`](crate::SafeMap::stats) asks.

use crate::engine::ShardedCounters;
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
    /// Single removals refused because other keys refer to the key (a
    /// planned key that gained a referrer is a plan conflict, not counted).
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

/// Write-side counters, per thread (writes to different keys run in parallel).
pub(crate) struct WriteCounters(ShardedCounters<7>);

const PUTS: usize = 0;
const DELETED: usize = 1;
const VETOED: usize = 2;
const MISMATCH: usize = 3;
const BREAKER: usize = 4;
const NOT_FOUND: usize = 5;
const REFERENCED: usize = 6;

impl Default for WriteCounters {
    fn default() -> Self {
        WriteCounters(ShardedCounters::new())
    }
}

impl WriteCounters {
    pub(crate) fn put(&self) {
        self.0.add(PUTS);
    }

    pub(crate) fn deleted(&self) {
        self.0.add(DELETED);
    }

    /// Counts a refused removal by its cause.
    pub(crate) fn refused(&self, error: &DeleteError) {
        let slot = match error {
            DeleteError::NotFound => NOT_FOUND,
            DeleteError::Vetoed { .. } => VETOED,
            DeleteError::RevisionMismatch { .. } => MISMATCH,
            DeleteError::BreakerOpen { .. } => BREAKER,
            DeleteError::Referenced { .. } => REFERENCED,
            DeleteError::ReasonRequired | DeleteError::ReasonTooLong => return,
        };
        self.0.add(slot);
    }

    pub(crate) fn puts(&self) -> u64 {
        self.0.totals()[PUTS]
    }

    pub(crate) fn deletes(&self) -> DeleteCounts {
        let totals = self.0.totals();
        DeleteCounts {
            deleted: totals[DELETED],
            vetoed: totals[VETOED],
            mismatch: totals[MISMATCH],
            breaker: totals[BREAKER],
            not_found: totals[NOT_FOUND],
            referenced: totals[REFERENCED],
        }
    }
}
