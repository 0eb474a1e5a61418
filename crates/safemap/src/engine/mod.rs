//! The concurrent table under the map, and the read counters beside it.
//!
//! Two engines share one API ([`Table`]: `guard`, `get`, `len`, `iter`,
//! `publish`, `unpublish`, and the key locks), chosen at build time:
//!
//! * by default [`papaya`] (`papaya_table`): lock-free reads over an
//!   open-addressed table with incremental resizing and epoch-style
//!   reclamation (`seize`);
//! * with the cargo feature `sharded-table`, our own table (`table`): shards
//!   aligned with the key stripes, one writer per shard, lock-free readers,
//!   reclamation on the writer side, shrinking. It is complete and tested
//!   (unit tests, loom models, valgrind) but did not measurably win, so it is
//!   not the default (figures in `docs/design.md`).
//!
//! The sharded table is the crate's only `unsafe` code, and it is compiled
//! (and tested) in every build. Everything above sees [`Table`], whose mutating
//! methods demand proof that the caller holds the key's lock ([`KeyLocks`]).

mod counters;
mod key_locks;
#[cfg(not(feature = "sharded-table"))]
mod papaya_table;
#[allow(unsafe_code)]
#[cfg_attr(not(feature = "sharded-table"), allow(dead_code))]
mod table;

pub(crate) use counters::{ReadCounters, ShardedCounters};
pub(crate) use key_locks::{KeyGuard, KeyLocks};
#[cfg(not(feature = "sharded-table"))]
pub(crate) use papaya_table::{Guard, Table};
#[cfg(feature = "sharded-table")]
pub(crate) use table::{Guard, Table};
