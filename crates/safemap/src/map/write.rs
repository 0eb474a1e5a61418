//! Puts: insert, conditional puts, in-place refresh, and loading recovered entries.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use papaya::Guard;

use super::SafeMap;
use crate::entry::{Versioned, Written};
use crate::error::PutError;
use crate::ids::Revision;
use crate::journal::{Draft, Op, WriteLock};
use crate::reason::Reason;

/// What a put expects of the key's current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: write unconditionally.
    Any,
    /// The key is absent (`If-None-Match: *`).
    Absent,
    /// The key is present at exactly this revision (`If-Match`).
    Revision(Revision),
}

/// How many refreshed entries one hold of the write lock covers: bounds how
/// long a large refresh makes other writers wait.
const REFRESH_CHUNK: usize = 1024;

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Clone + Debug,
    V: Clone,
    S: BuildHasher,
{
    /// Inserts or replaces the value under `key` (upsert). Never refused.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = safemap::SafeMap::new();
    /// let first = map.insert("k", 1);
    /// let second = map.insert("k", 2);
    /// assert!(first.created() && !second.created());
    /// assert!(second.revision() > first.revision());
    /// assert_eq!(second.version(), 2);
    /// ```
    pub fn insert(&self, key: K, value: V) -> Written {
        match self.put(key, value, Expect::Any, &Reason::none()) {
            Ok(written) => written,
            Err(_) => unreachable!("an unconditional put is never refused"),
        }
    }

    /// Inserts only if `key` is absent.
    ///
    /// # Errors
    ///
    /// [`PutError::AlreadyExists`] when the key is present.
    pub fn insert_if_absent(&self, key: K, value: V) -> Result<Written, PutError> {
        self.put(key, value, Expect::Absent, &Reason::none())
    }

    /// Replaces the value only if the key is at revision `expected`
    /// (compare-and-swap on revisions; a removed-then-recreated key never matches).
    ///
    /// # Errors
    ///
    /// [`PutError::RevisionMismatch`] with the current revision (`None` when absent).
    pub fn replace_if(&self, key: K, expected: Revision, value: V) -> Result<Written, PutError> {
        self.put(key, value, Expect::Revision(expected), &Reason::none())
    }

    /// The general put: writes `value` under `key` if `expect` holds, journaled
    /// with `reason`. The check and the write are one atomic step.
    ///
    /// # Errors
    ///
    /// [`PutError::AlreadyExists`] for `Expect::Absent` on a present key;
    /// [`PutError::RevisionMismatch`] for `Expect::Revision` on another revision
    /// or an absent key.
    pub fn put(
        &self,
        key: K,
        value: V,
        expect: Expect,
        reason: &Reason,
    ) -> Result<Written, PutError> {
        let _span = tracing::debug_span!("safemap.put", map = %self.name, key = ?key).entered();
        let result = self.journal.write(|lock| {
            let guard = self.table.guard();
            self.put_locked(lock, &guard, key, value, expect, reason, Op::Put)
        });
        match &result {
            Ok(w) => tracing::debug!(revision = w.revision.get(), outcome = "written"),
            Err(e) => tracing::debug!(outcome = %e, "put refused"),
        }
        result
    }

    /// Upserts every entry in place, each with its own revision: a key being
    /// refreshed is never observably absent, which is the point (removing and
    /// re-inserting opens a window in which readers miss). Returns the
    /// revisions in input order.
    ///
    /// Writers of the journal wait at most one chunk of 1024 entries at a time.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = safemap::SafeMap::new();
    /// let revisions = map.refresh([("a", 1), ("b", 2)]);
    /// assert_eq!(revisions.len(), 2);
    /// assert_eq!(map.get("b").map(|e| *e.value()), Some(2));
    /// ```
    pub fn refresh(&self, entries: impl IntoIterator<Item = (K, V)>) -> Vec<Revision> {
        self.refresh_with(entries, &Reason::none())
    }

    /// [`SafeMap::refresh`] with a reason recorded on every record.
    pub fn refresh_with(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
        reason: &Reason,
    ) -> Vec<Revision> {
        let _span = tracing::debug_span!("safemap.refresh", map = %self.name).entered();
        let mut entries = entries.into_iter();
        let mut revisions = Vec::with_capacity(entries.size_hint().0);
        loop {
            let before = revisions.len();
            self.journal.write(|lock| {
                let guard = self.table.guard();
                for (key, value) in entries.by_ref().take(REFRESH_CHUNK) {
                    if let Ok(w) =
                        self.put_locked(lock, &guard, key, value, Expect::Any, reason, Op::Put)
                    {
                        revisions.push(w.revision);
                    }
                }
            });
            if revisions.len() - before < REFRESH_CHUNK {
                break;
            }
        }
        tracing::debug!(entries = revisions.len(), outcome = "refreshed");
        revisions
    }

    /// Puts back an entry recovered from storage with its original revisions,
    /// without journaling it; the revision counter moves above `revision`.
    /// For recovery at start-up, before the map is shared.
    pub fn load_entry(
        &self,
        key: K,
        value: V,
        revision: Revision,
        create_revision: Revision,
        version: u64,
    ) {
        self.journal.write(|lock| {
            lock.observe_revision(revision);
            let guard = self.table.guard();
            let stored = Versioned {
                value,
                revision,
                create_revision,
                version,
            };
            self.table.publish(lock, key, stored, &guard);
        });
    }

    /// Writes under the lock. Invariant: the check of `expect` and the publish
    /// happen under one hold of the write lock, so no other write intervenes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_locked(
        &self,
        lock: &mut WriteLock<'_, K, V>,
        guard: &impl Guard,
        key: K,
        value: V,
        expect: Expect,
        reason: &Reason,
        op: Op,
    ) -> Result<Written, PutError> {
        let current = self
            .table
            .get::<K>(key.borrow(), guard)
            .map(|(_, stored)| stored);
        let current_revision = current.map(|c| c.revision);
        match (expect, current_revision) {
            (Expect::Absent, Some(current)) => return Err(PutError::AlreadyExists { current }),
            (Expect::Revision(expected), current) if current != Some(expected) => {
                return Err(PutError::RevisionMismatch { current });
            }
            _ => {}
        }
        let revision = lock.next_revision();
        let (create_revision, version) =
            current.map_or((revision, 1), |c| (c.create_revision, c.version + 1));
        let recorded = lock.is_recording().then(|| (key.clone(), value.clone()));
        self.table.publish(
            lock,
            key,
            Versioned {
                value,
                revision,
                create_revision,
                version,
            },
            guard,
        );
        let audit_id = recorded.and_then(|(key, value)| {
            lock.append(Draft {
                map: &self.name,
                key,
                op,
                revision,
                previous_revision: current_revision,
                create_revision,
                version,
                reason,
                plan_id: None,
                value: Some(value),
                previous_value: None,
            })
        });
        self.writes.put();
        Ok(Written {
            revision,
            create_revision,
            version,
            previous_revision: current_revision,
            audit_id,
        })
    }
}
