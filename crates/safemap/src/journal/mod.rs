//! The audit journal: one record per successful write, kept in memory within a
//! retention window and a size cap, handed to a [`JournalSink`] as it is written.
//!
//! The journal also owns the revision counter and the write lock of every map
//! attached to it. A write takes the lock, draws its revision, publishes the new
//! entry in the table and appends its record before releasing the lock, so:
//!
//! * revisions, audit ids and the order of records agree with each other, across
//!   every map that shares the journal;
//! * a record (and so a watch event) is only ever appended after its write is
//!   visible to readers;
//! * the sink sees records in id order, without gaps.

mod record;
mod sink;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use event_listener::{Event, EventListener};

pub use record::{AuditRecord, Op};
pub use sink::JournalSink;

use crate::ids::{AuditId, PlanId, Revision};
use crate::sync::{Mutex, MutexGuard};

/// Default time a record is kept: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default number of records kept in memory.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// A handle to an audit journal; clones share it.
///
/// Several maps may share one journal: they then share one revision counter and
/// one write lock (writes to any of them are serialised; reads never wait).
pub struct Journal<K, V> {
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for Journal<K, V> {
    fn clone(&self) -> Self {
        Journal {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<K, V> {
    state: Mutex<State<K, V>>,
    /// Whether records are kept; when false the journal only counts revisions.
    recording: bool,
    retention: Duration,
    capacity: usize,
    sink: Option<Arc<dyn JournalSink<K, V>>>,
    /// Notified after every write that appended records.
    appended: Event,
    /// The last revision handed out, stored (Release) at the end of each write,
    /// after its table changes; loaded with Acquire by `current_revision`, so a
    /// reader that sees revision r also sees every write up to r in the table.
    last_revision: AtomicU64,
}

struct State<K, V> {
    last_revision: u64,
    last_id: u64,
    /// Invariant: ids are contiguous; `records[i].id == first_id() + i`, and
    /// revisions increase with ids.
    records: VecDeque<Arc<AuditRecord<K, V>>>,
    evicted: u64,
    /// The highest id and revision evicted so far (0 when none).
    evicted_through_id: u64,
    evicted_through_revision: u64,
}

impl<K, V> State<K, V> {
    fn first_id(&self) -> u64 {
        self.last_id + 1 - self.records.len() as u64
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        let first = self.first_id();
        (id >= first && id <= self.last_id).then(|| (id - first) as usize)
    }

    fn evict(&mut self, capacity: usize, retention: Duration, now: SystemTime) {
        while let Some(front) = self.records.front() {
            let too_many = self.records.len() > capacity;
            let too_old = now
                .duration_since(front.at)
                .is_ok_and(|age| age > retention);
            if !(too_many || too_old) {
                break;
            }
            self.evicted += 1;
            self.evicted_through_id = front.id.get();
            self.evicted_through_revision = front.revision.get();
            self.records.pop_front();
        }
    }
}

/// Configures a [`Journal`].
pub struct JournalBuilder<K, V> {
    retention: Duration,
    capacity: usize,
    sink: Option<Arc<dyn JournalSink<K, V>>>,
    last_revision: Revision,
    last_id: AuditId,
    recording: bool,
}

impl<K, V> JournalBuilder<K, V> {
    /// Records older than this are evicted (default 7 days).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// At most this many records are kept in memory (default 1 000 000); the
    /// oldest go first, and evictions are counted.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Hands every record to `sink` as it is appended.
    pub fn sink(mut self, sink: Arc<dyn JournalSink<K, V>>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Continues the counters of an earlier life: the next revision is above
    /// `last_revision`, the next audit id above `last_audit_id`. The earlier
    /// life's records count as evicted (a watch from an older revision is
    /// `Compacted`, a restore of an older id `RetentionExpired`) except those put
    /// back with [`Journal::load`].
    pub fn start_after(mut self, last_revision: Revision, last_audit_id: AuditId) -> Self {
        self.last_revision = last_revision;
        self.last_id = last_audit_id;
        self
    }

    pub(crate) fn recording(mut self, recording: bool) -> Self {
        self.recording = recording;
        self
    }

    /// Builds the journal.
    pub fn build(self) -> Journal<K, V> {
        Journal {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    last_revision: self.last_revision.get(),
                    last_id: self.last_id.get(),
                    records: VecDeque::new(),
                    evicted: 0,
                    // An earlier life's records are not held (until loaded):
                    // a watch or restore that needs them must say so.
                    evicted_through_id: self.last_id.get(),
                    evicted_through_revision: self.last_revision.get(),
                }),
                recording: self.recording,
                retention: self.retention,
                capacity: self.capacity,
                sink: self.sink,
                appended: Event::new(),
                last_revision: AtomicU64::new(self.last_revision.get()),
            }),
        }
    }
}

/// Which records a [`Journal::query`] returns; every set field must match.
#[derive(Clone, Debug)]
pub struct AuditQuery<K> {
    /// Only records of this map.
    pub map: Option<String>,
    /// Only records of this key.
    pub key: Option<K>,
    /// Only records of this plan.
    pub plan_id: Option<PlanId>,
    /// Only records with a greater id.
    pub after: Option<AuditId>,
    /// At most this many records.
    pub limit: usize,
}

impl<K> Default for AuditQuery<K> {
    fn default() -> Self {
        AuditQuery {
            map: None,
            key: None,
            plan_id: None,
            after: None,
            limit: usize::MAX,
        }
    }
}

impl<K, V> Journal<K, V> {
    /// Starts configuring a journal.
    pub fn builder() -> JournalBuilder<K, V> {
        JournalBuilder {
            retention: DEFAULT_RETENTION,
            capacity: DEFAULT_CAPACITY,
            sink: None,
            last_revision: Revision::ZERO,
            last_id: AuditId::new(0),
            recording: true,
        }
    }

