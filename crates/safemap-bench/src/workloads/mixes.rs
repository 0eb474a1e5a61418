//! The conc-map-bench shapes on bustle 0.5: read-heavy (98/1/1
//! get/insert/remove), exchange (10/40/40/10 get/insert/remove/update) and
//! rapid-grow (5/80/5/10), prefilled as conc-map-bench does (75 % of the
//! initial capacity for read-heavy and exchange, empty for rapid-grow).
//! The initial capacity is 2^20 here rather than conc-map-bench's 2^25, to
//! fit a 2-core machine shared with others. Throughput is measured by the
//! worker threads themselves (first to last mix operation, see
//! [`super::mix_clock`]) rather than by bustle's main thread, which a loaded
//! machine can schedule late; bustle's `spent` is the fallback. Each
//! figure is the median of `repeats` runs after one discarded warm-up run
//! at a quarter of the operations.

use serde::{Deserialize, Serialize};

use super::mix_clock::{Stopwatch, Timed};
use crate::peers;
use crate::progress::Progress;
use crate::stats::median;

/// The three shapes, by their JSON names.
pub const WORKLOADS: [&str; 3] = ["read-heavy", "exchange", "rapid-grow"];

/// Parameters of the mixes.
#[derive(Debug, Clone)]
pub struct Config {
    /// Thread counts to run each shape at.
    pub threads: Vec<usize>,
    /// Operations per run (all threads together).
    pub ops: u64,
    /// Initial capacity of each table, as a power of two.
    pub capacity_log2: u8,
    /// Runs per figure (the median is reported).
    pub repeats: usize,
    /// Only run variants whose name is in this list (all when empty).
    pub only: Vec<String>,
}

impl Config {
    /// 1 and 2 threads, 4M operations, capacity 2^20, median of 3.
    pub fn defaults() -> Self {
        Self {
            threads: vec![1, 2],
            ops: 4_000_000,
            capacity_log2: 20,
            repeats: 3,
            only: Vec::new(),
        }
    }
}

/// One JSON line of the mixes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// `read-heavy`, `exchange` or `rapid-grow`.
    pub workload: String,
    /// Peer variant.
    pub variant: String,
    /// Threads.
    pub threads: usize,
    /// Operations per second (median of the repeats).
    pub ops_per_sec: f64,
}

fn mix_of(workload: &str) -> Option<(bustle::Mix, f64)> {
    let (read, insert, remove, update, prefill) = match workload {
        "read-heavy" => (98, 1, 1, 0, 0.75),
        "exchange" => (10, 40, 40, 10, 0.75),
        "rapid-grow" => (5, 80, 5, 10, 0.0),
        _ => return None,
    };
    Some((
        bustle::Mix {
            read,
            insert,
            remove,
            update,
            upsert: 0,
        },
        prefill,
    ))
}

type Runner = fn(&bustle::Workload) -> bustle::Measurement;

fn runner<C: bustle::Collection>() -> Runner
where
    <C::Handle as bustle::CollectionHandle>::Key: Send + std::fmt::Debug,
{
    |w| w.run_silently::<Timed<C>>()
}

/// Variants in report order: (name, single-thread only, runner).
pub fn variants() -> Vec<(&'static str, bool, Runner)> {
    vec![
        ("safemap", false, runner::<peers::safemap::Table>()),
        ("safemap-bare", false, runner::<peers::safemap::BareTable>()),
        ("dashmap", false, runner::<peers::dashmap::Table>()),
        ("papaya", false, runner::<peers::papaya::Table>()),
        ("scc", false, runner::<peers::scc::Table>()),
        ("rwlock-hashmap", false, runner::<peers::rwlock::Table>()),
        ("hashbrown", true, runner::<peers::hashbrown::Table>()),
    ]
}

