//! Single-key removal: the edge cases of library.md, each a named test.

use std::sync::Barrier;

use safemap::{DeleteError, Op, Reason, Revision, SafeMap};

fn why() -> Reason {
    Reason::new("test")
}

#[test]
fn removing_from_an_empty_map_is_not_found_and_journals_nothing() {
    let map: SafeMap<String, u32> = SafeMap::new();
    assert_eq!(map.remove("a", why()), Err(DeleteError::NotFound));
    assert_eq!(map.journal().unwrap().len(), 0);
    assert_eq!(map.current_revision(), Revision::ZERO);
    assert_eq!(map.stats().deletes.not_found, 1);
}

#[test]
fn removing_an_absent_key_changes_nothing_else() {
    let map = SafeMap::builder().record_puts(true).build();
    let written = map.insert("a".to_string(), 1).unwrap();
    assert_eq!(map.remove("b", why()), Err(DeleteError::NotFound));
    let entry = map.get("a").unwrap();
    assert_eq!(entry.revision(), written.revision());
    assert_eq!(
        map.journal().unwrap().len(),
        1,
        "only the insert is journaled"
    );
    assert_eq!(map.current_revision(), written.revision());
}

#[test]
fn removing_the_same_key_twice_fails_the_second_time_with_one_record() {
    let map = SafeMap::new();
    let _ = map.insert("a".to_string(), 1);
    let removed = map.remove("a", why()).unwrap();
    assert_eq!(*removed.value(), 1);
    assert_eq!(map.remove("a", why()), Err(DeleteError::NotFound));
    let deletes: Vec<_> = map
        .journal()
        .unwrap()
        .for_key(&"a".to_string())
        .into_iter()
        .filter(|r| r.op == Op::Delete)
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].previous_value, Some(1));
    assert_eq!(deletes[0].reason.as_deref(), Some("test"));
}

#[test]
fn a_removal_without_a_reason_is_refused_before_anything_else() {
    let map = SafeMap::new();
    let _ = map.insert("a".to_string(), 1);
    assert_eq!(
        map.remove("a", Reason::none()),
        Err(DeleteError::ReasonRequired)
    );
    assert_eq!(map.remove("zz", ""), Err(DeleteError::ReasonRequired));
    assert_eq!(
        map.remove("a", "x".repeat(safemap::MAX_REASON_LEN + 1)),
        Err(DeleteError::ReasonTooLong)
    );
    assert!(map.contains_key("a"));
}

#[test]
fn n_threads_removing_the_same_key_have_exactly_one_winner_and_one_record() {
    for round in 0..50 {
        let map = SafeMap::new();
        let _ = map.insert(round, "v");
        let threads = 8;
        let barrier = Barrier::new(threads);
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        map.remove(&round, why()).is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(winners, 1);
        let records = map.journal().unwrap().for_key(&round);
        assert_eq!(records.iter().filter(|r| r.op == Op::Delete).count(), 1);
        assert_eq!(map.stats().deletes.not_found, threads as u64 - 1);
    }
}

#[test]
fn remove_if_with_a_revision_from_before_a_remove_and_reinsert_is_a_mismatch() {
    let map = SafeMap::new();
    let old = map.insert("k".to_string(), 1).unwrap().revision();
    let _ = map.remove("k", why()).unwrap();
    let new = map.insert("k".to_string(), 1).unwrap();
    assert_eq!(new.version(), 1, "a recreated key starts a new life");
    assert_eq!(
        map.remove_if("k", old, why()),
        Err(DeleteError::RevisionMismatch {
            current: Some(new.revision())
        })
    );
    assert!(map.contains_key("k"));
    assert!(map.remove_if("k", new.revision(), why()).is_ok());
}

#[test]
fn remove_if_on_an_absent_key_is_not_found() {
    let map: SafeMap<String, u32> = SafeMap::new();
    assert_eq!(
        map.remove_if("k", Revision::new(1), why()),
        Err(DeleteError::NotFound)
    );
}

#[test]
fn the_revision_counter_never_goes_backwards_under_concurrent_writers() {
    let map = SafeMap::builder().record_puts(true).build();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let map = &map;
            s.spawn(move || {
                let mut last = Revision::ZERO;
                for i in 0..2000u64 {
                    let key = (t * 7 + i) % 64;
                    let revision = if i % 3 == 0 {
                        match map.remove(&key, why()) {
                            Ok(r) => r.revision(),
                            Err(_) => continue,
                        }
                    } else {
                        map.insert(key, i).unwrap().revision()
                    };
                    assert!(revision > last, "{revision} after {last}");
                    last = revision;
                    let seen = map.current_revision();
                    assert!(
                        seen >= revision,
                        "current {seen} behind own write {revision}"
                    );
                }
            });
        }
    });
    let records = map.journal().unwrap().query(&Default::default());
    assert!(
        records
            .windows(2)
            .all(|w| w[0].revision < w[1].revision && w[0].id < w[1].id)
    );
    assert_eq!(records.last().unwrap().revision, map.current_revision());
}

#[test]
fn the_removed_value_and_revisions_are_reported() {
    let map = SafeMap::new();
    let w = map.insert("k", 5).unwrap();
    let removed = map.remove("k", why()).unwrap();
    assert_eq!(removed.previous_revision(), w.revision());
    assert!(removed.revision() > w.revision());
    let record = map
        .journal()
        .unwrap()
        .get(removed.audit_id().unwrap())
        .unwrap();
    assert_eq!(record.revision, removed.revision());
    assert_eq!(record.previous_revision, Some(w.revision()));
}
