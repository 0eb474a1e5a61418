//! Removals: single-key, conditional, and `retain`; each guarded and journaled.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::time::Instant;

use super::SafeMap;
use crate::entry::{Removed, Versioned};
use crate::error::DeleteError;
use crate::ids::{PlanId, Revision};
use crate::journal::{Claim, Draft, Op, Record};
use crate::reason::Reason;

/// What [`SafeMap::retain`] did.
#[must_use = "a retain report lists the entries that were kept against the predicate"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainReport<K> {
    /// Entries removed.
    pub removed: usize,
    /// Entries the predicate rejected but a deny rule kept, with the rule.
    pub vetoed: Vec<(K, String)>,
    /// Entries the predicate rejected that changed before they could be removed
    /// (their new value was not judged); they were kept.
    pub changed: usize,
    /// Entries the predicate rejected that other keys refer to; they were kept.
    pub referenced: Vec<K>,
    /// Whether the delete breaker stopped the removal part-way.
    pub stopped_by_breaker: bool,
}

/// How a removal under the lock is to be judged.
pub(super) struct Removal<'a> {
    pub(super) expect: Option<Revision>,
    pub(super) reason: &'a Reason,
    pub(super) plan: Option<PlanId>,
    /// Whether the delete breaker applies (single-key removals and `retain`;
    /// not planned removals, whose confirmation is the deliberate act).
    pub(super) breaker: bool,
}

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Clone + Debug,
    V: Clone,
    S: BuildHasher,
{
    /// Removes `key`, for `reason`, if the guards allow it.
    ///
    /// # Examples
    ///
    /// ```
    /// use safemap::{DeleteError, Reason, SafeMap};
    /// let map = SafeMap::new();
    /// let _ = map.insert("o-1", 42);
    /// let removed = map.remove("o-1", Reason::new("customer asked")).unwrap();
    /// assert_eq!(*removed.value(), 42);
    /// assert_eq!(map.remove("o-1", Reason::new("again")), Err(DeleteError::NotFound));
    /// ```
    ///
    /// # Errors
    ///
    /// In this order: [`DeleteError::ReasonRequired`] / [`DeleteError::ReasonTooLong`],
    /// [`DeleteError::NotFound`], [`DeleteError::Vetoed`], [`DeleteError::Referenced`],
    /// [`DeleteError::BreakerOpen`].
    /// A refused removal changes nothing and writes no record.
    pub fn remove<Q>(&self, key: &Q, reason: impl Into<Reason>) -> Result<Removed<V>, DeleteError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        self.remove_checked(key, None, &reason.into())
    }

    /// Removes `key` only if it is at revision `expected` (compare-and-remove): a
    /// revision from before a remove-and-reinsert never matches.
    ///
    /// # Errors
    ///
    /// As [`SafeMap::remove`], plus [`DeleteError::RevisionMismatch`] (checked
    /// after `NotFound`, before the guards).
    pub fn remove_if<Q>(
        &self,
        key: &Q,
        expected: Revision,
        reason: impl Into<Reason>,
    ) -> Result<Removed<V>, DeleteError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        self.remove_checked(key, Some(expected), &reason.into())
    }

    fn remove_checked<Q>(
        &self,
        key: &Q,
        expect: Option<Revision>,
        reason: &Reason,
    ) -> Result<Removed<V>, DeleteError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        let _span = tracing::debug_span!("safemap.remove", map = %self.name, key = ?key).entered();
        reason.check_for_removal()?;
        let removal = Removal {
            expect,
            reason,
            plan: None,
            breaker: true,
        };
        let result = self.remove_one(key, &removal);
        match &result {
            Ok(r) => tracing::debug!(revision = r.revision.get(), outcome = "deleted"),
            Err(e) => tracing::debug!(outcome = %e, "remove refused"),
        }
        result
    }

    /// One removal under its key's lock. Invariant: the revision check, the
    /// guards and the removal happen under one hold of the key's lock, so the
    /// value the guards judged is exactly the value removed.
    pub(super) fn remove_one<Q>(
        &self,
        key: &Q,
        removal: &Removal<'_>,
    ) -> Result<Removed<V>, DeleteError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let result = self.try_remove_one(key, removal);
        match &result {
            Ok(_) => self.writes.deleted(),
            // `referenced` counts single removals refused for their
            // referrers, not planned keys that gained one (a plan conflict).
            Err(DeleteError::Referenced { .. }) if removal.plan.is_some() => {}
            Err(error) => self.writes.refused(error),
        }
        result
    }

    fn try_remove_one<Q>(&self, key: &Q, removal: &Removal<'_>) -> Result<Removed<V>, DeleteError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // See `refs`: the references lock comes before any stripe.
        let _references = self.refs().declares().then(|| self.journal.refs().lock());
        let held = self.locks.lock(key);
        let guard = self.table.guard();
        let (stored_key, current) = self.table.get(key, &guard).ok_or(DeleteError::NotFound)?;
        if removal
            .expect
            .is_some_and(|expected| expected != current.revision)
        {
            return Err(DeleteError::RevisionMismatch {
                current: Some(current.revision),
            });
        }
        if let Some(rule) = self.deny.veto(stored_key, &current.value) {
            return Err(DeleteError::Vetoed {
                rule: rule.to_owned(),
            });
        }
        // Under the key's stripe the index is exact: a put that refers to the
        // key either is listed already or will find the key gone.
        let referrers = self.refs().referrers_except_self(&self.name, stored_key);
        if let Some(first) = referrers
            .iter()
            .min_by(|a, b| (&*a.map, &*a.reference).cmp(&(&*b.map, &*b.reference)))
        {
            return Err(DeleteError::Referenced {
                count: referrers.len(),
                map: first.map.to_string(),
                reference: first.reference.to_string(),
            });
        }
        let change = self
            .refs()
            .declares()
            .then(|| self.ref_change(Some(&current.value), None));
        let _targets = change.as_ref().map(|c| self.lock_targets(c, stored_key));
        // The clock is read only when a breaker applies: it is a measurable
        // share of an unguarded removal. Nothing below can fail, so the
        // breaker counts this removal as it admits it.
        if let Some(breaker) = self.breaker.as_ref().filter(|_| removal.breaker) {
            breaker
                .admit(Instant::now())
                .map_err(|retry_after| DeleteError::BreakerOpen { retry_after })?;
        }
        let value = current.value.clone();
        let previous_revision = current.revision;
        let claim = self.claim_removal(stored_key, current, removal.reason, removal.plan);
        let (revision, audit_id) = (claim.revision(), claim.audit_id());
        self.table.unpublish(&held, key, &guard);
        claim.published();
        if let Some(change) = &change {
            self.apply_change(change, stored_key);
        }
        Ok(Removed {
            value,
            revision,
            previous_revision,
            audit_id,
        })
    }

    /// Claims the revision of the removal of `current` (the caller holds the
    /// key's lock and has checked the guards), with its record: the removed
    /// value, which restore writes back.
    pub(super) fn claim_removal(
        &self,
        stored_key: &K,
        current: &Versioned<V>,
        reason: &Reason,
        plan: Option<PlanId>,
    ) -> Claim<'_, K, V> {
        let record = match self.journal.is_recording() {
            true => Record::Always(Draft {
                map: &self.name,
                key: stored_key.clone(),
                op: Op::Delete,
                previous_revision: Some(current.revision),
                create_revision: Some(current.create_revision),
                version: current.version,
                reason,
                plan_id: plan,
                value: None,
                previous_value: Some(current.value.clone()),
            }),
            false => Record::Nothing,
        };
        self.journal.claim(record)
    }

    /// Removes every entry for which `keep` is false, with `reason`, through the
    /// same guards as [`SafeMap::remove`] (deny rules and the breaker). Readers
    /// never wait; each removal is its own write, so other writers never wait
    /// for the whole `retain`.
    ///
    /// Each entry is removed only if it still has the revision `keep` judged;
    /// entries that changed meanwhile are kept and counted in `changed`.
    ///
    /// # Errors
    ///
    /// [`DeleteError::ReasonRequired`] / [`DeleteError::ReasonTooLong`] before anything is removed.
    pub fn retain(
        &self,
        mut keep: impl FnMut(&K, &V) -> bool,
        reason: impl Into<Reason>,
    ) -> Result<RetainReport<K>, DeleteError> {
        let reason = reason.into();
        reason.check_for_removal()?;
        let _span = tracing::debug_span!("safemap.retain", map = %self.name).entered();
        let doomed: Vec<(K, Revision)> = {
            let guard = self.table.guard();
            self.table
                .iter(&guard)
                .filter(|(k, stored)| !keep(k, &stored.value))
                .map(|(k, stored)| (k.clone(), stored.revision))
                .collect()
        };
        let mut report = RetainReport {
            removed: 0,
            vetoed: Vec::new(),
            changed: 0,
            referenced: Vec::new(),
            stopped_by_breaker: false,
        };
        for (key, revision) in &doomed {
            let removal = Removal {
                expect: Some(*revision),
                reason: &reason,
                plan: None,
                breaker: true,
            };
            match self.remove_one(key, &removal) {
                Ok(_) => report.removed += 1,
                Err(DeleteError::Vetoed { rule }) => report.vetoed.push((key.clone(), rule)),
                Err(DeleteError::Referenced { .. }) => report.referenced.push(key.clone()),
                Err(DeleteError::BreakerOpen { .. }) => {
                    report.stopped_by_breaker = true;
                    break;
                }
                Err(_) => report.changed += 1,
            }
        }
        tracing::debug!(removed = report.removed, outcome = "retained");
        Ok(report)
    }
}
