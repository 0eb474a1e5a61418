//! The audit journal: the revision counter of every map attached to it, and one
//! record per recorded write, kept in memory within a retention window and a
//! size cap and handed to a [`JournalSink`] as it is written.
//!
//! Writes to different keys run in parallel; the journal orders them. A write
//! holds its key's lock (in the map) and, for a few instructions, the journal's
//! sequencer: there it claims the next revision and appends its record, then
//! publishes its entry in the table outside the sequencer and reports it
//! published (see `Claim`). So:
//!
//! * revisions, audit ids and the order of records agree with each other, across
//!   every map that shares the journal (both are drawn under the sequencer);
//! * the *published revision* ([`Journal::current_revision`]) is the highest
//!   revision r such that every write up to r is visible in its table: a
//!   contiguous watermark, never a revision whose write is still in flight;
//! * a watcher is handed a record only once its revision is published, so it
//!   never sees an event before the write is visible, and never skips one;
//! * the sink sees records in id order, without gaps.
//!
//! Which writes are recorded: every removal and restore (their record holds the
//! removed value, which restore needs). A put is recorded only when someone can
//! ask for it: a sink is attached, a watcher is registered, or the journal was
//! built with [`JournalBuilder::record_puts`]. An unrecorded put leaves no
//! allocation behind; a watch that would need it answers `Compacted`, as etcd
//! does for history it no longer holds.

mod record;
mod sequencer;
mod sink;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use event_listener::{Event, EventListener};

pub use record::{AuditRecord, Op};
pub(crate) use sequencer::{Claim, Draft, Record};
pub use sink::JournalSink;

use crate::ids::{AuditId, PlanId, Revision};
use crate::sync::{Condvar, Mutex};

/// Default time a record is kept: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default number of records kept in memory.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// A handle to an audit journal; clones share it.
///
/// Several maps may share one journal: they then share one revision counter and
/// one record order (writes to any of them are ordered; reads never wait).
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
    /// Notified (with `state` locked) when draining ends, and when the
    /// published revision moves while `waiters` is not zero: what claims
    /// held back by a quiescer, writes waiting for an earlier one, and
    /// quiescers sleep on.
    changed: Condvar,
    /// Threads asleep on `changed` waiting for the published revision to
    /// move (writes whose predecessor is slow, quiescers). A write that moves
    /// the published revision takes `state` to notify them only when this is
    /// not zero.
    waiters: AtomicUsize,
    /// `State::watchers`, readable without the lock: a write wakes watchers
    /// (`published_event`) only when this is not zero.
    watching: AtomicUsize,
    /// Whether records are kept; when false the journal only counts revisions.
    recording: bool,
    /// Whether puts are recorded even with no watcher (a sink implies it).
    record_puts: bool,
    retention: Duration,
    capacity: usize,
    sink: Option<Arc<dyn JournalSink<K, V>>>,
    /// Notified whenever the published revision moves.
    published_event: Event,
    /// The maps of this journal by name, and the references lock (see `refs`).
    refs: crate::refs::Registry<K, V>,
    /// The published revision: every revision up to it is published (its
    /// write visible in its table). Moved by one only, by the write of the
    /// next revision once its table change is made and the published
    /// revision has reached its predecessor (the disruptor's contiguous
    /// watermark; see `sequencer`), or by a quiescer with no write in flight.
    /// Loaded with Acquire by `current_revision`, so a reader that sees
    /// revision r also sees every write up to r in the tables.
    published: AtomicU64,
}

struct State<K, V> {
    /// The last revision claimed.
    last_revision: u64,
    /// Set while a [`Journal::quiesced`] call waits for in-flight writes: no
    /// revision is claimed meanwhile.
    draining: bool,
    last_id: u64,
    /// Invariant: ids are contiguous; `records[i].id == first_id() + i`, and
    /// revisions increase with ids.
    records: VecDeque<Arc<AuditRecord<K, V>>>,
    evicted: u64,
    /// The highest id and revision evicted so far (0 when none).
    evicted_through_id: u64,
    evicted_through_revision: u64,
    /// The highest revision of a put that was not recorded (0 when none).
    unrecorded_through: u64,
    /// Revisions whose writes are visible in their tables but asleep waiting
    /// for an earlier write; published by `Shared::help` (a handful at most:
    /// one per sleeping writer).
    done: Vec<u64>,
    /// Registered watchers; while there is one, every put is recorded.
    watchers: usize,
    /// The name of each explicitly named map (and of each map in loaded
    /// records): records of a map carry this very `Arc`, so maps are told
    /// apart by identity, never by equal text.
    names: HashMap<Arc<str>, Arc<str>>,
}

