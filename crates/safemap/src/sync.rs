//! The synchronisation facade: every lock of this crate comes from here, so that
//! a model checker can take control of it.
//!
//! * Normally these are [`parking_lot`]'s `Mutex` and `MutexGuard`.
//! * With the cargo feature `shuttle` they are [`shuttle`]'s mutex (its poison
//!   unwrapped, so the `lock()` API is the same), and every `lock()` becomes a
//!   point at which shuttle's scheduler may switch threads. The proof suite
//!   (`tests/shuttle_*.rs`) then explores interleavings of the crate's own
//!   protocol: the key locks, the journal's sequencer, the breaker, the plan book, and the
//!   code between them. A feature rather than a `cfg` so that no `RUSTFLAGS`
//!   rebuild is needed; it is meant only for those tests (`cargo test
//!   --features shuttle --test 'shuttle_*'`). A lock made outside a shuttle
//!   execution (`shuttle::check_*`) is still parking_lot's, so the other tests
//!   pass with the feature on too; still, never enable it in a build that
//!   serves (every lock pays a branch).
//!
//! What is *not* modelled: the table's internals. papaya (and its reclaimer,
//! seize) keep real atomics; they are not ours to model, and they contain no
//! shuttle scheduling point, so under shuttle each table operation (a get, an
//! insert, a remove, one step of an iterator) runs as one indivisible step. The
//! shuttle tests therefore check our protocol on the assumption that papaya's
//! operations are linearizable; papaya's own concurrency is exercised by the
//! real-thread tests (`tests/linearizability.rs`, `tests/deadlock.rs`). The
//! few plain atomics of this crate (counters, the published revision) also
//! stay real: each is written under the sequencer's lock or is a statistic.

#[cfg(not(feature = "shuttle"))]
pub(crate) use parking_lot::{Mutex, MutexGuard};

/// A condition variable over [`Mutex`]: parking_lot's, or shuttle's in a model.
#[cfg(not(feature = "shuttle"))]
pub(crate) struct Condvar(parking_lot::Condvar);

#[cfg(not(feature = "shuttle"))]
impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(parking_lot::Condvar::new())
    }

    /// Releases `guard`'s lock, sleeps until notified, locks again.
    pub(crate) fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(&mut guard);
        guard
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

/// A point at which the model checker may switch threads; nothing otherwise.
/// Placed where our protocol has a window that no lock acquisition marks (a
/// revision claimed but its write not yet published), so that shuttle explores
/// other threads acting inside it.
#[inline(always)]
pub(crate) fn switch_point() {
    #[cfg(feature = "shuttle")]
    if shuttle::current::try_get_current_task().is_some() {
        shuttle::thread::yield_now();
    }
}

#[cfg(feature = "shuttle")]
pub(crate) use model::{Condvar, Mutex, MutexGuard};

#[cfg(feature = "shuttle")]
mod model {
    use std::ops::{Deref, DerefMut};
    use std::sync::PoisonError;

    /// shuttle's mutex behind parking_lot's API (`lock()` returns the guard)
    /// when made inside a shuttle execution; parking_lot's otherwise, so that
    /// a build with every feature on still works outside shuttle tests.
    pub(crate) enum Mutex<T> {
        Model(shuttle::sync::Mutex<T>),
        Real(parking_lot::Mutex<T>),
    }

    /// The guard of either kind of [`Mutex`].
    pub(crate) enum MutexGuard<'a, T> {
        Model(shuttle::sync::MutexGuard<'a, T>),
        Real(parking_lot::MutexGuard<'a, T>),
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            if shuttle::current::try_get_current_task().is_some() {
                Mutex::Model(shuttle::sync::Mutex::new(value))
            } else {
                Mutex::Real(parking_lot::Mutex::new(value))
            }
        }

        /// Locks, switching to another modelled thread first if the scheduler
        /// says so. A poisoned lock (a panic under it, which fails the shuttle
        /// test anyway) is taken as parking_lot would: as if not poisoned.
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            match self {
                Mutex::Model(m) => {
                    MutexGuard::Model(m.lock().unwrap_or_else(PoisonError::into_inner))
                }
                Mutex::Real(m) => MutexGuard::Real(m.lock()),
            }
        }
    }

    /// shuttle's condition variable inside a shuttle execution, parking_lot's
    /// outside (paired with the same kind of [`Mutex`]).
    pub(crate) enum Condvar {
        Model(shuttle::sync::Condvar),
        Real(parking_lot::Condvar),
    }

    impl Condvar {
        pub(crate) fn new() -> Self {
            if shuttle::current::try_get_current_task().is_some() {
                Condvar::Model(shuttle::sync::Condvar::new())
            } else {
                Condvar::Real(parking_lot::Condvar::new())
            }
        }

        pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            match (self, guard) {
                (Condvar::Model(cv), MutexGuard::Model(g)) => {
                    MutexGuard::Model(cv.wait(g).unwrap_or_else(PoisonError::into_inner))
                }
                (Condvar::Real(cv), MutexGuard::Real(mut g)) => {
                    cv.wait(&mut g);
                    MutexGuard::Real(g)
                }
                _ => unreachable!("a condvar and its mutex are made in the same context"),
            }
        }

        pub(crate) fn notify_all(&self) {
            match self {
                Condvar::Model(cv) => cv.notify_all(),
                Condvar::Real(cv) => {
                    cv.notify_all();
                }
            }
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            match self {
                MutexGuard::Model(g) => g,
                MutexGuard::Real(g) => g,
            }
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            match self {
                MutexGuard::Model(g) => g,
                MutexGuard::Real(g) => g,
            }
        }
    }
}
