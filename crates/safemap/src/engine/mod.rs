//! The concurrent table under the map, and the read counters beside it.
//!
//! The engine is [`papaya`]: lock-free reads over an open-addressed table with
//! incremental resizing and epoch-style reclamation (`seize`). It was chosen by
//! measurement (see `docs/design.md`). This module is the only place that knows
//! it: everything above sees [`Table`], whose mutating methods demand proof that
//! the caller holds the key's lock ([`KeyLocks`]).

mod counters;
mod key_locks;
mod table;

pub(crate) use counters::{ReadCounters, ShardedCounters};
pub(crate) use key_locks::{KeyGuard, KeyLocks};
pub(crate) use table::Table;
