//! The map's side of references: checking and indexing the keys a write
//! refers to, `referrers`, and the face other maps of the journal see
//! (`refs::Linked`). The protocol is described in `refs`.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use super::SafeMap;
use crate::engine::KeyGuard;
use crate::error::PutError;
use crate::ids::{AuditId, PlanId, Revision};
use crate::journal::Op;
use crate::reason::Reason;
use crate::refs::{Link, Linked, MapRefs, NotRemoved, Referrer, Stripes, lock_stripes};

/// A key a value refers to, with its map when that map is registered.
pub(super) struct Target<K, V> {
    decl: usize,
    key: K,
    map: Option<Link<K, V>>,
}

/// How one write changes references: the targets of the value it replaces
/// or removes (`old`) and of the value it writes (`new`).
pub(super) struct RefChange<K, V> {
    old: Vec<Target<K, V>>,
    new: Vec<Target<K, V>>,
}

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Clone + Debug,
    V: Clone,
    S: BuildHasher,
{
    /// Who refers to `key` directly, in (map, key, reference) order: at most
    /// `limit` referrers after `after` (the last one of the previous page).
    pub fn referrers(&self, key: &K, after: Option<&Referrer<K>>, limit: usize) -> Vec<Referrer<K>>
    where
        K: Ord,
    {
        let mut all = self.refs.referrers(key);
        all.sort();
        all.into_iter()
            .filter(|r| after.is_none_or(|a| r > a))
            .take(limit)
            .collect()
    }

    /// The references this map declares whose target map is not registered
    /// on its journal, as `(reference, map)`: puts through them are refused.
    /// For checking a configuration once every map is built.
    pub fn unresolved_references(&self) -> Vec<(String, String)> {
        let registry = self.journal.refs();
        self.refs
            .declared
            .iter()
            .filter(|d| registry.find(&d.to).is_none())
            .map(|d| (d.name.to_string(), d.to.to_string()))
            .collect()
    }

    pub(super) fn refs(&self) -> &MapRefs<K, V> {
        &self.refs
    }

    /// The targets of `value`, their maps looked up on the journal.
    fn resolve(&self, value: &V) -> Vec<Target<K, V>> {
        let registry = self.journal.refs();
        self.refs
            .targets(value)
            .into_iter()
            .map(|(decl, key)| Target {
                map: registry.find(&self.refs.declared[decl].to),
                decl,
                key,
            })
            .collect()
    }

    /// The change a write of `new` over `old` makes (`None`: absent).
    pub(super) fn ref_change(&self, old: Option<&V>, new: Option<&V>) -> RefChange<K, V> {
        RefChange {
            old: old.map(|v| self.resolve(v)).unwrap_or_default(),
            new: new.map(|v| self.resolve(v)).unwrap_or_default(),
        }
    }

    fn referrer(&self, key: &K, decl: usize) -> Referrer<K> {
        Referrer {
            map: Arc::clone(&self.name),
            key: key.clone(),
            reference: Arc::clone(&self.refs.declared[decl].name),
        }
    }

    /// Locks the stripes of every target of `change` except `key`'s own
    /// (already held). The caller holds the references lock.
    pub(super) fn lock_targets<'c>(&self, change: &'c RefChange<K, V>, key: &K) -> Stripes<'c> {
        let keys: Vec<(&dyn Linked<K, V>, &K)> = change
            .old
            .iter()
            .chain(&change.new)
            .filter_map(|t| t.map.as_deref().map(|m| (m, &t.key)))
            .collect();
        lock_stripes(&keys, Some((self.refs.order, self.table.stripe_of(key))))
    }

    /// Checks that every new target of a write of `key` exists. The caller
    /// holds the stripes of `key` and of every target.
    pub(super) fn check_targets(&self, change: &RefChange<K, V>, key: &K) -> Result<(), PutError> {
        for t in &change.new {
            let present = match &t.map {
                // A value may refer to its own key: it exists once written.
                Some(m) if m.refs().order == self.refs.order && t.key == *key => true,
                Some(m) => m.contains(&t.key),
                None => false,
            };
            if !present {
                let declared = &self.refs.declared[t.decl];
                return Err(PutError::ReferenceMissing {
                    reference: declared.name.to_string(),
                    map: declared.to.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Moves `key`'s entries in its targets' indexes from the old targets to
    /// the new. The caller holds the stripes of `key` and of every target, so
    /// the change is atomic with the write for anyone who takes them.
    pub(super) fn apply_change(&self, change: &RefChange<K, V>, key: &K) {
        let same = |a: &Target<K, V>, b: &Target<K, V>| a.decl == b.decl && a.key == b.key;
        for t in &change.old {
            if let Some(m) = &t.map
                && !change.new.iter().any(|n| same(n, t))
            {
                m.refs().remove(&t.key, &self.referrer(key, t.decl));
            }
        }
        for t in &change.new {
            if let Some(m) = &t.map
                && !change.old.iter().any(|o| same(o, t))
            {
                m.refs().add(t.key.clone(), self.referrer(key, t.decl));
            }
        }
    }
}

impl<K, V, S> Linked<K, V> for SafeMap<K, V, S>
where
    K: Hash + Eq + Clone + Debug + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Send + Sync,
{
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn refs(&self) -> &MapRefs<K, V> {
        &self.refs
    }

    fn stripe_of(&self, key: &K) -> usize {
        self.table.stripe_of(key)
    }

    fn lock_stripe(&self, stripe: usize) -> KeyGuard<'_> {
        self.table.lock_stripe(stripe)
    }

    fn current(&self, key: &K) -> Option<(V, Revision)> {
        let guard = self.table.guard();
        self.table
            .get(key, &guard)
            .map(|(_, stored)| (stored.value.clone(), stored.revision))
    }

    fn contains(&self, key: &K) -> bool {
        let guard = self.table.guard();
        self.table.get(key, &guard).is_some()
    }

    fn would_veto(&self, key: &K, value: &V) -> Option<String> {
        self.deny.would_veto(key, value).map(str::to_owned)
    }

    fn remove_held(
        &self,
        stripes: &Stripes<'_>,
        key: &K,
        reason: &Reason,
        plan: PlanId,
    ) -> Result<Option<AuditId>, NotRemoved> {
        let held = stripes
            .guard(self.refs.order, self.table.stripe_of(key))
            .ok_or(NotRemoved)?;
        let guard = self.table.guard();
        let (stored_key, current) = self.table.get(key, &guard).ok_or(NotRemoved)?;
        let change = self.ref_change(Some(&current.value), None);
        let claim = self.claim_removal(stored_key, current, reason, Some(plan));
        let audit_id = claim.audit_id();
        self.table.unpublish(held, key, &guard);
        claim.published();
        self.apply_change(&change, key);
        self.writes.deleted();
        Ok(audit_id)
    }

    fn write_held(
        &self,
        stripes: &Stripes<'_>,
        key: K,
        value: V,
        only_if_absent: bool,
        reason: &Reason,
        op: Op,
    ) -> Option<Revision> {
        let held = stripes.guard(self.refs.order, self.table.stripe_of(&key))?;
        let guard = self.table.guard();
        let current = self.table.get(&key, &guard).map(|(_, stored)| stored);
        if only_if_absent && current.is_some() {
            return None;
        }
        let change = self.ref_change(current.map(|c| &c.value), Some(&value));
        let (claim, stored) = self.claim_put(&key, value, current, reason, op);
        let revision = claim.revision();
        let indexed = key.clone();
        self.table.publish(held, key, stored, &guard);
        claim.published();
        self.apply_change(&change, &indexed);
        self.writes.put();
        Some(revision)
    }
}
