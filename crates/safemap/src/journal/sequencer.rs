//! The sequencer: where a write claims its revision and appends its record, and
//! where the published revision moves once writes are visible.
//!
//! A write holds the journal's state lock once, for a few instructions: to
//! claim its revision (and append its record). Everything else a write does
//! (finding the entry, checking its condition and the guards, publishing in
//! the table) happens outside, under its key's lock only, so writes to
//! different keys run in parallel.
//!
//! The published revision is a contiguous watermark (the LMAX disruptor's
//! sequence barrier): the write of revision r, once its table change is made,
//! waits until the published revision is r - 1, then stores r. Writes finish
//! in the order they claimed, so the watermark never passes a write in flight
//! and needs no lock; a write whose predecessor is still in flight spins for a
//! moment and then sleeps on the journal's condition variable (it counts
//! itself in `waiters` and leaves its revision in `done`, so that the write
//! it waits for publishes it and wakes it: the sleeper's wake-up is never on
//! another write's path). A previous
//! version took the state lock a second time to mark itself published in a
//! queue of flags and always slept on the condition variable when out of
//! order: on two threads that was ~11 000 futex calls and 10 000 context
//! switches per million writes (`examples/write_mix`, `perf stat`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::{AuditRecord, Journal, Op, Shared, State};
use crate::ids::{AuditId, PlanId, Revision};
use crate::sync::{MutexGuard, switch_point};

/// A record before the journal gives it an id, a revision and a time.
pub(crate) struct Draft<'a, K, V> {
    pub(crate) map: &'a Arc<str>,
    pub(crate) key: K,
    pub(crate) op: Op,
    pub(crate) previous_revision: Option<Revision>,
    /// `None`: the key is created by this write (its create revision is the
    /// revision the write claims).
    pub(crate) create_revision: Option<Revision>,
    pub(crate) version: u64,
    pub(crate) reason: &'a crate::Reason,
    pub(crate) plan_id: Option<PlanId>,
    pub(crate) value: Option<V>,
    pub(crate) previous_value: Option<V>,
}

/// What a write leaves in the journal.
pub(crate) enum Record<'a, 'd, K, V> {
    /// Always recorded (removals and restores: restore needs the removed value).
    Always(Draft<'d, K, V>),
    /// A put: recorded only when puts are wanted (a watcher, a sink, or
    /// `record_puts`); the draft is built under the sequencer only then, so an
    /// unrecorded put copies nothing.
    Put(&'a dyn Fn() -> Draft<'d, K, V>),
    /// Nothing (a map without journal).
    Nothing,
}

/// A claimed revision whose write is not yet published.
///
/// Invariant: the write publishes its table change, then drops the claim
/// (normally through [`Claim::published`]). Dropping it also on unwind keeps the
/// published revision moving: a write that panicked part-way is counted as
/// published with whatever it had done, as a panic under the old write lock was.
#[must_use = "a claim must be held until the write is published"]
pub(crate) struct Claim<'j, K, V> {
    shared: &'j Shared<K, V>,
    revision: Revision,
    audit_id: Option<AuditId>,
}

impl<K, V> Claim<'_, K, V> {
    /// The revision of this write.
    pub(crate) fn revision(&self) -> Revision {
        self.revision
    }

    /// The id of its record, if it was recorded.
    pub(crate) fn audit_id(&self) -> Option<AuditId> {
        self.audit_id
    }

    /// Reports the write visible in its table.
    pub(crate) fn published(self) {}
}

impl<K, V> Drop for Claim<'_, K, V> {
    /// Waits until every earlier write is published, then reports this one
    /// published (see `Shared::complete`), so that when a write returns,
    /// `current_revision` is at least its revision (read-your-writes on the
    /// counter). Only writers wait here, and only for writes claimed before,
    /// which never wait for this one.
    fn drop(&mut self) {
        self.shared.complete(self.revision.get());
    }
}

impl<K, V> Journal<K, V> {
    /// Claims the next revision for a write whose condition already holds (the
    /// caller holds the key's lock, so it still holds), appending its record.
    /// Waits only while a [`Journal::quiesced`] call drains writes in flight.
    pub(crate) fn claim(&self, record: Record<'_, '_, K, V>) -> Claim<'_, K, V> {
        let shared = &*self.shared;
        let mut state = shared.state.lock();
        while state.draining {
            state = shared.changed.wait(state);
        }
        state.last_revision += 1;
        let revision = Revision::new(state.last_revision);
        let draft = match record {
            Record::Always(draft) => Some(draft),
            Record::Put(make) if shared.record_puts || state.watchers > 0 => Some(make()),
            Record::Put(_) => {
                state.unrecorded_through = revision.get();
                None
            }
            Record::Nothing => None,
        };
        let audit_id = draft
            .filter(|_| shared.recording)
            .map(|draft| shared.append(&mut state, draft, revision));
        drop(state);
        switch_point();
        Claim {
            shared,
            revision,
            audit_id,
        }
    }

    /// Runs `f` with no write in flight and none starting: every claimed
    /// revision is published, so the tables show exactly the writes up to the
    /// published revision. New claims wait until `f` returns; readers never do.
    /// Must not be called while the calling thread holds a [`Claim`].
    pub(crate) fn quiesced<R>(&self, f: impl FnOnce() -> R) -> R {
        self.with_quiesced_state(|_| f())
    }

    /// [`Journal::quiesced`], handing `f` the journal's state.
    pub(super) fn with_quiesced_state<R>(&self, f: impl FnOnce(&mut State<K, V>) -> R) -> R {
        let shared = &*self.shared;
        let mut state = shared.state.lock();
        while state.draining {
            // Another quiescer is at work: let it finish first.
            state = shared.changed.wait(state);
        }
        state.draining = true;
        // Counted before looking (SeqCst, as in `Shared::complete`), so that
        // the last write in flight either is seen published or wakes us.
        shared.waiters.fetch_add(1, Ordering::SeqCst);
        while shared.published.load(Ordering::SeqCst) < state.last_revision {
            state = shared.changed.wait(state);
        }
        shared.waiters.fetch_sub(1, Ordering::SeqCst);
        let result = f(&mut state);
        state.draining = false;
        // No write is in flight and none can claim (draining, and we hold the
        // lock): `f` may have moved the counter (recovery), and the published
        // revision follows it. Release: pairs with the Acquire in
        // `current_revision`.
        shared
            .published
            .store(state.last_revision, Ordering::Release);
        drop(state);
        shared.changed.notify_all();
        result
    }

    /// Moves the counter up to at least `revision` (recovery of entries).
    pub(crate) fn observe_revision(&self, revision: Revision) {
        self.with_quiesced_state(|state| {
            state.last_revision = state.last_revision.max(revision.get());
        });
    }
}

