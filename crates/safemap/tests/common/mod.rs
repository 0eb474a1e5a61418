//! Helpers shared by the proof suite (`model_*`, `linearizability*`,
//! `shuttle_*`, `deadlock*`): a linearizability checker, the sequential
//! per-key model of a map it checks against, and a small seeded generator.

#![allow(dead_code)]

#[cfg(feature = "shuttle")]
pub mod explore;
pub mod history;
pub mod keymodel;
pub mod linearizability;
pub mod rng;

/// Whether the long runs were asked for (`SAFEMAP_PROOF_LONG=1`).
pub fn long_run() -> bool {
    std::env::var("SAFEMAP_PROOF_LONG").is_ok_and(|v| v == "1")
}

/// `ci` normally, `long` when [`long_run`], a hundredth of `ci` under Miri
/// (which runs about a thousand times slower).
pub fn scaled(ci: usize, long: usize) -> usize {
    sized(ci, long, (ci / 100).max(1))
}

/// `ci` normally, `long` when [`long_run`], `miri` under Miri.
pub fn sized(ci: usize, long: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else if long_run() {
        long
    } else {
        ci
    }
}
