//! Replicas: applying writes that another process already decided and
//! committed (a replicated store such as etcd, whose revisions are the
//! truth), without running guards, claiming revisions or journaling.
//!
//! A server in cluster mode keeps one map per name fed by its store's change
//! stream. The safety rules run before the store's transaction; the replica
//! only mirrors what committed, with the revisions the store gave it, and
//! keeps the referrer index in step so that reads (and the referrers of a
//! key) are exact at the replica's revision.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use super::SafeMap;
use crate::error::DeleteError;
use crate::ids::Revision;
use crate::reason::Reason;

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Clone + Debug,
    V: Clone,
    S: BuildHasher,
{
    /// Applies a put committed elsewhere: `key` holds `value` at `revision`,
    /// created at `create_revision`, its `version`-th write. No guard runs, no
    /// revision is claimed and nothing is journaled; the revision counter moves
    /// to at least `revision`. The entry's references are indexed as
    /// [`SafeMap::load_entry`] does (it is the same step, usable while the map
    /// is shared).
    pub fn apply_replicated_put(
        &self,
        key: K,
        value: V,
        revision: Revision,
        create_revision: Revision,
        version: u64,
    ) {
        self.load_entry(key, value, revision, create_revision, version);
    }

    /// Applies a removal committed elsewhere at `revision`: `key` is gone
    /// (nothing happens when it is absent already). No guard runs, nothing is
    /// journaled; the referrer index forgets what the removed value referred
    /// to, and the revision counter moves to at least `revision`.
    pub fn apply_replicated_remove<Q>(&self, key: &Q, revision: Revision)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.journal.observe_revision(revision);
        // See `refs`: the references lock comes before any stripe.
        let _references = self.refs().declares().then(|| self.journal.refs().lock());
        let held = self.table.lock(key);
        let guard = self.table.guard();
        let Some((stored_key, current)) = self.table.get(key, &guard) else {
            return;
        };
        let change = self
            .refs()
            .declares()
            .then(|| self.ref_change(Some(&current.value), None));
        let _targets = change.as_ref().map(|c| self.lock_targets(c, stored_key));
        let stored_key = stored_key.clone();
        self.table.unpublish(&held, key, &guard);
        if let Some(change) = &change {
            self.apply_change(change, &stored_key);
        }
    }

    /// Judges, without removing anything, whether removing `value` (the value
    /// of `key` at the revision a store's transaction will compare) for
    /// `reason` passes the map's reason rule and deny rules. The delete
    /// breaker and references are not judged here.
    ///
    /// # Errors
    ///
    /// [`DeleteError::ReasonRequired`] / [`DeleteError::ReasonTooLong`];
    /// [`DeleteError::Vetoed`] with the first deny rule that matches (counted
    /// as a veto in the map's statistics).
    pub fn check_replicated_removal(
        &self,
        key: &K,
        value: &V,
        reason: &Reason,
    ) -> Result<(), DeleteError> {
        reason.check_for_removal()?;
        if let Some(rule) = self.deny.veto(key, value) {
            return Err(DeleteError::Vetoed {
                rule: rule.to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{DeleteError, Reason, Revision, SafeMap};

    #[test]
    fn replicated_writes_keep_the_given_revisions() {
        let map: SafeMap<String, i32> = SafeMap::new();
        map.apply_replicated_put("a".into(), 1, Revision::new(7), Revision::new(5), 2);
        let e = map.get("a").unwrap();
        assert_eq!(
            (e.revision().get(), e.create_revision().get(), e.version()),
            (7, 5, 2)
        );
        assert!(map.current_revision().get() >= 7);
        map.apply_replicated_remove("a", Revision::new(9));
        assert!(map.get("a").is_none());
        assert!(map.current_revision().get() >= 9);
        // Removing an absent key is a no-op.
        map.apply_replicated_remove("a", Revision::new(10));
    }

    #[test]
    fn replicated_removal_is_judged_by_reason_and_deny_rules() {
        let map: SafeMap<String, i32> = SafeMap::builder()
            .deny_delete("negative", |_k: &String, v: &i32| *v < 0)
            .build();
        let key = "k".to_string();
        assert!(
            map.check_replicated_removal(&key, &1, &Reason::new("ok"))
                .is_ok()
        );
        assert_eq!(
            map.check_replicated_removal(&key, &-1, &Reason::new("ok")),
            Err(DeleteError::Vetoed {
                rule: "negative".into()
            })
        );
        assert!(
            map.check_replicated_removal(&key, &1, &Reason::none())
                .is_err()
        );
    }
}
