//! Running a test body under shuttle's schedulers (only with the `shuttle`
//! feature, which routes the map's locks through shuttle: see `src/sync.rs`).
//!
//! * [`exhaustive`]: depth-first search over *every* interleaving of the
//!   modelled threads at their scheduling points (lock acquisitions, spawns,
//!   joins, yields, shuttle atomics). For small bodies this is a proof over
//!   all schedules, on the assumption (stated in `src/sync.rs`) that each
//!   papaya operation is one indivisible step.
//! * [`sampled`]: PCT (probabilistic concurrency testing, depth 3: finds any
//!   bug of depth ≤ 3 with known probability) plus uniformly random schedules.

use std::hash::{BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A deterministic hasher: shuttle replays need the same behaviour for the
/// same schedule, and std's `RandomState` differs per map.
pub type Fixed = BuildHasherDefault<DefaultHasher>;

/// Runs `body` over every schedule (up to `limit` executions; `None`: all).
/// Returns how many executions ran.
pub fn exhaustive(limit: Option<usize>, body: impl Fn() + Send + Sync + 'static) -> usize {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    shuttle::check_dfs(
        move || {
            // Relaxed: a count read after the run, from the same OS thread.
            counter.fetch_add(1, Ordering::Relaxed);
            body();
        },
        limit,
    );
    let runs = runs.load(Ordering::Relaxed);
    eprintln!("{runs} schedules explored (depth-first)");
    runs
}

/// Runs `body` under `iterations` PCT schedules and `iterations` random ones.
pub fn sampled(iterations: usize, body: impl Fn() + Send + Sync + 'static) {
    let body = Arc::new(body);
    let pct = Arc::clone(&body);
    shuttle::check_pct(move || pct(), iterations, 3);
    shuttle::check_random(move || body(), iterations);
    eprintln!("{iterations} PCT + {iterations} random schedules explored");
}

/// Every schedule in the long run (`SAFEMAP_PROOF_LONG=1`); in CI, where the
/// full search would take minutes, `iterations` PCT + random schedules.
pub fn exhaustive_when_long(iterations: usize, body: impl Fn() + Send + Sync + 'static) {
    if super::long_run() {
        exhaustive(None, body);
    } else {
        sampled(iterations, body);
    }
}
