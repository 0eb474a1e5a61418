//! Iteration and snapshots.

use std::collections::HashSet;

use safemap::{Reason, SafeMap};

#[test]
fn removing_while_iterating_on_the_same_thread_yields_each_survivor_once() {
    let map: SafeMap<u32, u32> = SafeMap::new();
    let _ = map.refresh((0..2000).map(|k| (k, k)));
    let mut seen = HashSet::new();
    let view = map.pin();
    for entry in view.iter() {
        assert!(seen.insert(*entry.key()), "{} yielded twice", entry.key());
        if entry.value() % 2 == 0 {
            let _ = map.remove(entry.key(), Reason::new("expired")).unwrap();
        }
        // Removing a key not yet visited: it may or may not be yielded later.
        if entry.key() % 10 == 1 {
            let _ = map.remove(&(entry.key() + 2), Reason::new("expired"));
        }
    }
    drop(view);
    let survivors: HashSet<u32> = (0..2000).filter(|k| k % 2 == 1 && k % 10 != 3).collect();
    assert!(
        survivors.is_subset(&seen),
        "every key present throughout was yielded"
    );
    assert_eq!(map.len(), survivors.len());
}

#[test]
fn a_snapshot_is_a_consistent_copy_at_one_revision() {
    let map: SafeMap<u32, u32> = SafeMap::new();
    let _ = map.refresh((0..100).map(|k| (k, k)));
    let snapshot = map.snapshot();
    let _ = map.insert(500, 5);
    let _ = map.remove(&1, "x").unwrap();
    assert_eq!(snapshot.len(), 100);
    assert_eq!(snapshot.revision().get(), 100);
    assert!(snapshot.get(&1).is_some() && snapshot.get(&500).is_none());
    assert!(
        snapshot
            .iter()
            .all(|(_, e)| e.revision() <= snapshot.revision())
    );
}
