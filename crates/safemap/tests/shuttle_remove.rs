//! Model checking (shuttle) of the removal paths: N threads removing one key,
//! `remove_if` against `replace_if`, the delete breaker, restore against a
//! recreation, `restore_plan` during the plan's execution, and the
//! guard-vs-update race: a value that changes to a vetoed
//! value between a check (a plan, a `retain` scan, a thread's own read) and
//! the removal must never be removed.
//!
//! Run with `cargo test -p safemap --features shuttle --test shuttle_remove`.
//! Since writes run in parallel, each has four scheduling points (its key's
//! lock, the claim, the window between claim and publish, the completion),
//! so even these small races have millions of schedules: CI samples 2000 PCT
//! (depth 3) + 2000 random schedules per race (1000 + 1000 for the breaker
//! and restore races) and `SAFEMAP_PROOF_LONG=1` explores every schedule
//! (hours). The mixed test runs 500 PCT + 500 random schedules in CI,
//! 20 000 + 20 000 in the long run.

#![cfg(feature = "shuttle")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::explore::{Fixed, exhaustive_when_long, sampled};
use safemap::{DeleteError, Op, Reason, RestoreError, SafeMap, Selector, Skip};
use shuttle::thread;

/// Values divisible by 9 may not be removed.
const RULE: &str = "nines";

type Map = SafeMap<u32, u32, Fixed>;

fn vetoed(value: u32) -> bool {
    value > 0 && value.is_multiple_of(9)
}

fn guarded() -> Arc<Map> {
    Arc::new(
        SafeMap::builder()
            .hasher(Fixed::default())
            .deny_delete(RULE, |_k, v: &u32| vetoed(*v))
            .record_puts(true)
            .build(),
    )
}

fn why() -> Reason {
    Reason::new("proof")
}

/// No audit record says a vetoed value was removed.
fn assert_no_vetoed_value_removed(map: &Map) {
    for record in map.journal().unwrap().query(&Default::default()) {
        if record.op == Op::Delete {
            let value = record.previous_value.unwrap();
            assert!(
                !vetoed(value),
                "vetoed value {value} of key {} was removed (revision {})",
                record.key,
                record.revision
            );
        }
    }
}

#[test]
fn n_threads_removing_one_key_exactly_one_wins_with_one_record() {
    exhaustive_when_long(2000, || {
        let map = guarded();
        let _ = map.insert(1, 5);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let m = Arc::clone(&map);
                thread::spawn(move || m.remove(&1, why()))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{results:?}");
        assert!(
            results
                .iter()
                .all(|r| r.is_ok() || *r == Err(DeleteError::NotFound))
        );
        let deletes = map.journal().unwrap().for_key(&1);
        assert_eq!(deletes.iter().filter(|r| r.op == Op::Delete).count(), 1);
        let stats = map.stats();
        assert_eq!((stats.deletes.deleted, stats.deletes.not_found), (1, 2));
        assert!(!map.contains_key(&1));
    });
}

#[test]
fn remove_if_and_replace_if_at_one_revision_exactly_one_succeeds() {
    exhaustive_when_long(2000, || {
        let map = guarded();
        let rev = map.insert(1, 5).unwrap().revision();
        let a = Arc::clone(&map);
        let remover = thread::spawn(move || a.remove_if(&1, rev, why()));
        let b = Arc::clone(&map);
        let replacer = thread::spawn(move || b.replace_if(1, rev, 6));
        let removed = remover.join().unwrap();
        let replaced = replacer.join().unwrap();
        assert!(
            removed.is_ok() != replaced.is_ok(),
            "{removed:?} {replaced:?}"
        );
        match replaced {
            Ok(w) => {
                assert_eq!(
                    removed,
                    Err(DeleteError::RevisionMismatch {
                        current: Some(w.revision())
                    })
                );
                assert_eq!(*map.get(&1).unwrap().value(), 6);
            }
            Err(e) => {
                assert_eq!(e, safemap::PutError::RevisionMismatch { current: None });
                assert!(map.get(&1).is_none());
            }
        }
    });
}