impl<K, V> State<K, V> {
    fn first_id(&self) -> u64 {
        self.last_id + 1 - self.records.len() as u64
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        let first = self.first_id();
        (id >= first && id <= self.last_id).then(|| (id - first) as usize)
    }

    /// Revisions at or below this one may have no record held.
    fn history_floor(&self) -> u64 {
        self.evicted_through_revision.max(self.unrecorded_through)
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

    fn intern(&mut self, name: &Arc<str>) -> Arc<str> {
        Arc::clone(
            self.names
                .entry(Arc::clone(name))
                .or_insert_with(|| Arc::clone(name)),
        )
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
    record_puts: bool,
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

    /// Hands every record to `sink` as it is appended. A journal with a sink
    /// records every put.
    pub fn sink(mut self, sink: Arc<dyn JournalSink<K, V>>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Records every put with its new value, watched or not (default: puts are
    /// recorded only while a watcher is registered or a sink is attached).
    /// Costs one record (a copy of key and value) per put, held for the
    /// retention; turn it on for an audit trail of puts or to watch from
    /// revisions written before the watch began.
    pub fn record_puts(mut self, record_puts: bool) -> Self {
        self.record_puts = record_puts;
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
        let record_puts = self.record_puts || self.sink.is_some();
        Journal {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    last_revision: self.last_revision.get(),
                    draining: false,
                    last_id: self.last_id.get(),
                    records: VecDeque::new(),
                    evicted: 0,
                    // An earlier life's records are not held (until loaded):
                    // a watch or restore that needs them must say so.
                    evicted_through_id: self.last_id.get(),
                    evicted_through_revision: self.last_revision.get(),
                    unrecorded_through: 0,
                    done: Vec::new(),
                    watchers: 0,
                    names: HashMap::new(),
                }),
                changed: Condvar::new(),
                waiters: AtomicUsize::new(0),
                watching: AtomicUsize::new(0),
                recording: self.recording,
                record_puts,
                retention: self.retention,
                capacity: self.capacity,
                sink: self.sink,
                published_event: Event::new(),
                refs: crate::refs::Registry::new(),
                published: AtomicU64::new(self.last_revision.get()),
            }),
        }
    }
}

/// Which records a [`Journal::query`] returns; every set field must match.
#[derive(Clone, Debug)]
pub struct AuditQuery<K> {
    /// Only records of maps with this name.
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

/// What [`Journal::query_held`] returns.
#[derive(Debug)]
pub struct HeldRecords<K, V> {
    /// The matching records held in memory, oldest first.
    pub records: Vec<Arc<AuditRecord<K, V>>>,
    /// The oldest id held when they were read ([`Journal::first_held_id`]).
    pub first_held: AuditId,
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
            record_puts: false,
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

    /// The maps of this journal that take part in references.
    pub(crate) fn refs(&self) -> &crate::refs::Registry<K, V> {
        &self.shared.refs
    }

