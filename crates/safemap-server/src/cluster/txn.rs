//! Writes through to etcd: each one transaction that compares the entry's
//! `mod_revision` with the revision its guards judged, and stores the audit
//! record in the same transaction.
//!
//! The first guess of an entry's state is the replica's. When the transaction's
//! compare fails, its `else` branch reads the key, and the write is judged
//! again on what etcd holds: a conditional write whose condition no longer
//! holds answers as one server would after the winner (404, 412), an
//! unconditional one is retried on the new state (at most
//! [`super::MAX_TXN_ATTEMPTS`] times). So no guard ever passes on stale state:
//! the value a deny rule judged is exactly the value the transaction replaces.
//!
//! References add compares (see [`super::refs`]): a put, that each target of
//! its value exists; a delete of a referred-to key, that no referring map was
//! written since its referrers were judged. Such a write that fails its
//! compare waits until the replica applied the failing revision, then judges
//! again. Every transaction here holds at most `max_txn_ops` compares: one
//! that would need more is refused before it is sent (`check_compares`).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};
use safemap::{
    AuditId, DeleteError, Expect, Op, PutError, Reason, RestoreError, RestoreReport, Revision, Skip,
};
use serde_json::Value;

use super::{Cluster, MIN_REVISION_WAIT, refs, replica_behind, store_unavailable};
use crate::error::ApiError;
use crate::state::{DeleteOutcome, Map, PutOutcome, Shared};
use crate::storage::{StoredOp, StoredRecord, StoredToken, now_ms};

/// An entry's state as a write judges it.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) value: Value,
    pub(super) revision: u64,
    pub(super) create_revision: u64,
    pub(super) version: u64,
}

impl Seen {
    pub(super) fn of_replica(map: &Map, key: &str) -> Option<Seen> {
        map.get(key).map(|e| Seen {
            value: e.value().clone(),
            revision: e.revision().get(),
            create_revision: e.create_revision().get(),
            version: e.version(),
        })
    }
}

/// What a write's state came from.
enum Guess {
    /// The replica (may be behind etcd).
    Replica(Option<Seen>),
    /// etcd itself, read in the failed transaction.
    Etcd(Option<Seen>),
}

/// The key's state from a failed transaction's `else` read (`None`: absent, or
/// a value that is not JSON, which the write then replaces or refuses as absent).
fn seen_of(resp: &TxnResponse) -> Option<Seen> {
    resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().and_then(|kv| {
            Some(Seen {
                value: serde_json::from_slice(kv.value()).ok()?,
                revision: kv.mod_revision() as u64,
                create_revision: kv.create_revision() as u64,
                version: kv.version() as u64,
            })
        }),
        _ => None,
    })
}

pub(super) fn record(
    map: &str,
    key: &str,
    op: StoredOp,
    seen: Option<&Seen>,
    reason: &Reason,
    value: Option<Value>,
) -> StoredRecord {
    let text = reason.text();
    StoredRecord {
        // Filled on read from the audit key's `mod_revision` (the commit revision).
        id: 0,
        at_ms: now_ms(),
        map: map.to_string(),
        key: key.to_string(),
        op,
        revision: 0,
        previous_revision: seen.map(|s| s.revision),
        // 0: created by this write (the commit revision).
        create_revision: seen.map_or(0, |s| s.create_revision),
        version: match op {
            StoredOp::Delete => seen.map_or(0, |s| s.version),
            _ => seen.map_or(1, |s| s.version + 1),
        },
        reason: (!text.is_empty()).then(|| text.to_string()),
        actor: reason.actor().map(str::to_owned),
        trace_id: reason.trace_id().map(str::to_owned),
        plan_id: None,
        value,
        previous_value: seen.map(|s| s.value.clone()),
    }
}

