//! Delete plans in cluster mode (cluster.md, "Guards are cluster-wide").
//!
//! A plan is judged on the replica by the library (`plan_remove`, the
//! cascade included), then written to `<prefix>plans/<id>` before its 201, so
//! any server can execute it; every replica loads it into its map's plan book
//! (for `GET .../tree`). Execution reads the plan from etcd and judges every
//! planned key on the replica at (at least) the revision of that read, then
//! commits ONE transaction that compares
//!
//! - the plan key's `mod_revision` (still pending, as read),
//! - each key it deletes at its pinned revision,
//! - every map that refers to a map it deletes from: no key written after
//!   the revision the referrers were judged at (a new referrer fails it),
//!
//! and in its success branch deletes the keys, writes their audit records
//! (one batch key) and turns the plan into an executed tombstone. So of
//! concurrent executions exactly one commits; the others find the tombstone
//! and answer 410 `plan_gone`. A failed compare is judged again on the state
//! etcd then holds (at most [`super::MAX_TXN_ATTEMPTS`] times).
//!
//! Limits: a plan holds at most [`crate::etcd_limits::TxnLimits::plan_keys`]
//! keys (`[store] max_txn_ops` less the room kept for the plan key, the audit
//! batch, the tombstone and reference compares: the invariant of
//! [`crate::etcd_limits`]) and its execution must fit
//! [`super::MAX_TXN_BYTES`]; both are checked at creation (413
//! `plan_too_large`), so a created plan can always be executed, as long as
//! etcd's `--max-txn-ops` is at least the setting (else 503
//! `etcd_limit_mismatch`, nothing deleted).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp};
use safemap::{
    AuditId, ChangeKind, Changed, Conflict, ExecuteError, ExecuteReport, Plan, PlanId, Reason,
    RestoreError, RestoreReport, Revision, TreeNode,
};
use serde::{Deserialize, Serialize};

use super::Cluster;
use super::txn::{Seen, check_size, contended, record};
use crate::error::ApiError;
use crate::etcd_limits::TxnLimits;
use crate::state::{Map, Shared};
use crate::storage::codec::PLAN_ROW_KEPT_MS;
use crate::storage::{StoredOp, StoredPlan, StoredRecord, now_ms};

/// Bytes counted per planned key beyond its value, for the execution's size
/// (its key twice, in the delete and the record, and the record's fields).
const RECORD_OVERHEAD: usize = 600;

/// A plan's value in etcd: the local store's row, and who made (and
/// executed) it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdPlan {
    /// The plan: pinned keys (and tree), expiry; or an executed tombstone.
    pub plan: StoredPlan,
    /// The token that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The token that executed it (a tombstone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed_by: Option<String>,
}

impl EtcdPlan {
    fn decode(bytes: &[u8]) -> Result<EtcdPlan, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// The records of one audit key: one record (a JSON object) or a plan
/// execution's batch (a JSON array, in deletion order).
pub fn decode_audit(value: &[u8]) -> Result<Vec<StoredRecord>, String> {
    match value.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(value).map_err(|e| e.to_string()),
        _ => serde_json::from_slice(value)
            .map(|r| vec![r])
            .map_err(|e| e.to_string()),
    }
}

/// Loads a plan put under the prefix into its map's plan book (a replica
/// applies it; the book answers `GET /v1/delete-plans/{id}/tree`).
pub(super) fn apply_plan(shared: &Shared, id: &str, kv: &KeyValue) {
    let (Ok(EtcdPlan { plan: p, .. }), Ok(plan)) =
        (EtcdPlan::decode(kv.value()), id.parse::<PlanId>())
    else {
        tracing::warn!(
            plan_id = id,
            "an etcd delete plan that does not decode was skipped"
        );
        return;
    };
    let map = match shared.replica_map(&p.map) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(map = p.map, error = %e, "cannot build a map of the replica");
            return;
        }
    };
    if p.executed {
        // Used: the library answers `Gone` until its tombstone is forgotten.
        map.load_plan(plan, Vec::new(), UNIX_EPOCH);
        return;
    }
    let expires_at = UNIX_EPOCH + Duration::from_millis(p.expires_at_ms);
    let (keys, tree) = crate::state::plan_nodes(&p);
    map.load_plan_tree(plan, keys, tree, expires_at);
}

