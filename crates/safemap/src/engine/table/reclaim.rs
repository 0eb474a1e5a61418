//! Epoch-based reclamation in which readers only announce themselves and
//! writers do all the work.
//!
//! * A reader **pins**: it copies the global epoch into its thread's slot with
//!   one SeqCst swap (nested pins on one thread reuse the outer one), and
//!   makes its loads of the table SeqCst (plain loads on x86).
//!   Unpinning stores [`IDLE`]. A reader never frees, never waits and never
//!   loops (except once per thread, to find a free slot on its first pin).
//! * A writer that unlinks a node or an array tags it with
//!   [`retire_epoch`] (read after the unlink) and keeps it in its shard's
//!   garbage list. From time to time it asks [`reclaimable_below`], which
//!   advances the epoch and scans the slots; garbage tagged strictly below the
//!   answer is freed by the writer.
//!
//! Why a reader can never hold freed memory. A writer `W` unlinks `P` (store
//! `U`), issues a SeqCst fence `F_w` and reads the epoch `t` (SeqCst): `P` is
//! tagged `t`. A reader `R` reads the epoch `e` (SeqCst), announces it with a
//! SeqCst swap `A_r`, then loads `P` (SeqCst load `L`). The collector `C` (`W`
//! itself, or a later holder of the shard's lock: either way `F_w` happens
//! before `C`'s fence `F_c`, so `F_w` precedes it in the total order `S` of
//! SeqCst operations) advances the epoch, fences (`F_c`), reads every slot
//! (SeqCst) and frees `P` only if each slot is `IDLE` or above `t`.
//! (C++20 [atomics.order]; every epoch modification is a SeqCst RMW.)
//!
//! * If `F_w` precedes `L` in `S`, `L` observes `U` or later (a SeqCst load
//!   after a SeqCst fence that follows the store): `R` never loads `P`.
//! * Otherwise `L` precedes `F_w`, so `R`'s epoch read precedes `W`'s in `S`:
//!   `W` reads the same or a later value, `e <= t`. And `A_r` precedes `L`,
//!   `F_w`, `F_c` and `C`'s SeqCst read of the slot, which therefore observes
//!   `A_r` or a later store of `R`: `e` (so `P` is kept), `IDLE` from `R`'s
//!   unpin (a Release store read by the Acquire-or-stronger slot read: `R`'s
//!   reads happen before the free), or a later pin of `R`, to which the same
//!   two cases apply.
//!
//! Under loom the announcement is a store plus a SeqCst fence (loom models
//! SeqCst accesses as AcqRel but SeqCst fences in full), and the argument is
//! the fence–fence form of the same one.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr;

use crossbeam_utils::CachePadded;

use super::primitive::{AtomicBool, AtomicPtr, AtomicU64, Ordering, fence};

/// A slot's epoch while its thread holds no pin. Real epochs start at 1.
const IDLE: u64 = 0;

/// The epoch and the registry of reader slots, shared by every table of the
/// process (a pin protects entries of any table).
struct Global {
    epoch: AtomicU64,
    /// A push-only list of slots; a slot outlives its thread and is reused.
    /// Slots are never freed (one per thread that ever pinned, at most the
    /// peak number of live threads), not even under loom, where the thread
    /// locals of an execution are dropped after its statics.
    slots: AtomicPtr<Slot>,
}

/// One thread's announcement.
struct Slot {
    /// [`IDLE`], or the epoch read at the start of the thread's outermost pin.
    epoch: CachePadded<AtomicU64>,
    /// Whether a live thread owns the slot.
    owned: AtomicBool,
    /// The next slot of the registry: written before the slot is published,
    /// never after.
    next: *mut Slot,
}

impl Global {
    #[cfg(safemap_loom)]
    fn new() -> Self {
        Global {
            epoch: AtomicU64::new(1),
            slots: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

#[cfg(not(safemap_loom))]
static GLOBAL: Global = Global {
    epoch: AtomicU64::new(1),
    slots: AtomicPtr::new(ptr::null_mut()),
};

#[cfg(not(safemap_loom))]
fn global() -> &'static Global {
    &GLOBAL
}

#[cfg(safemap_loom)]
loom::lazy_static! {
    static ref GLOBAL: Global = Global::new();
}

#[cfg(safemap_loom)]
fn global() -> &'static Global {
    &GLOBAL
}

// SAFETY (for both impls): a `Slot`'s only non-atomic field, `next`, is
// written before the slot is published (Release in `acquire_slot`) and never
// after, so sharing it between threads is sound.
unsafe impl Send for Slot {}
unsafe impl Sync for Slot {}

/// A thread's handle: its slot (found on the first pin) and pin depth.
struct Local {
    slot: Cell<*const Slot>,
    depth: Cell<usize>,
}

impl Local {
    const fn new() -> Self {
        Local {
            slot: Cell::new(ptr::null()),
            depth: Cell::new(0),
        }
    }

