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

/// 413 `refresh_too_large`: `message`, and which settings raise the limit.
fn refresh_too_large(
    message: String,
    limit: usize,
    size: usize,
    limits: crate::etcd_limits::TxnLimits,
) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "refresh_too_large",
        format!("{message}; {}", limits.raise_hint()),
    )
    .with_details(limits.details(serde_json::json!({"limit": limit, "size": size})))
}

impl Cluster {
    /// A refresh of `map`, which declares references (at most
    /// [`crate::etcd_limits::TxnLimits::referring_refresh`] entries), as ONE transaction
    /// (references.md: entries of the batch count as present for each
    /// other, and one missing target refuses the whole batch, nothing
    /// applied). Every entry gets the transaction's revision; the records are
    /// one audit batch. Returns (key, revision) in input order.
    pub async fn refresh_referring(
        &self,
        shared: &Shared,
        map: &str,
        entries: serde_json::Map<String, Value>,
        reason: &safemap::Reason,
    ) -> Result<Vec<(String, safemap::Revision)>, ApiError> {
        use etcd_client::{Txn, TxnOp};
        let limit = self.limits.referring_refresh();
        if entries.len() > limit {
            return Err(refresh_too_large(
                format!(
                    "in cluster mode a refresh of a map that declares references is one etcd transaction of at most {limit} entries (got {}); split it",
                    entries.len()
                ),
                limit,
                entries.len(),
                self.limits,
            ));
        }
        let replica = shared.map_or_create(map)?;
        let in_batch: BTreeSet<&str> = entries.keys().map(String::as_str).collect();
        for _ in 0..super::MAX_TXN_ATTEMPTS {
            let mut when = Vec::new();
            let mut then = Vec::new();
            let mut records = Vec::new();
            let mut size = 0usize;
            for (key, value) in &entries {
                let seen = super::txn::Seen::of_replica(&replica, key);
                let ekey = self.layout.entry(map, key);
                when.push(Compare::mod_revision(
                    ekey.clone(),
                    CompareOp::Equal,
                    seen.as_ref().map_or(0, |s| s.revision as i64),
                ));
                let bytes =
                    serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))?;
                size += bytes.len();
                then.push(TxnOp::put(ekey, bytes, None));
                // Targets outside the batch must exist at commit.
                let outside: Vec<Target> = targets(shared, map, key, value)
                    .into_iter()
                    .filter(|t| !(t.map == map && in_batch.contains(t.key.as_str())))
                    .collect();
                match self.target_compares(shared, &outside).await? {
                    Ok(keep) => when.extend(keep),
                    Err(t) => {
                        return Err(crate::library_errors::reference_missing(
                            &t.reference,
                            &t.map,
                            &t.key,
                            Some(key),
                        ));
                    }
                }
                records.push(super::txn::record(
                    map,
                    key,
                    crate::storage::StoredOp::Put,
                    seen.as_ref(),
                    reason,
                    Some(value.clone()),
                ));
            }
            if when.len() > self.limits.compares() {
                return Err(refresh_too_large(
                    format!(
                        "this refresh needs {} compares (its entries and their references' targets) in one etcd transaction; etcd allows {} (--max-txn-ops): split it",
                        when.len(),
                        self.limits.compares()
                    ),
                    self.limits.compares(),
                    when.len(),
                    self.limits,
                ));
            }
            let batch =
                serde_json::to_vec(&records).map_err(|e| ApiError::internal(e.to_string()))?;
            super::txn::check_size(size + batch.len())?;
            then.push(TxnOp::put(
                self.layout.new_audit().map_err(ApiError::internal)?,
                batch,
                None,
            ));
            match self.run(Txn::new().when(when).and_then(then)).await? {
                Ok(revision) => {
                    self.until_applied(revision).await?;
                    let r = safemap::Revision::new(revision);
                    return Ok(entries.keys().map(|k| (k.clone(), r)).collect());
                }
                // An entry or a target moved: judge again on a replica that
                // saw what failed the compare.
                Err(resp) => {
                    self.until_applied(resp.header().map_or(0, |h| h.revision() as u64))
                        .await?;
                }
            }
        }
        Err(super::txn::contended())
    }
}