/// Every planned key as a tree node, parents before children (a plain plan:
/// each key a root of depth 1 in `map`).
fn planned_nodes(p: &StoredPlan) -> Vec<TreeNode<String>> {
    let (keys, tree) = crate::state::plan_nodes(p);
    if !tree.is_empty() {
        return tree;
    }
    let map: Arc<str> = Arc::from(p.map.as_str());
    keys.into_iter()
        .map(|(key, revision)| TreeNode {
            map: Arc::clone(&map),
            key,
            revision,
            parent: None,
            depth: 1,
        })
        .collect()
}

/// 413 `plan_too_large`: the plan would not fit one etcd transaction. Keys
/// and compares name the setting that raises them (etcd's `--max-txn-ops`
/// and `[store] max_txn_ops`); bytes name etcd's fixed request size.
fn too_large(what: &str, limit: usize, size: usize, limits: TxnLimits) -> ApiError {
    let (raise, details) = if what == "bytes" {
        (
            "the byte limit is fixed below etcd's default --max-request-bytes (1.5 MiB) and is not raised by max_txn_ops".to_string(),
            serde_json::json!({"limit": limit, "size": size, "unit": what, "etcd_flag": "--max-request-bytes"}),
        )
    } else {
        (
            limits.raise_hint(),
            limits.details(serde_json::json!({"limit": limit, "size": size, "unit": what})),
        )
    };
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "plan_too_large",
        format!(
            "in cluster mode a plan executes as one etcd transaction, so it holds at most {limit} {what} (this one: {size}); plan a narrower selection (e.g. by prefix) and execute several plans; {raise}"
        ),
    )
    .with_details(details)
}

/// 410 / 404 / 412 of an execution, as the local server answers.
fn refused(e: ExecuteError, raw: &str, confirmed: usize) -> ApiError {
    crate::library_errors::execute_error(e, raw, confirmed)
}

/// What one judgement of a plan decided.
struct Judged {
    report: ExecuteReport<String>,
    /// (map, key, pinned revision, value) to delete, in deletion order.
    delete: Vec<(Arc<str>, String, u64, Seen)>,
}

impl Cluster {
    /// Writes a new plan of `map` to etcd (before its 201), once this
    /// server's replica has it. Refuses (413 `plan_too_large`) a plan whose
    /// execution would not fit one transaction.
    pub async fn store_plan(
        &self,
        shared: &Shared,
        map: &str,
        plan: &Plan<String>,
        creator: &str,
    ) -> Result<(), ApiError> {
        let limit = self.limits.plan_keys();
        if plan.count() > limit {
            return Err(too_large("keys", limit, plan.count(), self.limits));
        }
        let row = crate::state::pending_row(map, plan);
        // The execution deletes these values and holds each in its record.
        let mut bytes = 0usize;
        for n in planned_nodes(&row) {
            let value = shared.map(&n.map).and_then(|m| m.get(&n.key));
            let len = value.map_or(0, |e| serde_json::to_vec(e.value()).map_or(0, |v| v.len()));
            bytes = bytes.saturating_add(len + 2 * n.key.len() + RECORD_OVERHEAD);
        }
        if bytes > super::MAX_TXN_BYTES {
            return Err(too_large("bytes", super::MAX_TXN_BYTES, bytes, self.limits));
        }
        let key = self.layout.plan(&row.id);
        let value = EtcdPlan {
            plan: row,
            created_by: Some(creator.to_string()),
            executed_by: None,
        };
        let value = serde_json::to_vec(&value).map_err(|e| ApiError::internal(e.to_string()))?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        match self.run(txn).await? {
            Ok(revision) => self.until_applied(revision).await,
            Err(_) => Err(ApiError::internal(format!(
                "plan id {} exists in etcd already",
                plan.id()
            ))),
        }
    }

    /// The plan as etcd holds it: (plan, its `mod_revision`, the read's
    /// revision); `None` when there is no such key.
    async fn read_plan(&self, id: &str) -> Result<Option<(EtcdPlan, i64, u64)>, ApiError> {
        let mut client = self.client();
        let resp = client
            .get(self.layout.plan(id), None)
            .await
            .map_err(|e| super::store_unavailable(&e))?;
        let at = resp.header().map_or(0, |h| h.revision() as u64);
        let Some(kv) = resp.kvs().first() else {
            return Ok(None);
        };
        let p = EtcdPlan::decode(kv.value())
            .map_err(|e| ApiError::internal(format!("delete plan {id} in etcd: {e}")))?;
        Ok(Some((p, kv.mod_revision(), at)))
    }

