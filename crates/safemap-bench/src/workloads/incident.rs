//! The incident: K keys, R readers doing uniform random gets, and one
//! refresher that every `pause` brings `invalidate-pct` % of the keys to a
//! new value, the way each peer's users would write it. Each peer runs
//! without and with the refresher. Reads are timed one in 65 (the rest
//! only counted); a read that finds no value is a miss, since the workload
//! never means to remove a key.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::peers::{self, IncidentMap, RefreshBatch};
use crate::progress::Progress;
use crate::rng::FastRng;
use crate::stats::Percentiles;

/// Reads between two timed reads, plus the timed one: one read in 65 is timed.
pub const SAMPLE_EVERY: u64 = 65;
/// Reads each reader makes before the measured window starts.
pub const WARMUP_READS: u64 = 200_000;

/// Parameters of the incident workload.
#[derive(Debug, Clone)]
pub struct Config {
    /// Reader threads.
    pub readers: usize,
    /// Keys in the map (`0..keys`).
    pub keys: u64,
    /// Measured window of each run.
    pub duration: Duration,
    /// Percentage of keys each refresh brings to a new value (1..=100).
    pub invalidate_pct: u64,
    /// Pause between two refreshes.
    pub pause: Duration,
    /// Only run variants whose name is in this list (all when empty).
    pub only: Vec<String>,
    /// Rounds; each figure is the run with the median read throughput.
    pub repeats: usize,
}

impl Config {
    /// The defaults of the spec: 100 000 keys, cores − 1 readers (at least 1),
    /// 3 s, 30 %, 10 ms; 3 rounds.
    pub fn defaults() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            readers: cores.saturating_sub(1).max(1),
            keys: 100_000,
            duration: Duration::from_secs(3),
            invalidate_pct: 30,
            pause: Duration::from_millis(10),
            only: Vec::new(),
            repeats: 3,
        }
    }
}

/// One JSON line of the incident: one peer, with or without the refresher.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// Peer variant.
    pub variant: String,
    /// Whether the refresher ran.
    pub refresh: bool,
    /// Reader threads.
    pub readers: usize,
    /// Keys in the map.
    pub keys: u64,
    /// Reads per second, all readers together.
    pub reads_per_sec: f64,
    /// Share of reads that found no value.
    pub miss_rate: f64,
    /// Median sampled read latency (includes the cost of reading the clock,
    /// see [`clock_overhead_ns`]).
    pub p50_ns: u64,
    /// 99th percentile sampled read latency.
    pub p99_ns: u64,
    /// 99.9th percentile sampled read latency.
    pub p999_ns: u64,
    /// Refreshes completed in the window.
    pub refreshes: u64,
    /// Mean duration of one refresh.
    pub refresh_mean_ms: f64,
}

/// The median cost of timing nothing (two clock reads), in nanoseconds: the
/// floor under every sampled latency, stated next to the figures.
pub fn clock_overhead_ns() -> u64 {
    let mut samples: Vec<u64> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    Percentiles::of(&mut samples).p50
}

/// Every variant's run function, in report order.
type Runner = fn(&Config, bool) -> Row;

/// Variants in report order, each with its refresh style.
pub fn variants() -> Vec<(&'static str, &'static str, Runner)> {
    fn entry<M: IncidentMap>() -> (&'static str, &'static str, Runner) {
        (M::VARIANT, M::STYLE, run_one::<M>)
    }
    vec![
        entry::<peers::safemap::Refresh>(),
        entry::<peers::safemap::BareRefresh>(),
        entry::<peers::dashmap::Upsert>(),
        entry::<peers::dashmap::Retain>(),
        entry::<peers::papaya::Upsert>(),
        entry::<peers::papaya::RemoveInsert>(),
        entry::<peers::scc::Upsert>(),
        entry::<peers::rwlock::DeleteInsert>(),
        entry::<peers::arcswap::RebuildSwap>(),
        entry::<peers::moka::Upsert>(),
        entry::<peers::hashbrown::Ceiling>(),
    ]
}

