//! The concurrent table under the map, and the read counters beside it.
//!
//! The engine is our own sharded open-addressing table (`table`): lock-free
//! reads, one writer per shard (the holder of the key's stripe), reclamation
//! on the writer side. It was chosen by measurement (see `docs/design.md`).
//! This module is the only place that knows it, and the only one with
//! `unsafe` code: everything above sees [`Table`], whose mutating methods
//! demand proof that the caller holds the key's lock ([`KeyLocks`]).

mod counters;
mod key_locks;
#[allow(unsafe_code)]
mod table;

pub(crate) use counters::{ReadCounters, ShardedCounters};
pub(crate) use key_locks::{KeyGuard, KeyLocks};
pub(crate) use table::{Guard, Table};
