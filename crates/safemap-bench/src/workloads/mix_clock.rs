//! A stopwatch inside the bustle handles. bustle times a run on its main
//! thread, between two barrier waits; on a loaded 2-core machine that thread
//! can be scheduled late after the first wait while the workers already
//! run, and the run then looks several times faster than it was. [`Timed`]
//! wraps a collection so that each worker's handle notes when it made its
//! first mix operation and when it finished its last one; the window is the
//! earliest first to the latest last, measured on the workers themselves.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bustle::{Collection, CollectionHandle};

/// The shared stopwatch of the one run in progress.
struct Clock {
    base: OnceLock<Instant>,
    /// Handles pinned before this many are the prefill's; later ones run the mix.
    prefill_pins: AtomicUsize,
    pins: AtomicUsize,
    ops_per_thread: AtomicU64,
    /// Nanoseconds since `base` of the earliest first mix operation.
    start: AtomicU64,
    /// Nanoseconds since `base` of the latest last mix operation.
    end: AtomicU64,
    /// Handles that finished all their operations.
    finished: AtomicUsize,
}

static CLOCK: Clock = Clock {
    base: OnceLock::new(),
    prefill_pins: AtomicUsize::new(0),
    pins: AtomicUsize::new(0),
    ops_per_thread: AtomicU64::new(0),
    start: AtomicU64::new(u64::MAX),
    end: AtomicU64::new(0),
    finished: AtomicUsize::new(0),
};

/// One run at a time in this process (the clock is global).
static RUN: Mutex<()> = Mutex::new(());

fn now_ns() -> u64 {
    CLOCK.base.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Holds the stopwatch for one bustle run; read it with [`Stopwatch::window`].
pub struct Stopwatch {
    _run: MutexGuard<'static, ()>,
    threads: usize,
}

impl Stopwatch {
    /// Arm the stopwatch for a run of `threads` threads and `ops_per_thread`
    /// operations each (as bustle computes them).
    pub fn arm(threads: usize, ops_per_thread: u64) -> Self {
        let run = RUN.lock().unwrap_or_else(PoisonError::into_inner);
        // SeqCst everywhere here: set-up and read-out are rare, and the
        // worker threads are started (a happens-before edge) after arming.
        CLOCK.prefill_pins.store(threads, Ordering::SeqCst);
        CLOCK.pins.store(0, Ordering::SeqCst);
        CLOCK.ops_per_thread.store(ops_per_thread, Ordering::SeqCst);
        CLOCK.start.store(u64::MAX, Ordering::SeqCst);
        CLOCK.end.store(0, Ordering::SeqCst);
        CLOCK.finished.store(0, Ordering::SeqCst);
        Self { _run: run, threads }
    }

    /// The measured window, if every worker finished all its operations.
    pub fn window(&self) -> Option<Duration> {
        let (start, end) = (
            CLOCK.start.load(Ordering::SeqCst),
            CLOCK.end.load(Ordering::SeqCst),
        );
        (CLOCK.finished.load(Ordering::SeqCst) == self.threads && end > start)
            .then(|| Duration::from_nanos(end - start))
    }
}

/// A collection whose mix handles time themselves.
pub struct Timed<C>(C);

/// A handle that notes its first and last mix operation.
pub struct TimedHandle<H> {
    inner: H,
    mix: bool,
    done: u64,
    target: u64,
}

impl<C: Collection> Collection for Timed<C> {
    type Handle = TimedHandle<C::Handle>;
    fn with_capacity(capacity: usize) -> Self {
        Self(C::with_capacity(capacity))
    }
    fn pin(&self) -> Self::Handle {
        let n = CLOCK.pins.fetch_add(1, Ordering::SeqCst);
        TimedHandle {
            inner: self.0.pin(),
            mix: n >= CLOCK.prefill_pins.load(Ordering::SeqCst),
            done: 0,
            target: CLOCK.ops_per_thread.load(Ordering::SeqCst),
        }
    }
}

impl<H> TimedHandle<H> {
    #[inline]
    fn before(&mut self) {
        if self.mix && self.done == 0 {
            CLOCK.start.fetch_min(now_ns(), Ordering::Relaxed);
        }
    }

    #[inline]
    fn after(&mut self) {
        if self.mix {
            self.done += 1;
            if self.done == self.target {
                CLOCK.end.fetch_max(now_ns(), Ordering::Relaxed);
                CLOCK.finished.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

impl<H: CollectionHandle> CollectionHandle for TimedHandle<H> {
    type Key = H::Key;
    fn get(&mut self, key: &Self::Key) -> bool {
        self.before();
        let r = self.inner.get(key);
        self.after();
        r
    }
    fn insert(&mut self, key: &Self::Key) -> bool {
        self.before();
        let r = self.inner.insert(key);
        self.after();
        r
    }
    fn remove(&mut self, key: &Self::Key) -> bool {
        self.before();
        let r = self.inner.remove(key);
        self.after();
        r
    }
    fn update(&mut self, key: &Self::Key) -> bool {
        self.before();
        let r = self.inner.update(key);
        self.after();
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::peers;

    #[test]
    fn the_workers_window_is_measured_and_within_bustles() {
        let mut w = bustle::Workload::new(2, bustle::Mix::read_heavy());
        w.initial_capacity_log2(12)
            .prefill_fraction(0.5)
            .operations(4.0);
        let total = (4096.0 * 4.0) as u64;
        let watch = Stopwatch::arm(2, total / 2);
        let m = w.run_silently::<Timed<peers::dashmap::Table>>();
        let window = watch.window().expect("both workers finished");
        assert!(window > Duration::ZERO);
        // The workers' window lies inside the main thread's (barrier to barrier),
        // unless the main thread was scheduled late, which is what this fixes.
        assert!(
            window <= m.spent + Duration::from_millis(50),
            "{window:?} vs {:?}",
            m.spent
        );
    }

    #[test]
    fn an_unfinished_run_has_no_window() {
        let watch = Stopwatch::arm(1, u64::MAX);
        let mut w = bustle::Workload::new(1, bustle::Mix::read_heavy());
        w.initial_capacity_log2(8).operations(1.0);
        let _ = w.run_silently::<Timed<peers::hashbrown::Table>>();
        assert!(watch.window().is_none());
    }
}
