use std::cell::Cell;
use std::marker::PhantomData;

use crossbeam_utils::CachePadded;

use crate::sync::{Mutex, MutexGuard};

/// Per-key write locks, striped by hash: a key's writes hold the stripe its
/// hash picks (the engine's table picks it; in the sharded table the stripe
/// is also the key's shard, so the holder of a stripe is the only writer of
/// that shard).
///
/// Invariant: every write to a key holds that key's stripe from reading the
/// current entry to publishing the new one, so a write's condition (expected
/// revision, absence, deny rules, breaker) still holds when it publishes.
/// Writes to keys of different stripes run in parallel; readers never take a
/// stripe. A thread holds at most one stripe at a time (so stripes cannot
/// deadlock among themselves), and takes the journal's sequencer only while
/// holding one (never the other way round). The one exception is a write
/// that involves references: it holds the journal's references lock, which
/// admits one such writer at a time, and takes several stripes (of several
/// maps) in a fixed order (see `refs`).
///
/// The papaya engine picks stripes with a per-map seeded hasher; the sharded
/// table with the map's own hasher (one hash per read). Either way keys an
/// attacker chose to share a stripe only serialise their own writes.
pub(crate) struct KeyLocks {
    stripes: Box<[CachePadded<Mutex<()>>]>,
}

/// Proof that a key's stripe is held; the table's mutators demand it.
///
/// Not `Sync` (nor `Send`): the table lets the holder's thread alone use the
/// shard's writer state.
pub(crate) struct KeyGuard<'a> {
    _held: MutexGuard<'a, ()>,
    locks: &'a KeyLocks,
    stripe: usize,
    _not_sync: PhantomData<Cell<()>>,
}

impl KeyLocks {
    pub(crate) fn new(stripes: usize) -> Self {
        KeyLocks {
            stripes: (0..stripes)
                .map(|_| CachePadded::new(Mutex::new(())))
                .collect(),
        }
    }

    /// Locks stripe `stripe`.
    pub(crate) fn lock_stripe(&self, stripe: usize) -> KeyGuard<'_> {
        KeyGuard {
            _held: self.stripes[stripe].lock(),
            locks: self,
            stripe,
            _not_sync: PhantomData,
        }
    }
}

impl KeyGuard<'_> {
    /// Whether this guard holds stripe `stripe` of `locks`.
    pub(crate) fn is_of(&self, locks: &KeyLocks, stripe: usize) -> bool {
        std::ptr::eq(self.locks, locks) && self.stripe == stripe
    }
}
