//! Linearizability of a `SafeMap` under real threads.
//!
//! Each round runs a short history: a few operations on the main thread,
//! then 3 threads (4 in the long run) each doing a few random operations on
//! a key space of 3 keys: `get`, `insert`, `insert_if_absent`, `replace_if`,
//! `remove`, `remove_if` (with a revision the thread saw, or a made-up one),
//! two-key `refresh`, and `current_revision`. Every call is stamped with
//! tickets of one logical clock before and after it. Then:
//!
//! * every key's sub-history must be linearizable against the sequential
//!   per-key model (`common::keymodel`: values, revisions, `create_revision`,
//!   `version`, the deny rule, which condition fails first);
//! * revisions of successful writes are unique, are exactly `1..=n`, and
//!   agree with real time (a write that returned before another began has the
//!   smaller revision);
//! * `current_revision()` is at least the revision of every write that
//!   returned before it was called, and below that of every write that began
//!   after it returned, and never less than a read that returned before it
//!   began (the counter never goes backwards);
//! * the journal holds exactly one record per successful write, with its key
//!   and revision, in revision order, and its sink was handed every record
//!   once, in id order, without gaps.
//!
//! The same holds for 2 maps sharing one journal (the server's shape): keys
//! checked per map, revisions across both.
//!
//! CI: at least 3000 rounds of 3 threads × 6 operations (plus up to 3
//! set-up operations, so up to 21 a history), continuing (up to 30 000) until
//! 1500 histories had operations of different threads overlapping in time.
//! `SAFEMAP_PROOF_LONG=1`: at least 100 000 rounds of 4 threads × 8, until
//! 50 000 overlapped. The shared-journal test runs half as many. A failure prints the history and the seed
//! (`SAFEMAP_PROOF_SEED` replays the random choices; the interleaving is the
//! machine's).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use common::history::{Actor, Call, concurrent, setup, stamp, verify_shared, with_rule};
use common::keymodel::{KeyOp, KeySpec, KeyState};
use common::linearizability::selftest::{RegOp, Register};
use common::linearizability::{Timed, check};
use common::rng::run_seed;
use safemap::{AuditRecord, Expect, Journal, JournalSink, SafeMap};

type Map = SafeMap<u32, u32>;

/// A journal sink that keeps (id, revision) of every record it is handed.
#[derive(Default)]
struct Recorder(Mutex<Vec<(u64, u64)>>);

impl JournalSink<u32, u32> for Recorder {
    fn append(&self, record: &Arc<AuditRecord<u32, u32>>) {
        self.0
            .lock()
            .unwrap()
            .push((record.id.get(), record.revision.get()));
    }
}

/// `count` maps ("m0", "m1", …) sharing one journal, whose sink is `sink`.
fn new_maps(sink: Arc<Recorder>, count: usize) -> Vec<Map> {
    let journal = Journal::builder().sink(sink).build();
    (0..count)
        .map(|i| {
            with_rule(SafeMap::builder())
                .name(format!("m{i}"))
                .journal(journal.clone())
                .build()
        })
        .collect()
}

/// The sink saw every record once, in id order, without gaps, revisions rising.
fn verify_sink(map: &Map, sink: &Recorder) -> Result<(), String> {
    let seen = sink.0.lock().unwrap();
    let ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
    let held = map.journal().unwrap().len() as u64;
    if !ids.iter().copied().eq(1..=held) {
        return Err(format!("sink saw ids {ids:?}, journal holds 1..={held}"));
    }
    if !seen.windows(2).all(|w| w[0].1 < w[1].1) {
        return Err(format!("sink saw revisions out of order: {seen:?}"));
    }
    Ok(())
}

