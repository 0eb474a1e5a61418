//! `safemap-bench-alloc`: the delete-cost workload behind a counting global
//! allocator (stats_alloc), printing one JSON line per variant. Kept apart
//! from `safemap-bench` so that the allocator's shared counters never slow
//! the throughput workloads; `safemap-bench delete-cost` runs it.

#![forbid(unsafe_code)]

use std::alloc::System;

use clap::Parser;
use safemap_bench::progress::Progress;
use safemap_bench::workloads::delete_cost::{self, AllocCounter};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Reads the counting allocator.
struct Counted;

impl AllocCounter for Counted {
    fn totals(&self) -> Option<(u64, u64)> {
        let s = GLOBAL.stats();
        let bytes = s.bytes_allocated as u64 + s.bytes_reallocated.max(0) as u64;
        Some(((s.allocations + s.reallocations) as u64, bytes))
    }
}

/// Options (the same as `safemap-bench delete-cost`).
#[derive(Parser)]
#[command(name = "safemap-bench-alloc")]
struct Args {
    /// Deletes per round.
    #[arg(long, default_value_t = 100_000)]
    ops: u64,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

fn main() {
    let args = Args::parse();
    let cfg = delete_cost::Config {
        ops: args.ops.max(1),
        repeats: args.repeats.max(1),
    };
    delete_cost::run(&cfg, &Counted, &Progress::hidden(), |row| {
        if let Ok(line) = serde_json::to_string(row) {
            println!("{line}");
        }
    });
}
