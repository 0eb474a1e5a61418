//! Delete cost (the seed's chapter 2.5 table): what it costs to make one
//! entry go away, by the ways code does it. On a `HashMap<u64, Item>`:
//! `remove`, overwrite the value with `None` (a `HashMap<u64, Option<Item>>`),
//! reset a field (`item.active = false`); and safemap's `remove` with the
//! journal on and off (with dashmap and papaya `remove` for context).
//!
//! Each variant makes a map of `ops` entries (untimed), then deletes every
//! key once in key order (timed); nanoseconds and bytes allocated per
//! operation are the median over `repeats` rounds. Bytes are counted by a
//! counting global allocator that only the `safemap-bench-alloc` helper
//! binary installs, so that its shared counters never slow the other
//! workloads; without it the byte columns are empty.

use std::any::Any;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::peers::{self, Hasher};
use crate::progress::Progress;
use crate::stats::median;

/// The value every variant stores: a small row with a flag to reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// An id.
    pub id: u64,
    /// A price in cents.
    pub price: u64,
    /// A quantity.
    pub qty: u32,
    /// Whether the row is live (the field the reset variant clears).
    pub active: bool,
}

fn item(k: u64) -> Item {
    Item {
        id: k,
        price: k * 3,
        qty: (k % 100) as u32,
        active: true,
    }
}

/// Reads allocation counters: total allocations and total bytes allocated
/// since the process started.
pub trait AllocCounter {
    /// `(allocations, bytes)` so far, or `None` when not counted.
    fn totals(&self) -> Option<(u64, u64)>;
}

/// No counting allocator installed.
#[derive(Debug, Clone, Copy)]
pub struct NotCounted;

