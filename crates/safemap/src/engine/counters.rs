use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

/// Number of shards: enough that threads on a small machine rarely share one.
const SHARDS: usize = 32;

/// Hit and miss counts of `get`, sharded so that readers on different threads
/// write different cache lines. Totals are summed on demand (`stats()`), so a
/// read costs one uncontended atomic add instead of a shared-line write.
pub(crate) struct ReadCounters {
    shards: Box<[CachePadded<[AtomicU64; 2]>]>,
}

const HIT: usize = 0;
const MISS: usize = 1;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD.with(|shard| {
        let mut index = shard.get();
        if index == usize::MAX {
            // Relaxed: only the distinctness of successive values matters.
            index = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(index);
        }
        index
    })
}

impl ReadCounters {
    pub(crate) fn new() -> Self {
        ReadCounters {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new([AtomicU64::new(0), AtomicU64::new(0)]))
                .collect(),
        }
    }

    #[inline]
    pub(crate) fn record(&self, hit: bool) {
        let slot = if hit { HIT } else { MISS };
        // Relaxed: the counts publish no other memory; readers of the totals
        // only need each increment to be counted once, which RMW guarantees.
        self.shards[shard_index()][slot].fetch_add(1, Ordering::Relaxed);
    }

    /// (hits, misses) summed over all shards; a moving total under concurrent reads.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(hits, misses), shard| {
            (
                hits + shard[HIT].load(Ordering::Relaxed),
                misses + shard[MISS].load(Ordering::Relaxed),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_every_read_from_every_thread() {
        let counters = ReadCounters::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..1000 {
                        counters.record(i % 4 != 0);
                    }
                });
            }
        });
        assert_eq!(counters.totals(), (3000, 1000));
    }
}