impl<K, V> Shared<K, V> {
    fn append(
        &self,
        state: &mut MutexGuard<'_, State<K, V>>,
        draft: Draft<'_, K, V>,
        revision: Revision,
    ) -> AuditId {
        let at = SystemTime::now();
        state.last_id += 1;
        let id = AuditId::new(state.last_id);
        let record = Arc::new(AuditRecord {
            id,
            at,
            map: Arc::clone(draft.map),
            key: draft.key,
            op: draft.op,
            revision,
            previous_revision: draft.previous_revision,
            create_revision: draft.create_revision.unwrap_or(revision),
            version: draft.version,
            reason: draft.reason.recorded_text(),
            actor: draft.reason.actor().map(str::to_owned),
            trace_id: draft.reason.trace_id().map(str::to_owned),
            plan_id: draft.plan_id,
            value: draft.value,
            previous_value: draft.previous_value,
        });
        if let Some(sink) = &self.sink {
            sink.append(&record);
        }
        state.records.push_back(record);
        state.evict(self.capacity, self.retention, at);
        id
    }

    /// Moves the published revision from `revision - 1` to `revision`
    /// (the caller's write is visible in its table), first waiting for every
    /// earlier write to have done the same, and wakes whoever waits for it.
    /// So when a write returns, `current_revision` is at least its revision
    /// (read-your-writes on the counter). Only writers and quiescers wait
    /// here, and a write waits only for writes claimed before it, which
    /// never wait for it.
    fn complete(&self, revision: u64) {
        let previous = revision - 1;
        if !self.reached_soon(previous) {
            let mut state = self.state.lock();
            // SeqCst (the count, then the look): with the SeqCst store and
            // load in the write we wait for, either it sees us counted and
            // takes the lock (where it finds us in `done`), or we see its
            // revision published.
            self.waiters.fetch_add(1, Ordering::SeqCst);
            if self.published.load(Ordering::SeqCst) < previous {
                // Asleep, we leave our revision to be published by whoever
                // publishes the one before it (`help`): so the write we wait
                // for never waits for our wake-up in turn. (Without this, two
                // writers fell into a convoy in which each write slept:
                // 733 049 futex calls for 2M writes, against 19 808 before
                // the lock-free watermark.) The lock orders our table change
                // before the helper's store of our revision.
                state.done.push(revision);
                while self.published.load(Ordering::SeqCst) < revision {
                    state = self.changed.wait(state);
                }
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
        // Release would do for readers (pairs with the Acquire in
        // `current_revision`; our table change and, through the Acquire
        // load that saw `previous`, every earlier one come before it).
        // SeqCst for the two store-then-load pairs: with `waiters` (a
        // write or quiescer counts itself, then looks) and with `watching`
        // (a watcher registers, then looks).
        self.published.store(revision, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.help();
        }
        // Only watchers listen; a map nobody watches skips the wake-up.
        if self.watching.load(Ordering::SeqCst) > 0 {
            self.published_event.notify(usize::MAX);
        }
    }

    /// Publishes, in order, the revisions of sleeping writes that follow the
    /// published revision (their table changes are made: they pushed
    /// themselves into `done` under the lock we now hold), then wakes every
    /// sleeper. Under the lock, so that a sleeper between its look and its
    /// sleep cannot miss the notification.
    ///
    /// Only this function stores a revision found in `done`, and the owner
    /// of a revision not in `done` stores it only once the published
    /// revision is its predecessor: no two threads store the same revision.
    fn help(&self) {
        let mut state = self.state.lock();
        let mut published = self.published.load(Ordering::SeqCst);
        while let Some(index) = state.done.iter().position(|&r| r == published + 1) {
            state.done.swap_remove(index);
            published += 1;
            // SeqCst as in `complete` (a watcher's register-then-look).
            self.published.store(published, Ordering::SeqCst);
        }
        self.changed.notify_all();
    }

    /// Whether the published revision reaches `revision` within a short spin
    /// (the write before ours is normally a table operation away from
    /// publishing). Under the model checker it looks once, so that the
    /// sleeping path is what it explores.
    fn reached_soon(&self, revision: u64) -> bool {
        let spins = if cfg!(feature = "shuttle") { 0 } else { SPINS };
        for _ in 0..spins {
            // Acquire: the writes up to `revision` are visible after it.
            if self.published.load(Ordering::Acquire) >= revision {
                return true;
            }
            std::hint::spin_loop();
        }
        self.published.load(Ordering::Acquire) >= revision
    }
}

/// How many times a write looks for its predecessor's publication before
/// sleeping: about a microsecond of `pause`s, several times a table
/// operation, far below a time slice.
const SPINS: u32 = 128;
