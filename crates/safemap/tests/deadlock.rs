//! Iteration never deadlocks and keeps its guarantee.
//!
//! * Removing, inserting (enough to resize the table), retaining, planning and
//!   executing, refreshing, restoring, snapshotting and iterating again, all
//!   from inside an iteration on the same thread, finish.
//! * Threads iterating (and removing what they see) while others insert and
//!   remove finish.
//! * The iteration guarantee: every key present for the whole iteration and
//!   not removed is yielded exactly once, including while other threads
//!   insert enough to force several resizes, replace values in place, and
//!   remove other keys; no key is yielded twice.
//!
//! * A watcher blocked in `next_blocking` is always woken by the next write.
//!
//! A watchdog thread ends the process with a message if a test does not
//! finish in time (60 s; the tests take about a second), so a deadlock fails
//! CI instead of hanging it.
//!
//! CI: 2 000 stable keys, 60 000 churned keys per thread (the table grows from
//! 2 000 to over 100 000 entries: at least 5 resizes), 3 iterating threads.
//! `SAFEMAP_PROOF_LONG=1`: 10 000 stable keys, 1 000 000 churned, 5 minutes
//! of watchdog.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use safemap::{Reason, SafeMap, Selector};

/// Ends the process (with a message) unless dropped within `limit`.
struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

