//! Restore: writing removed values back from the journal.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::SystemTime;

use super::SafeMap;
use super::write::Expect;
use crate::error::{PutError, RestoreError};
use crate::ids::{AuditId, PlanId, Revision};
use crate::journal::{AuditRecord, Op};
use crate::plan::PlanSlot;
use crate::reason::Reason;

/// Why a restore left a key alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The key exists again (recreated or already restored); it was not overwritten.
    Recreated,
    /// The removal is older than the map's retention.
    Expired,
    /// The value refers to a key that does not exist (see
    /// [`Builder::references`](crate::Builder::references)).
    ReferenceMissing,
}

impl Skip {
    /// `"recreated"`, `"expired"` or `"reference_missing"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Recreated => "recreated",
            Skip::Expired => "expired",
            Skip::ReferenceMissing => "reference_missing",
        }
    }
}

/// What a restore did.
#[must_use = "a restore report lists the keys that were skipped"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport<K> {
    /// Keys written back, with their new revisions.
    pub restored: Vec<(K, Revision)>,
    /// Keys left alone, and why.
    pub skipped: Vec<(K, Skip)>,
    /// Keys of other maps restored (or left alone) by the restore of a
    /// cascading plan, parents first.
    pub other_maps: Vec<MapRestored<K>>,
}

