//! The table under the map: shards of open-addressed arrays, one writer per
//! shard at a time, lock-free readers, reclamation on the writer side.
//!
//! # Layout
//!
//! A key's hash (the map's `BuildHasher`) picks its shard from its low
//! [`SHARD_BITS`] bits; the shard is also the key's write stripe
//! ([`KeyLocks`]), so a writer holding the stripe is the only writer of the
//! shard. A shard is an atomic pointer to an [`Array`] (null while empty): a
//! power-of-two number of slots, probed linearly from the hash's next bits.
//! A slot is null (never used), the tombstone (a removed entry) or a pointer
//! to a boxed [`Node`] holding the key and its `Versioned` value. Beside the
//! slots, one control byte per slot ([`EMPTY`], [`DELETED`] or a 7-bit hash
//! tag with the top bit set) lets a probe run over a compact array (one byte
//! a slot, which stays in cache where the slots do not) and load a slot only
//! when its tag matches: a lookup of an absent key touches no slot. On 64-bit
//! x86 and ARM the pointer carries 16 bits of the key's hash in its unused top
//! bits ([`TAG_SHIFT`]), so a probe skips other keys' slots without loading
//! their nodes (each a cache miss).
//!
//! # Writes (holding the stripe)
//!
//! * an update stores the new node's pointer into the slot of the old one
//!   (Release): a reader sees the old node or the new one, never neither;
//! * an insert fills the first tombstone or null slot of the key's probe;
//! * a removal stores [`TOMBSTONE`];
//! * when an insert would fill more than 3/4 of the slots (tombstones
//!   included), or a removal leaves less than 1/8 of them live, the writer
//!   builds a new array sized for the live entries, copies the node pointers
//!   into it and swaps the shard's pointer. The old array is frozen from then
//!   on (nobody writes it again), so a reader or iterator still on it sees the
//!   shard as it was at the swap.
//!
//! Replaced nodes, removed nodes and old arrays are retired to the shard's
//! garbage list and freed by a later writer of the shard once no reader can
//! hold them (see [`reclaim`]). Readers never free, wait or retry.
//!
//! # Reads
//!
//! A read pins (see [`reclaim`]), loads the shard's array (Acquire), probes
//! until it finds the key or a null slot: at most the array's length, and in
//! practice one or two slots since arrays stay at most 3/4 full.

mod primitive;
mod reclaim;

#[cfg(all(test, safemap_loom))]
mod loom_tests;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::cell::UnsafeCell;
use std::hash::{BuildHasher, Hash};
use std::ptr::{self, NonNull};

use crossbeam_utils::CachePadded;

use self::primitive::{AtomicPtr, AtomicU8, AtomicUsize, Liveness, Ordering};
pub(crate) use self::reclaim::Guard;
use super::{KeyGuard, KeyLocks};
use crate::entry::Versioned;

/// Bits of the hash that pick the shard (and the write stripe).
#[cfg(not(safemap_loom))]
pub(crate) const SHARD_BITS: u32 = 8;
#[cfg(safemap_loom)]
pub(crate) const SHARD_BITS: u32 = 1;
/// The number of shards, equal to the number of key stripes.
pub(crate) const SHARDS: usize = 1 << SHARD_BITS;
/// The smallest array a shard holds (tiny under loom, so that its tests
/// reach a resize in a few steps).
#[cfg(not(safemap_loom))]
const MIN_SLOTS: usize = 8;
#[cfg(safemap_loom)]
const MIN_SLOTS: usize = 2;
/// Garbage a shard's writer lets accumulate before it tries to free some
/// (every time under loom, so that its tests free while readers run).
#[cfg(not(safemap_loom))]
const COLLECT_EVERY: usize = 32;
#[cfg(safemap_loom)]
const COLLECT_EVERY: usize = 1;

/// A key and its entry; immutable once published.
struct Node<K, V> {
    key: K,
    value: Versioned<V>,
    liveness: Liveness,
}

/// A shard's slots.
struct Array<K, V> {
    /// `slots.len() - 1` (a power of two minus one).
    mask: usize,
    /// One control byte per slot: [`EMPTY`], [`DELETED`] or [`control_of`]
    /// the key's hash. A slot's byte is written after its pointer (both
    /// Release), and goes from `EMPTY` to anything but never back: a probe
    /// that meets `EMPTY` has passed every slot the key could be in.
    control: Box<[AtomicU8]>,
    slots: Box<[AtomicPtr<Node<K, V>>]>,
}

