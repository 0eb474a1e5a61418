//! References between maps in cluster mode (references.md, "Integrity"):
//! judged on the replica (the library's referrer index, fed by the watch),
//! made exact by what the write's transaction compares.
//!
//! - A put whose value refers to (map T, key K) compares `create_revision(T/K)
//!   > 0`: the target exists when the put commits, or the put fails and is
//!   judged again (409 `reference_missing` once the replica sees it gone).
//! - A delete of (M, K) judges K's referrers on the replica at revision `J`
//!   (read before judging) and compares, for every map R that declares a
//!   reference into M, `mod_revision < J + 1` over all of R's entries: no key
//!   of R was written after `J`, so no referrer appeared that the judgement
//!   did not see. A referrer put that commits first fails the delete's
//!   compare; a delete that commits first fails the put's. So a put that adds
//!   a reference and a delete of its target never both succeed.
//!
//! A referrer deleted after `J` cannot fail the compare (a deleted key has no
//! revision): the delete then errs on the side of refusing, and a refusal is
//! only answered after the replica caught up with etcd's revision.

use std::collections::BTreeSet;

use etcd_client::{Compare, CompareOp};
use serde_json::Value;

use super::Cluster;
use crate::error::ApiError;
use crate::state::Shared;

/// A key a value refers to.
pub struct Target {
    /// The reference's name.
    pub reference: String,
    /// The map it points into.
    pub map: String,
    /// The key it names.
    pub key: String,
}

/// What `value` of (`map`, `key`) refers to, its own key excluded (a value
/// referring to its own key is fine).
pub fn targets(shared: &Shared, map: &str, key: &str, value: &Value) -> Vec<Target> {
    shared
        .config
        .references_of(map)
        .iter()
        .filter_map(|r| {
            let k = value.pointer(&r.pointer)?.as_str()?;
            (!(r.to == map && k == key)).then(|| Target {
                reference: r.name.clone(),
                map: r.to.clone(),
                key: k.to_string(),
            })
        })
        .collect()
}

impl Cluster {
    /// Judges `targets` (each must exist: the replica first, etcd when the
    /// replica lacks it) and returns the compares that keep them existing
    /// until commit; `Err(target)` names the first missing one.
    pub(super) async fn target_compares<'t>(
        &self,
        shared: &Shared,
        targets: &'t [Target],
    ) -> Result<Result<Vec<Compare>, &'t Target>, ApiError> {
        let mut when = Vec::with_capacity(targets.len());
        for t in targets {
            let ekey = self.layout.entry(&t.map, &t.key);
            let present = shared.map(&t.map).is_some_and(|m| m.get(&t.key).is_some())
                || self.read_exists(&ekey).await?;
            if !present {
                return Ok(Err(t));
            }
            when.push(Compare::create_revision(ekey, CompareOp::Greater, 0));
        }
        Ok(Ok(when))
    }

    /// Whether `ekey` exists in etcd (a linearizable read).
    async fn read_exists(&self, ekey: &str) -> Result<bool, ApiError> {
        let mut client = self.client();
        let resp = client
            .get(ekey, Some(etcd_client::GetOptions::new().with_count_only()))
            .await
            .map_err(|e| super::store_unavailable(&e))?;
        Ok(resp.count() > 0)
    }

    /// etcd's current revision (a linearizable read), to bring the replica
    /// up to date before a refusal that depends on it.
    pub(super) async fn current_revision(&self) -> Result<u64, ApiError> {
        let mut client = self.client();
        let resp = client
            .get(
                self.layout.bootstrap(),
                Some(etcd_client::GetOptions::new().with_count_only()),
            )
            .await
            .map_err(|e| super::store_unavailable(&e))?;
        Ok(resp.header().map_or(0, |h| h.revision() as u64))
    }

    /// Waits until the replica applied etcd's current revision.
    pub async fn catch_up(&self) -> Result<(), ApiError> {
        let now = self.current_revision().await?;
        self.until_applied(now).await
    }

    /// The compares that no map referring into `maps` changed after
    /// `judged_at` (see the module's comment).
    pub(super) fn referrer_compares(
        &self,
        shared: &Shared,
        maps: &BTreeSet<&str>,
        judged_at: u64,
    ) -> Vec<Compare> {
        referring_maps(shared, maps)
            .into_iter()
            .map(|r| {
                Compare::mod_revision(
                    self.layout.entries(&r),
                    CompareOp::Less,
                    judged_at as i64 + 1,
                )
                .with_prefix()
            })
            .collect()
    }
}

/// The maps whose references point into any of `maps` (configuration).
pub fn referring_maps(shared: &Shared, maps: &BTreeSet<&str>) -> BTreeSet<String> {
    shared
        .config
        .maps
        .iter()
        .filter(|(_, policy)| {
            policy
                .references
                .iter()
                .any(|r| maps.contains(r.to.as_str()))
        })
        .map(|(name, _)| name.clone())
        .collect()
}
