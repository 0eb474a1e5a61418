//! The atomics of the table and its reclaimer: std's, or loom's under
//! `--cfg safemap_loom` (the loom tests of `loom_tests.rs` explore their orderings).

#[cfg(safemap_loom)]
pub(super) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, fence,
};
#[cfg(not(safemap_loom))]
pub(super) use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, fence,
};

pub(super) use std::sync::atomic::Ordering;

/// Marks a node's memory as read (by a reader) or about to be freed (by the
/// reclaimer): under loom an access to a `loom::cell::UnsafeCell`, so that
/// loom reports a free that is not ordered after every read of the node as a
/// data race. Nothing otherwise.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    #[cfg(safemap_loom)]
    cell: loom::cell::UnsafeCell<()>,
}

impl Liveness {
    #[inline(always)]
    pub(super) fn read(&self) {
        #[cfg(safemap_loom)]
        self.cell.with(|_| ());
    }

    #[inline(always)]
    pub(super) fn free(&self) {
        #[cfg(safemap_loom)]
        self.cell.with_mut(|_| ());
    }
}
