//! Model checking (shuttle) of the conditional-write paths: `replace_if`,
//! `insert_if_absent`, `remove_if` against a remove-and-reinsert (ABA), and
//! whole random histories checked for linearizability.
//!
//! Run with `cargo test -p safemap --features shuttle --test shuttle_cas`
//! (without the feature this file is empty). What is modelled and what is not:
//! see `src/sync.rs` and `tests/common/explore.rs`. Exhaustive tests explore
//! every schedule; the history test samples PCT + random schedules (500 + 500
//! in CI, 20 000 + 20 000 with `SAFEMAP_PROOF_LONG=1`). A control shows the
//! exploration has teeth: a check-then-act CAS built on the public API is
//! caught.

#![cfg(feature = "shuttle")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering};

use common::explore::{Fixed, exhaustive, sampled};
use common::history::{Actor, setup, verify, with_rule};
use common::linearizability::Timed;
use safemap::{PutError, Reason, SafeMap};
use shuttle::sync::atomic::AtomicU64;
use shuttle::thread;

type Map = SafeMap<u32, u32, Fixed>;

fn new_map() -> Arc<Map> {
    Arc::new(
        with_rule(SafeMap::builder().hasher(Fixed::default()))
            .record_puts(true)
            .build(),
    )
}

fn spawn_all<T: Send + 'static>(n: u32, body: impl Fn(u32) -> T + Send + Sync + 'static) -> Vec<T> {
    let body = Arc::new(body);
    let handles: Vec<_> = (0..n)
        .map(|t| {
            let body = Arc::clone(&body);
            thread::spawn(move || body(t))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn racing_replace_ifs_from_one_revision_have_exactly_one_winner() {
    exhaustive(None, || {
        let map = new_map();
        let first = map.insert(1, 100).unwrap().revision();
        let m = Arc::clone(&map);
        let results = spawn_all(3, move |t| m.replace_if(1, first, 200 + t));
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let winner = winners[0];
        for r in &results {
            if let Err(e) = r {
                // The losers saw the winner's revision: nothing else wrote.
                assert_eq!(
                    *e,
                    PutError::RevisionMismatch {
                        current: Some(winner.revision())
                    }
                );
            }
        }
        let entry = map.get(&1).unwrap();
        assert_eq!(entry.revision(), winner.revision());
        assert_eq!(entry.version(), 2);
        assert_eq!(
            map.journal().unwrap().len(),
            2,
            "one record per successful write"
        );
    });
}

#[test]
fn racing_insert_if_absent_has_exactly_one_winner() {
    exhaustive(None, || {
        let map = new_map();
        let m = Arc::clone(&map);
        let results = spawn_all(3, move |t| m.insert_if_absent(7, t));
        let winners: Vec<u32> = (0..3).filter(|t| results[*t as usize].is_ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        assert_eq!(*map.get(&7).unwrap().value(), winners[0]);
        assert_eq!(map.journal().unwrap().len(), 1);
    });
}

/// A `replace_if` / `remove_if` holding a revision from before a
/// remove-and-reinsert never matches the new entry.
#[test]
fn a_revision_from_before_a_remove_and_reinsert_never_matches() {
    exhaustive(None, || {
        let map = new_map();
        let old = map.insert(1, 10).unwrap().revision();
        let a = Arc::clone(&map);
        let recreate = thread::spawn(move || {
            let removed = a
                .remove(&1, Reason::new("recreate"))
                .ok()
                .map(|r| r.revision());
            let inserted = a.insert(1, 20).unwrap().revision();
            (removed, inserted)
        });
        let b = Arc::clone(&map);
        let stale = thread::spawn(move || {
            let replaced = b.replace_if(1, old, 30).ok().map(|w| w.revision());
            let removed = b.remove_if(&1, old, Reason::new("stale")).ok();
            (replaced, removed.map(|r| r.revision()))
        });
        let (removed, inserted) = recreate.join().unwrap();
        let (replaced, stale_removed) = stale.join().unwrap();
        // The stale writer could only have acted before the removal.
        if let Some(r) = replaced {
            assert!(r < inserted);
            assert!(
                stale_removed.is_none(),
                "its revision moved on by its own write"
            );
        }
        if let Some(r) = stale_removed {
            assert!(r < inserted);
            assert!(removed.is_none(), "the key was already gone");
        }
        // Whatever the order, the recreated entry is the last word.
        let entry = map.get(&1).unwrap();
        assert_eq!((*entry.value(), entry.revision()), (20, inserted));
        assert_eq!(
            entry.create_revision(),
            inserted,
            "a recreation starts a new life"
        );
        assert_eq!(entry.version(), 1);
        let max = map.current_revision();
        assert_eq!(max, inserted, "the reinsert is the last write");
        assert_eq!(map.journal().unwrap().len() as u64, max.get());
    });
}

/// Random histories (3 threads × 3 operations on 3 keys, after a random
/// set-up) under shuttle's schedules, each checked for linearizability and
/// for the revision properties, exactly as in `tests/linearizability.rs`.
#[test]
fn histories_under_model_checked_schedules_are_linearizable() {
    let iterations = common::scaled(500, 20_000);
    let seeds = Arc::new(StdAtomicU64::new(common::rng::run_seed()));
    sampled(iterations, move || {
        // Relaxed: a statistic-like source of distinct seeds.
        let seed = seeds.fetch_add(1, Ordering::Relaxed);
        let map = new_map();
        let clock = Arc::new(AtomicU64::new(0));
        let tick = {
            let clock = Arc::clone(&clock);
            move || clock.fetch_add(1, Ordering::SeqCst)
        };
        let mut history = setup(&map, &mut Actor::new(0, seed), &tick);
        let m = Arc::clone(&map);
        let recorded = spawn_all(3, move |t| {
            let mut actor = Actor::new(t as usize + 1, seed);
            let clock = Arc::clone(&clock);
            let tick = move || clock.fetch_add(1, Ordering::SeqCst);
            let mut ops: Vec<Timed<_>> = Vec::new();
            for _ in 0..3 {
                ops.push(actor.one(&*m, &tick));
                thread::yield_now();
            }
            ops
        });
        history.extend(recorded.into_iter().flatten());
        if let Err(message) = verify(&*map, &history) {
            panic!("seed {seed}: {message}");
        }
    });
}

/// The exploration has teeth: a compare-and-swap made of a read and a separate
/// unconditional write (what the write lock exists to prevent) lets two
/// threads both "win", and shuttle finds a schedule where they do.
#[test]
fn shuttle_catches_a_check_then_act_compare_and_swap() {
    let caught = std::panic::catch_unwind(|| {
        shuttle::check_dfs(
            || {
                let map = new_map();
                let first = map.insert(1, 100).unwrap().revision();
                let m = Arc::clone(&map);
                let wins = spawn_all(2, move |t| match m.get(&1) {
                    Some(e) if e.revision() == first => {
                        let _ = m.insert(1, 200 + t);
                        1
                    }
                    _ => 0,
                });
                assert_eq!(
                    wins.iter().sum::<u32>(),
                    1,
                    "both threads replaced revision {first}"
                );
            },
            None,
        )
    });
    assert!(caught.is_err(), "shuttle missed the check-then-act race");
}