impl Cluster {
    /// Runs `txn`; Ok(Err(resp)) when its compare failed.
    pub(super) async fn run(&self, txn: Txn) -> Result<Result<u64, TxnResponse>, ApiError> {
        let mut client = self.client();
        let resp = client
            .txn(txn)
            .await
            .map_err(|e| super::request_failed(&e, self.limits))?;
        if resp.succeeded() {
            let rev = resp.header().map_or(0, |h| h.revision() as u64);
            Ok(Ok(rev))
        } else {
            Ok(Err(resp))
        }
    }

    /// Waits until the replica applied the write at `revision` (read-your-writes).
    pub(super) async fn until_applied(&self, revision: u64) -> Result<(), ApiError> {
        self.wait_applied(revision, MIN_REVISION_WAIT)
            .await
            .map(|_| ())
            .map_err(replica_behind)
    }

    /// A put of `value` under (`map`, `key`) if `expect` holds, judged on
    /// the map's replica.
    pub async fn put(
        &self,
        shared: &Shared,
        map: &str,
        key: &str,
        value: Value,
        expect: Expect,
        reason: &Reason,
    ) -> Result<PutOutcome, ApiError> {
        let replica = &*shared.map_or_create(map)?;
        let ekey = self.layout.entry(map, key);
        let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut guess = Guess::Replica(Seen::of_replica(replica, key));
        for _ in 0..super::MAX_TXN_ATTEMPTS {
            let (seen, from_etcd) = match &guess {
                Guess::Replica(s) => (s.clone(), false),
                Guess::Etcd(s) => (s.clone(), true),
            };
            let refused = match (expect, &seen) {
                (Expect::Absent, Some(s)) => Some(PutError::AlreadyExists {
                    current: Revision::new(s.revision),
                }),
                (Expect::Revision(_), None) => Some(PutError::RevisionMismatch { current: None }),
                (Expect::Revision(r), Some(s)) if r.get() != s.revision => {
                    Some(PutError::RevisionMismatch {
                        current: Some(Revision::new(s.revision)),
                    })
                }
                _ => None,
            };
            if let Some(e) = refused {
                if from_etcd {
                    return Err(crate::library_errors::put_error(e, |_| None));
                }
                // The replica may be behind: judge on etcd's state.
                guess = Guess::Etcd(self.read(&ekey).await?);
                continue;
            }
            // Each target must exist when the put commits (`refs`): one
            // compare per target besides the entry's own, all within etcd's
            // limit (checked before anything is read or sent).
            let targets = refs::targets(shared, map, key, &value);
            check_compares(1 + targets.len(), "its value's references", self.limits)?;
            let keep = match self.target_compares(shared, &targets).await? {
                Ok(keep) => keep,
                Err(t) => {
                    return Err(crate::library_errors::reference_missing(
                        &t.reference,
                        &t.map,
                        &t.key,
                        None,
                    ));
                }
            };
            let audit = record(
                map,
                key,
                StoredOp::Put,
                seen.as_ref(),
                reason,
                Some(value.clone()),
            );
            let audit =
                serde_json::to_vec(&audit).map_err(|e| ApiError::internal(e.to_string()))?;
            check_size(bytes.len() + audit.len())?;
            let audit_key = self.layout.new_audit().map_err(ApiError::internal)?;
            let mut when = vec![Compare::mod_revision(
                ekey.clone(),
                CompareOp::Equal,
                seen.as_ref().map_or(0, |s| s.revision as i64),
            )];
            when.extend(keep);
            let txn = Txn::new()
                .when(when)
                .and_then([
                    TxnOp::put(ekey.clone(), bytes.clone(), None),
                    TxnOp::put(audit_key, audit, None),
                ])
                .or_else([TxnOp::get(ekey.clone(), None)]);
            match self.run(txn).await? {
                Ok(revision) => {
                    self.until_applied(revision).await?;
                    return Ok(PutOutcome {
                        revision: Revision::new(revision),
                        create_revision: Revision::new(
                            seen.as_ref().map_or(revision, |s| s.create_revision),
                        ),
                        version: seen.as_ref().map_or(1, |s| s.version + 1),
                        created: seen.is_none(),
                    });
                }
                Err(resp) => {
                    if !targets.is_empty() {
                        // A target may be gone: judge again once the
                        // replica saw what failed the compare.
                        self.until_applied(resp.header().map_or(0, |h| h.revision() as u64))
                            .await?;
                    }
                    guess = Guess::Etcd(seen_of(&resp));
                }
            }
        }
        Err(contended())
    }

