//! The store boundary: the local log + checkpoint, or etcd (cluster mode).
//! Routes call these methods and never learn which store is under them; what
//! cluster mode does not support yet is refused here, by name.

use axum::http::StatusCode;
use safemap::{AuditId, Expect, Reason, RestoreError, RestoreReport, Revision};
use serde_json::Value;

use super::Shared;
use crate::error::ApiError;
use crate::library_errors::{REFERENCED_LISTED, Restoring, delete_error, put_error, restore_error};
use crate::storage::{Storage, StoredToken, TokenOp};

/// Where the server's data lives.
pub enum Store {
    /// The embedded log + checkpoint in the data directory (STORAGE.md).
    Local(Storage),
    /// An etcd cluster (cluster.md); the maps are its replica.
    #[cfg(feature = "etcd")]
    Etcd(std::sync::Arc<crate::cluster::Cluster>),
}

/// What a put did, whichever store took it.
#[derive(Debug, Clone, Copy)]
pub struct PutOutcome {
    /// The write's revision.
    pub revision: Revision,
    /// The entry's create revision.
    pub create_revision: Revision,
    /// Writes of the entry since its creation (1: created).
    pub version: u64,
    /// Whether the key was absent.
    pub created: bool,
}

/// What a removal did, whichever store took it.
#[derive(Debug, Clone)]
pub struct DeleteOutcome {
    /// The removal's revision.
    pub revision: Revision,
    /// Its audit record.
    pub audit_id: Option<AuditId>,
    /// The value removed.
    pub value: Value,
    /// The revision it had.
    pub previous_revision: Revision,
}

/// Follows one map's writes, whichever store is under it.
pub enum MapWatcher {
    /// The library's watcher over the journal.
    Local(safemap::Watcher<String, Value>),
    /// The replica's held records (cluster mode).
    #[cfg(feature = "etcd")]
    Etcd(crate::cluster::watch::ClusterWatcher),
}

impl MapWatcher {
    /// The next write, in revision order; `Err` (a message) when records it
    /// needs were dropped.
    pub async fn next(&mut self) -> Result<std::sync::Arc<super::Record>, String> {
        match self {
            MapWatcher::Local(w) => w.next().await.map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            MapWatcher::Etcd(w) => w.next().await.map_err(|e| e.to_string()),
        }
    }
}

/// 501 `cluster_unsupported`: named, never silently local.
pub fn cluster_unsupported(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "cluster_unsupported",
        format!(
            "{what} is not supported yet with --store etcd (cluster mode); use a server with the local store for it"
        ),
    )
    .with_details(serde_json::json!({"feature": what}))
}

impl Shared {
    /// The local storage; in cluster mode, 501 `cluster_unsupported` naming `what`.
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    pub fn local_storage(&self, what: &str) -> Result<&Storage, ApiError> {
        match &self.store {
            Store::Local(s) => Ok(s),
            #[cfg(feature = "etcd")]
            Store::Etcd(_) => Err(cluster_unsupported(what)),
        }
    }

