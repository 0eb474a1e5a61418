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
//!   after it returned;
//! * the journal holds exactly one record per successful write, with its key
//!   and revision, in revision order.
//!
//! CI: 5000 rounds of 3 threads × 6 operations (plus up to 3 set-up
//! operations), about 21 operations a history. `SAFEMAP_PROOF_LONG=1`:
//! 100 000 rounds of 4 threads × 8. A failure prints the history and the seed
//! (`SAFEMAP_PROOF_SEED` replays the random choices; the interleaving is the
//! machine's).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use common::keymodel::{KeyOp, KeySpec, KeyState, RULE, vetoed};
use common::linearizability::selftest::{RegOp, Register};
use common::linearizability::{Timed, check, describe};
use common::rng::{Rng, run_seed};
use safemap::{Expect, Reason, Revision, SafeMap};

const KEYS: u64 = 3;

/// One recorded call.
#[derive(Clone, Debug)]
enum Call {
    Key(u32, KeyOp),
    Refresh(Vec<(u32, u32)>, Vec<Revision>),
    CurrentRevision(Revision),
}

type Map = SafeMap<u32, u32>;

fn new_map() -> Map {
    SafeMap::builder()
        .deny_delete(RULE, |_k, v: &u32| vetoed(*v))
        .build()
}

/// Runs `f` between two tickets.
fn stamp<R>(clock: &AtomicU64, f: impl FnOnce() -> R) -> (u64, u64, R) {
    let call = clock.fetch_add(1, Ordering::SeqCst);
    let result = f();
    let ret = clock.fetch_add(1, Ordering::SeqCst);
    (call, ret, result)
}

/// A thread's choices and memory of revisions it saw.
struct Actor {
    rng: Rng,
    thread: usize,
    next_value: u32,
    seen: BTreeMap<u32, Revision>,
}

impl Actor {
    fn value(&mut self) -> u32 {
        // Unique per write, so a read names the write it saw; 1 in 6 ends in 9
        // (vetoed for removal).
        self.next_value += 1;
        let digit = if self.rng.chance(16) {
            9
        } else {
            self.rng.below(9) as u32
        };
        (self.thread as u32 * 10_000 + self.next_value) * 10 + digit
    }

    fn expected(&mut self, key: u32) -> Revision {
        match self.seen.get(&key) {
            Some(r) if !self.rng.chance(20) => *r,
            _ => Revision::new(self.rng.below(40)),
        }
    }

    fn remember(&mut self, key: u32, revision: Option<Revision>) {
        match revision {
            Some(r) => self.seen.insert(key, r),
            None => self.seen.remove(&key),
        };
    }

    fn one(&mut self, map: &Map, clock: &AtomicU64) -> Timed<Call> {
        let key = self.rng.below(KEYS) as u32;
        let why = Reason::new("lin");
        let (call, ret, op) = match self.rng.below(100) {
            0..20 => {
                let (c, r, got) = stamp(clock, || map.get(&key));
                self.remember(key, got.as_ref().map(|e| e.revision()));
                (c, r, Call::Key(key, KeyOp::Get(got)))
            }
            20..35 => {
                let value = self.value();
                let (c, r, w) = stamp(clock, || map.insert(key, value));
                self.remember(key, Some(w.revision()));
                let op = KeyOp::Put {
                    value,
                    expect: Expect::Any,
                    result: Ok(w),
                };
                (c, r, Call::Key(key, op))
            }
            35..45 => {
                let value = self.value();
                let (c, r, result) = stamp(clock, || map.insert_if_absent(key, value));
                if let Ok(w) = &result {
                    self.remember(key, Some(w.revision()));
                }
                let op = KeyOp::Put {
                    value,
                    expect: Expect::Absent,
                    result,
                };
                (c, r, Call::Key(key, op))
            }
            45..60 => {
                let value = self.value();
                let expected = self.expected(key);
                let (c, r, result) = stamp(clock, || map.replace_if(key, expected, value));
                if let Ok(w) = &result {
                    self.remember(key, Some(w.revision()));
                }
                let op = KeyOp::Put {
                    value,
                    expect: Expect::Revision(expected),
                    result,
                };
                (c, r, Call::Key(key, op))
            }
            60..72 => {
                let (c, r, result) = stamp(clock, || map.remove(&key, why));
                if result.is_ok() {
                    self.remember(key, None);
                }
                let op = KeyOp::Remove {
                    expect: None,
                    result,
                };
                (c, r, Call::Key(key, op))
            }
            72..84 => {
                let expected = self.expected(key);
                let (c, r, result) = stamp(clock, || map.remove_if(&key, expected, why));
                let op = KeyOp::Remove {
                    expect: Some(expected),
                    result,
                };
                (c, r, Call::Key(key, op))
            }
            84..94 => {
                let other = (key + 1 + self.rng.below(KEYS - 1) as u32) % KEYS as u32;
                let entries = vec![(key, self.value()), (other, self.value())];
                let (c, r, revisions) = stamp(clock, || map.refresh(entries.clone()));
                (c, r, Call::Refresh(entries, revisions))
            }
            _ => {
                let (c, r, rev) = stamp(clock, || map.current_revision());
                (c, r, Call::CurrentRevision(rev))
            }
        };
        Timed {
            call,
            ret,
            thread: self.thread,
            op,
        }
    }
}