    /// A removal of (`map`, `key`), at revision `expect` when given, judged by
    /// the map's reason and deny rules on the value the transaction compares,
    /// its references (`refs`) and its delete breaker (cluster-wide).
    pub async fn remove(
        &self,
        shared: &Shared,
        replica: &Map,
        map: &str,
        key: &str,
        expect: Option<Revision>,
        reason: &Reason,
    ) -> Result<DeleteOutcome, ApiError> {
        let breaker = shared.config.policy_for(map).breaker;
        let refuse = |e: DeleteError| {
            let referrers = || {
                replica.referrers(
                    &key.to_string(),
                    None,
                    crate::library_errors::REFERENCED_LISTED + 1,
                )
            };
            crate::library_errors::delete_error(e, map, key, referrers)
        };
        let ekey = self.layout.entry(map, key);
        let mut guess = match Seen::of_replica(replica, key) {
            Some(s) => Guess::Replica(Some(s)),
            // Absent in the replica: ask etcd before answering 404.
            None => Guess::Etcd(self.read(&ekey).await?),
        };
        let referring = refs::referring_maps(shared, &BTreeSet::from([map])).len();
        let referred = referring > 0;
        // The transaction compares the entry, each referring map and the
        // breaker's slot (the count depends on the configuration only).
        let compares = 1 + referring + usize::from(breaker.is_some());
        // Set once the replica caught up with etcd for a `referenced` refusal.
        let mut synced = false;
        for _ in 0..super::MAX_TXN_ATTEMPTS {
            // Read before judging referrers: the compares below start here.
            let judged_at = self.applied();
            let (seen, from_etcd) = match &guess {
                Guess::Replica(s) => (s.clone(), false),
                Guess::Etcd(s) => (s.clone(), true),
            };
            let refused = match (&seen, expect) {
                (None, _) => Some(DeleteError::NotFound),
                (Some(s), Some(r)) if r.get() != s.revision => {
                    Some(DeleteError::RevisionMismatch {
                        current: Some(Revision::new(s.revision)),
                    })
                }
                _ => None,
            };
            if let Some(e) = refused {
                if from_etcd {
                    return Err(refuse(e));
                }
                guess = Guess::Etcd(self.read(&ekey).await?);
                continue;
            }
            let Some(seen) = seen else {
                return Err(refuse(DeleteError::NotFound));
            };
            replica
                .check_replicated_removal(&key.to_string(), &seen.value, reason)
                .map_err(refuse)?;
            if referred {
                let referrers: Vec<_> = replica
                    .referrers(&key.to_string(), None, usize::MAX)
                    .into_iter()
                    .filter(|r| !(&*r.map == map && r.key == key))
                    .collect();
                if let Some(first) = referrers.first() {
                    if !synced {
                        // The replica may still hold a referrer deleted elsewhere.
                        let now = self.current_revision().await?;
                        self.until_applied(now).await?;
                        synced = true;
                        guess = Guess::Replica(Seen::of_replica(replica, key));
                        continue;
                    }
                    return Err(refuse(DeleteError::Referenced {
                        count: referrers.len(),
                        map: first.map.to_string(),
                        reference: first.reference.to_string(),
                    }));
                }
            }
            // Judged (404, 412, 409 answer first); refused before a breaker
            // slot is taken or anything is sent when etcd would refuse it.
            check_compares(
                compares,
                "the maps that refer to this map (and its delete breaker)",
                self.limits,
            )?;
            let audit = record(map, key, StoredOp::Delete, Some(&seen), reason, None);
            let audit =
                serde_json::to_vec(&audit).map_err(|e| ApiError::internal(e.to_string()))?;
            let audit_key = self
                .layout
                .new_audit()
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let mut when = vec![Compare::mod_revision(
                ekey.clone(),
                CompareOp::Equal,
                seen.revision as i64,
            )];
            if referred {
                when.extend(self.referrer_compares(shared, &BTreeSet::from([map]), judged_at));
            }
            let mut then = vec![
                TxnOp::delete(ekey.clone(), None),
                TxnOp::put(audit_key, audit, None),
            ];
            if let Some((max, window)) = breaker {
                match self.breaker_slot(map, max, window).await? {
                    Ok((slot, revision)) => {
                        when.push(Compare::mod_revision(
                            slot.clone(),
                            CompareOp::Equal,
                            revision,
                        ));
                        then.push(TxnOp::put(slot, now_ms().to_string(), None));
                    }
                    Err(retry_after) => {
                        return Err(refuse(DeleteError::BreakerOpen { retry_after }));
                    }
                }
            }
            let txn = Txn::new()
                .when(when)
                .and_then(then)
                .or_else([TxnOp::get(ekey.clone(), None)]);
            match self.run(txn).await? {
                Ok(revision) => {
                    self.until_applied(revision).await?;
                    return Ok(DeleteOutcome {
                        revision: Revision::new(revision),
                        audit_id: Some(AuditId::new(super::audit_id(revision, 0))),
                        value: seen.value,
                        previous_revision: Revision::new(seen.revision),
                    });
                }
                Err(resp) => {
                    if referred {
                        // A referrer may have appeared: judge again once
                        // the replica saw what failed the compare.
                        self.until_applied(resp.header().map_or(0, |h| h.revision() as u64))
                            .await?;
                    }
                    guess = Guess::Etcd(seen_of(&resp));
                }
            }
        }
        Err(contended())
    }

