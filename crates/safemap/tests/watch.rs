//! The change stream.

use std::sync::Arc;
use std::time::Duration;

use safemap::{Journal, Op, Reason, Revision, SafeMap, WatchError};

#[test]
fn a_watch_from_a_revision_replays_then_follows() {
    let map = SafeMap::builder().record_puts(true).build();
    let first = map.insert("a", 1).unwrap().revision();
    let _ = map.insert("b", 2);
    let _ = map.remove("a", "x").unwrap();
    let mut watcher = map.watch(Some(first)).unwrap();
    let ops: Vec<_> = std::iter::from_fn(|| watcher.try_next().unwrap())
        .map(|e| (e.op, e.key, e.value))
        .collect();
    assert_eq!(
        ops,
        vec![
            (Op::Put, "a", Some(1)),
            (Op::Put, "b", Some(2)),
            (Op::Delete, "a", None)
        ]
    );
    let _ = map.insert("c", 3);
    let next = watcher
        .next_blocking(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    assert_eq!((next.key, next.value), ("c", Some(3)));
    assert_eq!(watcher.try_next(), Ok(None));
}

#[test]
fn a_watch_without_revision_starts_at_the_next_write() {
    let map = SafeMap::new();
    let _ = map.insert("a", 1);
    let mut watcher = map.watch(None).unwrap();
    assert_eq!(watcher.try_next(), Ok(None));
    let w = map.insert("b", 2).unwrap();
    assert_eq!(watcher.try_next().unwrap().unwrap().revision, w.revision());
}

#[test]
fn a_watch_from_an_evicted_revision_is_compacted() {
    let journal = Journal::builder().capacity(3).record_puts(true).build();
    let map = SafeMap::builder().journal(journal).build();
    for i in 0..10 {
        let _ = map.insert(i, i);
    }
    assert_eq!(
        map.watch(Some(Revision::new(2))).err(),
        Some(WatchError::Compacted {
            oldest: Revision::new(8)
        })
    );
    let mut ok = map.watch(Some(Revision::new(8))).unwrap();
    assert_eq!(ok.try_next().unwrap().unwrap().revision, Revision::new(8));
}

#[test]
fn a_watcher_that_falls_behind_gets_compacted_not_silence() {
    let journal = Journal::builder().capacity(4).build();
    let map = SafeMap::builder().journal(journal).build();
    let mut watcher = map.watch(None).unwrap();
    for i in 0..10 {
        let _ = map.insert(i, i);
    }
    assert!(matches!(
        watcher.try_next(),
        Err(WatchError::Compacted { .. })
    ));
}

#[test]
fn watchers_of_a_shared_journal_see_only_their_map() {
    let journal = Journal::new();
    let a = SafeMap::builder()
        .name("a")
        .journal(journal.clone())
        .build();
    let b = SafeMap::builder()
        .name("b")
        .journal(journal.clone())
        .build();
    let mut watch_b = b.watch(Some(Revision::new(1))).unwrap();
    let ra = a.insert(1, 1).unwrap().revision();
    let rb = b.insert(1, 1).unwrap().revision();
    assert!(rb > ra, "one counter across maps");
    let event = watch_b.try_next().unwrap().unwrap();
    assert_eq!((&*event.map, event.revision), ("b", rb));
    assert_eq!(watch_b.try_next(), Ok(None));
}

#[test]
fn under_four_writers_the_stream_equals_the_journal_with_no_gap() {
    // Bounded by work, not by time: a fast machine and a slow one make the
    // same number of writes, well within the journal's capacity.
    const WRITES_PER_WRITER: u64 = 5_000;
    let map = Arc::new(SafeMap::new());
    // Registered before any write: every put is recorded while it watches.
    let mut watcher = map.watch(Some(Revision::new(1))).unwrap();
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                for i in 0..WRITES_PER_WRITER {
                    let key = (t * 1000 + i) % 97;
                    if i % 4 == 3 {
                        let _ = map.remove(&key, Reason::new("churn"));
                    } else {
                        let _ = map.insert(key, i);
                    }
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    while !writers.iter().all(|w| w.is_finished()) {
        if let Some(event) = watcher.next_blocking(Duration::from_millis(50)).unwrap() {
            seen.push(event.revision);
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    while let Some(event) = watcher.try_next().unwrap() {
        seen.push(event.revision);
    }
    let journal: Vec<_> = map
        .journal()
        .unwrap()
        .query(&Default::default())
        .iter()
        .map(|r| r.revision)
        .collect();
    assert!(
        seen.len() as u64 >= 4 * WRITES_PER_WRITER * 3 / 4,
        "every put was seen: {}",
        seen.len()
    );
    assert_eq!(seen, journal, "same events, same order");
    // A map with its own journal draws every revision: no gap at all.
    assert!(seen.windows(2).all(|w| w[1].get() == w[0].get() + 1));
}

#[test]
fn an_async_watcher_wakes_on_a_write() {
    let map = Arc::new(SafeMap::new());
    let mut watcher = map.watch(None).unwrap();
    let writer = {
        let map = Arc::clone(&map);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let _ = map.insert("k", 1);
        })
    };
    let event = block_on(watcher.next()).unwrap();
    assert_eq!(event.key, "k");
    writer.join().unwrap();
}

/// A minimal executor: parks the thread until the future's waker fires.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park_timeout(Duration::from_secs(5));
    }
}

