//! Recording histories of a `SafeMap<u32, u32>` and checking them: shared by
//! the real-thread linearizability test and the shuttle tests.
//!
//! An [`Actor`] performs random operations on a 3-key space, each stamped with
//! tickets of a logical clock before the call and after the return;
//! [`verify`] checks a finished history (see `tests/linearizability.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;

use safemap::{Expect, Reason, Revision, SafeMap};

use super::keymodel::{KeyOp, KeySpec, KeyState, RULE, vetoed};
use super::linearizability::{Timed, check, describe};
use super::rng::Rng;

/// The key space: keys `0..KEYS`.
pub const KEYS: u64 = 3;

/// One recorded call.
#[derive(Clone, Debug)]
pub enum Call {
    /// A single-key operation.
    Key(u32, KeyOp),
    /// `refresh` of these entries, which returned these revisions.
    Refresh(Vec<(u32, u32)>, Vec<Revision>),
    /// `current_revision()`.
    CurrentRevision(Revision),
}

/// The deny rule every history's map carries (see [`super::keymodel::vetoed`]).
pub fn with_rule<S>(builder: safemap::Builder<u32, u32, S>) -> safemap::Builder<u32, u32, S> {
    builder.deny_delete(RULE, |_k, v: &u32| vetoed(*v))
}

/// Runs `f` between two tickets.
pub fn stamp<R>(tick: &dyn Fn() -> u64, f: impl FnOnce() -> R) -> (u64, u64, R) {
    let call = tick();
    let result = f();
    let ret = tick();
    (call, ret, result)
}

/// A thread's choices and memory of revisions it saw.
pub struct Actor {
    rng: Rng,
    thread: usize,
    next_value: u32,
    seen: BTreeMap<u32, Revision>,
}

impl Actor {
    /// An actor for `thread` (0 is the set-up thread), choosing with `seed`.
    pub fn new(thread: usize, seed: u64) -> Self {
        Actor {
            rng: Rng::new(seed ^ (thread as u64).wrapping_mul(0xA076_1D64_78BD_642F)),
            thread,
            next_value: 0,
            seen: BTreeMap::new(),
        }
    }

