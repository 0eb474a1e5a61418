//! The synchronisation facade: every lock of this crate comes from here, so that
//! a model checker can take control of it.
//!
//! * Normally these are [`parking_lot`]'s `Mutex` and `MutexGuard`.
//! * With the cargo feature `shuttle` they are [`shuttle`]'s mutex (its poison
//!   unwrapped, so the `lock()` API is the same), and every `lock()` becomes a
//!   point at which shuttle's scheduler may switch threads. The proof suite
//!   (`tests/shuttle_*.rs`) then explores interleavings of the crate's own
//!   protocol: the journal's write lock, the breaker, the plan book, and the
//!   code between them. A feature rather than a `cfg` so that no `RUSTFLAGS`
//!   rebuild is needed; it is meant only for those tests (`cargo test
//!   --features shuttle --test 'shuttle_*'`): with it, the map's locks work only
//!   inside a shuttle execution (`shuttle::check_*`), so never enable it in a
//!   build that serves.
//!
//! What is *not* modelled: the table's internals. papaya (and its reclaimer,
//! seize) keep real atomics; they are not ours to model, and they contain no
//! shuttle scheduling point, so under shuttle each table operation (a get, an
//! insert, a remove, one step of an iterator) runs as one indivisible step. The
//! shuttle tests therefore check our protocol on the assumption that papaya's
//! operations are linearizable; papaya's own concurrency is exercised by the
//! real-thread tests (`tests/linearizability.rs`, `tests/deadlock.rs`). The
//! few plain atomics of this crate (counters, the published revision) also
//! stay real: each is written under the write lock or is a statistic.

#[cfg(not(feature = "shuttle"))]
pub(crate) use parking_lot::{Mutex, MutexGuard};

#[cfg(feature = "shuttle")]
pub(crate) use model::{Mutex, MutexGuard};

#[cfg(feature = "shuttle")]
mod model {
    use std::sync::PoisonError;

    pub(crate) use shuttle::sync::MutexGuard;

    /// shuttle's mutex behind parking_lot's API: `lock()` returns the guard.
    pub(crate) struct Mutex<T: ?Sized>(shuttle::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(shuttle::sync::Mutex::new(value))
        }
    }

    impl<T: ?Sized> Mutex<T> {
        /// Locks, switching to another modelled thread first if the scheduler
        /// says so. A poisoned lock (a panic under it, which fails the shuttle
        /// test anyway) is taken as parking_lot would: as if not poisoned.
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }
}