#[test]
fn a_watch_from_revision_zero_on_a_fresh_map_is_not_compacted() {
    let map = SafeMap::new();
    let mut watcher = map.watch(Some(Revision::ZERO)).unwrap();
    let w = map.insert("a", 1).unwrap();
    assert_eq!(watcher.try_next().unwrap().unwrap().revision, w.revision());
}

#[test]
fn by_default_puts_are_recorded_only_while_someone_watches() {
    let map = SafeMap::new();
    let unwatched = map.insert("a", 1).unwrap();
    assert_eq!(unwatched.audit_id(), None, "nobody could ask for it");
    assert_eq!(map.journal().unwrap().len(), 0);
    // A watch that needs the unrecorded put says so, as etcd does after compaction.
    assert_eq!(
        map.watch(Some(unwatched.revision())).err(),
        Some(WatchError::Compacted {
            oldest: Revision::new(unwatched.revision().get() + 1)
        })
    );
    let mut watcher = map.watch(None).unwrap();
    let watched = map.insert("b", 2).unwrap();
    assert!(watched.audit_id().is_some());
    let event = watcher.try_next().unwrap().unwrap();
    assert_eq!((event.key, event.value), ("b", Some(2)));
    drop(watcher);
    assert_eq!(
        map.insert("c", 3).unwrap().audit_id(),
        None,
        "the watcher left"
    );
    // Removals are always recorded: restore needs the removed value.
    let removed = map.remove("c", "cleanup").unwrap();
    assert!(removed.audit_id().is_some());
    assert_eq!(map.journal().unwrap().len(), 2);
}

#[test]
fn maps_left_with_the_default_name_on_one_journal_never_see_each_other() {
    let journal = Journal::new();
    let a = SafeMap::builder().journal(journal.clone()).build();
    let b = SafeMap::builder().journal(journal.clone()).build();
    assert_eq!(a.name(), b.name(), "both carry the default name");
    let mut a_changes = a.watch(None).unwrap();
    let _ = b.insert("k", "b's value");
    let b_removal = b.remove("k", "cleanup").unwrap().audit_id().unwrap();
    assert_eq!(a_changes.try_next(), Ok(None), "b's writes are not a's");
    assert_eq!(
        a.restore(b_removal, "undo"),
        Err(safemap::RestoreError::NotFound)
    );
    assert!(a.get("k").is_none());
    assert_eq!(b.restore(b_removal, "undo").unwrap().restored.len(), 1);
}