fn watchdog(name: &'static str) -> Watchdog {
    let limit = Duration::from_secs(common::sized(60, 300, 3600) as u64);
    let (done, wait) = mpsc::channel::<()>();
    let thread = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
            // Straight to the process's stderr: the test harness captures
            // `eprintln!`, and its capture is lost when the process exits.
            let message = format!(
                "DEADLOCK: test `{name}` did not finish within {limit:?}; ending the process\n"
            );
            let _ = std::io::stderr().write_all(message.as_bytes());
            std::process::exit(3);
        }
    });
    Watchdog {
        done: Some(done),
        thread: Some(thread),
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn why() -> Reason {
    Reason::new("proof")
}

fn filled(n: u64) -> SafeMap<u64, u64> {
    let map = SafeMap::builder()
        .deny_delete("sevens", |_k, v: &u64| *v == 7)
        .build();
    let _ = map.refresh((0..n).map(|k| (k, k)));
    map
}

#[test]
fn removing_every_key_while_iterating_on_the_same_thread_finishes() {
    let _dog = watchdog("remove inside iteration");
    let n = common::sized(5000, 5000, 100) as u64;
    let map = filled(n);
    let view = map.pin();
    let mut seen = HashSet::new();
    for e in view.iter() {
        assert!(seen.insert(*e.key()), "key {} yielded twice", e.key());
        let result = map.remove(e.key(), why());
        assert_eq!(result.is_ok(), *e.value() != 7, "{result:?}");
    }
    drop(view);
    assert_eq!(
        seen.len() as u64,
        n,
        "every key present at the start was yielded"
    );
    assert_eq!(map.len(), 1, "only the vetoed entry stays");
}

#[test]
fn inserting_enough_to_resize_while_iterating_finishes_and_yields_the_originals_once() {
    let _dog = watchdog("insert inside iteration");
    let n = common::sized(1000, 1000, 20) as u64;
    let map = filled(n);
    let view = map.pin();
    let mut seen = HashSet::new();
    let mut next = 1_000_000u64;
    for e in view.iter() {
        assert!(seen.insert(*e.key()), "key {} yielded twice", e.key());
        // 40 new keys per key seen: the table grows 40-fold during the loop.
        for _ in 0..40 {
            let _ = map.insert(next, next);
            next += 1;
        }
    }
    drop(view);
    assert!(
        (0..n).all(|k| seen.contains(&k)),
        "an original key was missed"
    );
    // Keys inserted during the iteration may or may not be yielded.
    assert_eq!(map.len(), n as usize + 40 * seen.len());
    assert!(map.len() as u64 >= 41 * n);
}

#[test]
fn every_write_path_inside_an_iteration_finishes() {
    let _dog = watchdog("write paths inside iteration");
    let map = filled(common::sized(600, 600, 40) as u64);
    let view = map.pin();
    for (i, e) in view.iter().enumerate() {
        let k = *e.key();
        match i % 8 {
            0 => {
                let _ = map.remove(&k, why());
            }
            1 => {
                let _ = map.remove_if(&k, e.revision(), why());
            }
            2 => {
                let _ = map.replace_if(k, e.revision(), k + 1);
            }
            3 => {
                let _ = map.refresh([(k, k), (k + 10_000, k)]);
            }
            4 => {
                let plan = map.plan_remove(Selector::all().keys(vec![k]));
                let _ = map.execute(plan.id(), plan.count(), why());
            }
            5 => {
                if let Ok(removed) = map.remove(&k, why()) {
                    let _ = map.restore(removed.audit_id().unwrap(), why());
                }
            }
            6 => {
                // Nested iteration and a snapshot (which takes the write lock).
                let inner = map.pin().iter().take(5).count();
                assert!(inner <= 5);
                assert!(!map.snapshot().is_empty());
            }
            _ => {
                if i % 64 == 7 {
                    let _ = map.retain(|key, _| *key != k + 1, why());
                }
            }
        }
    }
}

/// Iterating threads remove what they see while other threads insert (forcing
/// resizes) and remove: nothing deadlocks.
#[test]
fn iterating_threads_and_writing_threads_never_deadlock() {
    let _dog = watchdog("iterate while others write");
    let map = filled(common::sized(2000, 2000, 50) as u64);
    let stop = AtomicBool::new(false);
    let churn = common::scaled(30_000, 500_000) as u64;
    thread::scope(|s| {
        for t in 0..2u64 {
            let (map, stop) = (&map, &stop);
            s.spawn(move || {
                let mut passes = 0;
                while !stop.load(Ordering::Relaxed) || passes < 3 {
                    let view = map.pin();
                    for e in view.iter() {
                        if e.key() % 5 == t {
                            let _ = map.remove(e.key(), why());
                        }
                    }
                    passes += 1;
                }
            });
        }
        for t in 0..2u64 {
            let map = &map;
            s.spawn(move || {
                let base = 1_000_000 * (t + 1);
                for i in 0..churn {
                    let _ = map.insert(base + i, i);
                    if i % 3 == 0 {
                        let _ = map.remove(&(base + i / 2), why());
                    }
                }
            });
        }
        // The scope joins the writers first in effect: stop the iterators once
        // the writers' work is visible.
        s.spawn(|| {
            while map.current_revision().get() < 2 * churn {
                thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
}

/// The iteration guarantee under concurrent resizes, updates and removals.
#[test]
fn keys_present_for_a_whole_iteration_are_yielded_exactly_once_during_resizes() {
    let _dog = watchdog("iteration guarantee");
    let stable = common::sized(2_000, 10_000, 50) as u64;
    let churn = common::sized(60_000, 1_000_000, 1_000) as u64;
    // Stable keys 0..stable are never removed (they are updated in place);
    // churned keys are fresh, inserted once and maybe removed once.
    let map: SafeMap<u64, u64> = SafeMap::builder().without_journal().build();
    let _ = map.refresh((0..stable).map(|k| (k, 0)));
    let writers_done = AtomicUsize::new(0);
    let start = Barrier::new(5);
    let (passes, grew, crossed) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    thread::scope(|s| {
        for t in 0..2u64 {
            let (map, writers_done, start) = (&map, &writers_done, &start);
            s.spawn(move || {
                start.wait();
                let base = 1_000_000_000 * (t + 1);
                for i in 0..churn {
                    let _ = map.insert(base + i, i);
                    if i % 4 == 0 && i > 0 {
                        let _ = map.remove(&(base + i - 1), why());
                    }
                    if i % 16 == 0 {
                        // Replace a stable key's value in place.
                        let _ = map.insert(i % stable, i);
                    }
                }
                writers_done.fetch_add(1, Ordering::SeqCst);
            });
        }
        for _ in 0..3 {
            let (map, writers_done, start, passes, grew, crossed) =
                (&map, &writers_done, &start, &passes, &grew, &crossed);
            s.spawn(move || {
                start.wait();
                loop {
                    let finished = writers_done.load(Ordering::SeqCst) == 2;
                    let view = map.pin();
                    let before = map.len();
                    let mut seen_stable = vec![0u8; stable as usize];
                    let mut seen_other = HashSet::new();
                    for e in view.iter() {
                        let k = *e.key();
                        if k < stable {
                            seen_stable[k as usize] += 1;
                        } else {
                            assert!(seen_other.insert(k), "churned key {k} yielded twice");
                        }
                    }
                    let after = map.len();
                    drop(view);
                    for (k, n) in seen_stable.iter().enumerate() {
                        assert_eq!(
                            *n, 1,
                            "stable key {k} yielded {n} times in one iteration \
                             (table grew from {before} to {after} entries during it)"
                        );
                    }
                    passes.fetch_add(1, Ordering::Relaxed);
                    if after > before {
                        grew.fetch_add(1, Ordering::Relaxed);
                    }
                    // papaya's capacity is a power of two: growing across one
                    // means the table was resized during this iteration.
                    if after.next_power_of_two() > before.next_power_of_two() {
                        crossed.fetch_add(1, Ordering::Relaxed);
                    }
                    if finished {
                        break;
                    }
                }
            });
        }
    });
    let (passes, grew, crossed) = (passes.into_inner(), grew.into_inner(), crossed.into_inner());
    eprintln!(
        "{passes} iterations checked, {grew} while the table grew, {crossed} across a \
         power-of-two size (a resize); final size {}",
        map.len()
    );
    assert!(
        cfg!(miri) || crossed > 0,
        "no iteration overlapped a resize of the table"
    );
}

/// A watcher blocked in `next_blocking` is always woken by the next write: in
/// a ping-pong (one write, then wait for the watcher to report it), a lost
/// wake-up would show as a call that lasted its whole time-out.
#[test]
fn a_blocked_watcher_is_always_woken_by_the_next_write() {
    let _dog = watchdog("watcher wake-ups");
    let rounds = common::sized(500, 20_000, 10) as u64;
    let timeout = Duration::from_secs(5);
    let map: SafeMap<u64, u64> = SafeMap::new();
    let mut watcher = map.watch(None).unwrap();
    let (ack, acked) = mpsc::channel::<u64>();
    thread::scope(|s| {
        s.spawn(move || {
            for i in 0..rounds {
                let started = std::time::Instant::now();
                let event = watcher.next_blocking(timeout).unwrap();
                let waited = started.elapsed();
                let event = event.unwrap_or_else(|| panic!("write {i} never arrived"));
                assert!(
                    waited < timeout,
                    "lost wake-up: write {i} (revision {}) was seen only after the {timeout:?} time-out",
                    event.revision
                );
                ack.send(event.revision.get()).unwrap();
            }
        });
        for i in 0..rounds {
            let revision = map.insert(i % 7, i).unwrap().revision().get();
            assert_eq!(acked.recv().unwrap(), revision);
        }
    });
}