/// Control byte of a slot that was never used: probes stop here.
const EMPTY: u8 = 0;
/// Control byte of a removed entry's slot (its pointer is the tombstone).
const DELETED: u8 = 1;

/// The control byte of a key with `hash`: 7 bits of it, top bit set.
fn control_of(hash: u64) -> u8 {
    0x80 | (hash >> 57) as u8
}

/// What a shard's writer owns besides the slots. Accessed only by the holder
/// of the shard's stripe (each access takes a `&KeyGuard` of that stripe).
struct WriterState<K, V> {
    /// Live entries plus tombstones in the current array.
    used: usize,
    /// Unlinked nodes and arrays, with the epoch they were retired at.
    garbage: Vec<(u64, Retired<K, V>)>,
}

enum Retired<K, V> {
    Node(*mut Node<K, V>),
    Array(*mut Array<K, V>),
}

/// The writer side of a shard, on its own cache line (readers never touch it).
struct Writer<K, V> {
    /// Live entries; written by the shard's writer, read by `len`.
    live: AtomicUsize,
    state: UnsafeCell<WriterState<K, V>>,
}

/// The concurrent table of versioned entries.
///
/// Invariant: every mutation of a key happens while the caller holds that
/// key's stripe of the table's [`KeyLocks`] (each mutator takes a `&KeyGuard`
/// as proof, and checks it is this table's guard of the key's stripe). Writes
/// to one shard are therefore serialised, which makes every
/// read-check-write sequence above this layer atomic, while readers never take
/// any lock.
pub(crate) struct Table<K, V, S> {
    /// The read side: each shard's array (null while the shard is empty).
    heads: Box<[AtomicPtr<Array<K, V>>]>,
    writers: Box<[CachePadded<Writer<K, V>>]>,
    locks: KeyLocks,
    hasher: S,
}

// SAFETY: the table owns its keys and values (boxed nodes reachable from the
// arrays and garbage lists) and hands out `&K`/`&Versioned<V>` to any thread
// that holds a pin, so moving or sharing it needs `K` and `V` to be `Send`
// and `Sync` (as `papaya` or `dashmap` require). Writer state is accessed only
// under the shard's stripe lock (see `Table::state`).
unsafe impl<K: Send + Sync, V: Send + Sync, S: Send> Send for Table<K, V, S> {}
// SAFETY: as above; `S` is shared to hash from several threads.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Sync> Sync for Table<K, V, S> {}

/// A null slot that was never used; probes stop here.
const fn empty<K, V>() -> *mut Node<K, V> {
    ptr::null_mut()
}

/// The marker of a removed entry: an aligned address no allocation has.
fn tombstone<K, V>() -> *mut Node<K, V> {
    NonNull::dangling().as_ptr()
}

impl<K, V> Array<K, V> {
    fn with_slots(n: usize) -> Box<Self> {
        debug_assert!(n.is_power_of_two());
        Box::new(Array {
            mask: n - 1,
            control: (0..n).map(|_| AtomicU8::new(EMPTY)).collect(),
            slots: (0..n).map(|_| AtomicPtr::new(empty())).collect(),
        })
    }
}

/// Slots for `live` entries: at most half full after a resize.
fn slots_for(live: usize) -> usize {
    (live * 2).next_power_of_two().max(MIN_SLOTS)
}

impl<K, V> Retired<K, V> {
    /// Frees the retired memory.
    ///
    /// # Safety
    ///
    /// * no reader can still hold it (its tag is below `reclaimable_below`,
    ///   or the table is being dropped);
    /// * it is freed once (it leaves the garbage list as it is freed).
    unsafe fn free(self) {
        match self {
            Retired::Node(node) => {
                // SAFETY: per the function's contract.
                let node = unsafe { Box::from_raw(node) };
                node.liveness.free();
                drop(node);
            }
            // An array is freed without its nodes: they are live in the
            // current array or retired on their own.
            // SAFETY: per the function's contract.
            Retired::Array(array) => drop(unsafe { Box::from_raw(array) }),
        }
    }
}

