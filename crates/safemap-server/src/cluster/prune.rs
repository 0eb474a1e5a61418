//! Retention of audit records in etcd: etcd's compaction removes old
//! revisions of keys, never a live key, so records past their map's retention
//! are deleted by the servers themselves, and so are delete plans a day
//! past their expiry (`plans::prune_plans`). Every server prunes (deleting a key
//! already deleted is a no-op); each pass reads every record under
//! `<prefix>audit/` in pages of [`super::RANGE_PAGE`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{GetOptions, Txn, TxnOp};

use super::Cluster;
use crate::state::Shared;
use crate::storage::now_ms;

/// Longest pause between two pruning passes.
pub const PRUNE_INTERVAL_MAX: Duration = Duration::from_secs(60);

/// The pause between passes: half the shortest configured retention, between
/// 1 s and [`PRUNE_INTERVAL_MAX`].
pub fn interval(shared: &Shared) -> Duration {
    let shortest = shared
        .config
        .maps
        .values()
        .map(|p| p.retention)
        .min()
        .unwrap_or(PRUNE_INTERVAL_MAX * 2);
    (shortest / 2).clamp(Duration::from_secs(1), PRUNE_INTERVAL_MAX)
}

/// Prunes until shutdown.
pub async fn prune_loop(
    shared: Weak<Shared>,
    cluster: Arc<Cluster>,
    pause: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match prune_once(&shared, &cluster).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "pruned audit records past retention from etcd"),
            Err(e) => tracing::warn!(error = %e, "pruning audit records failed; retrying later"),
        }
        match super::plans::prune_plans(&cluster).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(plans = n, "pruned expired delete plans from etcd"),
            Err(e) => tracing::warn!(error = %e, "pruning delete plans failed; retrying later"),
        }
    }
}

/// One pass: deletes every record older than its map's retention. Returns how many.
pub async fn prune_once(shared: &Shared, cluster: &Cluster) -> Result<usize, etcd_client::Error> {
    let prefix = format!("{}audit/", cluster.layout.prefix());
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let mut client = cluster.client();
    let mut from = prefix.as_bytes().to_vec();
    let now = now_ms();
    let mut pruned = 0;
    loop {
        let options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(super::RANGE_PAGE);
        let resp = client.get(from.clone(), Some(options)).await?;
        let mut old = Vec::new();
        for kv in resp.kvs() {
            // A plan's batch holds records of one time; its first decides.
            let Some(r) = super::plans::decode_audit(kv.value())
                .ok()
                .and_then(|rs| rs.into_iter().next())
            else {
                continue;
            };
            let retention = shared.config.policy_for(&r.map).retention.as_millis() as u64;
            if r.at_ms.saturating_add(retention) < now {
                old.push(TxnOp::delete(kv.key().to_vec(), None));
            }
        }
        if !old.is_empty() {
            pruned += old.len();
            // Each transaction holds at most `max_txn_ops` deletes (etcd's
            // `--max-txn-ops`, as the operator declared it).
            for chunk in old.chunks(cluster.limits().max_txn_ops()) {
                client.txn(Txn::new().and_then(chunk.to_vec())).await?;
            }
        }
        match (resp.more(), resp.kvs().last()) {
            (true, Some(last)) => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok(pruned),
        }
    }
}