    /// The answer of `/readyz` when [`Shared::ready`] is false.
    pub fn not_ready(&self) -> ApiError {
        match &self.store {
            Store::Local(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "storage failed a durable commit; the server refuses writes until restarted",
            ),
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "replica_loading",
                "the replica has not yet applied the etcd revision read at start",
            )
            .with_details(serde_json::json!({"replica_revision": c.applied()})),
        }
    }

    /// Refuses `what` in cluster mode (501 `cluster_unsupported`).
    pub fn local_only(&self, what: &str) -> Result<(), ApiError> {
        self.local_storage(what).map(|_| ())
    }

    /// The etcd store, in cluster mode.
    #[cfg(feature = "etcd")]
    pub fn cluster(&self) -> Option<&std::sync::Arc<crate::cluster::Cluster>> {
        match &self.store {
            Store::Etcd(c) => Some(c),
            Store::Local(_) => None,
        }
    }

    /// Writes `value` under (`map`, `key`) if `expect` holds; answers once the
    /// write is durable (local) or committed and applied by the replica (etcd).
    /// `target` names the key a reference of the value points at (for 409).
    pub async fn put_entry(
        &self,
        map: &str,
        key: String,
        value: Value,
        expect: Expect,
        why: &Reason,
        target: impl Fn(&str) -> Option<String>,
    ) -> Result<PutOutcome, ApiError> {
        let m = self.map_or_create(map)?;
        match &self.store {
            Store::Local(_) => {
                let w = m
                    .put(key, value, expect, why)
                    .map_err(|e| put_error(e, target))?;
                self.until_durable(&w).await?;
                Ok(PutOutcome {
                    revision: w.revision(),
                    create_revision: w.create_revision(),
                    version: w.version(),
                    created: w.created(),
                })
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => c.put(self, map, &key, value, expect, why).await,
        }
    }

    /// Removes (`map`, `key`), at revision `expect` when given, through the
    /// map's guards; answers as [`Shared::put_entry`] does.
    pub async fn delete_entry(
        &self,
        map: &str,
        key: &str,
        expect: Option<Revision>,
        why: Reason,
    ) -> Result<DeleteOutcome, ApiError> {
        let Some(m) = self.map(map) else {
            return Err(crate::library_errors::no_key(map, key));
        };
        match &self.store {
            Store::Local(_) => {
                let result = match expect {
                    None => m.remove(key, why),
                    Some(rev) => m.remove_if(key, rev, why),
                };
                let referrers = || m.referrers(&key.to_string(), None, REFERENCED_LISTED + 1);
                let removed = result.map_err(|e| delete_error(e, map, key, referrers))?;
                self.until_durable(&removed).await?;
                Ok(DeleteOutcome {
                    revision: removed.revision(),
                    audit_id: removed.audit_id(),
                    value: removed.value().clone(),
                    previous_revision: removed.previous_revision(),
                })
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => c.remove(self, &m, map, key, expect, &why).await,
        }
    }

    /// The audit records that match `query`, oldest first.
    pub fn audit_query(
        &self,
        query: &safemap::AuditQuery<String>,
    ) -> Vec<std::sync::Arc<super::Record>> {
        match &self.store {
            Store::Local(_) => self.journal.query(query),
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => c.audit_query(query),
        }
    }

    /// The newest records matching `query` and `keep`, newest first, at most
    /// `query.limit` (see [`safemap::Journal::query_newest`]).
    pub fn audit_newest(
        &self,
        query: &safemap::AuditQuery<String>,
        keep: impl Fn(&super::Record) -> bool,
    ) -> Vec<std::sync::Arc<super::Record>> {
        match &self.store {
            Store::Local(_) => self.journal.query_newest(query, keep),
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => {
                let all = c.audit_query(&safemap::AuditQuery {
                    map: query.map.clone(),
                    key: query.key.clone(),
                    plan_id: query.plan_id,
                    after: query.after,
                    limit: usize::MAX,
                });
                all.into_iter()
                    .rev()
                    .filter(|r| keep(r))
                    .take(query.limit)
                    .collect()
            }
        }
    }

    /// The id of the newest audit record (0: none).
    pub fn last_audit_id(&self) -> u64 {
        match &self.store {
            Store::Local(_) => self.journal.last_audit_id().get(),
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => c.last_audit_id(),
        }
    }

    /// Upserts every entry in place, each its own write with its own
    /// revision; returns (key, revision) in input order. In a map that
    /// declares references the batch is checked as one (references.md).
    /// In cluster mode each entry is one transaction: a 503 part-way leaves
    /// the entries before it written (each acknowledged by its revision only
    /// once the whole refresh answers); in a map that declares references the
    /// batch is one transaction, every entry at its revision.
    pub async fn refresh_entries(
        &self,
        map: &str,
        entries: serde_json::Map<String, Value>,
        why: &Reason,
    ) -> Result<Vec<(String, Revision)>, ApiError> {
        let m = self.map_or_create(map)?;
        match &self.store {
            Store::Local(_) => {
                let references = self.config.references_of(map);
                let keys: Vec<String> = entries.keys().cloned().collect();
                // Checked as one batch: entries of the batch count as present for each
                // other, and one missing target refuses the whole batch (references.md).
                let revs = if references.is_empty() {
                    m.refresh_with(entries, why)
                } else {
                    let entries: Vec<(String, Value)> = entries.into_iter().collect();
                    match m.refresh_checked(entries.clone(), why) {
                        Ok(revs) => revs,
                        Err(e) => {
                            let target = |v: &Value, reference: &str| {
                                crate::references::target_of(references, v, reference)
                            };
                            return Err(crate::library_errors::refresh_error(e, &entries, target));
                        }
                    }
                };
                self.until_durable(revs.as_slice()).await?;
                Ok(keys.into_iter().zip(revs).collect())
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => {
                if !self.config.references_of(map).is_empty() {
                    // Entries of one batch count as present for each other
                    // (references.md): one transaction for the batch.
                    return c.refresh_referring(self, map, entries, why).await;
                }
                let mut out = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let w = c.put(self, map, &key, value, Expect::Any, why).await?;
                    out.push((key, w.revision));
                }
                Ok(out)
            }
        }
    }

    /// Puts deleted values of `map` back: one delete by audit id (`Ok`), or
    /// every delete of a plan (`Err`: the plan id as given).
    pub async fn restore_map(
        &self,
        map: &str,
        which: &Result<u64, String>,
        why: Reason,
    ) -> Result<RestoreReport<String>, ApiError> {
        let m = self
            .map(map)
            .ok_or_else(|| crate::library_errors::no_map(map))?;
        let refuse = |e: RestoreError| {
            let what = match which {
                Ok(id) => Restoring::AuditId(*id),
                Err(p) => Restoring::Plan(p),
            };
            restore_error(e, what, map)
        };
        match &self.store {
            Store::Local(storage) => {
                // From the journal, or from redb below its window (restore.rs).
                let report = self.restore_local(storage, &m, which, why, refuse).await?;
                self.until_durable(&report).await?;
                Ok(report)
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => match which {
                Ok(id) => c.restore(self, &m, map, *id, &why, refuse).await,
                Err(p) => c.restore_plan(self, map, p, &why, refuse).await,
            },
        }
    }

    /// A watcher of `map` from revision `from` (inclusive; `None`: from the
    /// next write); the map is created if absent (default policy).
    pub fn watch_map(&self, map: &str, from: Option<u64>) -> Result<MapWatcher, ApiError> {
        let m = self.map_or_create(map)?;
        match &self.store {
            Store::Local(_) => m
                .watch(from.map(Revision::new))
                .map(MapWatcher::Local)
                .map_err(crate::library_errors::watch_error),
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => c
                .watch(map, from)
                .map(MapWatcher::Etcd)
                .map_err(|e| crate::library_errors::compacted(e.oldest)),
        }
    }

    /// Stores a token change.
    pub async fn save_token(&self, op: TokenOp) -> Result<(), ApiError> {
        match &self.store {
            Store::Local(s) => s
                .token(op)
                .await
                .map_err(|_| ApiError::storage_unavailable()),
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => match op {
                TokenOp::Put(t) => c.put_token(&t).await,
                TokenOp::Remove(name) => c.remove_token(&name).await,
            },
        }
    }

    /// Stores the admin token created at first start; false when another
    /// server of the cluster created one first (then this one writes no file).
    pub(super) async fn save_admin(&self, stored: &StoredToken) -> Result<bool, String> {
        match &self.store {
            Store::Local(s) => {
                s.token(TokenOp::Put(stored.clone())).await?;
                Ok(true)
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(c) => c.bootstrap_admin(stored).await,
        }
    }
}