    /// Restores the delete with audit id `id` of `map` if its key is absent
    /// (one transaction comparing the key's `create_revision` with 0; a key
    /// present again is skipped as `recreated`), with a `restore` record.
    pub async fn restore(
        &self,
        shared: &Shared,
        replica: &Map,
        map: &str,
        id: u64,
        reason: &Reason,
        refuse: impl Fn(RestoreError) -> ApiError,
    ) -> Result<RestoreReport<String>, ApiError> {
        let text = reason.text();
        if text.trim().is_empty() {
            return Err(refuse(RestoreError::ReasonRequired));
        }
        if text.chars().count() > safemap::MAX_REASON_LEN {
            return Err(refuse(RestoreError::ReasonTooLong));
        }
        let (record, oldest) = {
            let audit = self.audit.read().unwrap_or_else(|e| e.into_inner());
            (
                audit.get(&id).cloned(),
                audit.first_key_value().map(|(k, _)| *k),
            )
        };
        let Some(record) = record else {
            // Older than every record held: dropped, as the journal evicts.
            return Err(refuse(if oldest.is_some_and(|o| id < o) {
                RestoreError::RetentionExpired
            } else {
                RestoreError::NotFound
            }));
        };
        if &*record.map != map {
            return Err(refuse(RestoreError::NotFound));
        }
        let (Op::Delete, Some(value)) = (record.op, record.previous_value.clone()) else {
            return Err(refuse(RestoreError::NotADelete));
        };
        let expired = record
            .at
            .checked_add(replica.retention())
            .is_none_or(|until| until < SystemTime::now());
        if expired {
            return Err(refuse(RestoreError::RetentionExpired));
        }
        let key = record.key.clone();
        let ekey = self.layout.entry(map, &key);
        let mut report = RestoreReport {
            restored: Vec::new(),
            skipped: Vec::new(),
            other_maps: Vec::new(),
        };
        // References are checked again: a value whose target is gone is skipped.
        let targets = refs::targets(shared, map, &key, &value);
        check_compares(1 + targets.len(), "its value's references", self.limits)?;
        let keep = match self.target_compares(shared, &targets).await? {
            Ok(keep) => keep,
            Err(_) => {
                report.skipped.push((key, Skip::ReferenceMissing));
                return Ok(report);
            }
        };
        let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::internal(e.to_string()))?;
        let audit = self::record(map, &key, StoredOp::Restore, None, reason, Some(value));
        let audit = serde_json::to_vec(&audit).map_err(|e| ApiError::internal(e.to_string()))?;
        check_size(bytes.len() + audit.len())?;
        let audit_key = self.layout.new_audit().map_err(ApiError::internal)?;
        let mut when = vec![Compare::create_revision(ekey.clone(), CompareOp::Equal, 0)];
        when.extend(keep);
        let txn = Txn::new()
            .when(when)
            .and_then([
                TxnOp::put(ekey.clone(), bytes, None),
                TxnOp::put(audit_key, audit, None),
            ])
            .or_else([TxnOp::get(ekey, None)]);
        match self.run(txn).await? {
            Ok(revision) => {
                self.until_applied(revision).await?;
                report.restored.push((key, Revision::new(revision)));
            }
            // The key is back, or (it is still absent) a target went away.
            Err(resp) => {
                let present = resp
                    .op_responses()
                    .into_iter()
                    .any(|r| matches!(r, TxnOpResponse::Get(g) if !g.kvs().is_empty()));
                let why = if present {
                    Skip::Recreated
                } else {
                    Skip::ReferenceMissing
                };
                report.skipped.push((key, why));
            }
        }
        Ok(report)
    }

    /// A free slot of map `map`'s delete breaker (cluster-wide: one slot key
    /// per delete admitted in the window), as (key, its `mod_revision` for the
    /// transaction's compare; 0 when never used); `Err(retry_after)` when all
    /// `max` slots were taken within `window`. Times are the servers' clocks
    /// (milliseconds): a skew between servers shifts the window by as much.
    async fn breaker_slot(
        &self,
        map: &str,
        max: usize,
        window: Duration,
    ) -> Result<Result<(String, i64), Duration>, ApiError> {
        let prefix = self.layout.breaker(map);
        let mut client = self.client();
        let resp = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| store_unavailable(&e))?;
        let now = now_ms();
        let window_ms = window.as_millis() as u64;
        let mut used: HashMap<usize, (i64, u64)> = HashMap::new();
        for kv in resp.kvs() {
            let slot = std::str::from_utf8(kv.key())
                .ok()
                .and_then(|k| k.strip_prefix(&prefix))
                .and_then(|i| i.parse::<usize>().ok());
            let at = std::str::from_utf8(kv.value())
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX / 2);
            if let Some(slot) = slot {
                used.insert(slot, (kv.mod_revision(), at));
            }
        }
        let free: Vec<(usize, i64)> = (0..max)
            .filter_map(|i| match used.get(&i) {
                None => Some((i, 0)),
                Some(&(rev, at)) if at.saturating_add(window_ms) <= now => Some((i, rev)),
                Some(_) => None,
            })
            .collect();
        if free.is_empty() {
            let soonest = used
                .values()
                .map(|&(_, at)| at.saturating_add(window_ms).saturating_sub(now))
                .min()
                .unwrap_or(window_ms);
            return Ok(Err(Duration::from_millis(soonest.max(1))));
        }
        // A random free slot, so that concurrent deletes rarely race for one.
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).map_err(|e| ApiError::internal(e.to_string()))?;
        let (i, rev) = free[(u64::from_le_bytes(r) % free.len() as u64) as usize];
        Ok(Ok((format!("{prefix}{i}"), rev)))
    }

    /// The key's current state in etcd (a linearizable read).
    async fn read(&self, ekey: &str) -> Result<Option<Seen>, ApiError> {
        let mut client = self.client();
        let resp = client
            .get(ekey, None)
            .await
            .map_err(|e| store_unavailable(&e))?;
        Ok(resp.kvs().first().and_then(|kv| {
            Some(Seen {
                value: serde_json::from_slice(kv.value()).ok()?,
                revision: kv.mod_revision() as u64,
                create_revision: kv.create_revision() as u64,
                version: kv.version() as u64,
            })
        }))
    }

    /// Stores a token (create); answers once this server's replica has it.
    pub async fn put_token(&self, token: &StoredToken) -> Result<(), ApiError> {
        let key = self.layout.token(&token.name);
        let bytes = serde_json::to_vec(token).map_err(|e| ApiError::internal(e.to_string()))?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, bytes, None)]);
        match self.run(txn).await? {
            Ok(revision) => self.until_applied(revision).await,
            Err(_) => Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "already_exists",
                format!("a token named {:?} exists; revoke it first", token.name),
            )),
        }
    }

    /// Removes a token; answers once this server's replica dropped it.
    pub async fn remove_token(&self, name: &str) -> Result<(), ApiError> {
        let mut client = self.client();
        let resp = client
            .delete(self.layout.token(name), None)
            .await
            .map_err(|e| store_unavailable(&e))?;
        let revision = resp.header().map_or(0, |h| h.revision() as u64);
        self.until_applied(revision).await
    }

    /// Creates the admin token once per prefix: the transaction that sets the
    /// bootstrap key stores it; a server that loses the race creates none.
    /// Returns whether this server created it.
    pub async fn bootstrap_admin(&self, token: &StoredToken) -> Result<bool, String> {
        let marker = self.layout.bootstrap();
        let key = self.layout.token(&token.name);
        let bytes = serde_json::to_vec(token).map_err(|e| e.to_string())?;
        let at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let txn = Txn::new()
            .when([Compare::create_revision(
                marker.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(marker, at, None), TxnOp::put(key, bytes, None)]);
        match self.run(txn).await.map_err(|e| e.message)? {
            Ok(revision) => {
                self.until_applied(revision).await.map_err(|e| e.message)?;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }
}

/// Refuses a transaction etcd would refuse as too large (413
/// `too_large_for_etcd`), before anything is sent: the entry's value and its
/// audit record (which holds the new and the previous value) travel together.
pub(super) fn check_size(bytes: usize) -> Result<(), ApiError> {
    if bytes > super::MAX_TXN_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_large_for_etcd",
            format!(
                "in cluster mode a write and its audit record (new and previous value) travel in one etcd request of at most {} bytes (etcd's --max-request-bytes is 1.5 MiB by default); this one is {bytes}",
                super::MAX_TXN_BYTES
            ),
        )
        .with_details(serde_json::json!({
            "limit": super::MAX_TXN_BYTES,
            "size": bytes,
            "unit": "bytes",
            "etcd_flag": "--max-request-bytes",
        })));
    }
    Ok(())
}

