//! The replica: a range read of the whole prefix at one revision, then etcd's
//! watch from the next revision, applying every committed change to the
//! server's maps and tokens in revision order.
//!
//! - The replica's revision moves with the events applied, and with etcd's
//!   periodic progress notifications *of this watch* (`progress_notify`: sent
//!   only while the watch is in sync, in order with its events; every
//!   `--experimental-watch-progress-notify-interval` of etcd, 10 min by
//!   default). It does not ask for progress (`ProgressRequest`): etcd before
//!   3.5.8 answers that from another queue than the events, with the store's
//!   revision even while events are still queued for the watch, so trusting
//!   it let the replica claim a revision it had not applied (an
//!   `X-Min-Revision` read then missed the write: found by the compaction-gap
//!   test, tests/cluster/compaction.rs). Only writes outside the prefix move
//!   etcd's revision without an event here, so with an etcd of its own the
//!   replica's revision is always current.
//! - A broken watch stream (a member died, a network error) is opened again
//!   from the revision after the last one applied: nothing is skipped.
//! - A watch whose start revision etcd has compacted away is a gap: the replica
//!   is rebuilt by a new range read (entries and tokens absent from it are
//!   removed), then watched from there.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};
use safemap::Revision;
use serde_json::Value;

use super::Cluster;
use super::layout::Slot;
use crate::state::Shared;
use crate::storage::StoredToken;

/// Pause before a broken watch is opened again.
const REWATCH_PAUSE: Duration = Duration::from_millis(200);

/// Loads the replica (range read at the current revision), then keeps it in
/// step in a background task until the server shuts down.
pub async fn start(shared: &Arc<Shared>, cluster: &Arc<Cluster>) -> Result<u64, String> {
    let revision = load_all(shared, cluster).await?;
    cluster
        .start_revision
        .store(revision, std::sync::atomic::Ordering::Release);
    cluster
        .loaded
        .store(true, std::sync::atomic::Ordering::Release);
    let weak = Arc::downgrade(shared);
    let pause = super::prune::interval(shared);
    tokio::spawn(super::prune::prune_loop(
        weak.clone(),
        Arc::clone(cluster),
        pause,
        shared.shutdown.clone(),
    ));
    let cluster = Arc::clone(cluster);
    let shutdown = shared.shutdown.clone();
    tokio::spawn(watch_loop(weak, cluster, shutdown));
    Ok(revision)
}

/// Reads everything under the prefix at one revision (pages of
/// [`super::RANGE_PAGE`]) and makes the replica equal to it. Returns that revision.
async fn load_all(shared: &Shared, cluster: &Cluster) -> Result<u64, String> {
    let prefix = cluster.layout.prefix().as_bytes().to_vec();
    let end = prefix_end(&prefix);
    let mut client = cluster.client();
    let mut from = prefix.clone();
    let mut at: i64 = 0;
    let mut entries: HashSet<(String, String)> = HashSet::new();
    let mut tokens: HashSet<String> = HashSet::new();
    let mut n = 0usize;
    loop {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(super::RANGE_PAGE);
        if at > 0 {
            options = options.with_revision(at);
        }
        let resp = client
            .get(from.clone(), Some(options))
            .await
            .map_err(|e| format!("reading {} from etcd: {e}", cluster.layout.prefix()))?;
        if at == 0 {
            at = resp.header().map_or(0, |h| h.revision());
        }
        for kv in resp.kvs() {
            match apply_put(shared, cluster, kv) {
                Some(Slot::Entry(m, k)) => {
                    entries.insert((m, k));
                }
                Some(Slot::Token(t)) => {
                    tokens.insert(t);
                }
                _ => {}
            }
            n += 1;
        }
        match (resp.more(), resp.kvs().last()) {
            (true, Some(last)) => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    // A rebuild after a gap: what is no longer in etcd leaves the replica.
    let revision = Revision::new(at as u64);
    for (name, map) in shared.all_maps() {
        let gone: Vec<String> = map
            .pin()
            .iter()
            .map(|e| e.key().clone())
            .filter(|k| !entries.contains(&(name.clone(), k.clone())))
            .collect();
        for k in gone {
            map.apply_replicated_remove(&k, revision);
        }
    }
    for (name, _) in shared.tokens.list() {
        if !tokens.contains(&name) {
            shared.tokens.remove(&name);
        }
    }
    cluster.advance(at as u64);
    tracing::info!(
        revision = at,
        keys = n,
        entries = entries.len(),
        "replica loaded from etcd"
    );
    Ok(at as u64)
}

/// The end of the range of keys that start with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Applies a put (range read or watch event); returns what the key was.
fn apply_put(shared: &Shared, cluster: &Cluster, kv: &KeyValue) -> Option<Slot> {
    let slot = cluster.layout.slot(kv.key())?;
    match &slot {
        Slot::Entry(map, key) => {
            let Ok(value) = serde_json::from_slice::<Value>(kv.value()) else {
                tracing::warn!(
                    map,
                    key,
                    revision = kv.mod_revision(),
                    "an etcd entry that is not JSON was skipped"
                );
                return None;
            };
            let m = match shared.replica_map(map) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(map, error = %e, "cannot build a map of the replica");
                    return None;
                }
            };
            m.apply_replicated_put(
                key.clone(),
                value,
                Revision::new(kv.mod_revision() as u64),
                Revision::new(kv.create_revision() as u64),
                kv.version() as u64,
            );
        }
        Slot::Token(name) => match serde_json::from_slice::<StoredToken>(kv.value()) {
            Ok(t) if t.name == *name => shared.tokens.insert(&t),
            _ => tracing::warn!(name, "an etcd token that does not decode was skipped"),
        },
        Slot::Audit => {
            if let Err(e) = cluster.hold_records(kv.mod_revision() as u64, kv.value()) {
                tracing::warn!(revision = kv.mod_revision(), error = %e, "an etcd audit record that does not decode was skipped")
            }
        }
        Slot::Plan(id) => super::plans::apply_plan(shared, id, kv),
        Slot::Other => {}
    }
    Some(slot)
}