/// Run every selected variant without and with the refresher, `repeats`
/// rounds interleaved (every variant once per round, so that a burst of
/// load from elsewhere on the machine spreads over all of them), and report
/// for each (variant, refresh) the run with the median read throughput.
/// `emit` gets each row once all rounds are done.
pub fn run(cfg: &Config, progress: &Progress, mut emit: impl FnMut(&Row)) -> Vec<Row> {
    let selected: Vec<_> = variants()
        .into_iter()
        .filter(|(name, _, _)| cfg.only.is_empty() || cfg.only.iter().any(|o| o == name))
        .collect();
    let repeats = cfg.repeats.max(1);
    let bar = progress.bar("incident", (selected.len() * 2 * repeats) as u64);
    let mut runs: Vec<Vec<Row>> = vec![Vec::new(); selected.len() * 2];
    for round in 0..repeats {
        for (i, (name, _, runner)) in selected.iter().enumerate() {
            for (j, refresh) in [false, true].into_iter().enumerate() {
                bar.set_message(format!("round {} {name} refresh={refresh}", round + 1));
                if let Some(row) = row_if_run(runner(cfg, refresh)) {
                    runs[i * 2 + j].push(row);
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let rows: Vec<Row> = runs.into_iter().filter_map(median_run).collect();
    rows.iter().for_each(&mut emit);
    rows
}

/// The run with the median read throughput (the lower middle one for an even count).
pub fn median_run(mut runs: Vec<Row>) -> Option<Row> {
    if runs.is_empty() {
        return None;
    }
    runs.sort_by(|a, b| a.reads_per_sec.total_cmp(&b.reads_per_sec));
    let mid = (runs.len() - 1) / 2;
    Some(runs.swap_remove(mid))
}

/// The ceiling has no refresh run; it reports that as a row with no reads.
fn row_if_run(row: Row) -> Option<Row> {
    (row.reads_per_sec > 0.0).then_some(row)
}

/// What one reader thread measured.
struct ReaderTally {
    reads: u64,
    misses: u64,
    samples: Vec<u64>,
}

/// Run one variant, with or without the refresher.
pub fn run_one<M: IncidentMap>(cfg: &Config, refresh: bool) -> Row {
    let readers = if M::CONCURRENT { cfg.readers.max(1) } else { 1 };
    let empty = Row {
        variant: M::VARIANT.to_string(),
        refresh,
        readers,
        keys: cfg.keys,
        reads_per_sec: 0.0,
        miss_rate: 0.0,
        p50_ns: 0,
        p99_ns: 0,
        p999_ns: 0,
        refreshes: 0,
        refresh_mean_ms: 0.0,
    };
    if (refresh && !M::CONCURRENT) || cfg.keys == 0 {
        return empty;
    }
    let map = Arc::new(M::build(cfg.keys));
    let stop = Arc::new(AtomicBool::new(false));
    // Readers, the refresher (if any) and this thread start the window together.
    let start = Arc::new(Barrier::new(readers + 1 + usize::from(refresh)));
    let refresh_nanos = Arc::new(AtomicU64::new(0));
    let refresh_count = Arc::new(AtomicU64::new(0));

    let reader_handles: Vec<_> = (0..readers)
        .map(|i| {
            let (map, stop, start) = (Arc::clone(&map), Arc::clone(&stop), Arc::clone(&start));
            let keys = cfg.keys;
            std::thread::spawn(move || read_loop(&*map, keys, i as u64, &stop, &start))
        })
        .collect();
    let refresher = refresh.then(|| {
        let (map, stop, start) = (Arc::clone(&map), Arc::clone(&stop), Arc::clone(&start));
        let (nanos, count) = (Arc::clone(&refresh_nanos), Arc::clone(&refresh_count));
        let (keys, pct, pause) = (cfg.keys, cfg.invalidate_pct, cfg.pause);
        std::thread::spawn(move || {
            start.wait();
            let mut round = 1;
            while !stop.load(Ordering::Relaxed) {
                // The batch is built outside the timed refresh: it stands for
                // the new data arriving from the source of truth.
                let batch = RefreshBatch::new(round, pct, keys);
                let t = Instant::now();
                map.refresh(&batch);
                let spent = t.elapsed();
                if !stop.load(Ordering::Relaxed) {
                    nanos.fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
                    count.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
                std::thread::sleep(pause);
            }
        })
    });

    start.wait();
    let t0 = Instant::now();
    std::thread::sleep(cfg.duration);
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<ReaderTally> = reader_handles
        .into_iter()
        .map(|h| h.join().expect("reader thread panicked"))
        .collect();
    let elapsed = t0.elapsed();
    if let Some(h) = refresher {
        h.join().expect("refresher thread panicked");
    }

    let reads: u64 = tallies.iter().map(|t| t.reads).sum();
    let misses: u64 = tallies.iter().map(|t| t.misses).sum();
    let mut samples: Vec<u64> = tallies.into_iter().flat_map(|t| t.samples).collect();
    let p = Percentiles::of(&mut samples);
    let refreshes = refresh_count.load(Ordering::Relaxed);
    Row {
        reads_per_sec: reads as f64 / elapsed.as_secs_f64(),
        miss_rate: if reads == 0 {
            0.0
        } else {
            misses as f64 / reads as f64
        },
        p50_ns: p.p50,
        p99_ns: p.p99,
        p999_ns: p.p999,
        refreshes,
        refresh_mean_ms: if refreshes == 0 {
            0.0
        } else {
            refresh_nanos.load(Ordering::Relaxed) as f64 / refreshes as f64 / 1e6
        },
        ..empty
    }
}

/// One reader: warm up, wait for the start, then read until told to stop,
/// timing one read in [`SAMPLE_EVERY`].
fn read_loop<M: IncidentMap>(
    map: &M,
    keys: u64,
    id: u64,
    stop: &AtomicBool,
    start: &Barrier,
) -> ReaderTally {
    let mut rng = FastRng::new(0x5EED ^ (id << 32));
    let mut sink = 0u64;
    for _ in 0..WARMUP_READS {
        sink = sink.wrapping_add(map.get(rng.below(keys)).unwrap_or(0));
    }
    std::hint::black_box(sink);
    start.wait();
    let mut tally = ReaderTally {
        reads: 0,
        misses: 0,
        samples: Vec::with_capacity(1 << 20),
    };
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..SAMPLE_EVERY - 1 {
            if map.get(rng.below(keys)).is_none() {
                tally.misses += 1;
            }
        }
        let key = rng.below(keys);
        let t = Instant::now();
        let found = map.get(key);
        let ns = t.elapsed().as_nanos() as u64;
        if found.is_none() {
            tally.misses += 1;
        }
        tally.samples.push(ns);
        tally.reads += SAMPLE_EVERY;
    }
    tally
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tiny() -> Config {
        Config {
            readers: 1,
            keys: 2_000,
            duration: Duration::from_millis(150),
            invalidate_pct: 30,
            pause: Duration::from_millis(1),
            only: Vec::new(),
            repeats: 1,
        }
    }

    #[test]
    fn upserting_peers_never_miss_and_the_row_is_complete() {
        let row = run_one::<peers::dashmap::Upsert>(&tiny(), true);
        assert_eq!(row.variant, "dashmap");
        assert!(row.refresh);
        assert!(row.reads_per_sec > 0.0);
        assert_eq!(row.miss_rate, 0.0, "an upsert never leaves a key absent");
        assert!(row.refreshes > 0, "the refresher ran: {row:?}");
        assert!(row.p50_ns <= row.p99_ns && row.p99_ns <= row.p999_ns);
    }

    #[test]
    fn the_median_run_is_reported() {
        let row = |rps: f64| Row {
            reads_per_sec: rps,
            ..run_one::<peers::hashbrown::Ceiling>(&tiny(), true)
        };
        let picked = median_run(vec![row(3.0), row(1.0), row(2.0)]).unwrap();
        assert_eq!(picked.reads_per_sec, 2.0);
        assert_eq!(
            median_run(vec![row(1.0), row(2.0)]).unwrap().reads_per_sec,
            1.0
        );
        assert!(median_run(Vec::new()).is_none());
    }

    #[test]
    fn the_ceiling_has_no_refresh_run() {
        let cfg = tiny();
        assert_eq!(
            run_one::<peers::hashbrown::Ceiling>(&cfg, true).reads_per_sec,
            0.0
        );
        let row = run_one::<peers::hashbrown::Ceiling>(&cfg, false);
        assert_eq!(row.readers, 1);
        assert!(row.reads_per_sec > 0.0);
    }

    #[test]
    fn json_line_has_the_spec_fields() {
        let row = run_one::<peers::scc::Upsert>(&tiny(), false);
        let v: serde_json::Value = serde_json::to_value(&row).unwrap();
        for field in [
            "variant",
            "refresh",
            "readers",
            "keys",
            "reads_per_sec",
            "miss_rate",
            "p50_ns",
            "p99_ns",
            "p999_ns",
            "refreshes",
            "refresh_mean_ms",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v.as_object().unwrap().len(), 11);
    }
}