impl<K, V, S> Table<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    pub(crate) fn new(capacity: usize, hasher: S) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Table {
            heads: (0..SHARDS)
                .map(|_| {
                    let array = if per_shard == 0 {
                        ptr::null_mut()
                    } else {
                        Box::into_raw(Array::with_slots(slots_for(per_shard)))
                    };
                    AtomicPtr::new(array)
                })
                .collect(),
            writers: (0..SHARDS)
                .map(|_| {
                    CachePadded::new(Writer {
                        live: AtomicUsize::new(0),
                        state: UnsafeCell::new(WriterState {
                            used: 0,
                            garbage: Vec::new(),
                        }),
                    })
                })
                .collect(),
            locks: KeyLocks::new(SHARDS),
            hasher,
        }
    }

    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The stripe (and shard) of `key`.
    pub(crate) fn stripe_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        shard_of(self.hash(key))
    }

    /// Locks `key`'s stripe.
    pub(crate) fn lock<Q: Hash + ?Sized>(&self, key: &Q) -> KeyGuard<'_> {
        self.locks.lock_stripe(self.stripe_of(key))
    }

    /// Locks stripe `stripe` (from [`Table::stripe_of`]).
    pub(crate) fn lock_stripe(&self, stripe: usize) -> KeyGuard<'_> {
        self.locks.lock_stripe(stripe)
    }

    /// Pins the current thread: entries seen through this guard stay valid
    /// until it drops.
    pub(crate) fn guard(&self) -> Guard<'_> {
        Guard::pin()
    }

    /// The entry under `key`.
    pub(crate) fn get<'g, Q>(
        &'g self,
        key: &Q,
        _guard: &'g Guard<'_>,
    ) -> Option<(&'g K, &'g Versioned<V>)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        // SeqCst: the pin's ordering argument (see `reclaim`) needs the read
        // side's loads in the SeqCst order (plain loads on x86); it also
        // acquires the Release store that published the array.
        let array = self.heads[shard_of(hash)].load(Ordering::SeqCst);
        if array.is_null() {
            return None;
        }
        // SAFETY: the guard pins this thread; an array is retired only after
        // it is unlinked from `heads` and freed only when no pin that could
        // have loaded it remains (see `reclaim`).
        let array = unsafe { &*array };
        let tag = tag_of(hash);
        let control = control_of(hash);
        let mut i = probe_start(hash, array.mask);
        for _ in 0..=array.mask {
            // Acquire pairs with the Release store of the byte, made after
            // the slot's pointer.
            let byte = array.control[i].load(Ordering::Acquire);
            if byte == EMPTY {
                return None;
            }
            if byte != control {
                i = (i + 1) & array.mask;
                continue;
            }
            // SeqCst: as for the array; it also acquires the Release store
            // that published the node.
            let slot = array.slots[i].load(Ordering::SeqCst);
            if slot.addr() & TAG_MASK == tag && !slot.is_null() && slot != tombstone() {
                // SAFETY: as for the array: a node is retired after its slot
                // stops pointing to it and freed only when no pin remains that
                // could have loaded it. Nodes are immutable once published.
                let node = unsafe { &*untagged(slot) };
                node.liveness.read();
                if node.key.borrow() == key {
                    return Some((&node.key, &node.value));
                }
            }
            i = (i + 1) & array.mask;
        }
        None
    }

    /// The number of entries (a moving figure under concurrent writes).
    pub(crate) fn len(&self) -> usize {
        self.writers
            .iter()
            // Relaxed: a statistic; each shard's count is exact when written.
            .map(|w| w.live.load(Ordering::Relaxed))
            .sum()
    }

    /// Every entry, shard by shard, from the arrays current when the iteration
    /// starts (one pointer per shard, loaded at once). An array replaced
    /// meanwhile stays valid and frozen while the guard lives, so an entry
    /// present throughout is yielded exactly once (possibly with a value
    /// replaced since), and an iteration ends even if every step inserts: it
    /// sees at most the slots that existed when it started.
    pub(crate) fn iter<'g>(&'g self, _guard: &'g Guard<'_>) -> Iter<'g, K, V> {
        let arrays = self
            .heads
            .iter()
            // SeqCst: as in `Table::get`.
            .map(|head| head.load(Ordering::SeqCst))
            .filter(|array| !array.is_null())
            // SAFETY: as in `Table::get`: the iterator borrows a guard.
            .map(|array| unsafe { &*array })
            .collect::<Vec<_>>()
            .into_iter();
        Iter {
            arrays,
            array: None,
            slot: 0,
        }
    }

    /// Publishes `value` under `key`, replacing any previous entry in one step:
    /// a concurrent reader sees either the old entry or the new one, never neither.
    ///
    /// # Panics
    ///
    /// If `held` is not this table's guard of `key`'s stripe (a bug).
    pub(crate) fn publish(
        &self,
        held: &KeyGuard<'_>,
        key: K,
        value: Versioned<V>,
        _guard: &Guard<'_>,
    ) {
        let hash = self.hash(&key);
        let shard = shard_of(hash);
        self.check(held, shard);
        let node = Box::into_raw(Box::new(Node {
            key,
            value,
            liveness: Liveness::default(),
        }));
        // SAFETY: `held` is this table's guard of `shard`'s stripe (checked).
        let state = unsafe { self.state(shard) };
        // SAFETY: `node` is ours until published.
        let key = unsafe { &(*node).key };
        let node = tagged(node, tag_of(hash));
        match self.find(shard, hash, key) {
            Found::At(array, i, old) => {
                // Release publishes the node's contents to readers (their
                // Acquire load of the slot). The control byte stays: same key.
                array.slots[i].store(node, Ordering::Release);
                state
                    .garbage
                    .push((reclaim::retire_epoch(), Retired::Node(old)));
            }
            Found::Absent(mut array, mut free) => {
                let fills_null = free.is_none_or(|(_, was_null)| was_null);
                if array.is_none_or(|a| fills_null && (state.used + 1) * 4 > (a.mask + 1) * 3) {
                    let live = self.writers[shard].live.load(Ordering::Relaxed);
                    self.resize(shard, state, slots_for(live + 1));
                    (array, free) = match self.find(shard, hash, key) {
                        Found::Absent(array, free) => (array, free),
                        Found::At(..) => unreachable!("the key was absent before the resize"),
                    };
                }
                let (Some(array), Some((i, was_null))) = (array, free) else {
                    unreachable!("a resized array has a free slot on every probe");
                };
                // Release: as above; then the control byte (Release), so a
                // reader that matches it finds the pointer.
                array.slots[i].store(node, Ordering::Release);
                array.control[i].store(control_of(hash), Ordering::Release);
                state.used += usize::from(was_null);
                // Relaxed: a statistic, and only this writer writes it.
                self.writers[shard].live.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.maybe_collect(state);
    }

    /// Removes `key`; readers that already hold the entry keep it until their
    /// guard drops.
    ///
    /// # Panics
    ///
    /// If `held` is not this table's guard of `key`'s stripe (a bug).
    pub(crate) fn unpublish<Q>(&self, held: &KeyGuard<'_>, key: &Q, _guard: &Guard<'_>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let shard = shard_of(hash);
        self.check(held, shard);
        // SAFETY: `held` is this table's guard of `shard`'s stripe (checked).
        let state = unsafe { self.state(shard) };
        let Found::At(array, i, old) = self.find(shard, hash, key) else {
            return;
        };
        // Release: readers that see the tombstone see nothing else of ours,
        // but a later re-insert into this slot must follow it.
        array.slots[i].store(tombstone(), Ordering::Release);
        // Release: as for the slot.
        array.control[i].store(DELETED, Ordering::Release);
        state
            .garbage
            .push((reclaim::retire_epoch(), Retired::Node(old)));
        let writer = &self.writers[shard];
        // Relaxed: a statistic, and only this writer writes it.
        let live = writer.live.fetch_sub(1, Ordering::Relaxed) - 1;
        let slots = array.mask + 1;
        // An emptied shard keeps its smallest array (`shrink_to_fit` frees
        // it), so that a shard going 0 -> 1 -> 0 does not allocate each time.
        if slots > MIN_SLOTS && live * 8 < slots {
            self.resize(shard, state, slots_for(live));
        }
        self.maybe_collect(state);
    }

    /// Shrinks every shard's array to the size its live entries need, and
    /// frees the retired memory no reader holds.
    pub(crate) fn shrink_to_fit(&self) {
        for shard in 0..SHARDS {
            let held = self.locks.lock_stripe(shard);
            self.check(&held, shard);
            // SAFETY: `held` is this table's guard of `shard`'s stripe.
            let state = unsafe { self.state(shard) };
            // Relaxed: only the holder of the stripe writes it.
            let live = self.writers[shard].live.load(Ordering::Relaxed);
            let want = if live == 0 { 0 } else { slots_for(live) };
            // Relaxed: only the holder of the stripe writes `heads[shard]`.
            let current = self.heads[shard].load(Ordering::Relaxed);
            // SAFETY: the current array is live while we hold the stripe.
            let slots = unsafe { current.as_ref() }.map_or(0, |a| a.mask + 1);
            if want < slots || state.used > live {
                self.resize(shard, state, want);
            }
            if !state.garbage.is_empty() {
                collect(state);
            }
        }
    }

    /// Panics unless `held` is this table's guard of stripe `shard`: the table's
    /// soundness rests on one writer per shard.
    fn check(&self, held: &KeyGuard<'_>, shard: usize) {
        assert!(
            held.is_of(&self.locks, shard),
            "a table mutation without its key's stripe"
        );
    }

    /// The writer state of `shard`.
    ///
    /// # Safety
    ///
    /// The caller holds `shard`'s stripe of this table (checked by `check`)
    /// and does not hold another reference to this state. `KeyGuard` is not
    /// `Sync`, so the holder's accesses all come from one thread.
    #[allow(clippy::mut_from_ref)]
    unsafe fn state(&self, shard: usize) -> &mut WriterState<K, V> {
        // SAFETY: per the function's contract.
        unsafe { &mut *self.writers[shard].state.get() }
    }

    /// Where `key` is in `shard` (the caller holds the shard's stripe).
    fn find<Q>(&self, shard: usize, hash: u64, key: &Q) -> Found<'_, K, V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // Relaxed: only the holder of the stripe writes `heads[shard]` and
        // the slots, and the stripe's mutex orders its holders.
        let array = self.heads[shard].load(Ordering::Relaxed);
        // SAFETY: the current array is freed only after it is replaced, which
        // only the holder of the stripe (the caller) does.
        let Some(array) = (unsafe { array.as_ref() }) else {
            return Found::Absent(None, None);
        };
        let mut free = None;
        let tag = tag_of(hash);
        let mut i = probe_start(hash, array.mask);
        for _ in 0..=array.mask {
            // Relaxed: as above.
            let slot = array.slots[i].load(Ordering::Relaxed);
            if slot.is_null() {
                return Found::Absent(Some(array), free.or(Some((i, true))));
            }
            if slot == tombstone() {
                free = free.or(Some((i, false)));
            } else if slot.addr() & TAG_MASK == tag {
                let node = untagged(slot);
                // SAFETY: a node in the current array is live; only the
                // caller could retire it.
                if unsafe { &(*node).key }.borrow() == key {
                    return Found::At(array, i, node);
                }
            }
            i = (i + 1) & array.mask;
        }
        Found::Absent(Some(array), free)
    }

    /// Replaces `shard`'s array by one of `slots` slots (none: the shard
    /// becomes empty) holding its live entries, and retires the old array.
    fn resize(&self, shard: usize, state: &mut WriterState<K, V>, slots: usize) {
        // Relaxed: only the holder of the stripe (the caller) writes it.
        let old = self.heads[shard].load(Ordering::Relaxed);
        let new = if slots == 0 {
            ptr::null_mut()
        } else {
            let new = Array::with_slots(slots);
            // SAFETY: the current array is live while we hold the stripe.
            if let Some(old) = unsafe { old.as_ref() } {
                for slot in old.slots.iter() {
                    // Relaxed: only the holder of the stripe writes slots.
                    let node = slot.load(Ordering::Relaxed);
                    if node.is_null() || node == tombstone() {
                        continue;
                    }
                    // SAFETY: a node in the current array is live.
                    let hash = self.hash(unsafe { &(*untagged(node)).key });
                    let mut i = probe_start(hash, new.mask);
                    // Relaxed: `new` is not yet published.
                    while !new.slots[i].load(Ordering::Relaxed).is_null() {
                        i = (i + 1) & new.mask;
                    }
                    // Relaxed: published below by the Release store of `heads`.
                    // The slot value moves with its tag.
                    new.slots[i].store(node, Ordering::Relaxed);
                    new.control[i].store(control_of(hash), Ordering::Relaxed);
                }
            }
            Box::into_raw(new)
        };
        state.used = self.writers[shard].live.load(Ordering::Relaxed);
        // Release publishes the new array and its slots to readers (their
        // Acquire load of `heads`).
        self.heads[shard].store(new, Ordering::Release);
        if !old.is_null() {
            state
                .garbage
                .push((reclaim::retire_epoch(), Retired::Array(old)));
        }
    }

    fn maybe_collect(&self, state: &mut WriterState<K, V>) {
        if state.garbage.len() >= COLLECT_EVERY {
            collect(state);
        }
    }
}

