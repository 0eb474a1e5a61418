//! Model checking (shuttle) of watch publication: a watcher started at any
//! point of concurrent writes (to its map and to another map sharing the
//! journal) never sees a gap or a duplicate, sees revisions in order, and
//! only sees a write once it is visible to readers.
//!
//! Run with `cargo test -p safemap --features shuttle --test shuttle_watch`.
//! CI: 1000 PCT + 1000 random schedules; `SAFEMAP_PROOF_LONG=1`: 50 000 +
//! 50 000 (the full search is too large: every poll is a scheduling point). The watcher polls with `try_next` (a blocking `next_blocking`
//! would park the one OS thread that shuttle runs every modelled thread on).

#![cfg(feature = "shuttle")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::explore::{Fixed, sampled};
use safemap::{AuditId, Event, Journal, Op, Reason, Revision, SafeMap, Watcher};
use shuttle::thread;

type Map = SafeMap<u32, u32, Fixed>;

fn map_on(journal: &Journal<u32, u32>, name: &str) -> Arc<Map> {
    Arc::new(
        SafeMap::builder()
            .hasher(Fixed::default())
            .name(name)
            .journal(journal.clone())
            .build(),
    )
}

/// Checks, as an event arrives, that its write is already visible.
fn assert_visible(map: &Map, event: &Event<u32, u32>) {
    assert!(
        map.current_revision() >= event.revision,
        "event before its revision was published"
    );
    let now = map.get(&event.key).map(|e| e.revision());
    match event.op {
        // The put is there, or something newer replaced or removed it.
        Op::Put | Op::Restore => assert!(
            now.is_none_or(|r| r >= event.revision),
            "put event at {} but the key reads {now:?}",
            event.revision
        ),
        Op::Delete => assert!(
            now.is_none_or(|r| r > event.revision),
            "delete event at {} but the key still reads {now:?}",
            event.revision
        ),
    }
}

fn drain(map: &Map, watcher: &mut Watcher<u32, u32>, into: &mut Vec<Event<u32, u32>>) {
    while let Some(event) = watcher.try_next().unwrap() {
        assert_visible(map, &event);
        into.push(event);
    }
}

#[test]
fn a_watcher_started_at_any_point_sees_later_writes_in_order_without_gaps() {
    sampled(common::scaled(1000, 50_000), || {
        let journal: Journal<u32, u32> = Journal::builder().record_puts(true).build();
        let a = map_on(&journal, "a");
        let b = map_on(&journal, "b");
        let _ = a.insert(0, 1);
        let w1 = {
            let (a, b) = (Arc::clone(&a), Arc::clone(&b));
            thread::spawn(move || {
                let rev = a.insert(0, 2).unwrap().revision();
                let _ = b.insert(0, 1);
                let _ = a.replace_if(0, rev, 3);
                let _ = a.remove(&0, Reason::new("w1"));
            })
        };
        let w2 = {
            let (a, b) = (Arc::clone(&a), Arc::clone(&b));
            thread::spawn(move || {
                let _ = a.insert(1, 1);
                let _ = b.remove(&0, Reason::new("w2"));
                let _ = a.insert(0, 4);
            })
        };
        let watching = {
            let (a, journal) = (Arc::clone(&a), journal.clone());
            thread::spawn(move || {
                // From the next write on: ids above `before` at the earliest.
                let before = journal.last_audit_id();
                let mut next = a.watch(None).unwrap();
                let after = journal.last_audit_id();
                // From a revision: exactly the records at or above it.
                let from = Revision::new(a.current_revision().get() + 1);
                let mut from_rev = a.watch(Some(from)).unwrap();
                let (mut seen, mut seen_from) = (Vec::new(), Vec::new());
                for _ in 0..3 {
                    drain(&a, &mut next, &mut seen);
                    drain(&a, &mut from_rev, &mut seen_from);
                    thread::yield_now();
                }
                (before, after, next, seen, from, from_rev, seen_from)
            })
        };
        w1.join().unwrap();
        w2.join().unwrap();
        let (before, after, mut next, mut seen, from, mut from_rev, mut seen_from) =
            watching.join().unwrap();
        drain(&a, &mut next, &mut seen);
        drain(&a, &mut from_rev, &mut seen_from);

        let records: Vec<_> = journal
            .query(&Default::default())
            .into_iter()
            .filter(|r| &*r.map == "a")
            .collect();
        let ids = |events: &[Event<u32, u32>]| events.iter().map(|e| e.id).collect::<Vec<_>>();
        // Watch from the next write: a suffix of map a's records that holds
        // every record appended after watch() returned, none from before it.
        let seen_ids = ids(&seen);
        let suffix: Vec<AuditId> = records
            .iter()
            .map(|r| r.id)
            .skip_while(|id| seen_ids.first().is_none_or(|first| id < first))
            .collect();
        assert_eq!(seen_ids, suffix, "gap, duplicate or disorder");
        assert!(seen_ids.iter().all(|id| *id > before));
        let must: Vec<AuditId> = records
            .iter()
            .map(|r| r.id)
            .filter(|id| *id > after)
            .collect();
        assert!(
            must.iter().all(|id| seen_ids.contains(id)),
            "missed {must:?}: saw {seen_ids:?}"
        );
        // Watch from a revision: exactly the records at or above it.
        let want: Vec<AuditId> = records
            .iter()
            .filter(|r| r.revision >= from)
            .map(|r| r.id)
            .collect();
        assert_eq!(ids(&seen_from), want);
        for events in [&seen, &seen_from] {
            assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));
            assert!(events.iter().all(|e| &*e.map == "a"));
        }
    });
}