    pub(crate) fn same_as(&self, other: &Journal<K, V>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The identity a map attaching to this journal writes into its records:
    /// one shared `Arc` per explicit name (so records loaded from storage find
    /// their map), a fresh one for a map left with the default name (so two
    /// such maps never see each other's records).
    pub(crate) fn attach(&self, name: &Arc<str>, explicit: bool) -> Arc<str> {
        if explicit {
            self.shared.state.lock().intern(name)
        } else {
            Arc::from(&**name)
        }
    }

    /// The published revision: every write up to it is visible in its table,
    /// and none is in flight below it.
    pub fn current_revision(&self) -> Revision {
        Revision::new(self.shared.published.load(Ordering::Acquire))
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

    /// The id of the oldest record the journal holds in memory, or
    /// `last_audit_id + 1` when it holds none: every id below it was evicted
    /// (or written before the journal started). A caller that keeps records
    /// elsewhere (a server's storage) reads ids below this there.
    pub fn first_held_id(&self) -> AuditId {
        AuditId::new(self.shared.state.lock().first_id())
    }

    /// As [`Journal::query`], together with [`Journal::first_held_id`] read
    /// under the same lock: the records returned are exactly the matches
    /// from `max(query.after + 1, first_held)` on, so a caller that reads the
    /// ids below `first_held` elsewhere joins the two with no gap and no
    /// duplicate, even while writers evict.
    pub fn query_held(&self, query: &AuditQuery<K>) -> HeldRecords<K, V>
    where
        K: PartialEq,
    {
        let state = self.shared.state.lock();
        HeldRecords {
            records: Self::query_locked(&state, query),
            first_held: AuditId::new(state.first_id()),
        }
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
        Self::query_locked(&self.shared.state.lock(), query)
    }

    fn query_locked(state: &State<K, V>, query: &AuditQuery<K>) -> Vec<Arc<AuditRecord<K, V>>>
    where
        K: PartialEq,
    {
        let start = match query.after {
            // Saturating: `after` may be any id a client sent, u64::MAX included.
            Some(after) if after.get() >= state.first_id() => {
                usize::try_from(after.get() - state.first_id())
                    .map_or(usize::MAX, |index| index.saturating_add(1))
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

    /// The newest records that match `query` and `keep`, newest first, at most
    /// `query.limit` of them (only records after `query.after`, if given).
    ///
    /// It walks back from the newest record and stops at the limit, so a caller
    /// that wants the latest few (a console, a tail) does not copy the whole
    /// journal while writers wait for its lock. `keep` runs under that lock:
    /// keep it cheap.
    pub fn query_newest(
        &self,
        query: &AuditQuery<K>,
        keep: impl Fn(&AuditRecord<K, V>) -> bool,
    ) -> Vec<Arc<AuditRecord<K, V>>>
    where
        K: PartialEq,
    {
        let state = self.shared.state.lock();
        let after = query.after.map_or(0, AuditId::get);
        state
            .records
            .iter()
            .rev()
            .take_while(|r| r.id.get() > after)
            .filter(|r| query.map.as_deref().is_none_or(|m| &*r.map == m))
            .filter(|r| query.key.as_ref().is_none_or(|k| &r.key == k))
            .filter(|r| query.plan_id.is_none_or(|p| r.plan_id == Some(p)))
            .filter(|r| keep(r))
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
    /// many were loaded. Waits for writes in flight.
    pub fn load(&self, records: impl IntoIterator<Item = AuditRecord<K, V>>) -> usize {
        let shared = &*self.shared;
        self.with_quiesced_state(|state| {
            let mut loaded = 0;
            for mut record in records {
                if record.id.get() <= state.last_id {
                    continue;
                }
                record.map = state.intern(&record.map);
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
            loaded
        })
    }

    /// A listener that fires after the published revision next moves.
    pub(crate) fn listen(&self) -> EventListener {
        self.shared.published_event.listen()
    }

    /// Registers a watcher of events from revision `from` (inclusive; `None`:
    /// from the next write): returns the id of the first record it reads, or
    /// `Err(oldest)` when a revision it needs has no record held (evicted, or a
    /// put made while nobody watched). From now on every put is recorded, until
    /// [`Journal::unregister_watcher`].
    pub(crate) fn register_watcher(&self, from: Option<Revision>) -> Result<u64, Revision> {
        let mut state = self.shared.state.lock();
        let start = match from {
            None => state.last_id + 1,
            Some(from) => {
                let floor = state.history_floor();
                if floor > 0 && from.get() <= floor {
                    return Err(Revision::new(floor + 1));
                }
                let index = state.records.partition_point(|r| r.revision < from);
                state.first_id() + index as u64
            }
        };
        state.watchers += 1;
        // SeqCst: pairs with the SeqCst store of the published revision and
        // load of `watching` in `Shared::complete` (a write either sees this
        // watcher and wakes it, or published before it looks).
        self.shared.watching.store(state.watchers, Ordering::SeqCst);
        Ok(start)
    }

    /// Ends what [`Journal::register_watcher`] began.
    pub(crate) fn unregister_watcher(&self) {
        let mut state = self.shared.state.lock();
        state.watchers = state.watchers.saturating_sub(1);
        // Relaxed would do (a spurious wake-up is harmless); SeqCst as above.
        self.shared.watching.store(state.watchers, Ordering::SeqCst);
    }

    /// The first held, published record of `map` at or after id `next_id`
    /// whose revision is at least `min_revision`, with the id to continue from.
    /// A record whose write is still in flight ends the search (records are in
    /// revision order), so nothing is skipped.
    pub(crate) fn next_for_map(
        &self,
        map: &Arc<str>,
        next_id: u64,
        min_revision: Revision,
    ) -> Result<NextRecord<K, V>, Revision> {
        let state = self.shared.state.lock();
        // Acquire: the records up to it are appended (under this lock) and
        // their writes visible.
        let published = self.shared.published.load(Ordering::Acquire);
        if next_id < state.first_id() {
            return Err(Revision::new(state.evicted_through_revision + 1));
        }
        let mut id = next_id;
        while let Some(index) = state.index_of(id) {
            let record = &state.records[index];
            if record.revision.get() > published {
                break;
            }
            id += 1;
            if Arc::ptr_eq(&record.map, map) && record.revision >= min_revision {
                return Ok((Some(Arc::clone(record)), id));
            }
        }
        Ok((None, id))
    }
}

impl<K, V> Default for Journal<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a watcher reads next, and the id to continue from.
pub(crate) type NextRecord<K, V> = (Option<Arc<AuditRecord<K, V>>>, u64);