/// Frees the garbage of a shard that no reader can hold any more.
fn collect<K, V>(state: &mut WriterState<K, V>) {
    let below = reclaim::reclaimable_below();
    let mut i = 0;
    while i < state.garbage.len() {
        if state.garbage[i].0 < below {
            let (_, retired) = state.garbage.swap_remove(i);
            // SAFETY: tagged below `reclaimable_below`, so no pin can hold it
            // (see `reclaim`); it left the list, so it is freed once.
            unsafe { retired.free() };
        } else {
            i += 1;
        }
    }
}

enum Found<'a, K, V> {
    /// The key is at slot `.1` of array `.0`, as node `.2` (untagged).
    At(&'a Array<K, V>, usize, *mut Node<K, V>),
    /// The key is absent; the current array (if any) and the first free slot
    /// of its probe (with whether that slot is null rather than a tombstone).
    Absent(Option<&'a Array<K, V>>, Option<(usize, bool)>),
}

fn shard_of(hash: u64) -> usize {
    (hash as usize) & (SHARDS - 1)
}

fn probe_start(hash: u64, mask: usize) -> usize {
    ((hash >> SHARD_BITS) as usize) & mask
}

/// Where a slot keeps its hash tag: the top 16 bits of a pointer, which user
/// space addresses leave zero on 64-bit x86 and ARM (Linux maps above 2^47 or
/// 2^48 only on request). Elsewhere slots carry no tag.
#[cfg(all(
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
const TAG_SHIFT: u32 = 48;
/// The bits of a slot that hold the tag (none where slots carry no tag).
#[cfg(all(
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
const TAG_MASK: usize = !((1 << TAG_SHIFT) - 1);
#[cfg(not(all(
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
const TAG_MASK: usize = 0;

/// The tag of a key with `hash`: never zero where tags exist, so that neither
/// null nor the tombstone (both untagged) matches it.
fn tag_of(hash: u64) -> usize {
    #[cfg(all(
        target_pointer_width = "64",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        (((hash >> TAG_SHIFT) as usize) | 1) << TAG_SHIFT
    }
    #[cfg(not(all(
        target_pointer_width = "64",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        let _ = hash;
        0
    }
}