/// A key of another map handled by the restore of a cascading plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapRestored<K> {
    /// The map.
    pub map: Arc<str>,
    /// The key.
    pub key: K,
    /// Its new revision, or why it was left alone.
    pub outcome: Result<Revision, Skip>,
}

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Clone + Debug,
    V: Clone,
    S: BuildHasher,
{
    /// Writes the value removed by audit record `id` back, as a new revision
    /// (a new creation), only if the key is still absent.
    ///
    /// # Examples
    ///
    /// ```
    /// use safemap::{Reason, SafeMap};
    /// let map = SafeMap::new();
    /// let _ = map.insert("o-1", 7);
    /// let removed = map.remove("o-1", Reason::new("oops")).unwrap();
    /// let report = map.restore(removed.audit_id().unwrap(), Reason::new("undo")).unwrap();
    /// assert_eq!(report.restored.len(), 1);
    /// assert_eq!(map.get("o-1").map(|e| *e.value()), Some(7));
    /// ```
    ///
    /// # Errors
    ///
    /// [`RestoreError::NotFound`] (no such record for this map),
    /// [`RestoreError::NotADelete`], [`RestoreError::RetentionExpired`],
    /// [`RestoreError::JournalDisabled`], and the reason errors.
    pub fn restore(
        &self,
        id: AuditId,
        reason: impl Into<Reason>,
    ) -> Result<RestoreReport<K>, RestoreError> {
        let reason = reason.into();
        reason.check_for_removal()?;
        let journal = self.journal().ok_or(RestoreError::JournalDisabled)?;
        let record = match journal.get(id) {
            Some(record) => record,
            None if journal.was_evicted(id) => return Err(RestoreError::RetentionExpired),
            None => return Err(RestoreError::NotFound),
        };
        if !Arc::ptr_eq(&record.map, &self.name) {
            return Err(RestoreError::NotFound);
        }
        if record.op != Op::Delete {
            return Err(RestoreError::NotADelete);
        }
        if !self.within_retention(&record) {
            return Err(RestoreError::RetentionExpired);
        }
        Ok(self.restore_records(&[record], &reason))
    }

    /// Writes back the value removed by `record`, a delete record this map
    /// wrote that the caller kept (a server reads records that the journal
    /// no longer holds in memory back from its storage). It is checked and
    /// restored exactly as [`SafeMap::restore`] does with a record the journal
    /// holds: only if the key is still absent, as a new revision, audited.
    ///
    /// # Examples
    ///
    /// ```
    /// use safemap::{Reason, SafeMap};
    /// let map = SafeMap::builder().name("orders").build();
    /// let _ = map.insert("o-1", 7);
    /// let removed = map.remove("o-1", Reason::new("oops")).unwrap();
    /// // A copy of the record, as a storage would give it back.
    /// let journal = map.journal().unwrap();
    /// let record = (*journal.get(removed.audit_id().unwrap()).unwrap()).clone();
    /// let report = map.restore_record(record, Reason::new("undo")).unwrap();
    /// assert_eq!(report.restored.len(), 1);
    /// assert_eq!(map.get("o-1").map(|e| *e.value()), Some(7));
    /// ```
    ///
    /// # Errors
    ///
    /// [`RestoreError::NotFound`] (a record of another map),
    /// [`RestoreError::NotADelete`], [`RestoreError::RetentionExpired`] (older
    /// than this map's retention), [`RestoreError::JournalDisabled`], and the
    /// reason errors.
    pub fn restore_record(
        &self,
        mut record: AuditRecord<K, V>,
        reason: impl Into<Reason>,
    ) -> Result<RestoreReport<K>, RestoreError> {
        let reason = reason.into();
        reason.check_for_removal()?;
        self.journal().ok_or(RestoreError::JournalDisabled)?;
        // Maps are told apart by name here: the caller's record carries its
        // own copy of the name, not the journal's shared one.
        if *record.map != *self.name {
            return Err(RestoreError::NotFound);
        }
        record.map = Arc::clone(&self.name);
        if record.op != Op::Delete {
            return Err(RestoreError::NotADelete);
        }
        if !self.within_retention(&record) {
            return Err(RestoreError::RetentionExpired);
        }
        Ok(self.restore_records(&[Arc::new(record)], &reason))
    }

    /// Restores every removal of an executed plan (see [`SafeMap::restore`]).
    /// For a cascading plan, every map's keys come back, parents before
    /// children, each checked against the references as it is written (a key
    /// whose target is still missing once everything else is back is skipped
    /// with [`Skip::ReferenceMissing`]).
    ///
    /// # Errors
    ///
    /// [`RestoreError::NotFound`] for a plan this map does not know,
    /// [`RestoreError::RetentionExpired`] when its records are gone or all past
    /// retention, [`RestoreError::JournalDisabled`], and the reason errors.
    pub fn restore_plan(
        &self,
        plan: PlanId,
        reason: impl Into<Reason>,
    ) -> Result<RestoreReport<K>, RestoreError>
    where
        K: Send + Sync,
        V: Send + Sync,
        S: Send + Sync,
    {
        self.restore_plan_with(plan, Vec::new(), reason)
    }

    /// As [`SafeMap::restore_plan`], with `older`: records of the plan that
    /// the journal no longer holds in memory, which the caller kept (a server
    /// reads them back from its storage). Of `older`, only records of `plan`
    /// with ids below [`Journal::first_held_id`](crate::Journal::first_held_id)
    /// are used (the journal's own records win), so a caller may pass
    /// whatever it read without deduplicating; the plan is then restored
    /// exactly as if the journal held every record.
    ///
    /// # Errors
    ///
    /// As [`SafeMap::restore_plan`].
    pub fn restore_plan_with(
        &self,
        plan: PlanId,
        older: Vec<AuditRecord<K, V>>,
        reason: impl Into<Reason>,
    ) -> Result<RestoreReport<K>, RestoreError>
    where
        K: Send + Sync,
        V: Send + Sync,
        S: Send + Sync,
    {
        let reason = reason.into();
        reason.check_for_removal()?;
        let journal = self.journal().ok_or(RestoreError::JournalDisabled)?;
        let held = journal.query_held(&crate::AuditQuery {
            plan_id: Some(plan),
            ..crate::AuditQuery::default()
        });
        let mut older: Vec<_> = older
            .into_iter()
            .filter(|r| r.plan_id == Some(plan) && r.id < held.first_held)
            .map(|mut r| {
                // One shared name per map, as the journal's own records carry.
                r.map = journal.attach(&r.map, true);
                Arc::new(r)
            })
            .collect();
        older.sort_by_key(|r| r.id);
        older.dedup_by_key(|r| r.id);
        let all: Vec<_> = older
            .into_iter()
            .chain(held.records)
            .filter(|r| r.op == Op::Delete)
            .collect();
        // A cascading plan removes each root last in its subtree: its newest
        // record is a root's, in the plan's map (known after a restart too).
        let made_here = all.last().is_some_and(|r| *r.map == *self.name);
        if !made_here && !all.is_empty() {
            // Another map's plan (a cascade reaching this map): restored
            // only as a whole, through the map that made it.
            return Err(RestoreError::NotFound);
        }
        if made_here && all.iter().any(|r| !Arc::ptr_eq(&r.map, &self.name)) {
            if !all.iter().any(|r| self.within_retention(r)) {
                return Err(RestoreError::RetentionExpired);
            }
            return Ok(self.restore_batch(all, &reason, self.retention));
        }
        let records: Vec<_> = all
            .into_iter()
            .filter(|r| Arc::ptr_eq(&r.map, &self.name))
            .collect();
        if records.is_empty() {
            let known = matches!(
                self.plans.lock().slots.get(&plan),
                Some(PlanSlot::Used { .. })
            );
            return match known {
                true if journal.evicted() > 0 => Err(RestoreError::RetentionExpired),
                true => Ok(RestoreReport {
                    restored: Vec::new(),
                    skipped: Vec::new(),
                    other_maps: Vec::new(),
                }),
                false => Err(RestoreError::NotFound),
            };
        }
        if !records.iter().any(|r| self.within_retention(r)) {
            return Err(RestoreError::RetentionExpired);
        }
        Ok(self.restore_records(&records, &reason))
    }

    fn within_retention(&self, record: &AuditRecord<K, V>) -> bool {
        SystemTime::now()
            .duration_since(record.at)
            .map_or(true, |age| age <= self.retention)
    }

    fn restore_records(
        &self,
        records: &[Arc<AuditRecord<K, V>>],
        reason: &Reason,
    ) -> RestoreReport<K> {
        let _span = tracing::debug_span!("safemap.restore", map = %self.name).entered();
        let mut report = RestoreReport {
            restored: Vec::new(),
            skipped: Vec::new(),
            other_maps: Vec::new(),
        };
        for record in records {
            let Some(value) = record.previous_value.clone() else {
                continue;
            };
            if !self.within_retention(record) {
                report.skipped.push((record.key.clone(), Skip::Expired));
                continue;
            }
            let key = record.key.clone();
            match self.put_one(key.clone(), value, Expect::Absent, reason, Op::Restore) {
                Ok(written) => report.restored.push((key, written.revision)),
                Err(PutError::ReferenceMissing { .. }) => {
                    report.skipped.push((key, Skip::ReferenceMissing));
                }
                Err(PutError::AlreadyExists { .. }) | Err(_) => {
                    report.skipped.push((key, Skip::Recreated));
                }
            }
        }
        tracing::debug!(
            restored = report.restored.len(),
            skipped = report.skipped.len(),
            outcome = "restored"
        );
        report
    }
}