    /// Executes plan `raw` of `map` (exactly once cluster-wide, see the
    /// module's comment) with confirmation `confirm` for `reason`.
    pub async fn execute_plan(
        &self,
        shared: &Shared,
        map: &str,
        raw: &str,
        confirm: usize,
        reason: &Reason,
    ) -> Result<ExecuteReport<String>, ApiError> {
        let plan: PlanId = raw
            .parse()
            .map_err(|_| crate::library_errors::no_plan(raw))?;
        let id = plan.to_string();
        let pkey = self.layout.plan(&id);
        for _ in 0..super::MAX_TXN_ATTEMPTS {
            let Some((stored, plan_revision, at)) = self.read_plan(&id).await? else {
                return Err(refused(ExecuteError::NotFound, raw, confirm));
            };
            let p = &stored.plan;
            if p.map != map {
                return Err(refused(ExecuteError::NotFound, raw, confirm));
            }
            if p.executed || p.expires_at_ms <= now_ms() {
                return Err(refused(ExecuteError::Gone, raw, confirm));
            }
            let nodes = planned_nodes(p);
            if nodes.len() != confirm {
                return Err(refused(
                    ExecuteError::ConfirmCountMismatch {
                        expected: nodes.len(),
                        got: confirm,
                    },
                    raw,
                    confirm,
                ));
            }
            // Judge on a replica that has applied at least the plan's read.
            self.until_applied(at).await?;
            let judged_at = self.applied();
            let judged = judge(shared, &nodes, !p.tree.is_empty(), reason);
            let mut when = vec![Compare::mod_revision(
                pkey.clone(),
                CompareOp::Equal,
                plan_revision,
            )];
            let mut then = Vec::with_capacity(judged.delete.len() + 2);
            let mut records = Vec::with_capacity(judged.delete.len());
            for (m, key, pinned, seen) in &judged.delete {
                let ekey = self.layout.entry(m, key);
                when.push(Compare::mod_revision(
                    ekey.clone(),
                    CompareOp::Equal,
                    *pinned as i64,
                ));
                then.push(TxnOp::delete(ekey, None));
                let mut r = record(m, key, StoredOp::Delete, Some(seen), reason, None);
                r.plan_id = Some(id.clone());
                records.push(r);
            }
            // No new referrer of a deleted key since the judgement.
            let deleted_maps: BTreeSet<&str> = judged.delete.iter().map(|d| &*d.0).collect();
            when.extend(self.referrer_compares(shared, &deleted_maps, judged_at));
            let mut size = 0;
            if !records.is_empty() {
                let batch =
                    serde_json::to_vec(&records).map_err(|e| ApiError::internal(e.to_string()))?;
                size += batch.len();
                let audit_key = self.layout.new_audit().map_err(ApiError::internal)?;
                then.push(TxnOp::put(audit_key, batch, None));
            }
            let tombstone = EtcdPlan {
                plan: StoredPlan {
                    id: id.clone(),
                    map: map.to_string(),
                    keys: Vec::new(),
                    expires_at_ms: now_ms(),
                    executed: true,
                    tree: Vec::new(),
                },
                created_by: stored.created_by.clone(),
                executed_by: reason.actor().map(str::to_owned),
            };
            let tombstone =
                serde_json::to_vec(&tombstone).map_err(|e| ApiError::internal(e.to_string()))?;
            then.push(TxnOp::put(pkey.clone(), tombstone, None));
            check_size(size)?;
            if when.len() > self.limits.compares() {
                // Only with more than REFERRING_MAP_COMPARES maps referring
                // into the plan's maps.
                return Err(too_large(
                    "compares",
                    self.limits.compares(),
                    when.len(),
                    self.limits,
                ));
            }
            let txn = Txn::new().when(when).and_then(then);
            match self.run(txn).await? {
                Ok(revision) => {
                    self.until_applied(revision).await?;
                    let mut report = judged.report;
                    report.deleted = records.len();
                    report.audit_ids = (!records.is_empty()).then(|| {
                        (
                            AuditId::new(super::audit_id(revision, 0)),
                            AuditId::new(super::audit_id(revision, records.len() - 1)),
                        )
                    });
                    return Ok(report);
                }
                // The plan was executed elsewhere, or a key or a referring
                // map moved: read the plan again and judge again.
                Err(_) => continue,
            }
        }
        Err(contended())
    }

