//! In-place refresh: the cure for the incident. A key being refreshed is never
//! observably absent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use safemap::{Op, SafeMap};

#[test]
fn refreshed_keys_are_never_absent_to_concurrent_readers() {
    let keys = 5_000u64;
    let map = SafeMap::builder().without_journal().build();
    let _ = map.refresh((0..keys).map(|k| (k, 0u64)));
    let stop = AtomicBool::new(false);
    let misses = AtomicU64::new(0);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        for r in 0..2u64 {
            let (map, stop, misses, reads) = (&map, &stop, &misses, &reads);
            s.spawn(move || {
                let mut k = r;
                while !stop.load(Ordering::Relaxed) {
                    k = k
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407)
                        % keys;
                    if map.get(&k).is_none() {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for round in 1..=20u64 {
            let _ = map.refresh((0..keys).filter(|k| k % 3 == round % 3).map(|k| (k, round)));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(misses.load(Ordering::Relaxed), 0);
    assert_eq!(map.len(), keys as usize);
}

#[test]
fn refresh_gives_each_entry_its_own_revision_and_record() {
    let map = SafeMap::builder().record_puts(true).build();
    let _ = map.insert("a", 0);
    let revisions = map.refresh([("a", 1), ("b", 2), ("c", 3)]);
    assert_eq!(revisions.len(), 3);
    assert!(revisions.windows(2).all(|w| w[0] < w[1]));
    let a = map.get("a").unwrap();
    assert_eq!((a.revision(), a.version()), (revisions[0], 2));
    let journal = map.journal().unwrap();
    assert_eq!(journal.len(), 4);
    assert!(
        journal
            .query(&Default::default())
            .iter()
            .all(|r| r.op == Op::Put)
    );
}

#[test]
fn a_refresh_larger_than_one_chunk_applies_every_entry() {
    let map = SafeMap::new();
    let revisions = map.refresh((0..5000u32).map(|k| (k, k)));
    assert_eq!(revisions.len(), 5000);
    assert_eq!(map.len(), 5000);
    assert_eq!(map.get(&4999).unwrap().revision(), revisions[4999]);
}