/// Run every shape × thread count × variant.
pub fn run(cfg: &Config, progress: &Progress, mut emit: impl FnMut(&Row)) -> Vec<Row> {
    let selected: Vec<_> = variants()
        .into_iter()
        .filter(|(name, _, _)| cfg.only.is_empty() || cfg.only.iter().any(|o| o == name))
        .collect();
    let mut plan = Vec::new();
    for workload in WORKLOADS {
        for &threads in &cfg.threads {
            for &(name, single, runner) in &selected {
                if single && threads != 1 {
                    continue;
                }
                plan.push((workload, threads, name, runner));
            }
        }
    }
    let bar = progress.bar("mixes", plan.len() as u64);
    let mut rows = Vec::new();
    for (workload, threads, name, runner) in plan {
        bar.set_message(format!("{workload} {name} x{threads}"));
        if let Some(row) = run_one(cfg, workload, threads, name, runner) {
            emit(&row);
            rows.push(row);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    rows
}

/// One figure: the median of `cfg.repeats` bustle runs.
pub fn run_one(
    cfg: &Config,
    workload: &str,
    threads: usize,
    variant: &str,
    runner: Runner,
) -> Option<Row> {
    let (mix, prefill) = mix_of(workload)?;
    let threads = threads.max(1);
    let capacity = (1u64 << cfg.capacity_log2) as f64;
    let mut w = bustle::Workload::new(threads, mix);
    w.initial_capacity_log2(cfg.capacity_log2)
        .prefill_fraction(prefill)
        .operations(cfg.ops as f64 / capacity);
    // Warm-up: one discarded run at a quarter of the operations.
    let mut warm = w;
    warm.operations(cfg.ops as f64 / capacity / 4.0);
    {
        let _watch = Stopwatch::arm(threads, 0);
        let _ = runner(&warm);
    }
    // As bustle computes them (same expressions, so the counts match exactly).
    let total_ops = (capacity * (cfg.ops as f64 / capacity)) as usize;
    let per_thread = (total_ops / threads) as u64;
    let figures: Vec<f64> = (0..cfg.repeats.max(1))
        .map(|_| {
            let watch = Stopwatch::arm(threads, per_thread);
            let m = runner(&w);
            // The workers' own window when every one finished; bustle's `spent` otherwise.
            match watch.window() {
                Some(window) => {
                    (per_thread * threads as u64) as f64 / window.as_secs_f64().max(1e-9)
                }
                None => m.total_ops as f64 / m.spent.as_secs_f64().max(1e-9),
            }
        })
        .collect();
    Some(Row {
        workload: workload.to_string(),
        variant: variant.to_string(),
        threads,
        ops_per_sec: median(&figures)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tiny() -> Config {
        Config {
            threads: vec![1, 2],
            ops: 20_000,
            capacity_log2: 12,
            repeats: 1,
            only: vec!["dashmap".into(), "hashbrown".into()],
        }
    }

    #[test]
    fn every_shape_runs_and_the_ceiling_is_single_threaded() {
        let rows = run(&tiny(), &Progress::hidden(), |_| {});
        // 3 shapes × (dashmap at 1 and 2 threads + hashbrown at 1).
        assert_eq!(rows.len(), 9);
        assert!(rows.iter().all(|r| r.ops_per_sec > 0.0));
        assert!(
            rows.iter()
                .filter(|r| r.variant == "hashbrown")
                .all(|r| r.threads == 1)
        );
        let json = serde_json::to_string(&rows[0]).unwrap();
        assert!(json.starts_with(
            "{\"workload\":\"read-heavy\",\"variant\":\"dashmap\",\"threads\":1,\"ops_per_sec\":"
        ));
    }

    #[test]
    fn every_variant_passes_bustles_own_checks() {
        // bustle asserts that each insert, remove, get and update answers as a
        // map must (e.g. an insert of a fresh key reports "new"), so this
        // checks the adapters' semantics, at both thread counts.
        let cfg = Config {
            only: Vec::new(),
            ..tiny()
        };
        let rows = run(&cfg, &Progress::hidden(), |_| {});
        assert_eq!(rows.len(), 3 * (2 * (variants().len() - 1) + 1));
    }

    #[test]
    fn unknown_shape_is_refused() {
        assert!(mix_of("write-only").is_none());
    }
}