    fn slot(&self) -> &'static Slot {
        let mut slot = self.slot.get();
        if slot.is_null() {
            slot = acquire_slot();
            self.slot.set(slot);
        }
        // SAFETY: slots are never freed, and this thread owns this one until
        // `Local` drops.
        unsafe { &*slot }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let slot = self.slot.get();
        if !slot.is_null() {
            // SAFETY: as in `Local::slot`.
            let slot = unsafe { &*slot };
            // Release: a collector that reads IDLE (Acquire) is ordered after
            // every read this thread made while pinned.
            slot.epoch.store(IDLE, Ordering::Release);
            // Release pairs with the Acquire CAS of the next owner.
            slot.owned.store(false, Ordering::Release);
        }
    }
}

#[cfg(not(safemap_loom))]
thread_local! {
    static LOCAL: Local = const { Local::new() };
}

#[cfg(safemap_loom)]
loom::thread_local! {
    static LOCAL: Local = Local::new();
}

/// Finds a free slot or registers a new one (once per thread).
fn acquire_slot() -> *const Slot {
    let global = global();
    // Acquire pairs with the Release CAS that published each slot (its `next`).
    let mut p = global.slots.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: slots are never freed.
        let slot = unsafe { &*p };
        // Acquire pairs with the Release store of the previous owner's exit.
        if slot
            .owned
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return p;
        }
        p = slot.next;
    }
    let fresh = Box::into_raw(Box::new(Slot {
        epoch: CachePadded::new(AtomicU64::new(IDLE)),
        owned: AtomicBool::new(true),
        next: ptr::null_mut(),
    }));
    let mut head = global.slots.load(Ordering::Relaxed);
    loop {
        // SAFETY: `fresh` is not yet published: this thread is its only user.
        unsafe { (*fresh).next = head };
        // Release publishes `next` (and the slot's initial state).
        match global
            .slots
            .compare_exchange_weak(head, fresh, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => return fresh,
            Err(current) => head = current,
        }
    }
}

/// Proof that the current thread is pinned: nothing retired after the pin
/// began is freed while it lives. Not `Send`: a pin belongs to its thread.
#[must_use = "a guard protects reads only while it lives"]
pub(crate) struct Guard<'t> {
    _not_send: PhantomData<*const ()>,
    _table: PhantomData<&'t ()>,
}

impl Guard<'_> {
    pub(super) fn pin() -> Self {
        LOCAL.with(|local| {
            let depth = local.depth.get();
            if depth == 0 {
                let slot = local.slot();
                let epoch = global().epoch.load(Ordering::SeqCst);
                announce(slot, epoch);
            }
            local.depth.set(depth + 1);
        });
        Guard {
            _not_send: PhantomData,
            _table: PhantomData,
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // `try_with`: a guard dropped while the thread's locals are torn down
        // finds its slot already released by `Local::drop`.
        let _ = LOCAL.try_with(|local| {
            let depth = local.depth.get() - 1;
            local.depth.set(depth);
            if depth == 0 {
                // Release: a collector that reads IDLE (Acquire) is ordered
                // after every read made under this pin.
                local.slot().epoch.store(IDLE, Ordering::Release);
            }
        });
    }
}

/// Announces `epoch` in `slot`, ordered before every load of the pin.
///
/// A SeqCst swap (one locked `xchg` on x86, about half the cost of the
/// `mfence` a fence compiles to), followed by the read side's SeqCst loads
/// (plain loads on x86): see the module documentation for why that suffices.
#[cfg(not(safemap_loom))]
#[inline(always)]
fn announce(slot: &Slot, epoch: u64) {
    slot.epoch.swap(epoch, Ordering::SeqCst);
}

/// Under loom (which models SeqCst accesses as AcqRel but SeqCst fences in
/// full): a store and a SeqCst fence `F_r`, the fence–fence form of the same
/// argument.
#[cfg(safemap_loom)]
fn announce(slot: &Slot, epoch: u64) {
    // Relaxed: the SeqCst fence right after orders it before the pin's loads.
    slot.epoch.store(epoch, Ordering::Relaxed);
    fence(Ordering::SeqCst);
}

/// The tag of garbage unlinked (by this thread) before the call.
pub(super) fn retire_epoch() -> u64 {
    // SeqCst fence `F_w` and SeqCst load: see the module documentation.
    fence(Ordering::SeqCst);
    global().epoch.load(Ordering::SeqCst)
}

/// Garbage tagged strictly below the answer is held by no reader. Advances
/// the epoch, so that later pins do not hold back what is retired now.
pub(super) fn reclaimable_below() -> u64 {
    let global = global();
    let now = global.epoch.fetch_add(1, Ordering::SeqCst) + 1;
    // SeqCst fence `F_c`: see the module documentation.
    fence(Ordering::SeqCst);
    let mut below = now;
    // Acquire pairs with the Release CAS that published each slot.
    let mut p = global.slots.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: slots are never freed.
        let slot = unsafe { &*p };
        // SeqCst: the read of `A_r` in the module documentation (it also
        // acquires the Release store of IDLE in unpin).
        let epoch = slot.epoch.load(Ordering::SeqCst);
        if epoch != IDLE {
            below = below.min(epoch);
        }
        p = slot.next;
    }
    below
}