/// Refuses a single-key write whose transaction needs more than
/// `max_txn_ops` compares (413 `too_large_for_etcd`, `details.unit` =
/// "compares"), before anything is sent: etcd would refuse the whole
/// transaction, and this server would misreport that as 503
/// `etcd_limit_mismatch`. `compares` counts the entry's own compare and one
/// per `what` (the success list, 2 or 3 puts, is always smaller).
pub(super) fn check_compares(
    compares: usize,
    what: &str,
    limits: crate::etcd_limits::TxnLimits,
) -> Result<(), ApiError> {
    let limit = limits.compares();
    if compares > limit {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_large_for_etcd",
            format!(
                "in cluster mode a write is one etcd transaction with one compare for the entry and one for each of {what}: this one needs {compares} compares, etcd allows {limit}; nothing was written; {}",
                limits.raise_hint()
            ),
        )
        .with_details(limits.details(serde_json::json!({
            "limit": limit,
            "size": compares,
            "unit": "compares",
        }))));
    }
    Ok(())
}

/// 503 `store_contended`: the key kept changing under the write.
pub(super) fn contended() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "store_contended",
        format!(
            "the key changed under this write {} times in a row (other servers write it); retry",
            super::MAX_TXN_ATTEMPTS
        ),
    )
    .with_retry_after(1)
}
