//! Unit tests of the table on real threads; run under valgrind memcheck in
//! `.ci/run` (Miri is not available there) to catch use-after-free and leaks.

use std::collections::HashSet;
use std::hash::RandomState;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread;

use super::{SHARDS, Table};
use crate::entry::Versioned;
use crate::ids::Revision;

fn versioned(value: u64) -> Versioned<u64> {
    Versioned {
        value,
        revision: Revision::new(value + 1),
        create_revision: Revision::new(1),
        version: 1,
    }
}

fn put(table: &Table<u64, u64, RandomState>, key: u64, value: u64) {
    let held = table.lock(&key);
    let guard = table.guard();
    table.publish(&held, key, versioned(value), &guard);
}

fn remove(table: &Table<u64, u64, RandomState>, key: u64) {
    let held = table.lock(&key);
    let guard = table.guard();
    table.unpublish(&held, &key, &guard);
}

fn get(table: &Table<u64, u64, RandomState>, key: u64) -> Option<u64> {
    let guard = table.guard();
    table.get(&key, &guard).map(|(_, v)| v.value)
}

#[test]
fn puts_updates_removes_and_shrinks() {
    let table = Table::new(0, RandomState::new());
    for k in 0..2000 {
        put(&table, k, k);
    }
    assert_eq!(table.len(), 2000);
    for k in 0..2000 {
        put(&table, k, k + 1);
    }
    assert!((0..2000).all(|k| get(&table, k) == Some(k + 1)));
    for k in 0..1900 {
        remove(&table, k);
        remove(&table, k);
    }
    assert_eq!(table.len(), 100);
    assert_eq!(get(&table, 5), None);
    assert!((1900..2000).all(|k| get(&table, k) == Some(k + 1)));
    table.shrink_to_fit();
    let guard = table.guard();
    let keys: HashSet<u64> = table.iter(&guard).map(|(k, _)| *k).collect();
    assert_eq!(keys, (1900..2000).collect());
    drop(guard);
    for k in 1900..2000 {
        remove(&table, k);
    }
    table.shrink_to_fit();
    assert_eq!(table.len(), 0);
    let guard = table.guard();
    assert_eq!(table.iter(&guard).count(), 0);
}

#[test]
fn tombstones_are_reused_and_cleared() {
    let table = Table::new(0, RandomState::new());
    for round in 0..50 {
        for k in 0..64 {
            put(&table, k, round);
        }
        for k in 0..64 {
            remove(&table, k);
        }
    }
    assert_eq!(table.len(), 0);
    put(&table, 7, 7);
    assert_eq!(get(&table, 7), Some(7));
}

#[test]
#[should_panic(expected = "without its key's stripe")]
fn a_mutation_under_another_stripe_panics() {
    let table = Table::new(0, RandomState::new());
    let key = 1u64;
    let other = (table.stripe_of(&key) + 1) % SHARDS;
    let held = table.lock_stripe(other);
    let guard = table.guard();
    table.publish(&held, key, versioned(1), &guard);
}

#[test]
fn an_iteration_pinned_across_resizes_yields_every_stable_key_once() {
    let table = Table::new(0, RandomState::new());
    for k in 0..500 {
        put(&table, k, k);
    }
    let guard = table.guard();
    let mut seen = HashSet::new();
    for (i, (k, _)) in table.iter(&guard).enumerate() {
        assert!(seen.insert(*k), "key {k} yielded twice");
        // Grow, shrink and update under the iterator, on this thread.
        put(&table, 10_000 + i as u64, 0);
        if i % 3 == 0 {
            remove(&table, 10_000 + i as u64);
        }
        put(&table, *k, 1);
    }
    assert!((0..500).all(|k| seen.contains(&k)));
}

#[test]
fn readers_never_miss_a_key_that_is_being_refreshed_or_resized() {
    let table = Table::new(0, RandomState::new());
    let stable = 0..256u64;
    for k in stable.clone() {
        put(&table, k, k);
    }
    let stop = AtomicBool::new(false);
    let rounds = if cfg!(debug_assertions) { 200 } else { 2000 };
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    for k in stable.clone() {
                        let v = get(&table, k).expect("a refreshed key is never absent");
                        assert!(v == k || v >= 1000);
                    }
                    let guard = table.guard();
                    let n = table.iter(&guard).filter(|(k, _)| **k < 256).count();
                    assert_eq!(n, 256);
                }
            });
        }
        s.spawn(|| {
            for round in 0..rounds {
                for k in stable.clone() {
                    put(&table, k, 1000 + round);
                }
                // Churn other keys: growth, tombstones, shrink.
                for k in 1000..1400 {
                    put(&table, k, 0);
                }
                for k in 1000..1400 {
                    remove(&table, k);
                }
            }
            stop.store(true, Relaxed);
        });
    });
    assert_eq!(table.len(), 256);
}

#[test]
fn writers_of_different_shards_run_together() {
    let table = Table::new(0, RandomState::new());
    thread::scope(|s| {
        for t in 0..4u64 {
            let table = &table;
            s.spawn(move || {
                for k in (t * 10_000)..(t * 10_000 + 3000) {
                    put(table, k, k);
                    if k % 2 == 0 {
                        remove(table, k);
                    }
                }
            });
        }
    });
    assert_eq!(table.len(), 4 * 1500);
    assert!((0..3000).all(|k| get(&table, k) == (k % 2 == 1).then_some(k)));
}