impl AllocCounter for NotCounted {
    fn totals(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Parameters of the delete-cost workload.
#[derive(Debug, Clone)]
pub struct Config {
    /// Entries deleted per round.
    pub ops: u64,
    /// Rounds per figure (the median is reported).
    pub repeats: usize,
}

impl Config {
    /// 100 000 deletes, median of 5 rounds.
    pub fn defaults() -> Self {
        Self {
            ops: 100_000,
            repeats: 5,
        }
    }
}

/// One JSON line of the delete-cost workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// Always `delete-cost`.
    pub workload: String,
    /// How the entry goes away, e.g. `hashmap-remove`.
    pub variant: String,
    /// Deletes per round.
    pub ops: u64,
    /// Nanoseconds per delete (median of the rounds).
    pub ns_per_op: f64,
    /// Bytes allocated per delete (median), when counted.
    pub bytes_per_op: Option<f64>,
    /// Allocations per delete (median), when counted.
    pub allocs_per_op: Option<f64>,
}

/// A variant: builds its map (untimed) and returns the timed delete loop.
/// The timed loop returns the map, dropped after the timer stops.
type Variant = fn(u64) -> Box<dyn FnOnce() -> Box<dyn Any>>;

/// Every variant in report order, with what it does in words.
pub fn variants() -> Vec<(&'static str, &'static str, Variant)> {
    vec![
        ("hashmap-remove", "`HashMap::remove`", |n| {
            let mut m: HashMap<u64, Item, Hasher> = (0..n).map(|k| (k, item(k))).collect();
            Box::new(move || {
                for k in 0..n {
                    black_box(m.remove(&k));
                }
                Box::new(m) as Box<dyn Any>
            })
        }),
        (
            "hashmap-overwrite-none",
            "`HashMap<_, Option<Item>>::insert(k, None)`",
            |n| {
                let mut m: HashMap<u64, Option<Item>, Hasher> =
                    (0..n).map(|k| (k, Some(item(k)))).collect();
                Box::new(move || {
                    for k in 0..n {
                        black_box(m.insert(k, None));
                    }
                    Box::new(m) as Box<dyn Any>
                })
            },
        ),
        (
            "hashmap-reset-field",
            "`HashMap::get_mut(k).active = false`",
            |n| {
                let mut m: HashMap<u64, Item, Hasher> = (0..n).map(|k| (k, item(k))).collect();
                Box::new(move || {
                    for k in 0..n {
                        if let Some(it) = m.get_mut(&k) {
                            it.active = false;
                        }
                    }
                    Box::new(m) as Box<dyn Any>
                })
            },
        ),
        (
            "safemap-remove-journal",
            "`SafeMap::remove(k, Reason)`, default journal",
            |n| {
                let m = safemap::SafeMap::builder()
                    .hasher(Hasher::default())
                    .build();
                let _ = m.refresh((0..n).map(|k| (k, item(k))));
                Box::new(move || {
                    for k in 0..n {
                        let _ = black_box(m.remove(&k, peers::safemap::reason()));
                    }
                    Box::new(m) as Box<dyn Any>
                })
            },
        ),
        (
            "safemap-remove-no-journal",
            "`SafeMap::remove(k, Reason)`, `without_journal()`",
            |n| {
                let m = safemap::SafeMap::builder()
                    .hasher(Hasher::default())
                    .without_journal()
                    .build();
                let _ = m.refresh((0..n).map(|k| (k, item(k))));
                Box::new(move || {
                    for k in 0..n {
                        let _ = black_box(m.remove(&k, peers::safemap::reason()));
                    }
                    Box::new(m) as Box<dyn Any>
                })
            },
        ),
        ("dashmap-remove", "`DashMap::remove`", |n| {
            let m: dashmap::DashMap<u64, Item, Hasher> = (0..n).map(|k| (k, item(k))).collect();
            Box::new(move || {
                for k in 0..n {
                    black_box(m.remove(&k));
                }
                Box::new(m) as Box<dyn Any>
            })
        }),
        ("papaya-remove", "`papaya::HashMap::pin().remove`", |n| {
            let m = papaya::HashMap::builder().hasher(Hasher::default()).build();
            {
                let g = m.pin();
                for k in 0..n {
                    g.insert(k, item(k));
                }
            }
            Box::new(move || {
                {
                    let g = m.pin();
                    for k in 0..n {
                        black_box(g.remove(&k));
                    }
                }
                Box::new(m) as Box<dyn Any>
            })
        }),
    ]
}

/// Run every variant; `counter` reads the counting allocator if installed.
pub fn run(
    cfg: &Config,
    counter: &dyn AllocCounter,
    progress: &Progress,
    mut emit: impl FnMut(&Row),
) -> Vec<Row> {
    let all = variants();
    let bar = progress.bar("delete-cost", all.len() as u64);
    let mut rows = Vec::new();
    for (name, _, variant) in all {
        bar.set_message(name);
        let row = run_one(cfg, counter, name, variant);
        emit(&row);
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();
    rows
}

/// One variant: `cfg.repeats` rounds (plus one warm-up round), medians.
pub fn run_one(cfg: &Config, counter: &dyn AllocCounter, name: &str, variant: Variant) -> Row {
    let n = cfg.ops.max(1);
    // Warm-up round: page in the allocator's arenas and the code.
    drop(variant(n)());
    let (mut ns, mut bytes, mut allocs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cfg.repeats.max(1) {
        let work = variant(n);
        let before = counter.totals();
        let t = Instant::now();
        let map = work();
        let spent = t.elapsed();
        let after = counter.totals();
        drop(map);
        ns.push(spent.as_nanos() as f64 / n as f64);
        if let (Some((a0, b0)), Some((a1, b1))) = (before, after) {
            allocs.push(a1.saturating_sub(a0) as f64 / n as f64);
            bytes.push(b1.saturating_sub(b0) as f64 / n as f64);
        }
    }
    Row {
        workload: "delete-cost".to_string(),
        variant: name.to_string(),
        ops: n,
        ns_per_op: median(&ns).unwrap_or(0.0),
        bytes_per_op: median(&bytes),
        allocs_per_op: median(&allocs),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_runs_and_uncounted_bytes_are_empty() {
        let cfg = Config {
            ops: 500,
            repeats: 1,
        };
        let rows = run(&cfg, &NotCounted, &Progress::hidden(), |_| {});
        assert_eq!(rows.len(), variants().len());
        for r in &rows {
            assert!(r.ns_per_op > 0.0, "{r:?}");
            assert_eq!(r.bytes_per_op, None);
        }
    }
}
