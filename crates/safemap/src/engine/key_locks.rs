use std::hash::{BuildHasher, Hash};

use crossbeam_utils::CachePadded;

use crate::sync::{Mutex, MutexGuard};

/// Stripes of key locks: a key's writes hold the stripe its hash picks.
const STRIPES: usize = 256;

/// Per-key write locks, striped by hash.
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
pub(crate) struct KeyLocks {
    stripes: Box<[CachePadded<Mutex<()>>]>,
    /// Picks a key's stripe. Seeded per map: keys an attacker chose to share a
    /// stripe only serialise their own writes, never a reader.
    hasher: foldhash::fast::FixedState,
}

/// Proof that a key's stripe is held; the table's mutators demand it.
pub(crate) struct KeyGuard<'a> {
    _held: MutexGuard<'a, ()>,
}

impl KeyLocks {
    pub(crate) fn new() -> Self {
        KeyLocks {
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(Mutex::new(())))
                .collect(),
            hasher: foldhash::fast::FixedState::with_seed(stripe_seed()),
        }
    }

    /// Locks `key`'s stripe.
    pub(crate) fn lock<Q: Hash + ?Sized>(&self, key: &Q) -> KeyGuard<'_> {
        self.lock_stripe(self.stripe_of(key))
    }

    /// The stripe `key` belongs to.
    pub(crate) fn stripe_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        self.hasher.hash_one(key) as usize % STRIPES
    }

    /// Locks stripe `stripe` (from [`KeyLocks::stripe_of`]).
    pub(crate) fn lock_stripe(&self, stripe: usize) -> KeyGuard<'_> {
        KeyGuard {
            _held: self.stripes[stripe].lock(),
        }
    }
}

/// A random seed per map; a fixed one under the model checker, whose replays
/// need the same behaviour for the same schedule.
fn stripe_seed() -> u64 {
    if cfg!(feature = "shuttle") {
        0
    } else {
        std::hash::RandomState::new().hash_one(0u64)
    }
}
