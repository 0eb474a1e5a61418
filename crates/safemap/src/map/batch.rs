//! Writes of many keys as one step under the references lock: a checked
//! refresh (entries of the batch count as present for each other) and the
//! restore of a cascading plan (checked against the state after the whole
//! restore, so keys that refer to each other come back together).

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::SystemTime;

use super::SafeMap;
use super::cascade::Handle;
use super::restore::{MapRestored, RestoreReport, Skip};
use crate::error::RefreshError;
use crate::ids::Revision;
use crate::journal::{AuditRecord, Op};
use crate::reason::Reason;
use crate::refs::{Linked, lock_stripes};

/// A key a value refers to: its map (if registered) and the key, with the
/// reference's index in the referring map.
type Target<'a, K, V> = (usize, Option<Handle<'a, K, V>>, K);

impl<K, V, S> SafeMap<K, V, S>
where
    K: Hash + Eq + Clone + Debug + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Send + Sync,
{
    fn targets_in<'a>(&'a self, map: &dyn Linked<K, V>, value: &V) -> Vec<Target<'a, K, V>> {
        map.refs()
            .targets(value)
            .into_iter()
            .map(|(decl, key)| (decl, self.handle(&map.refs().declared[decl].to), key))
            .collect()
    }

    /// [`SafeMap::refresh_with`] as one checked batch: every entry's targets
    /// must exist or be written by the same batch, else nothing is written.
    /// For a map that declares no reference this is `refresh_with`.
    ///
    /// # Errors
    ///
    /// [`RefreshError::ReferenceMissing`] naming the first entry whose target is missing.
    pub fn refresh_checked(
        &self,
        entries: Vec<(K, V)>,
        reason: &Reason,
    ) -> Result<Vec<Revision>, RefreshError> {
        if !self.refs().declares() {
            return Ok(self.refresh_with(entries, reason));
        }
        let _span =
            tracing::debug_span!("safemap.refresh", map = %self.name, checked = true).entered();
        let _references = self.journal.refs().lock();
        let own: &dyn Linked<K, V> = self;
        let mut targets: Vec<Target<'_, K, V>> = Vec::new();
        for (_, value) in &entries {
            targets.extend(self.targets_in(own, value));
        }
        loop {
            // The current values' targets lose their index entries: their
            // stripes are needed too. They are read before locking, so check
            // after locking that they did not move meanwhile.
            let old = |key: &K| own.current(key).map(|(v, _)| self.targets_in(own, &v));
            let before: Vec<_> = entries.iter().map(|(k, _)| old(k)).collect();
            let mut keys: Vec<(&dyn Linked<K, V>, &K)> =
                entries.iter().map(|(k, _)| (own, k)).collect();
            keys.extend(
                targets
                    .iter()
                    .chain(before.iter().flatten().flatten())
                    .filter_map(|(_, h, k)| h.as_ref().map(|h| (h.get(), k))),
            );
            let stripes = lock_stripes(&keys, None);
            let moved = entries.iter().zip(&before).any(|((k, _), b)| {
                let now = old(k);
                let keys = |t: &Option<Vec<Target<'_, K, V>>>| {
                    t.iter()
                        .flatten()
                        .map(|(d, _, k)| (*d, k.clone()))
                        .collect::<Vec<_>>()
                };
                keys(&now) != keys(b)
            });
            if moved {
                continue;
            }
            let batch: HashSet<&K> = entries.iter().map(|(k, _)| k).collect();
            for (i, (_, value)) in entries.iter().enumerate() {
                for (decl, handle, key) in self.targets_in(own, value) {
                    let present = match &handle {
                        Some(Handle::Own(_)) => batch.contains(&key) || own.contains(&key),
                        Some(h) => h.get().contains(&key),
                        None => false,
                    };
                    if !present {
                        let declared = &self.refs().declared[decl];
                        return Err(RefreshError::ReferenceMissing {
                            entry: i,
                            reference: declared.name.to_string(),
                            map: declared.to.to_string(),
                        });
                    }
                }
            }
            let revisions = entries
                .iter()
                .filter_map(|(k, v)| {
                    own.write_held(&stripes, k.clone(), v.clone(), false, reason, Op::Put)
                })
                .collect();
            return Ok(revisions);
        }
    }

    /// Restores a cascading plan's removals across maps as one step: under
    /// the references lock and the stripes of every key and target, the keys
    /// still absent come back if each one's targets exist or come back with
    /// it; the others are skipped. Newest record first (parents first).
    pub(super) fn restore_batch(
        &self,
        mut records: Vec<Arc<AuditRecord<K, V>>>,
        reason: &Reason,
        retention: std::time::Duration,
    ) -> RestoreReport<K> {
        let _span =
            tracing::debug_span!("safemap.restore", map = %self.name, cascade = true).entered();
        records.sort_by_key(|r| std::cmp::Reverse(r.id));
        let _references = self.journal.refs().lock();
        let mut outcomes: Vec<(Arc<str>, K, Result<Revision, Skip>)> = Vec::new();
        let mut items = Vec::new();
        for record in records {
            let Some(value) = record.previous_value.clone() else {
                continue;
            };
            let expired = SystemTime::now()
                .duration_since(record.at)
                .is_ok_and(|age| age > retention);
            match self.handle(&record.map) {
                _ if expired => {
                    outcomes.push((record.map.clone(), record.key.clone(), Err(Skip::Expired)))
                }
                None => {
                    outcomes.push((record.map.clone(), record.key.clone(), Err(Skip::Recreated)))
                }
                Some(handle) => {
                    let targets = self.targets_in(handle.get(), &value);
                    items.push((record, handle, value, targets));
                }
            }
        }
        let mut keys: Vec<(&dyn Linked<K, V>, &K)> = Vec::new();
        for (record, handle, _, targets) in &items {
            keys.push((handle.get(), &record.key));
            keys.extend(
                targets
                    .iter()
                    .filter_map(|(_, h, k)| h.as_ref().map(|h| (h.get(), k))),
            );
        }
        let stripes = lock_stripes(&keys, None);
        // Candidates: absent now. Then drop, until none is dropped, those
        // whose target neither exists nor is a candidate.
        let mut candidate: Vec<bool> = items
            .iter()
            .map(|(r, h, _, _)| !h.get().contains(&r.key))
            .collect();
        let mut missing = vec![false; items.len()];
        loop {
            let coming: HashSet<(&str, &K)> = items
                .iter()
                .zip(&candidate)
                .filter(|(_, c)| **c)
                .map(|((r, _, _, _), _)| (&*r.map, &r.key))
                .collect();
            let mut dropped = false;
            for (i, (_, _, _, targets)) in items.iter().enumerate() {
                if !candidate[i] {
                    continue;
                }
                let ok = targets.iter().all(|(_, h, k)| match h {
                    Some(h) => h.get().contains(k) || coming.contains(&(&**h.get().name(), k)),
                    None => false,
                });
                if !ok {
                    candidate[i] = false;
                    missing[i] = true;
                    dropped = true;
                }
            }
            if !dropped {
                break;
            }
        }
        for (i, (record, handle, value, _)) in items.iter().enumerate() {
            let outcome = if missing[i] {
                Err(Skip::ReferenceMissing)
            } else if !candidate[i] {
                Err(Skip::Recreated)
            } else {
                handle
                    .get()
                    .write_held(
                        &stripes,
                        record.key.clone(),
                        value.clone(),
                        true,
                        reason,
                        Op::Restore,
                    )
                    .ok_or(Skip::Recreated)
            };
            outcomes.push((record.map.clone(), record.key.clone(), outcome));
        }
        let mut report = RestoreReport {
            restored: Vec::new(),
            skipped: Vec::new(),
            other_maps: Vec::new(),
        };
        for (map, key, outcome) in outcomes {
            match (*map == *self.name, outcome) {
                (true, Ok(revision)) => report.restored.push((key, revision)),
                (true, Err(skip)) => report.skipped.push((key, skip)),
                (false, outcome) => report.other_maps.push(MapRestored { map, key, outcome }),
            }
        }
        report
    }
}