/// The guard judges exactly the value it removes: a direct `remove` racing an
/// update to a vetoed value either removes the old value or is vetoed.
#[test]
fn remove_racing_an_update_to_a_vetoed_value_never_removes_it() {
    exhaustive_when_long(2000, || {
        let map = guarded();
        let _ = map.insert(1, 5);
        let a = Arc::clone(&map);
        let updater = thread::spawn(move || a.insert(1, 18).unwrap());
        let b = Arc::clone(&map);
        let remover = thread::spawn(move || b.remove(&1, why()));
        let _ = updater.join().unwrap();
        match remover.join().unwrap() {
            Ok(removed) => assert_eq!(*removed.value(), 5),
            Err(e) => assert_eq!(e, DeleteError::Vetoed { rule: RULE.into() }),
        }
        // The update is unconditional, so it always lands, last or not.
        assert_eq!(*map.get(&1).unwrap().value(), 18);
        assert_no_vetoed_value_removed(&map);
    });
}

/// A plan checked the guard at planning time; the value then changes to a
/// vetoed one before (or while) the plan executes. The pinned revision makes
/// execution skip it: it is reported as a conflict, never removed.
#[test]
fn a_planned_key_updated_to_a_vetoed_value_is_skipped_not_removed() {
    exhaustive_when_long(2000, || {
        let map = guarded();
        for k in 0..3 {
            let _ = map.insert(k, 1);
        }
        let plan = map.plan_remove(Selector::all());
        assert_eq!(plan.count(), 3);
        let a = Arc::clone(&map);
        let updater = thread::spawn(move || a.insert(1, 27).unwrap());
        let b = Arc::clone(&map);
        let id = plan.id();
        let executor = thread::spawn(move || b.execute(id, 3, why()).unwrap());
        let update = updater.join().unwrap();
        let report = executor.join().unwrap();
        assert_no_vetoed_value_removed(&map);
        // Key 1 is either removed before the update (which then recreates it)
        // or skipped as changed; the others go.
        assert_eq!(*map.get(&1).unwrap().value(), 27);
        match report.deleted {
            3 => assert!(update.created(), "removed first, then recreated"),
            2 => {
                assert_eq!(report.conflicts.len(), 1);
                assert_eq!(report.conflicts[0].key, 1);
                assert_eq!(
                    report.conflicts[0].current_revision,
                    Some(update.revision())
                );
            }
            n => panic!("{n} deleted: {report:?}"),
        }
        assert_eq!(map.len(), 1);
    });
}

/// Planning and executing on one thread while another updates to a vetoed
/// value at any point (before the plan, between plan and execution, during).
#[test]
fn plan_and_execute_racing_an_update_never_remove_a_vetoed_value() {
    exhaustive_when_long(2000, || {
        let map = guarded();
        let _ = map.insert(1, 4);
        let _ = map.insert(2, 4);
        let a = Arc::clone(&map);
        let updater = thread::spawn(move || {
            let _ = a.insert(1, 9);
            let _ = a.insert(2, 36);
        });
        let b = Arc::clone(&map);
        let executor = thread::spawn(move || {
            let plan = b.plan_remove(Selector::all());
            b.execute(plan.id(), plan.count(), why()).unwrap()
        });
        updater.join().unwrap();
        let _ = executor.join().unwrap();
        assert_no_vetoed_value_removed(&map);
        assert_eq!(*map.get(&1).unwrap().value(), 9);
        assert_eq!(*map.get(&2).unwrap().value(), 36);
    });
}

/// `retain` judges entries in a scan without the lock and removes them later
/// under it; an entry updated in between is kept (and counted as changed).
#[test]
fn retain_racing_an_update_to_a_vetoed_value_never_removes_it() {
    exhaustive_when_long(2000, || {
        let map = guarded();
        for k in 0..3 {
            let _ = map.insert(k, 2);
        }
        let a = Arc::clone(&map);
        let updater = thread::spawn(move || a.insert(1, 45).unwrap());
        let b = Arc::clone(&map);
        let retainer = thread::spawn(move || b.retain(|_k, _v| false, why()).unwrap());
        let update = updater.join().unwrap();
        let report = retainer.join().unwrap();
        assert_no_vetoed_value_removed(&map);
        assert_eq!(*map.get(&1).unwrap().value(), 45);
        // Removed before the update, vetoed after it, or skipped as changed.
        assert_eq!(report.removed + report.vetoed.len() + report.changed, 3);
        assert!(report.removed >= 2);
        if report.removed == 3 {
            assert!(update.created());
        }
        assert_eq!(map.len(), 1);
    });
}