/// Applies a delete event.
fn apply_delete(shared: &Shared, cluster: &Cluster, kv: &KeyValue) {
    match cluster.layout.slot(kv.key()) {
        Some(Slot::Entry(map, key)) => {
            if let Some(m) = shared.map(&map) {
                m.apply_replicated_remove(&key, Revision::new(kv.mod_revision() as u64));
            }
        }
        Some(Slot::Token(name)) => {
            shared.tokens.remove(&name);
        }
        _ => {}
    }
}

/// Watches the prefix from the revision after the last applied, until shutdown.
async fn watch_loop(
    shared: Weak<Shared>,
    cluster: Arc<Cluster>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let prefix = cluster.layout.prefix().to_string();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let from = cluster.applied() + 1;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from as i64)
            .with_progress_notify();
        let mut client = cluster.client();
        let mut stream = match client.watch(prefix.as_bytes(), Some(options)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, from, "opening the etcd watch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(REWATCH_PAUSE) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        // This watch's id, from its `created` answer.
        let mut watch_id = None;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(resp)) => resp,
                        Ok(None) => {
                            tracing::warn!("the etcd watch ended; opening it again");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the etcd watch failed; opening it again");
                            break;
                        }
                    };
                    let Some(shared) = shared.upgrade() else { return };
                    if resp.compact_revision() > 0 {
                        tracing::warn!(
                            compacted = resp.compact_revision(),
                            applied = cluster.applied(),
                            "etcd compacted revisions the replica had not applied; rebuilding it by a range read"
                        );
                        if let Err(e) = load_all(&shared, &cluster).await {
                            tracing::error!(error = %e, "rebuilding the replica failed; retrying");
                        }
                        break;
                    }
                    if resp.canceled() {
                        tracing::warn!(reason = resp.cancel_reason(), "etcd canceled the watch; opening it again");
                        break;
                    }
                    let mut top = 0;
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        match ev.event_type() {
                            EventType::Put => {
                                apply_put(&shared, &cluster, kv);
                            }
                            EventType::Delete => apply_delete(&shared, &cluster, kv),
                        }
                        top = top.max(kv.mod_revision() as u64);
                    }
                    if resp.created() {
                        watch_id = Some(resp.watch_id());
                    } else if resp.events().is_empty() && watch_id == Some(resp.watch_id()) {
                        // This watch's progress notification: etcd sends it
                        // only while the watch is in sync, after its events,
                        // so every event up to its revision was delivered.
                        // (A `ProgressRequest` answer has id -1: not trusted.)
                        top = resp.header().map_or(0, |h| h.revision() as u64);
                    }
                    cluster.advance(top);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(REWATCH_PAUSE) => {}
            _ = shutdown.changed() => return,
        }
    }
}
