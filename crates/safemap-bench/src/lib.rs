//! # safemap-bench
//!
//! Measures safemap against the maps and servers its users would otherwise
//! pick, in one process run, on the same keys, and writes the figures as JSON
//! lines and (with `--report DIR`) as `BENCHMARKS.md` with SVG charts.
//!
//! - [`peers`]: one adapter per peer map (dashmap, papaya, scc, `RwLock<HashMap>`,
//!   `ArcSwap<HashMap>`, moka, hashbrown, safemap), each implementing the
//!   workload traits in the way that peer's users would write it.
//! - [`workloads`]: one module per workload (incident, mixes, delete-cost,
//!   memory, server), each a function from a configuration to result rows.
//! - [`report`]: Markdown tables with ratios to safemap, SVG charts and the
//!   machine description.
//!
//! Hasher policy: every in-process peer uses `foldhash::fast::RandomState`
//! ([`peers::Hasher`]), so that the figures compare maps, not hash functions.
//!
//! Benchmarks never fail for being slow: every function here returns figures;
//! errors are reserved for things that stop a workload from running at all.

#![forbid(unsafe_code)]

pub mod cli;
pub mod machine;
pub mod peers;
pub mod progress;
pub mod report;
pub mod rng;
pub mod stats;
pub mod workloads;
