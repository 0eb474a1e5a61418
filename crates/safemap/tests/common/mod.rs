//! Helpers shared by the proof suite: a linearizability checker, the
//! sequential per-key model of a map it checks against, history recording, a
//! seeded generator, and the shuttle runners.
//!
//! The suite ("concurrency claims are proven, not hoped"):
//!
//! | file | proves | how |
//! |---|---|---|
//! | `model_sequential.rs` | every operation matches a `BTreeMap` model, revisions, journal, plans, restore, stats included | proptest |
//! | `model_panicking_rule.rs` | a deny rule panicking mid-execution leaves the counter and watchers consistent | regression |
//! | `linearizability.rs` | concurrent histories are linearizable; revisions follow real time | real threads, Wing–Gong/Lowe checker |
//! | `shuttle_*.rs` | CAS, removal, guard-vs-update, breaker, restore, refresh and watch races | shuttle (feature `shuttle`) |
//! | `deadlock.rs` | iteration with writes never deadlocks; keys present throughout are yielded once, across resizes | real threads, watchdog |
//!
//! ```text
//! cargo test -p safemap                                           # all but shuttle (shuttle_* compile empty)
//! cargo test -p safemap --features shuttle --test 'shuttle_*'     # model checking
//! SAFEMAP_PROOF_LONG=1 cargo test -p safemap ...                  # the long runs
//! SAFEMAP_PROOF_SEED=<n> cargo test -p safemap --test linearizability  # replay choices
//! MIRIFLAGS=-Zmiri-disable-isolation cargo +nightly miri test -p safemap --test deadlock  # sizes shrink
//! ```

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