    /// Restores every delete of plan `raw` (whose map is `map`), parents
    /// first, each key only where it is absent (one transaction per key, as
    /// a restore by audit id).
    pub async fn restore_plan(
        &self,
        shared: &Shared,
        map: &str,
        raw: &str,
        reason: &Reason,
        refuse: impl Fn(RestoreError) -> ApiError,
    ) -> Result<RestoreReport<String>, ApiError> {
        let Ok(plan) = raw.parse::<PlanId>() else {
            return Err(refuse(RestoreError::NotFound));
        };
        // The executed plan names its map while its tombstone is kept.
        if let Some((p, _, _)) = self.read_plan(&plan.to_string()).await?
            && p.plan.map != map
        {
            return Err(refuse(RestoreError::NotFound));
        }
        let records = self.audit_query(&safemap::AuditQuery {
            map: None,
            key: None,
            plan_id: Some(plan),
            after: None,
            limit: usize::MAX,
        });
        if records.is_empty() || !records.iter().any(|r| &*r.map == map) {
            return Err(refuse(RestoreError::NotFound));
        }
        let mut report = RestoreReport {
            restored: Vec::new(),
            skipped: Vec::new(),
            other_maps: Vec::new(),
        };
        // Records are in deletion order (children first): restore reversed.
        for r in records.iter().rev() {
            let Some(replica) = shared.map(&r.map) else {
                continue;
            };
            let one = self
                .restore(shared, &replica, &r.map, r.id.get(), reason, &refuse)
                .await?;
            if &*r.map == map {
                report.restored.extend(one.restored);
                report.skipped.extend(one.skipped);
            } else {
                let m: Arc<str> = Arc::clone(&r.map);
                for (key, rev) in one.restored {
                    report.other_maps.push(safemap::MapRestored {
                        map: Arc::clone(&m),
                        key,
                        outcome: Ok(rev),
                    });
                }
                for (key, why) in one.skipped {
                    report.other_maps.push(safemap::MapRestored {
                        map: Arc::clone(&m),
                        key,
                        outcome: Err(why),
                    });
                }
            }
        }
        Ok(report)
    }
}

/// Judges every planned key on the replica as the library's `execute` does:
/// a key that changed or vanished, or gained a referrer (from outside its
/// root's subtree), is a conflict and is not deleted; a key a deny rule
/// vetoes is reported. A cascading plan's root is all-or-nothing.
fn judge(shared: &Shared, nodes: &[TreeNode<String>], cascade: bool, reason: &Reason) -> Judged {
    let mut judged = Judged {
        report: ExecuteReport {
            deleted: 0,
            conflicts: Vec::new(),
            vetoed: Vec::new(),
            audit_ids: None,
        },
        delete: Vec::new(),
    };
    // Each root's subtree runs from the root (depth 1) to the next root.
    for subtree in nodes.chunk_by(|_, next| next.depth != 1) {
        judge_root(shared, subtree, cascade, reason, &mut judged);
    }
    judged
}

/// One root and its subtree (parents first); see [`judge`].
fn judge_root(
    shared: &Shared,
    subtree: &[TreeNode<String>],
    cascade: bool,
    reason: &Reason,
    judged: &mut Judged,
) {
    let root = &subtree[0];
    let replica = |m: &str| -> Option<Arc<Map>> { shared.map(m) };
    let current = |n: &TreeNode<String>| {
        replica(&n.map).and_then(|m| {
            m.get(&n.key).map(|e| Seen {
                value: e.value().clone(),
                revision: e.revision().get(),
                create_revision: e.create_revision().get(),
                version: e.version(),
            })
        })
    };
    let root_current = current(root).map(|s| Revision::new(s.revision));
    let members: HashSet<(&str, &str)> =
        subtree.iter().map(|n| (&*n.map, n.key.as_str())).collect();
    let mut deletes = Vec::with_capacity(subtree.len());
    for node in subtree {
        let changed = |current_revision, why| Changed {
            map: Arc::clone(&node.map),
            key: node.key.clone(),
            planned_revision: Some(node.revision),
            current_revision,
            why,
        };
        let conflict = |changed: Option<Changed<String>>, current: Option<Revision>| Conflict {
            key: root.key.clone(),
            planned_revision: root.revision,
            current_revision: current,
            changed,
        };
        let seen = match current(node) {
            Some(s) if s.revision == node.revision.get() => s,
            Some(s) => {
                let rev = Some(Revision::new(s.revision));
                judged.report.conflicts.push(match cascade {
                    true => conflict(Some(changed(rev, ChangeKind::Changed)), root_current),
                    false => conflict(None, rev),
                });
                return;
            }
            None => {
                judged.report.conflicts.push(match cascade {
                    true => conflict(Some(changed(None, ChangeKind::Deleted)), root_current),
                    false => conflict(None, None),
                });
                return;
            }
        };
        let Some(m) = replica(&node.map) else {
            judged.report.conflicts.push(conflict(None, None));
            return;
        };
        if let Err(safemap::DeleteError::Vetoed { rule }) =
            m.check_replicated_removal(&node.key, &seen.value, reason)
        {
            judged.report.vetoed.push((root.key.clone(), rule));
            return;
        }
        let outside = m
            .referrers(&node.key, None, usize::MAX)
            .into_iter()
            // The subtree holds the node itself: a self-reference never blocks.
            .find(|r| !members.contains(&(&*r.map, r.key.as_str())));
        if let Some(r) = outside {
            let current = match cascade {
                true => root_current,
                false => Some(node.revision),
            };
            judged.report.conflicts.push(conflict(
                Some(Changed {
                    map: r.map,
                    key: r.key,
                    planned_revision: None,
                    current_revision: None,
                    why: ChangeKind::NewReferrer,
                }),
                current,
            ));
            return;
        }
        deletes.push((
            Arc::clone(&node.map),
            node.key.clone(),
            node.revision.get(),
            seen,
        ));
    }
    // Children before parents (the tree lists parents first).
    deletes.reverse();
    judged.delete.extend(deletes);
}