/// One round: a history on a fresh map, returned with the map.
fn run_round(seed: u64, threads: usize, ops: usize) -> (Map, Vec<Timed<Call>>) {
    let map = new_map();
    let clock = AtomicU64::new(0);
    let mut setup = Actor {
        rng: Rng::new(seed),
        thread: 0,
        next_value: 0,
        seen: BTreeMap::new(),
    };
    let mut history = Vec::new();
    for key in 0..setup.rng.below(KEYS + 1) as u32 {
        let value = setup.value();
        let (call, ret, w) = stamp(&clock, || map.insert(key, value));
        let op = KeyOp::Put {
            value,
            expect: Expect::Any,
            result: Ok(w),
        };
        history.push(Timed {
            call,
            ret,
            thread: 0,
            op: Call::Key(key, op),
        });
    }
    let start = SpinStart::new(threads);
    let recorded: Vec<Vec<Timed<Call>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=threads)
            .map(|thread| {
                let (map, clock, start) = (&map, &clock, &start);
                let mut actor = Actor {
                    rng: Rng::new(seed ^ (thread as u64).wrapping_mul(0xA076_1D64_78BD_642F)),
                    thread,
                    next_value: 0,
                    seen: BTreeMap::new(),
                };
                s.spawn(move || {
                    start.wait();
                    (0..ops).map(|_| actor.one(map, clock)).collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    history.extend(recorded.into_iter().flatten());
    (map, history)
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

/// A successful write: its revision, key and interval.
struct Write {
    revision: Revision,
    key: u32,
    call: u64,
    ret: u64,
}

/// Checks one round; `Err` carries the reason and the history.
fn verify(map: &Map, history: &[Timed<Call>]) -> Result<(), String> {
    let fail = |what: String| Err(format!("{what}\n{}", describe(history)));
    // Per-key sub-histories (refresh split per key).
    let mut per_key: BTreeMap<u32, Vec<Timed<KeyOp>>> = BTreeMap::new();
    let mut reads = Vec::new();
    for t in history {
        let mut push = |key: u32, op: KeyOp| {
            per_key.entry(key).or_default().push(Timed {
                call: t.call,
                ret: t.ret,
                thread: t.thread,
                op,
            })
        };
        match &t.op {
            Call::Key(key, op) => push(*key, op.clone()),
            Call::Refresh(entries, revisions) => {
                if revisions.len() != entries.len() {
                    return fail(format!("refresh returned {revisions:?} for {entries:?}"));
                }
                for ((key, value), revision) in entries.iter().zip(revisions) {
                    let op = KeyOp::Upsert {
                        value: *value,
                        revision: *revision,
                    };
                    push(*key, op);
                }
            }
            Call::CurrentRevision(r) => reads.push((t.call, t.ret, *r)),
        }
    }
    let mut writes = Vec::new();
    for (key, ops) in &per_key {
        if let Err(message) = check::<KeySpec>(KeyState::default(), ops) {
            return fail(format!("key {key}: {message}"));
        }
        writes.extend(ops.iter().filter_map(|t| {
            t.op.written_revision().map(|revision| Write {
                revision,
                key: *key,
                call: t.call,
                ret: t.ret,
            })
        }));
    }
    // Unique, contiguous from 1: no revision drawn without a write.
    let revisions: BTreeSet<u64> = writes.iter().map(|w| w.revision.get()).collect();
    if revisions.len() != writes.len() {
        return fail("two successful writes share a revision".into());
    }
    if !revisions.iter().copied().eq(1..=writes.len() as u64) {
        return fail(format!(
            "revisions are not 1..={}: {revisions:?}",
            writes.len()
        ));
    }
    if map.current_revision().get() != writes.len() as u64 {
        return fail(format!(
            "current_revision {} after {} writes",
            map.current_revision(),
            writes.len()
        ));
    }
    // Real-time order.
    for a in &writes {
        for b in &writes {
            if a.ret < b.call && a.revision >= b.revision {
                return fail(format!(
                    "write at revision {} returned before the write at revision {} began",
                    a.revision, b.revision
                ));
            }
        }
        for &(call, ret, seen) in &reads {
            if a.ret < call && seen < a.revision {
                return fail(format!(
                    "current_revision {seen} after revision {} returned",
                    a.revision
                ));
            }
            if ret < a.call && seen >= a.revision {
                return fail(format!(
                    "current_revision {seen} before revision {} began",
                    a.revision
                ));
            }
        }
    }
    // One record per successful write, in revision order.
    let journal = map.journal().unwrap();
    let records = journal.query(&Default::default());
    let mut expected: Vec<(u64, u32)> = writes.iter().map(|w| (w.revision.get(), w.key)).collect();
    expected.sort();
    let got: Vec<(u64, u32)> = records.iter().map(|r| (r.revision.get(), r.key)).collect();
    if got != expected {
        return fail(format!("journal {got:?}, successful writes {expected:?}"));
    }
    Ok(())
}

fn rounds(count: usize, threads: usize, ops: usize) {
    let seed = run_seed();
    let mut overlapping = 0usize;
    for round in 0..count as u64 {
        let round_seed = seed.wrapping_add(round);
        let (map, history) = run_round(round_seed, threads, ops);
        if let Err(message) = verify(&map, &history) {
            panic!("round {round} (SAFEMAP_PROOF_SEED={seed}, round seed {round_seed}): {message}");
        }
        overlapping += usize::from(concurrent(&history));
    }
    eprintln!("{count} histories checked, {overlapping} with overlapping operations");
    // The check says nothing if the threads never overlapped.
    assert!(
        overlapping > count / 20,
        "too few concurrent histories: {overlapping}"
    );
}

/// Whether two operations of different threads overlap in time.
fn concurrent(history: &[Timed<Call>]) -> bool {
    history.iter().any(|a| {
        history
            .iter()
            .any(|b| a.thread != b.thread && a.call < b.call && b.call < a.ret)
    })
}

#[test]
fn concurrent_histories_are_linearizable_and_revisions_follow_real_time() {
    if common::long_run() {
        rounds(100_000, 4, 8);
    } else {
        rounds(5000, 3, 6);
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
fn the_harness_catches_a_check_then_act_compare_and_swap() {
    let seed = run_seed();
    let rounds = 20_000;
    for round in 0..rounds {
        let map = new_map();
        let clock = AtomicU64::new(0);
        let first = map.insert(0, 1).revision();
        let start = Barrier::new(2);
        let history: Vec<Timed<KeyOp>> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..=2u32)
                .map(|thread| {
                    let (map, clock, start) = (&map, &clock, &start);
                    s.spawn(move || {
                        start.wait();
                        let value = thread * 10;
                        let (call, ret, result) = stamp(clock, || {
                            // The broken CAS: not atomic.
                            match map.get(&0) {
                                Some(e) if e.revision() == first => {
                                    std::thread::yield_now();
                                    Ok(map.insert(0, value))
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
