//! loom models of the table: one writer (the holder of a stripe) against
//! readers, over updates, removals, resizes and reclamation. A node freed
//! while a reader may still read it is reported as a data race on its
//! `Liveness` cell; a reader that finds no value for a key being refreshed
//! fails an assertion.
//!
//! Run: `RUSTFLAGS="--cfg safemap_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p safemap
//! --lib --release engine::table::loom_tests` (a target directory of its own
//! keeps the normal build's cache intact).

use std::hash::{BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

use loom::thread;

use super::Table;
use crate::entry::Versioned;
use crate::ids::Revision;

/// A deterministic hasher: loom replays schedules and needs the same layout.
type Fixed = BuildHasherDefault<DefaultHasher>;
type T = Table<u64, u64, Fixed>;

fn versioned(value: u64) -> Versioned<u64> {
    Versioned {
        value,
        revision: Revision::new(value + 1),
        create_revision: Revision::new(1),
        version: 1,
    }
}

fn put(table: &T, key: u64, value: u64) {
    let held = table.lock(&key);
    let guard = table.guard();
    table.publish(&held, key, versioned(value), &guard);
}

fn remove(table: &T, key: u64) {
    let held = table.lock(&key);
    let guard = table.guard();
    table.unpublish(&held, &key, &guard);
}

fn get(table: &T, key: u64) -> Option<u64> {
    let guard = table.guard();
    table.get(&key, &guard).map(|(_, v)| v.value)
}

fn table_with(keys: &[u64]) -> Arc<T> {
    let table = Arc::new(Table::new(0, Fixed::default()));
    for &k in keys {
        put(&table, k, 0);
    }
    table
}

#[test]
fn loom_update_is_never_a_miss_and_frees_after_the_reader() {
    loom::model(|| {
        let table = table_with(&[1]);
        let writer = {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                put(&table, 1, 1);
                put(&table, 1, 2);
            })
        };
        let seen = get(&table, 1).expect("an updated key is never absent");
        assert!(seen <= 2);
        writer.join().expect("writer");
        assert_eq!(get(&table, 1), Some(2));
    });
}

#[test]
fn loom_remove_frees_only_after_the_reader() {
    loom::model(|| {
        let table = table_with(&[1, 2]);
        let writer = {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                remove(&table, 1);
                put(&table, 2, 5);
            })
        };
        {
            let guard = table.guard();
            if let Some((k, v)) = table.get(&1, &guard) {
                // Reads of the node while the writer retires and frees.
                assert_eq!((*k, v.value), (1, 0));
            }
        }
        writer.join().expect("writer");
        assert_eq!(get(&table, 1), None);
    });
}

#[test]
fn loom_resize_keeps_every_key_readable() {
    loom::model(|| {
        let table = table_with(&[1]);
        let writer = {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                // Grows the shards (two slots each under loom), then shrinks
                // them back, retiring arrays while the reader may hold them.
                for k in 2..5 {
                    put(&table, k, 0);
                }
                for k in 2..5 {
                    remove(&table, k);
                }
            })
        };
        assert_eq!(get(&table, 1), Some(0), "a stable key is never absent");
        writer.join().expect("writer");
        table.shrink_to_fit();
        assert_eq!(get(&table, 1), Some(0));
        assert_eq!(table.len(), 1);
    });
}

#[test]
fn loom_iteration_yields_a_stable_key_once_across_a_resize() {
    loom::model(|| {
        let table = table_with(&[1, 2]);
        let writer = {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                put(&table, 3, 0);
                put(&table, 1, 1);
                remove(&table, 3);
            })
        };
        {
            let guard = table.guard();
            let mut keys: Vec<u64> = table.iter(&guard).map(|(k, _)| *k).collect();
            keys.sort_unstable();
            keys.retain(|k| *k != 3);
            assert_eq!(keys, [1, 2]);
        }
        writer.join().expect("writer");
    });
}
