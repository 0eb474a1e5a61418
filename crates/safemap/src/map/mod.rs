//! [`SafeMap`]: the public face; each file of this folder holds one group of operations.

mod batch;
mod builder;
mod cascade;
mod plans;
mod read;
mod refs;
mod remove;
mod replica;
mod restore;
mod write;

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use builder::{Builder, DEFAULT_PLAN_TTL};
pub use read::{Pinned, Snapshot};
pub use remove::RetainReport;
pub use restore::{MapRestored, RestoreReport, Skip};
pub use write::Expect;

use crate::engine::{ReadCounters, Table};
use crate::error::WatchError;
use crate::guard::{Breaker, BreakerState, DenyRules};
use crate::ids::Revision;
use crate::journal::Journal;
use crate::plan::PlanBook;
use crate::refs::MapRefs;
use crate::stats::{Stats, WriteCounters};
use crate::sync::Mutex;
use crate::watch::Watcher;

/// A concurrent map with lock-free reads, revisions on every entry, and
/// removals that are guarded, journaled and restorable.
///
/// See the [crate documentation](crate) for a guide.
pub struct SafeMap<K, V, S = RandomState> {
    /// The entries, and the per-key write locks (see `engine::KeyLocks`).
    table: Table<K, V, S>,
    /// The map's identity in its journal's records (see `Journal::attach`).
    name: Arc<str>,
    /// Owns the revision counter and the record order (shared when the journal is).
    journal: Journal<K, V>,
    deny: DenyRules<K, V>,
    breaker: Option<Breaker>,
    retention: Duration,
    plan_ttl: Duration,
    plans: Mutex<PlanBook<K>>,
    reads: ReadCounters,
    writes: WriteCounters,
    /// What the map declares and who refers to its keys (see `refs`).
    refs: MapRefs<K, V>,
}

impl<K, V> SafeMap<K, V, RandomState>
where
    K: Hash + Eq,
{
    /// An empty map with the default policy: no deny rule, no breaker, its own
    /// journal with a 7-day retention.
    pub fn new() -> Self {
        Builder::new().build()
    }

    /// Starts configuring a map.
    pub fn builder() -> Builder<K, V, RandomState> {
        Builder::new()
    }
}

impl<K, V> Default for SafeMap<K, V, RandomState>
where
    K: Hash + Eq,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// The map's name, as written in its audit records.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The journal, or `None` for a map built `without_journal`.
    pub fn journal(&self) -> Option<&Journal<K, V>> {
        self.journal.is_recording().then_some(&self.journal)
    }

    /// Whether this map writes to `journal`.
    pub fn uses_journal(&self, journal: &Journal<K, V>) -> bool {
        self.journal.same_as(journal)
    }

    /// The last revision handed out by the map's counter (shared with every map
    /// of its journal). A reader that sees revision r here also sees every write
    /// up to r in the map.
    pub fn current_revision(&self) -> Revision {
        self.journal.current_revision()
    }

    /// How long removed values stay restorable.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Follows this map's writes from revision `from` (inclusive), or from the
    /// next write when `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use safemap::{Op, SafeMap};
    /// // Puts are kept for a watch from an earlier revision only when asked
    /// // (by default they are recorded while a watcher is registered).
    /// let map = SafeMap::builder().record_puts(true).build();
    /// let first = map.insert("a", 1).unwrap().revision();
    /// let _ = map.remove("a", "expired").unwrap();
    /// let mut changes = map.watch(Some(first)).unwrap();
    /// let put = changes.try_next().unwrap().unwrap();
    /// let delete = changes.try_next().unwrap().unwrap();
    /// assert_eq!((put.op, put.value), (Op::Put, Some(1)));
    /// assert_eq!((delete.op, delete.previous_value), (Op::Delete, Some(1)));
    /// assert!(changes.try_next().unwrap().is_none());
    /// ```
    ///
    /// # Errors
    ///
    /// [`WatchError::Compacted`] when records from `from` on were already
    /// evicted; [`WatchError::JournalDisabled`] for a map without journal.
    pub fn watch(&self, from: Option<Revision>) -> Result<Watcher<K, V>, WatchError> {
        Watcher::start(self.journal.clone(), Arc::clone(&self.name), from)
    }

    /// The counters, summed now.
    pub fn stats(&self) -> Stats {
        let (hits, misses) = self.reads.totals();
        let recording = self.journal.is_recording();
        Stats {
            entries: self.table.len(),
            hits,
            misses,
            puts: self.writes.puts(),
            deletes: self.writes.deletes(),
            vetoes_by_rule: self.deny.vetoes_by_rule(),
            breaker_trips: self.breaker.as_ref().map_or(0, |b| b.state().trips),
            journal_len: if recording { self.journal.len() } else { 0 },
            journal_evicted: if recording { self.journal.evicted() } else { 0 },
        }
    }

    /// The delete breaker's state, `None` when the map has no breaker.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.breaker.as_ref().map(Breaker::state)
    }

    /// Counts removals made before a restart (their wall-clock times) in the
    /// breaker's window, so that a restart never resets it.
    pub fn seed_breaker(&self, times: impl IntoIterator<Item = SystemTime>) {
        if let Some(breaker) = &self.breaker {
            breaker.seed(times);
        }
    }
}