    /// A fresh value: unique per write, so that a read names the write it saw.
    pub fn value(&mut self) -> u32 {
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

    /// Random numbers for the caller's own choices.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// One random operation, stamped with `tick`.
    pub fn one<S: BuildHasher>(
        &mut self,
        map: &SafeMap<u32, u32, S>,
        tick: &dyn Fn() -> u64,
    ) -> Timed<Call> {
        let key = self.rng.below(KEYS) as u32;
        let why = Reason::new("lin");
        let (call, ret, op) = match self.rng.below(100) {
            0..20 => {
                let (c, r, got) = stamp(tick, || map.get(&key));
                self.remember(key, got.as_ref().map(|e| e.revision()));
                (c, r, Call::Key(key, KeyOp::Get(got)))
            }
            20..35 => {
                let value = self.value();
                let (c, r, w) = stamp(tick, || map.insert(key, value).unwrap());
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
                let (c, r, result) = stamp(tick, || map.insert_if_absent(key, value));
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
                let (c, r, result) = stamp(tick, || map.replace_if(key, expected, value));
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
                let (c, r, result) = stamp(tick, || map.remove(&key, why));
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
                let (c, r, result) = stamp(tick, || map.remove_if(&key, expected, why));
                let op = KeyOp::Remove {
                    expect: Some(expected),
                    result,
                };
                (c, r, Call::Key(key, op))
            }
            84..94 => {
                let other = (key + 1 + self.rng.below(KEYS - 1) as u32) % KEYS as u32;
                let entries = vec![(key, self.value()), (other, self.value())];
                let (c, r, revisions) = stamp(tick, || map.refresh(entries.clone()));
                (c, r, Call::Refresh(entries, revisions))
            }
            _ => {
                let (c, r, rev) = stamp(tick, || map.current_revision());
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

/// A successful write: its revision, map, key and interval.
struct Write {
    revision: Revision,
    map: usize,
    key: u32,
    call: u64,
    ret: u64,
}

/// A map and its history.
pub type Part<'a, S> = (&'a SafeMap<u32, u32, S>, &'a [Timed<Call>]);

/// Checks one round on one map; `Err` carries the reason and the history.
pub fn verify<S: BuildHasher>(
    map: &SafeMap<u32, u32, S>,
    history: &[Timed<Call>],
) -> Result<(), String> {
    verify_shared(&[(map, history)])
}

/// Checks one round on maps that share one journal (so one revision
/// counter), each with its history, all stamped by one clock: each map's
/// keys are checked on their own; revisions, `current_revision` and the
/// journal across all of them.
pub fn verify_shared<S: BuildHasher>(parts: &[Part<'_, S>]) -> Result<(), String> {
    let fail = |what: String| {
        let mut text = what;
        for (map, history) in parts {
            text.push_str(&format!("\nmap {:?}: {}", map.name(), describe(history)));
        }
        Err(text)
    };
    // Per-key sub-histories (refresh split per key), keyed by (map, key).
    let mut per_key: BTreeMap<(usize, u32), Vec<Timed<KeyOp>>> = BTreeMap::new();
    let mut reads = Vec::new();
    for (index, (_, history)) in parts.iter().enumerate() {
        for t in history.iter() {
            let mut push = |key: u32, op: KeyOp| {
                per_key.entry((index, key)).or_default().push(Timed {
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
    }
    let mut writes = Vec::new();
    for (&(map, key), ops) in &per_key {
        if let Err(message) = check::<KeySpec>(KeyState::default(), ops) {
            return fail(format!("map {map} key {key}: {message}"));
        }
        writes.extend(ops.iter().filter_map(|t| {
            t.op.written_revision().map(|revision| Write {
                revision,
                map,
                key,
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
    for (map, _) in parts {
        if map.current_revision().get() != writes.len() as u64 {
            return fail(format!(
                "current_revision {} after {} writes",
                map.current_revision(),
                writes.len()
            ));
        }
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
    // The counter never goes backwards: a read that began after another
    // returned sees at least as much.
    for &(_, ret, first) in &reads {
        for &(call, _, second) in &reads {
            if ret < call && second < first {
                return fail(format!(
                    "current_revision went back from {first} to {second}"
                ));
            }
        }
    }
    // One record per successful write, in revision order, naming its map.
    let journal = parts[0].0.journal().unwrap();
    let records = journal.query(&Default::default());
    let mut expected: Vec<(u64, &str, u32)> = writes
        .iter()
        .map(|w| (w.revision.get(), parts[w.map].0.name(), w.key))
        .collect();
    expected.sort();
    let got: Vec<(u64, &str, u32)> = records
        .iter()
        .map(|r| (r.revision.get(), &*r.map, r.key))
        .collect();
    if got != expected {
        return fail(format!("journal {got:?}, successful writes {expected:?}"));
    }
    Ok(())
}

/// Set-up before the threads start: inserts 0 to 3 keys (chosen by `actor`).
pub fn setup<S: BuildHasher>(
    map: &SafeMap<u32, u32, S>,
    actor: &mut Actor,
    tick: &dyn Fn() -> u64,
) -> Vec<Timed<Call>> {
    let mut history = Vec::new();
    for key in 0..actor.rng.below(KEYS + 1) as u32 {
        let value = actor.value();
        let (call, ret, w) = stamp(tick, || map.insert(key, value).unwrap());
        let op = KeyOp::Put {
            value,
            expect: Expect::Any,
            result: Ok(w),
        };
        history.push(Timed {
            call,
            ret,
            thread: actor.thread,
            op: Call::Key(key, op),
        });
    }
    history
}

/// Whether two operations of different threads overlap in time.
pub fn concurrent(history: &[Timed<Call>]) -> bool {
    history.iter().any(|a| {
        history
            .iter()
            .any(|b| a.thread != b.thread && a.call < b.call && b.call < a.ret)
    })
}