/// Deletes plans (pending or executed) whose expiry lies more than
/// [`PLAN_ROW_KEPT_MS`] in the past, as the local store forgets its rows;
/// until then an expired or executed plan answers 410 `plan_gone`. Returns
/// how many were deleted.
pub async fn prune_plans(cluster: &Cluster) -> Result<usize, etcd_client::Error> {
    let prefix = cluster.layout.plans();
    let mut client = cluster.client();
    let resp = client
        .get(
            prefix.as_str(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?;
    let now = now_ms();
    let mut pruned = 0;
    for kv in resp.kvs() {
        let Ok(EtcdPlan { plan: p, .. }) = EtcdPlan::decode(kv.value()) else {
            continue;
        };
        if p.expires_at_ms.saturating_add(PLAN_ROW_KEPT_MS) < now {
            // Only the version read: a plan written since stays.
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    kv.key().to_vec(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::delete(kv.key().to_vec(), None)]);
            if client.txn(txn).await?.succeeded() {
                pruned += 1;
            }
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_key_holds_one_record_or_a_batch() {
        let one = br#"{"id":0,"at_ms":1,"map":"m","key":"k","op":"delete","revision":0,"previous_revision":3,"create_revision":2,"version":1,"reason":"r","actor":null,"trace_id":null,"plan_id":null}"#;
        let rs = decode_audit(one).unwrap();
        assert_eq!((rs.len(), rs[0].key.as_str()), (1, "k"));
        let mut batch = b"[".to_vec();
        batch.extend_from_slice(one);
        batch.push(b',');
        batch.extend_from_slice(one);
        batch.push(b']');
        assert_eq!(decode_audit(&batch).unwrap().len(), 2);
        assert!(decode_audit(b"not json").is_err());
        assert!(decode_audit(b"[1]").is_err());
    }

    #[test]
    fn audit_ids_follow_revisions_then_indexes() {
        use crate::cluster::audit_id;
        assert_eq!(audit_id(42, 0), 42_000);
        assert!(audit_id(42, MAX_INDEX) < audit_id(43, 0));
        assert_eq!(audit_id(u64::MAX, 1), u64::MAX);
    }

    const MAX_INDEX: usize =
        crate::etcd_limits::MAX_MAX_TXN_OPS - crate::etcd_limits::TXN_OPS_RESERVED - 1;

    #[test]
    fn a_plain_plans_keys_are_roots_of_its_map() {
        let p = StoredPlan {
            id: "00ff00ff00ff00ff".into(),
            map: "m".into(),
            keys: vec![("a".into(), 3), ("b".into(), 4)],
            expires_at_ms: 0,
            executed: false,
            tree: Vec::new(),
        };
        let nodes = planned_nodes(&p);
        assert_eq!(nodes.len(), 2);
        assert!(nodes.iter().all(|n| n.depth == 1 && &*n.map == "m"));
        assert_eq!(nodes[1].revision, Revision::new(4));
        let e = EtcdPlan {
            plan: p,
            created_by: Some("ci".into()),
            executed_by: None,
        };
        let back = EtcdPlan::decode(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back.created_by.as_deref(), Some("ci"));
        assert!(EtcdPlan::decode(b"{\"id\":\"x\"}").is_err());
    }
}