/// `node` with `tag` in its top bits (provenance kept).
///
/// # Panics
///
/// If the allocator returned an address that uses the tag's bits (no 64-bit
/// x86 or ARM Linux does so unless asked by `mmap` hints).
fn tagged<K, V>(node: *mut Node<K, V>, tag: usize) -> *mut Node<K, V> {
    assert!(
        node.addr() & TAG_MASK == 0,
        "a node address uses the bits the table's hash tags need"
    );
    node.map_addr(|addr| addr | tag)
}

/// The node pointer of a slot's value (its tag removed).
fn untagged<K, V>(slot: *mut Node<K, V>) -> *mut Node<K, V> {
    slot.map_addr(|addr| addr & !TAG_MASK)
}

impl<K, V, S> Drop for Table<K, V, S> {
    fn drop(&mut self) {
        // `&mut self`: no guard borrows the table, no reader holds its entries.
        for head in self.heads.iter() {
            // Relaxed: we are the only user left.
            let array = head.load(Ordering::Relaxed);
            if array.is_null() {
                continue;
            }
            // SAFETY: the current array is ours alone now.
            let array = unsafe { Box::from_raw(array) };
            for slot in array.slots.iter() {
                let node = slot.load(Ordering::Relaxed);
                if !node.is_null() && node != tombstone() {
                    // SAFETY: each live node is in exactly one slot of the
                    // current array, and not in any garbage list.
                    unsafe { Retired::Node(untagged(node)).free() };
                }
            }
        }
        for writer in self.writers.iter_mut() {
            for (_, retired) in writer.state.get_mut().garbage.drain(..) {
                // SAFETY: no reader is left; each retired item is listed once.
                unsafe { retired.free() };
            }
        }
    }
}

/// An iterator over a table's entries; see [`Table::iter`].
pub(crate) struct Iter<'g, K, V> {
    /// The shards' arrays at the start, still to visit.
    arrays: std::vec::IntoIter<&'g Array<K, V>>,
    array: Option<&'g Array<K, V>>,
    slot: usize,
}

impl<'g, K, V> Iterator for Iter<'g, K, V> {
    type Item = (&'g K, &'g Versioned<V>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(array) = self.array else {
                self.array = Some(self.arrays.next()?);
                self.slot = 0;
                continue;
            };
            if self.slot > array.mask {
                self.array = None;
                continue;
            }
            // SeqCst: as in `Table::get`.
            let node = array.slots[self.slot].load(Ordering::SeqCst);
            self.slot += 1;
            if !node.is_null() && node != tombstone() {
                // SAFETY: as in `Table::get`.
                let node = unsafe { &*untagged(node) };
                node.liveness.read();
                return Some((&node.key, &node.value));
            }
        }
    }
}
