//! The audit journal: records, queries, eviction, sinks, sharing.

use std::sync::Arc;

use parking_lot::Mutex;
use safemap::{
    AuditId, AuditQuery, AuditRecord, Journal, JournalSink, Op, Reason, Revision, SafeMap,
};

#[derive(Default)]
struct Collect(Mutex<Vec<AuditId>>);

impl JournalSink<String, u32> for Collect {
    fn append(&self, record: &Arc<AuditRecord<String, u32>>) {
        self.0.lock().push(record.id);
    }
}

#[test]
fn every_successful_write_has_exactly_one_record_and_refusals_none() {
    let sink = Arc::new(Collect::default());
    let journal = Journal::builder().sink(sink.clone()).build();
    let map: SafeMap<String, u32> = SafeMap::builder()
        .journal(journal.clone())
        .deny_delete("zero", |_, v| *v == 0)
        .build();
    let _ = map.insert("a".into(), 1);
    let _ = map.insert("z".into(), 0);
    assert!(map.insert_if_absent("a".into(), 2).is_err());
    assert!(map.replace_if("a".into(), Revision::new(99), 2).is_err());
    assert!(map.remove("z", "x").is_err());
    assert!(map.remove("nope", "x").is_err());
    let removed = map
        .remove(
            "a",
            Reason::new("done")
                .with_actor("alice")
                .with_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"),
        )
        .unwrap();
    let ids: Vec<_> = journal
        .query(&AuditQuery::default())
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(*sink.0.lock(), ids, "the sink saw every record, in order");
    let record = journal.get(removed.audit_id().unwrap()).unwrap();
    assert_eq!(record.op, Op::Delete);
    assert_eq!(record.actor.as_deref(), Some("alice"));
    assert_eq!(
        record.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(record.previous_value, Some(1));
}

#[test]
fn queries_filter_by_map_key_plan_and_page_after_an_id() {
    let journal = Journal::builder().record_puts(true).build();
    let a: SafeMap<String, u32> = SafeMap::builder()
        .name("a")
        .journal(journal.clone())
        .build();
    let b: SafeMap<String, u32> = SafeMap::builder()
        .name("b")
        .journal(journal.clone())
        .build();
    for i in 0..5 {
        let _ = a.insert(format!("k{i}"), i);
        let _ = b.insert(format!("k{i}"), i);
    }
    let only_a = journal.query(&AuditQuery {
        map: Some("a".into()),
        ..Default::default()
    });
    assert_eq!(only_a.len(), 5);
    let page = journal.query(&AuditQuery {
        after: Some(only_a[1].id),
        limit: 3,
        ..Default::default()
    });
    assert_eq!(page.len(), 3);
    assert!(page[0].id > only_a[1].id);
    let k1 = journal.query(&AuditQuery {
        key: Some("k1".into()),
        map: Some("b".into()),
        ..Default::default()
    });
    assert_eq!(k1.len(), 1);
    assert_eq!(&*k1[0].map, "b");
}

#[test]
fn the_size_cap_evicts_the_oldest_and_counts_it() {
    let journal = Journal::builder().capacity(10).record_puts(true).build();
    let map: SafeMap<u32, u32> = SafeMap::builder().journal(journal.clone()).build();
    let first = map.insert(0, 0).unwrap().audit_id().unwrap();
    for i in 1..25 {
        let _ = map.insert(i, i);
    }
    assert_eq!(journal.len(), 10);
    assert_eq!(journal.evicted(), 15);
    assert!(journal.get(first).is_none() && journal.was_evicted(first));
    assert_eq!(map.stats().journal_evicted, 15);
}

#[test]
fn a_journal_started_after_an_earlier_life_continues_its_counters() {
    let journal = Journal::builder()
        .start_after(Revision::new(500), AuditId::new(70))
        .record_puts(true)
        .build();
    let map: SafeMap<String, u32> = SafeMap::builder().journal(journal.clone()).build();
    let w = map.insert("a".into(), 1).unwrap();
    assert_eq!(w.revision(), Revision::new(501));
    assert_eq!(w.audit_id(), Some(AuditId::new(71)));
}

#[test]
fn loaded_records_and_entries_come_back_without_the_sink() {
    let sink = Arc::new(Collect::default());
    let journal = Journal::builder().sink(sink.clone()).build();
    let original: SafeMap<String, u32> = SafeMap::builder()
        .name("orders")
        .journal(journal.clone())
        .build();
    let _ = original.insert("a".into(), 1);
    let removed = original.remove("a", "x").unwrap();
    let records: Vec<_> = journal
        .query(&AuditQuery::default())
        .iter()
        .map(|r| (**r).clone())
        .collect();

    let sink2 = Arc::new(Collect::default());
    let revived = Journal::builder().sink(sink2.clone()).build();
    assert_eq!(revived.load(records), 2);
    // The map that owns the loaded records is the one with their name.
    let map: SafeMap<String, u32> = SafeMap::builder()
        .name("orders")
        .journal(revived.clone())
        .build();
    map.load_entry("b".into(), 5, Revision::new(9), Revision::new(9), 1);
    assert!(sink2.0.lock().is_empty());
    assert_eq!(map.current_revision(), Revision::new(9));
    assert_eq!(map.get("b").unwrap().revision(), Revision::new(9));
    assert!(map.insert("c".into(), 1).unwrap().revision() > Revision::new(9));
    // The removal from the earlier life can still be restored.
    assert_eq!(
        map.restore(removed.audit_id().unwrap(), "undo")
            .unwrap()
            .restored
            .len(),
        1
    );
}

#[test]
fn stats_count_reads_and_writes() {
    let map: SafeMap<u32, u32> = SafeMap::new();
    let _ = map.insert(1, 1);
    assert!(map.get(&1).is_some());
    assert!(map.get(&2).is_none());
    assert!(map.pin().get(&1).is_some());
    let stats = map.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.puts, stats.entries),
        (2, 1, 1, 1)
    );
}

