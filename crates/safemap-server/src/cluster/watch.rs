//! Watch streams in cluster mode: a map's writes in revision order with no
//! gap, read from the audit records the replica holds (every write in
//! cluster mode has one, values included), then followed as the replica
//! applies more.
//!
//! Gap-free: records are inserted before the replica's revision moves past
//! them, so once the applied revision is `A`, every record up to `A` (ids below
//! `audit_id(A + 1, 0)`) is held
//! (or was dropped for capacity, which ends the stream with `compacted`).

use std::collections::VecDeque;
use std::sync::Arc;

use super::Cluster;
use crate::state::Record;

/// Follows one map's writes through the replica.
pub struct ClusterWatcher {
    cluster: Arc<Cluster>,
    map: String,
    /// The next revision to read.
    next: u64,
    applied: tokio::sync::watch::Receiver<u64>,
    ready: VecDeque<Arc<Record>>,
}

/// Why a watch cannot go on: records it needs were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The oldest revision a watch can start from now.
    pub oldest: u64,
}

impl std::fmt::Display for Compacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the records this watch needs were dropped (server.journal_capacity); resume from revision {} or later",
            self.oldest
        )
    }
}

impl Cluster {
    /// A watcher of `map` from revision `from` (inclusive; `None`: from the
    /// next write).
    pub fn watch(
        self: &Arc<Self>,
        map: &str,
        from: Option<u64>,
    ) -> Result<ClusterWatcher, Compacted> {
        let applied = self.applied.subscribe();
        let next = match from {
            Some(f) => f.max(1),
            None => *applied.borrow() + 1,
        };
        let w = ClusterWatcher {
            cluster: Arc::clone(self),
            map: map.to_string(),
            next,
            applied,
            ready: VecDeque::new(),
        };
        w.check()?;
        Ok(w)
    }

    /// Every id at or below it was dropped from the held records.
    fn dropped_through(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl ClusterWatcher {
    fn check(&self) -> Result<(), Compacted> {
        // Ids are revision * AUDIT_IDS_PER_REVISION + index.
        let dropped = self.cluster.dropped_through() / super::AUDIT_IDS_PER_REVISION;
        if dropped >= self.next {
            return Err(Compacted {
                oldest: dropped + 1,
            });
        }
        Ok(())
    }

    /// The next write of the map, waiting for it.
    pub async fn next(&mut self) -> Result<Arc<Record>, Compacted> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Ok(r);
            }
            let applied = *self.applied.borrow_and_update();
            if applied >= self.next {
                self.check()?;
                {
                    let audit = self.cluster.audit.read().unwrap_or_else(|e| e.into_inner());
                    self.ready.extend(
                        audit
                            .range(
                                super::audit_id(self.next, 0)
                                    ..super::audit_id(applied.saturating_add(1), 0),
                            )
                            .map(|(_, r)| r)
                            .filter(|r| *r.map == *self.map)
                            .cloned(),
                    );
                }
                // Read under the lock above: nothing between was dropped.
                self.check()?;
                self.next = applied + 1;
                continue;
            }
            if self.applied.changed().await.is_err() {
                // The replica is gone (shutdown): nothing more will come.
                std::future::pending::<()>().await;
            }
        }
    }
}
