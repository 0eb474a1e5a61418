//! Model checking (shuttle) of the sequencer: writes to different keys claim
//! their revisions under the journal's lock and publish outside it, so a
//! revision can be claimed while an earlier one is still in flight. Checked
//! over interleavings, including every point between a claim and its publish:
//!
//! * the published revision never runs ahead of a write still in flight: a
//!   reader that sees `current_revision() == r` finds every write up to r;
//! * a write that returned is covered by `current_revision` (read-your-writes);
//! * a snapshot is a consistent cut: exactly the writes up to its revision;
//! * a watcher gets every event once, in revision order, only once visible.
//!
//! Run with `cargo test -p safemap --features shuttle --test shuttle_sequencer`.
//! CI: sampled schedules (PCT + random); `SAFEMAP_PROOF_LONG=1`: every schedule.

#![cfg(feature = "shuttle")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::explore::{Fixed, exhaustive_when_long};
use safemap::{Revision, SafeMap};
use shuttle::thread;

type Map = SafeMap<u32, u32, Fixed>;

/// Each writer creates its own keys, so on a fresh map revision r is the r-th
/// key created, and "every write up to r is visible" means "at least r keys".
fn visible_keys(map: &Map, writers: u32, per_writer: u32) -> u64 {
    (0..writers * per_writer)
        .filter(|k| map.contains_key(k))
        .count() as u64
}

#[test]
fn the_published_revision_never_runs_ahead_of_a_write_in_flight() {
    const WRITERS: u32 = 2;
    const PER_WRITER: u32 = 2;
    exhaustive_when_long(3000, || {
        let map = Arc::new(SafeMap::builder().hasher(Fixed::default()).build());
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let map: Arc<Map> = Arc::clone(&map);
                thread::spawn(move || {
                    for i in 0..PER_WRITER {
                        let written = map.insert(t * PER_WRITER + i, i).unwrap();
                        assert!(
                            map.current_revision() >= written.revision(),
                            "a returned write is not covered by current_revision"
                        );
                    }
                })
            })
            .collect();
        let observer = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                for _ in 0..3 {
                    let published = map.current_revision().get();
                    let visible = visible_keys(&map, WRITERS, PER_WRITER);
                    assert!(
                        visible >= published,
                        "current_revision {published} but only {visible} writes visible"
                    );
                    thread::yield_now();
                }
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        observer.join().unwrap();
        assert_eq!(
            map.current_revision(),
            Revision::new(u64::from(WRITERS * PER_WRITER))
        );
    });
}

#[test]
fn a_snapshot_is_exactly_the_writes_up_to_its_revision() {
    const WRITERS: u32 = 2;
    const PER_WRITER: u32 = 2;
    exhaustive_when_long(3000, || {
        let map: Arc<Map> = Arc::new(SafeMap::builder().hasher(Fixed::default()).build());
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let map = Arc::clone(&map);
                thread::spawn(move || {
                    for i in 0..PER_WRITER {
                        let _ = map.insert(t * PER_WRITER + i, i);
                    }
                })
            })
            .collect();
        let snapshot = map.snapshot();
        assert_eq!(
            snapshot.len() as u64,
            snapshot.revision().get(),
            "a snapshot at revision r holds exactly the r keys created by then"
        );
        for w in writers {
            w.join().unwrap();
        }
    });
}

#[test]
fn a_watcher_gets_every_event_once_in_order_and_only_once_visible() {
    const WRITERS: u32 = 2;
    const PER_WRITER: u32 = 2;
    exhaustive_when_long(3000, || {
        let map: Arc<Map> = Arc::new(SafeMap::builder().hasher(Fixed::default()).build());
        let mut watcher = map.watch(Some(Revision::new(1))).unwrap();
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let map = Arc::clone(&map);
                thread::spawn(move || {
                    for i in 0..PER_WRITER {
                        let _ = map.insert(t * PER_WRITER + i, i);
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < (WRITERS * PER_WRITER) as usize {
            match watcher.try_next().unwrap() {
                Some(event) => {
                    assert!(
                        map.contains_key(&event.key),
                        "event at {} before its write was visible",
                        event.revision
                    );
                    seen.push(event.revision.get());
                }
                None => thread::yield_now(),
            }
        }
        let expected: Vec<u64> = (1..=u64::from(WRITERS * PER_WRITER)).collect();
        assert_eq!(seen, expected, "every event once, in revision order");
        for w in writers {
            w.join().unwrap();
        }
    });
}

/// Several writes asleep at once on the watermark (revision 3 waiting for 2,
/// which waits for 1) and a quiescer asleep beside them: each is woken, the
/// watermark passes every revision in order, and nothing is left asleep
/// (shuttle reports a deadlock if a notification is lost).
#[test]
fn writes_and_a_quiescer_asleep_on_the_watermark_are_all_woken() {
    const WRITERS: u32 = 3;
    exhaustive_when_long(3000, || {
        let map: Arc<Map> = Arc::new(SafeMap::builder().hasher(Fixed::default()).build());
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let map = Arc::clone(&map);
                thread::spawn(move || {
                    let written = map.insert(t, t).unwrap();
                    assert!(
                        map.current_revision() >= written.revision(),
                        "a returned write is not covered by current_revision"
                    );
                })
            })
            .collect();
        let snapshot = map.snapshot();
        assert_eq!(
            snapshot.len() as u64,
            snapshot.revision().get(),
            "a snapshot at revision r holds exactly the r keys created by then"
        );
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(map.current_revision(), Revision::new(u64::from(WRITERS)));
    });
}
