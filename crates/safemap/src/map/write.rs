//! Puts: insert, conditional puts, in-place refresh, and loading recovered entries.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use super::SafeMap;
use crate::entry::{Versioned, Written};
use crate::error::PutError;
use crate::ids::Revision;
use crate::journal::{Claim, Draft, Op, Record};
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

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Clone + Debug,
    V: Clone,
    S: BuildHasher,
{
    /// Inserts or replaces the value under `key` (upsert). Refused only in a
    /// map that declares references, when the value refers to a missing key.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = safemap::SafeMap::new();
    /// let first = map.insert("k", 1).unwrap();
    /// let second = map.insert("k", 2).unwrap();
    /// assert!(first.created() && !second.created());
    /// assert!(second.revision() > first.revision());
    /// assert_eq!(second.version(), 2);
    /// ```
    ///
    /// # Errors
    ///
    /// [`PutError::ReferenceMissing`] (see [`Builder::references`](crate::Builder::references)).
    pub fn insert(&self, key: K, value: V) -> Result<Written, PutError> {
        self.put(key, value, Expect::Any, &Reason::none())
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
    /// or an absent key; [`PutError::ReferenceMissing`] when the value refers
    /// to a key that does not exist (see [`Builder::references`](crate::Builder::references)).
    pub fn put(
        &self,
        key: K,
        value: V,
        expect: Expect,
        reason: &Reason,
    ) -> Result<Written, PutError> {
        let _span = tracing::debug_span!("safemap.put", map = %self.name, key = ?key).entered();
        let result = self.put_one(key, value, expect, reason, Op::Put);
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
    /// Each entry is its own write: other writers never wait for the whole
    /// refresh, and readers never wait at all. In a map that declares
    /// references, an entry whose target is missing is left out (and has no
    /// revision in the result); [`SafeMap::refresh_checked`] refuses the
    /// whole batch instead.
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
        let revisions: Vec<Revision> = entries
            .into_iter()
            .filter_map(|(key, value)| self.put_one(key, value, Expect::Any, reason, Op::Put).ok())
            .map(|written| written.revision)
            .collect();
        tracing::debug!(entries = revisions.len(), outcome = "refreshed");
        revisions
    }

    /// Puts back an entry recovered from storage with its original revisions,
    /// without journaling it; the revision counter moves above `revision`.
    /// For recovery at start-up, before the map is shared. The entry's
    /// references are indexed in their targets' maps (build and register
    /// every map of the journal before loading entries); targets are not
    /// checked, since they may be loaded later.
    pub fn load_entry(
        &self,
        key: K,
        value: V,
        revision: Revision,
        create_revision: Revision,
        version: u64,
    ) {
        self.journal.observe_revision(revision);
        let _references = self.refs().declares().then(|| self.journal.refs().lock());
        let held = self.table.lock(&key);
        let guard = self.table.guard();
        // The referrer index is rebuilt from the entries loaded (targets need
        // not be loaded yet, but their maps must be built and registered).
        let change = self.refs().declares().then(|| {
            let current = self.table.get::<K>(key.borrow(), &guard);
            self.ref_change(current.map(|(_, c)| &c.value), Some(&value))
        });
        let _targets = change.as_ref().map(|c| self.lock_targets(c, &key));
        let stored = Versioned {
            value,
            revision,
            create_revision,
            version,
        };
        let indexed = change.as_ref().map(|_| key.clone());
        self.table.publish(&held, key, stored, &guard);
        if let (Some(change), Some(key)) = (&change, indexed) {
            self.apply_change(change, &key);
        }
    }

    /// One put under its key's lock. Invariant: the check of `expect` and the
    /// publish happen under one hold of the key's lock, so no other write to the
    /// key intervenes; the revision is claimed after the check holds.
    pub(super) fn put_one(
        &self,
        key: K,
        value: V,
        expect: Expect,
        reason: &Reason,
        op: Op,
    ) -> Result<Written, PutError> {
        // A map that declares references takes the references lock before its
        // key's stripe (see `refs`); other maps pay one branch.
        let _references = self.refs().declares().then(|| self.journal.refs().lock());
        let held = self.table.lock(&key);
        let guard = self.table.guard();
        let current = self
            .table
            .get::<K>(key.borrow(), &guard)
            .map(|(_, stored)| stored);
        let previous_revision = current.map(|c| c.revision);
        match (expect, previous_revision) {
            (Expect::Absent, Some(current)) => return Err(PutError::AlreadyExists { current }),
            (Expect::Revision(expected), current) if current != Some(expected) => {
                return Err(PutError::RevisionMismatch { current });
            }
            _ => {}
        }
        let change = self
            .refs()
            .declares()
            .then(|| self.ref_change(current.map(|c| &c.value), Some(&value)));
        let _targets = change.as_ref().map(|c| self.lock_targets(c, &key));
        if let Some(change) = &change {
            self.check_targets(change, &key)?;
        }
        let (claim, stored) = self.claim_put(&key, value, current, reason, op);
        let (revision, audit_id) = (claim.revision(), claim.audit_id());
        let (create_revision, version) = (stored.create_revision, stored.version);
        match &change {
            Some(change) => {
                let indexed = key.clone();
                self.table.publish(&held, key, stored, &guard);
                claim.published();
                self.apply_change(change, &indexed);
            }
            None => {
                self.table.publish(&held, key, stored, &guard);
                claim.published();
            }
        }
        self.writes.put();
        Ok(Written {
            revision,
            create_revision,
            version,
            previous_revision,
            audit_id,
        })
    }

    /// Claims the revision of a put of `value` over `current` (the caller holds
    /// the key's lock), with the record the journal wants of it, and returns
    /// the claim and the entry to publish under `key`.
    pub(super) fn claim_put(
        &self,
        key: &K,
        value: V,
        current: Option<&Versioned<V>>,
        reason: &Reason,
        op: Op,
    ) -> (Claim<'_, K, V>, Versioned<V>) {
        let (create_revision, version) = match current {
            Some(c) => (Some(c.create_revision), c.version + 1),
            None => (None, 1),
        };
        let draft = || Draft {
            map: &self.name,
            key: key.clone(),
            op,
            previous_revision: current.map(|c| c.revision),
            create_revision,
            version,
            reason,
            plan_id: None,
            value: Some(value.clone()),
            previous_value: None,
        };
        let record = match (self.journal.is_recording(), op) {
            (false, _) => Record::Nothing,
            (true, Op::Put) => Record::Put(&draft),
            (true, _) => Record::Always(draft()),
        };
        let claim = self.journal.claim(record);
        let revision = claim.revision();
        let stored = Versioned {
            value,
            revision,
            create_revision: create_revision.unwrap_or(revision),
            version,
        };
        (claim, stored)
    }
}