/// One round on `maps` fresh maps sharing a journal: thread t works on map
/// t mod `maps`. Returns the maps and each map's history (one clock).
fn run_round(
    seed: u64,
    maps: usize,
    threads: usize,
    ops: usize,
) -> (Vec<Map>, Vec<Vec<Timed<Call>>>) {
    let sink = Arc::new(Recorder::default());
    let maps = new_maps(Arc::clone(&sink), maps);
    let clock = AtomicU64::new(0);
    let tick = || clock.fetch_add(1, Ordering::SeqCst);
    let mut histories: Vec<Vec<Timed<Call>>> = maps
        .iter()
        .enumerate()
        .map(|(i, map)| setup(map, &mut Actor::new(0, seed ^ i as u64), &tick))
        .collect();
    let start = SpinStart::new(threads);
    let recorded: Vec<(usize, Vec<Timed<Call>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=threads)
            .map(|thread| {
                let index = thread % maps.len();
                let (map, tick, start) = (&maps[index], &tick, &start);
                let mut actor = Actor::new(thread, seed);
                s.spawn(move || {
                    start.wait();
                    let ops: Vec<_> = (0..ops).map(|_| actor.one(map, tick)).collect();
                    (index, ops)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (index, ops) in recorded {
        histories[index].extend(ops);
    }
    if let Err(message) = verify_sink(&maps[0], &sink) {
        panic!("seed {seed}: {message}");
    }
    (maps, histories)
}

/// A start line that threads spin on (a parking barrier wakes them tens of
/// microseconds apart, longer than a whole history takes).
struct SpinStart {
    waiting: AtomicUsize,
}

impl SpinStart {
    fn new(threads: usize) -> Self {
        SpinStart {
            waiting: AtomicUsize::new(threads),
        }
    }

    fn wait(&self) {
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let mut spins = 0u32;
        while self.waiting.load(Ordering::SeqCst) != 0 {
            spins += 1;
            // More threads than cores: let the others reach the line.
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
    }
}

/// Runs at least `min` rounds, and more (up to `max`) until `want` of them
/// had operations of different threads overlapping in time: on a loaded
/// machine threads overlap less, and a history without overlap proves little.
fn rounds(min: usize, want: usize, max: usize, maps: usize, threads: usize, ops: usize) {
    let seed = run_seed();
    let (mut done, mut overlapping) = (0usize, 0usize);
    while done < min || (overlapping < want && done < max) {
        let round_seed = seed.wrapping_add(done as u64);
        let (maps, histories) = run_round(round_seed, maps, threads, ops);
        let parts: Vec<(&Map, &[Timed<Call>])> = maps
            .iter()
            .zip(&histories)
            .map(|(m, h)| (m, h.as_slice()))
            .collect();
        if let Err(message) = verify_shared(&parts) {
            panic!("round {done} (SAFEMAP_PROOF_SEED={seed}, round seed {round_seed}): {message}");
        }
        let all: Vec<Timed<Call>> = histories.into_iter().flatten().collect();
        overlapping += usize::from(concurrent(&all));
        done += 1;
    }
    eprintln!("{done} histories checked, {overlapping} with overlapping operations");
    // Under Miri (a handful of rounds, to check memory safety) overlap is not the point.
    assert!(
        cfg!(miri) || overlapping >= 20,
        "only {overlapping} of {done} histories had overlapping operations: the machine is too busy for this test to prove anything"
    );
}

#[test]
fn concurrent_histories_are_linearizable_and_revisions_follow_real_time() {
    if cfg!(miri) {
        rounds(20, 0, 20, 1, 3, 6);
    } else if common::long_run() {
        rounds(100_000, 50_000, 1_000_000, 1, 4, 8);
    } else {
        rounds(3000, 1500, 30_000, 1, 3, 6);
    }
}

/// The server's shape: several maps on one journal. Each map's keys are
/// linearizable on their own, and all writes share one revision order that
/// agrees with real time.
#[test]
fn maps_sharing_a_journal_share_one_revision_order() {
    if cfg!(miri) {
        rounds(10, 0, 10, 2, 3, 6);
    } else if common::long_run() {
        rounds(50_000, 25_000, 500_000, 2, 4, 8);
    } else {
        rounds(1500, 750, 15_000, 2, 3, 6);
    }
}

/// The checker is not vacuous: it rejects what a linearizable register could
/// never answer, and accepts overlapping operations in either order.
#[test]
fn the_checker_rejects_a_stale_read_and_accepts_overlap() {
    let t = |call, ret, thread, op| Timed {
        call,
        ret,
        thread,
        op,
    };
    // A write of 1 completes, then a read returns the old 0: not linearizable.
    let stale = [t(0, 1, 1, RegOp::Write(1)), t(2, 3, 2, RegOp::Read(0))];
    assert!(check::<Register>(0, &stale).is_err());
    // The same read overlapping the write may see either value.
    for seen in [0, 1] {
        let overlap = [t(0, 3, 1, RegOp::Write(1)), t(1, 2, 2, RegOp::Read(seen))];
        assert!(check::<Register>(0, &overlap).is_ok());
    }
    // Two overlapping CAS(0→x) cannot both succeed.
    let both = [
        t(0, 3, 1, RegOp::Cas(0, 1, true)),
        t(1, 2, 2, RegOp::Cas(0, 2, true)),
    ];
    assert!(check::<Register>(0, &both).is_err());
}

/// A check-then-act compare-and-swap (read, compare, then write without the
/// write lock) is what the journal's lock exists to prevent. Built on the
/// public API and run through the same harness, the checker catches it: the
/// proof would catch the library if its conditional writes were not atomic.
#[test]
#[cfg_attr(miri, ignore = "a control of the harness, not of memory safety")]
fn the_harness_catches_a_check_then_act_compare_and_swap() {
    let seed = run_seed();
    let rounds = 20_000;
    for round in 0..rounds {
        let map = new_maps(Arc::default(), 1).pop().unwrap();
        let clock = AtomicU64::new(0);
        let first = map.insert(0, 1).unwrap().revision();
        let start = Barrier::new(2);
        let history: Vec<Timed<KeyOp>> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..=2u32)
                .map(|thread| {
                    let (map, clock, start) = (&map, &clock, &start);
                    s.spawn(move || {
                        let tick = || clock.fetch_add(1, Ordering::SeqCst);
                        start.wait();
                        let value = thread * 10;
                        let (call, ret, result) = stamp(&tick, || {
                            // The broken CAS: not atomic.
                            match map.get(&0) {
                                Some(e) if e.revision() == first => {
                                    std::thread::yield_now();
                                    map.insert(0, value)
                                }
                                e => Err(safemap::PutError::RevisionMismatch {
                                    current: e.map(|e| e.revision()),
                                }),
                            }
                        });
                        Timed {
                            call,
                            ret,
                            thread: thread as usize,
                            op: KeyOp::Put {
                                value,
                                expect: Expect::Revision(first),
                                result,
                            },
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all = vec![Timed {
            call: 0,
            ret: 0,
            thread: 0,
            op: KeyOp::Upsert {
                value: 1,
                revision: first,
            },
        }];
        all.extend(history.into_iter().map(|mut t| {
            t.call += 1;
            t.ret += 1;
            t
        }));
        if check::<KeySpec>(KeyState::default(), &all).is_err() {
            eprintln!("caught after {} rounds (seed {seed})", round + 1);
            return;
        }
    }
    panic!("a non-atomic CAS went undetected for {rounds} rounds");
}
