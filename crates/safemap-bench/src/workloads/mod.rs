//! One module per workload. Each has a `Config` (with the spec's defaults),
//! a `Row` (one JSON line, field names as in `benchmarks.md`) and a `run`
//! that measures every variant and hands each row to a callback as soon as
//! it is measured.

pub mod delete_cost;
pub mod incident;
pub mod memory;
pub mod mix_clock;
pub mod mixes;
pub mod references;
pub mod server;