    /// A journal with the defaults.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Whether records are kept (false for maps built `without_journal`).
    pub(crate) fn is_recording(&self) -> bool {
        self.shared.recording
    }

    pub(crate) fn same_as(&self, other: &Journal<K, V>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The last revision handed out.
    pub fn current_revision(&self) -> Revision {
        Revision::new(self.shared.last_revision.load(Ordering::Acquire))
    }

    /// The id of the last record appended (0 when none ever was).
    pub fn last_audit_id(&self) -> AuditId {
        AuditId::new(self.shared.state.lock().last_id)
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        self.shared.state.lock().records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records evicted so far (by retention or the size cap).
    pub fn evicted(&self) -> u64 {
        self.shared.state.lock().evicted
    }

    /// Whether `id` was held once and has been evicted.
    pub fn was_evicted(&self, id: AuditId) -> bool {
        id.get() != 0 && id.get() <= self.shared.state.lock().evicted_through_id
    }

    /// The record with this id, if still held.
    pub fn get(&self, id: AuditId) -> Option<Arc<AuditRecord<K, V>>> {
        let state = self.shared.state.lock();
        state
            .index_of(id.get())
            .map(|i| Arc::clone(&state.records[i]))
    }

    /// The records that match `query`, oldest first.
    pub fn query(&self, query: &AuditQuery<K>) -> Vec<Arc<AuditRecord<K, V>>>
    where
        K: PartialEq,
    {
        let state = self.shared.state.lock();
        let start = match query.after {
            Some(after) if after.get() >= state.first_id() => {
                (after.get() + 1 - state.first_id()) as usize
            }
            _ => 0,
        };
        state
            .records
            .iter()
            .skip(start)
            .filter(|r| query.map.as_deref().is_none_or(|m| &*r.map == m))
            .filter(|r| query.key.as_ref().is_none_or(|k| &r.key == k))
            .filter(|r| query.plan_id.is_none_or(|p| r.plan_id == Some(p)))
            .take(query.limit)
            .cloned()
            .collect()
    }

    /// Every held record of `key` (in any map sharing the journal), oldest first.
    pub fn for_key(&self, key: &K) -> Vec<Arc<AuditRecord<K, V>>>
    where
        K: PartialEq + Clone,
    {
        self.query(&AuditQuery {
            key: Some(key.clone()),
            ..AuditQuery::default()
        })
    }

    /// Every held record of a plan's execution, oldest first.
    pub fn for_plan(&self, plan: PlanId) -> Vec<Arc<AuditRecord<K, V>>>
    where
        K: PartialEq,
    {
        self.query(&AuditQuery {
            plan_id: Some(plan),
            ..AuditQuery::default()
        })
    }

    /// Puts back records of an earlier life (recovery), without calling the
    /// sink. Records must come in increasing id order and above every id held;
    /// others are ignored. Counters move above the records loaded. Returns how
    /// many were loaded.
    pub fn load(&self, records: impl IntoIterator<Item = AuditRecord<K, V>>) -> usize {
        let shared = &*self.shared;
        let mut state = shared.state.lock();
        let mut loaded = 0;
        for record in records {
            if record.id.get() <= state.last_id {
                continue;
            }
            if state.records.is_empty() {
                // Keep the contiguity invariant: the first held id follows last_id.
                state.last_id = record.id.get() - 1;
                // What comes before the first loaded record is not held.
                state.evicted_through_id = record.id.get() - 1;
                state.evicted_through_revision = record.revision.get().saturating_sub(1);
            } else if record.id.get() != state.last_id + 1 {
                // A gap (records lost to eviction on disk): restart the window here.
                state.evicted_through_id = state.last_id;
                state.evicted_through_revision = state.last_revision;
                state.records.clear();
                state.last_id = record.id.get() - 1;
            }
            state.last_id = record.id.get();
            state.last_revision = state.last_revision.max(record.revision.get());
            state.records.push_back(Arc::new(record));
            loaded += 1;
        }
        state.evict(shared.capacity, shared.retention, SystemTime::now());
        shared
            .last_revision
            .store(state.last_revision, Ordering::Release);
        loaded
    }

    /// Runs `write` under the write lock, then wakes watchers if it appended.
    pub(crate) fn write<R>(&self, write: impl FnOnce(&mut WriteLock<'_, K, V>) -> R) -> R {
        let shared = &*self.shared;
        let mut lock = WriteLock {
            state: shared.state.lock(),
            shared,
            appended: false,
        };
        // Dropping `lock` publishes the revision and wakes watchers, also when
        // `write` unwinds (see `impl Drop for WriteLock`).
        write(&mut lock)
    }

    /// A listener that fires after the next write that appends records.
    pub(crate) fn listen(&self) -> EventListener {
        self.shared.appended.listen()
    }

    /// The first held record of `map` at or after id `next_id` whose revision is
    /// at least `min_revision`, with the id to continue from.
    pub(crate) fn next_for_map(
        &self,
        map: &str,
        next_id: u64,
        min_revision: Revision,
    ) -> Result<NextRecord<K, V>, Revision> {
        let state = self.shared.state.lock();
        if next_id < state.first_id() {
            return Err(Revision::new(state.evicted_through_revision + 1));
        }
        let mut id = next_id;
        while let Some(index) = state.index_of(id) {
            id += 1;
            let record = &state.records[index];
            if &*record.map == map && record.revision >= min_revision {
                return Ok((Some(Arc::clone(record)), id));
            }
        }
        Ok((None, id))
    }

    /// Where a watch of events from `from` (inclusive) starts: the id of the first
    /// record with a revision at least `from`, or `Err(oldest)` when some such
    /// record was already evicted.
    pub(crate) fn start_id_for(&self, from: Option<Revision>) -> Result<u64, Revision> {
        let state = self.shared.state.lock();
        let Some(from) = from else {
            return Ok(state.last_id + 1);
        };
        if from.get() <= state.evicted_through_revision {
            return Err(Revision::new(state.evicted_through_revision + 1));
        }
        let index = state.records.partition_point(|r| r.revision < from);
        Ok(state.first_id() + index as u64)
    }
}

impl<K, V> Default for Journal<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a watcher reads next, and the id to continue from.
pub(crate) type NextRecord<K, V> = (Option<Arc<AuditRecord<K, V>>>, u64);

/// Proof that the journal's write lock is held; the only way to draw a
/// revision, append a record or mutate a table.
pub(crate) struct WriteLock<'a, K, V> {
    state: MutexGuard<'a, State<K, V>>,
    shared: &'a Shared<K, V>,
    appended: bool,
}

impl<K, V> Drop for WriteLock<'_, K, V> {
    /// Ends a write, on success or unwind alike (a deny rule may panic part-way
    /// through a plan execution, after earlier removals were published): stores
    /// the last revision drawn and wakes watchers if records were appended, then
    /// the lock is released (fields drop after this body).
    fn drop(&mut self) {
        // Release: pairs with the Acquire load in `current_revision`; every table
        // change of this write happened before this store.
        self.shared
            .last_revision
            .store(self.state.last_revision, Ordering::Release);
        if self.appended {
            self.shared.appended.notify(usize::MAX);
        }
    }
}

/// A record before the journal gives it an id and a time.
pub(crate) struct Draft<'a, K, V> {
    pub(crate) map: &'a Arc<str>,
    pub(crate) key: K,
    pub(crate) op: Op,
    pub(crate) revision: Revision,
    pub(crate) previous_revision: Option<Revision>,
    pub(crate) create_revision: Revision,
    pub(crate) version: u64,
    pub(crate) reason: &'a crate::Reason,
    pub(crate) plan_id: Option<PlanId>,
    pub(crate) value: Option<V>,
    pub(crate) previous_value: Option<V>,
}

impl<K, V> WriteLock<'_, K, V> {
    /// Draws the next revision. Strictly greater than every revision drawn
    /// before from this journal, in this life or (via `start_after`) an earlier one.
    pub(crate) fn next_revision(&mut self) -> Revision {
        self.state.last_revision += 1;
        Revision::new(self.state.last_revision)
    }

