//! Model checking (shuttle) of `refresh`: a key being refreshed is never
//! observably absent, and a refresh is one write per entry, so other writers
//! interleave between its entries, never inside one.
//!
//! Run with `cargo test -p safemap --features shuttle --test shuttle_refresh`.
//! Each write has four scheduling points (its key's lock, the claim, the
//! window between claim and publish, the completion), which puts the full
//! search out of reach: CI samples 2000 PCT + 2000 random schedules,
//! `SAFEMAP_PROOF_LONG=1` 50 000 + 50 000. A control shows the check has
//! teeth: refreshing by remove-then-insert is caught missing.

#![cfg(feature = "shuttle")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::explore::{Fixed, sampled};
use safemap::{Reason, Revision, SafeMap};
use shuttle::thread;

type Map = SafeMap<u32, u32, Fixed>;

fn preloaded(keys: u32) -> Arc<Map> {
    let map = Arc::new(SafeMap::builder().hasher(Fixed::default()).build());
    for k in 0..keys {
        let _ = map.insert(k, 0);
    }
    map
}

/// A reader polling keys 0..3 while `refresher` runs: every read finds the
/// key, and no key's revision goes backwards for the reader.
fn readers_never_miss(refresher: impl Fn(&Map) + Send + Sync + 'static) {
    let refresher = Arc::new(refresher);
    sampled(common::scaled(2_000, 50_000), move || {
        let map = preloaded(3);
        let a = Arc::clone(&map);
        let refresher = Arc::clone(&refresher);
        let writer = thread::spawn(move || refresher(&a));
        let b = Arc::clone(&map);
        let reader = thread::spawn(move || {
            let mut last = [Revision::ZERO; 3];
            for _ in 0..3 {
                for k in 0..3u32 {
                    let entry = b.get(&k);
                    let entry = entry.unwrap_or_else(|| panic!("key {k} missed during a refresh"));
                    assert!(entry.revision() >= last[k as usize], "revision went back");
                    last[k as usize] = entry.revision();
                    thread::yield_now();
                }
            }
        });
        writer.join().unwrap();
        reader.join().unwrap();
    });
}

#[test]
fn a_key_being_refreshed_is_never_absent() {
    readers_never_miss(|map| {
        for round in 1..=2 {
            let revisions = map.refresh((0..3).map(|k| (k, round)));
            assert_eq!(revisions.len(), 3);
        }
    });
}

/// Control: refreshing by removing and re-inserting (what `sync.Map` users
/// did) opens a miss window, and the same check finds it.
#[test]
fn the_check_catches_refresh_by_remove_then_insert() {
    let caught = std::panic::catch_unwind(|| {
        readers_never_miss(|map| {
            for k in 0..3 {
                let _ = map.remove(&k, Reason::new("stale"));
                let _ = map.insert(k, 1);
            }
        })
    });
    assert!(caught.is_err(), "the miss window went unnoticed");
}

/// Each refreshed entry is its own write: a concurrent writer lands between
/// two of them or outside the refresh, never sharing a revision; the
/// refresh's revisions increase in input order.
#[test]
fn a_refresh_is_one_write_per_entry_in_input_order() {
    sampled(common::scaled(2_000, 50_000), || {
        let map = preloaded(0);
        let a = Arc::clone(&map);
        let refresher = thread::spawn(move || a.refresh((0..6).map(|k| (k, 1))));
        let b = Arc::clone(&map);
        let writer = thread::spawn(move || b.insert(5000, 2).unwrap().revision());
        let revisions = refresher.join().unwrap();
        let other = writer.join().unwrap();
        assert_eq!(revisions.len(), 6);
        assert!(revisions.windows(2).all(|w| w[0] < w[1]));
        assert!(!revisions.contains(&other));
        assert_eq!(map.len(), 7);
        assert_eq!(map.current_revision().get(), 7);
        let mut all: Vec<u64> = revisions.iter().map(|r| r.get()).collect();
        all.push(other.get());
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=7).collect::<Vec<_>>(),
            "no revision lost or shared"
        );
    });
}
