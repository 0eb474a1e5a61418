use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

/// Threads that get a cell of their own in every map's read counters. Threads
/// beyond this many alive at once share one overflow cell.
const OWNED_CELLS: usize = 64;
const OVERFLOW: usize = OWNED_CELLS;

const HIT: usize = 0;
const MISS: usize = 1;

/// `N` counters, one padded cell of them per thread, summed on demand
/// (`stats()`).
///
/// Invariant: a cell below [`OWNED_CELLS`] is written by at most one thread at
/// a time (the holder of that [`CellLease`]), so a thread counts with a plain
/// load and store — no locked instruction, no shared cache line. (A locked add
/// cost ~14 % of a read's time in the `incident` profile; on writes of
/// different keys from several threads, a shared counter is a cache line that
/// every write pulls over.) The overflow cell is shared and counted with
/// `fetch_add`.
pub(crate) struct ShardedCounters<const N: usize> {
    cells: Box<[CachePadded<[AtomicU64; N]>]>,
}

/// Hit and miss counts of reads.
pub(crate) struct ReadCounters(ShardedCounters<2>);

/// The indices of cells not leased by a live thread, and the next never-leased one.
static FREE_CELLS: Mutex<(Vec<usize>, usize)> = Mutex::new((Vec::new(), 0));

/// A thread's claim on one cell index (the same index in every map), given
/// back when the thread exits.
struct CellLease(usize);

impl CellLease {
    fn take() -> Self {
        let mut free = FREE_CELLS.lock();
        let index = match free.0.pop() {
            Some(index) => index,
            None if free.1 < OWNED_CELLS => {
                free.1 += 1;
                free.1 - 1
            }
            None => OVERFLOW,
        };
        CellLease(index)
    }
}

impl Drop for CellLease {
    fn drop(&mut self) {
        if self.0 != OVERFLOW {
            // The mutex orders this thread's last counts before the next
            // holder's first load of the cell.
            FREE_CELLS.lock().0.push(self.0);
        }
    }
}

thread_local! {
    static LEASE: CellLease = CellLease::take();
}

impl<const N: usize> ShardedCounters<N> {
    pub(crate) fn new() -> Self {
        ShardedCounters {
            cells: (0..=OWNED_CELLS)
                .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    /// Adds one to counter `slot` (`< N`).
    #[inline]
    pub(crate) fn add(&self, slot: usize) {
        // During thread teardown the lease may already be gone: use the overflow cell.
        let index = LEASE.try_with(|lease| lease.0).unwrap_or(OVERFLOW);
        let counter = &self.cells[index][slot];
        // Relaxed: the counts publish no other memory; `totals` only needs each
        // increment to become visible eventually.
        if index == OVERFLOW {
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            // Not an RMW, and it needs not be: this thread is the cell's only
            // writer (see the invariant above).
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// Each counter summed over all cells; a moving total under concurrent use.
    pub(crate) fn totals(&self) -> [u64; N] {
        let mut totals = [0; N];
        for cell in &self.cells {
            for (total, counter) in totals.iter_mut().zip(cell.iter()) {
                *total += counter.load(Ordering::Relaxed);
            }
        }
        totals
    }
}

impl ReadCounters {
    pub(crate) fn new() -> Self {
        ReadCounters(ShardedCounters::new())
    }

    #[inline]
    pub(crate) fn record(&self, hit: bool) {
        self.0.add(if hit { HIT } else { MISS });
    }

    /// (hits, misses) summed over all cells.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let [hits, misses] = self.0.totals();
        (hits, misses)
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

    #[test]
    fn more_threads_than_cells_lose_no_count() {
        let counters = ReadCounters::new();
        let threads = if cfg!(miri) { 8 } else { OWNED_CELLS * 2 };
        // Alive at the same time (more than there are cells), then again in
        // sequence (cells are handed on when threads exit).
        for _ in 0..2 {
            let barrier = std::sync::Barrier::new(threads);
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        barrier.wait();
                        for _ in 0..100 {
                            counters.record(true);
                        }
                        barrier.wait();
                    });
                }
            });
        }
        assert_eq!(counters.totals(), (2 * threads as u64 * 100, 0));
    }
}