#[test]
fn an_earlier_life_that_is_not_held_is_compacted_not_silently_skipped() {
    let journal = Journal::builder()
        .start_after(Revision::new(500), AuditId::new(70))
        .build();
    let map: SafeMap<String, u32> = SafeMap::builder().journal(journal.clone()).build();
    assert_eq!(
        map.watch(Some(Revision::new(10))).err(),
        Some(safemap::WatchError::Compacted {
            oldest: Revision::new(501)
        })
    );
    assert_eq!(
        map.restore(AuditId::new(5), "undo"),
        Err(safemap::RestoreError::RetentionExpired)
    );
    assert!(map.watch(Some(Revision::new(501))).is_ok());
}

#[test]
fn loaded_records_are_watchable_and_what_precedes_them_is_compacted() {
    let original: SafeMap<String, u32> =
        SafeMap::builder().name("orders").record_puts(true).build();
    for i in 0..5 {
        let _ = original.insert(format!("k{i}"), i);
    }
    let held: Vec<_> = original
        .journal()
        .unwrap()
        .query(&AuditQuery::default())
        .iter()
        .skip(2)
        .map(|r| (**r).clone())
        .collect();
    let revived = Journal::builder()
        .start_after(Revision::new(2), AuditId::new(2))
        .build();
    assert_eq!(revived.load(held), 3);
    let map: SafeMap<String, u32> = SafeMap::builder().name("orders").journal(revived).build();
    assert_eq!(
        map.watch(Some(Revision::new(2))).err(),
        Some(safemap::WatchError::Compacted {
            oldest: Revision::new(3)
        })
    );
    let mut from_three = map.watch(Some(Revision::new(3))).unwrap();
    assert_eq!(
        from_three.try_next().unwrap().unwrap().revision,
        Revision::new(3)
    );
}

#[test]
fn a_query_after_the_largest_id_is_empty_not_a_panic() {
    let map: SafeMap<u32, u32> = SafeMap::builder().record_puts(true).build();
    let _ = map.insert(1, 1);
    let page = map.journal().unwrap().query(&AuditQuery {
        after: Some(AuditId::new(u64::MAX)),
        ..Default::default()
    });
    assert!(page.is_empty());
}

#[test]
fn the_newest_matching_records_come_newest_first_and_stop_at_the_limit() {
    let map: SafeMap<u32, u32> = SafeMap::builder().name("m").record_puts(true).build();
    for k in 0..10 {
        let _ = map.insert(k, k);
    }
    for k in 0..10 {
        let _removed = map.remove(&k, Reason::new(format!("gone {k}"))).unwrap();
    }
    let journal = map.journal().unwrap();
    let deletes = |q: &AuditQuery<u32>| -> Vec<u32> {
        journal
            .query_newest(q, |r| r.op == Op::Delete && r.key % 2 == 0)
            .iter()
            .map(|r| r.key)
            .collect()
    };
    let limit3 = AuditQuery {
        limit: 3,
        ..Default::default()
    };
    assert_eq!(deletes(&limit3), vec![8, 6, 4]);
    // `after` bounds the walk back: the removals of keys 0..=4 have ids 11..=15.
    let after = AuditQuery {
        after: Some(AuditId::new(15)),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(deletes(&after), vec![8, 6]);
    let other_map = AuditQuery {
        map: Some("other".into()),
        limit: 100,
        ..Default::default()
    };
    assert!(deletes(&other_map).is_empty());
}