    /// Moves the counter up to at least `revision` (recovery of entries).
    pub(crate) fn observe_revision(&mut self, revision: Revision) {
        self.state.last_revision = self.state.last_revision.max(revision.get());
    }

    /// Whether appended drafts are kept (when not, `append` returns `None`
    /// and the caller need not build a draft).
    pub(crate) fn is_recording(&self) -> bool {
        self.shared.recording
    }

    /// Appends one record; returns its id (`None` when the journal does not record).
    pub(crate) fn append(&mut self, draft: Draft<'_, K, V>) -> Option<AuditId> {
        if !self.shared.recording {
            return None;
        }
        let at = SystemTime::now();
        self.state.last_id += 1;
        let id = AuditId::new(self.state.last_id);
        let record = Arc::new(AuditRecord {
            id,
            at,
            map: Arc::clone(draft.map),
            key: draft.key,
            op: draft.op,
            revision: draft.revision,
            previous_revision: draft.previous_revision,
            create_revision: draft.create_revision,
            version: draft.version,
            reason: draft.reason.recorded_text(),
            actor: draft.reason.actor().map(str::to_owned),
            trace_id: draft.reason.trace_id().map(str::to_owned),
            plan_id: draft.plan_id,
            value: draft.value,
            previous_value: draft.previous_value,
        });
        if let Some(sink) = &self.shared.sink {
            sink.append(&record);
        }
        self.state.records.push_back(record);
        self.state
            .evict(self.shared.capacity, self.shared.retention, at);
        self.appended = true;
        Some(id)
    }
}