/// The breaker admits at most `max` removals however the racers interleave.
#[test]
fn the_breaker_admits_exactly_max_removals_under_a_race() {
    exhaustive_when_long(1000, || {
        let map = Arc::new(
            SafeMap::<u32, u32>::builder()
                .hasher(Fixed::default())
                .delete_breaker(2, Duration::from_secs(3600))
                .build(),
        );
        for k in 0..3 {
            let _ = map.insert(k, k);
        }
        let handles: Vec<_> = (0..3)
            .map(|k| {
                let m = Arc::clone(&map);
                thread::spawn(move || m.remove(&k, why()))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            2,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(DeleteError::BreakerOpen { .. })))
        );
        assert_eq!(map.len(), 1);
        assert_eq!(map.stats().deletes.breaker, 1);
        assert_eq!(map.breaker_state().unwrap().in_window, 2);
    });
}

/// Restore never overwrites: racing a recreation, or another restore of the
/// same removal, exactly one of them writes the key.
#[test]
fn restore_racing_a_recreation_or_another_restore_never_overwrites() {
    exhaustive_when_long(1000, || {
        let map = guarded();
        let _ = map.insert(1, 5);
        let id = map.remove(&1, why()).unwrap().audit_id().unwrap();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let m = Arc::clone(&map);
                thread::spawn(move || m.restore(id, Reason::new("undo")))
            })
            .collect();
        let c = Arc::clone(&map);
        let creator = thread::spawn(move || c.insert_if_absent(1, 7).is_ok());
        let restores: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        let created = creator.join().unwrap();
        let restored = restores.iter().filter(|r| r.restored.len() == 1).count();
        assert_eq!(
            restored + usize::from(created),
            1,
            "{restores:?} created={created}"
        );
        for r in &restores {
            assert!(r.restored.len() + r.skipped.len() == 1);
            if let Some((_, why)) = r.skipped.first() {
                assert_eq!(*why, Skip::Recreated);
            }
        }
        let value = *map.get(&1).unwrap().value();
        assert_eq!(value, if created { 7 } else { 5 });
        // Restoring a put is refused whatever else happens.
        let put = map.journal().unwrap().for_key(&1)[0].id;
        assert_eq!(
            map.restore(put, Reason::new("undo")),
            Err(RestoreError::NotADelete)
        );
    });
}

/// Larger mixed runs, sampled: 3 threads each updating (sometimes to a vetoed
/// value), removing, and planning and executing, over 3 keys.
#[test]
fn mixed_removals_and_updates_never_remove_a_vetoed_value() {
    sampled(common::scaled(500, 20_000), || {
        let map = guarded();
        for k in 0..3 {
            let _ = map.insert(k, k + 1);
        }
        let handles: Vec<_> = (0..3u32)
            .map(|t| {
                let m = Arc::clone(&map);
                thread::spawn(move || {
                    for step in 0..3u32 {
                        let key = (t + step) % 3;
                        match (t + step) % 3 {
                            0 => {
                                let _ = m.insert(key, if step == 1 { 9 * (t + 1) } else { 10 + t });
                            }
                            1 => {
                                let _ = m.remove(&key, why());
                            }
                            _ => {
                                let plan = m.plan_remove(Selector::all());
                                let _ = m.execute(plan.id(), plan.count(), why());
                            }
                        }
                        thread::yield_now();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_no_vetoed_value_removed(&map);
        let journal = map.journal().unwrap();
        assert_eq!(journal.len() as u64, map.current_revision().get());
    });
}

/// Undoing a plan while it executes: `restore_plan` writes back only what was
/// already removed, never a key that is present, and each removal at most once.
#[test]
fn restore_plan_racing_the_plans_execution_never_overwrites() {
    exhaustive_when_long(2000, || {
        let map = guarded();
        for k in 0..3 {
            let _ = map.insert(k, 10 + k);
        }
        let plan = map.plan_remove(Selector::all());
        let id = plan.id();
        let a = Arc::clone(&map);
        let executor = thread::spawn(move || a.execute(id, 3, why()).unwrap());
        let b = Arc::clone(&map);
        let undo = thread::spawn(move || b.restore_plan(id, Reason::new("undo")));
        let report = executor.join().unwrap();
        let undone = undo.join().unwrap();
        assert_eq!(report.deleted, 3);
        let restored = match undone {
            Ok(r) => {
                assert!(r.skipped.is_empty(), "nothing recreated the keys: {r:?}");
                r.restored.len()
            }
            // Before the plan ran, it is not a plan this map executed yet.
            Err(e) => {
                assert_eq!(e, RestoreError::NotFound);
                0
            }
        };
        assert_eq!(map.len(), restored, "exactly the restored keys are back");
        for (k, entry) in map.snapshot().iter() {
            assert_eq!(
                *entry.value(),
                10 + k,
                "a restore wrote back the removed value"
            );
            assert_eq!(entry.version(), 1, "a restore is a new creation");
        }
    });
}
