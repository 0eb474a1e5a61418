//! References between maps: puts that would dangle are refused, removals of
//! referred-to keys are refused, the referrer index follows every write.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use safemap::{
    BuildError, DeleteError, Expect, Journal, OnDelete, PutError, Reason, Referrer, SafeMap, Skip,
};

/// A row: the key it refers to (if any) and a payload.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    parent: Option<String>,
    n: u32,
}

type Map = SafeMap<String, Row>;

fn row(parent: Option<&str>, n: u32) -> Row {
    Row {
        parent: parent.map(str::to_owned),
        n,
    }
}

fn pair(on_delete: OnDelete) -> (Arc<Map>, Arc<Map>) {
    let journal = Journal::new();
    let orders = SafeMap::builder()
        .name("orders")
        .journal(journal.clone())
        .build_shared()
        .unwrap();
    let items = SafeMap::builder()
        .name("items")
        .journal(journal)
        .references("order", "orders", on_delete, |r: &Row| r.parent.clone())
        .build_shared()
        .unwrap();
    (orders, items)
}

fn put(map: &Map, key: &str, value: Row) -> Result<safemap::Written, PutError> {
    map.put(key.to_owned(), value, Expect::Any, &Reason::none())
}

#[test]
fn a_put_whose_target_is_missing_is_refused_and_writes_nothing() {
    let (orders, items) = pair(OnDelete::Restrict);
    let before = items.current_revision();
    assert_eq!(
        put(&items, "i-1", row(Some("o-1"), 1)),
        Err(PutError::ReferenceMissing {
            reference: "order".into(),
            map: "orders".into()
        })
    );
    assert!(items.get("i-1").is_none());
    assert_eq!(items.current_revision(), before);
    let _ = orders.insert("o-1".into(), row(None, 0));
    assert!(put(&items, "i-1", row(Some("o-1"), 1)).is_ok());
    // A value that refers to nothing needs nothing.
    assert!(put(&items, "i-2", row(None, 2)).is_ok());
}

#[test]
fn a_referenced_key_cannot_be_removed_alone_whatever_on_delete_says() {
    for on_delete in [OnDelete::Restrict, OnDelete::Cascade] {
        let (orders, items) = pair(on_delete);
        let _ = orders.insert("o-1".into(), row(None, 0));
        let _ = put(&items, "i-1", row(Some("o-1"), 1)).unwrap();
        let _ = put(&items, "i-2", row(Some("o-1"), 2)).unwrap();
        let before = orders.current_revision();
        assert_eq!(
            orders.remove("o-1", "cleanup"),
            Err(DeleteError::Referenced {
                count: 2,
                map: "items".into(),
                reference: "order".into()
            })
        );
        assert!(orders.contains_key("o-1"));
        assert_eq!(orders.current_revision(), before, "nothing written");
        assert_eq!(orders.stats().deletes.referenced, 1);
        // Once the referrers are gone, the key can go.
        let _ = items.remove("i-1", "done").unwrap();
        let _ = put(&items, "i-2", row(None, 2)).unwrap();
        assert!(orders.remove("o-1", "cleanup").is_ok());
    }
}

#[test]
fn vetoed_comes_before_referenced() {
    let journal = Journal::new();
    let orders: Arc<Map> = SafeMap::builder()
        .name("orders")
        .journal(journal.clone())
        .deny_delete("big", |_, r: &Row| r.n > 10)
        .build_shared()
        .unwrap();
    let items: Arc<Map> = SafeMap::builder()
        .name("items")
        .journal(journal)
        .references("order", "orders", OnDelete::Restrict, |r: &Row| {
            r.parent.clone()
        })
        .build_shared()
        .unwrap();
    let _ = orders.insert("o-1".into(), row(None, 11));
    let _ = put(&items, "i-1", row(Some("o-1"), 1)).unwrap();
    assert_eq!(
        orders.remove("o-1", "x"),
        Err(DeleteError::Vetoed { rule: "big".into() })
    );
}

#[test]
fn referrers_lists_who_refers_in_order_and_pages() {
    let (orders, items) = pair(OnDelete::Restrict);
    let _ = orders.insert("o-1".into(), row(None, 0));
    let _ = orders.insert("o-2".into(), row(None, 0));
    for i in [3, 1, 2] {
        let _ = put(&items, &format!("i-{i}"), row(Some("o-1"), i)).unwrap();
    }
    let o1 = "o-1".to_string();
    let keys = |rs: Vec<Referrer<String>>| rs.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(keys(orders.referrers(&o1, None, 10)), ["i-1", "i-2", "i-3"]);
    let first = orders.referrers(&o1, None, 2);
    assert_eq!(keys(first.clone()), ["i-1", "i-2"]);
    assert_eq!(keys(orders.referrers(&o1, first.last(), 2)), ["i-3"]);
    assert_eq!(&*first[0].map, "items");
    assert_eq!(&*first[0].reference, "order");
    // Moving a referrer moves its index entry; removing it drops it.
    let _ = put(&items, "i-2", row(Some("o-2"), 2)).unwrap();
    let _ = items.remove("i-3", "gone").unwrap();
    assert_eq!(keys(orders.referrers(&o1, None, 10)), ["i-1"]);
    assert_eq!(
        keys(orders.referrers(&"o-2".to_string(), None, 10)),
        ["i-2"]
    );
    assert!(orders.referrers(&"nope".to_string(), None, 10).is_empty());
}

#[test]
fn a_value_referring_to_its_own_key_never_blocks_its_own_removal() {
    let map: Arc<Map> = SafeMap::builder()
        .name("nodes")
        .references("parent", "nodes", OnDelete::Restrict, |r: &Row| {
            r.parent.clone()
        })
        .build_shared()
        .unwrap();
    // A new key may refer to itself; it exists once written.
    let _ = put(&map, "root", row(Some("root"), 0)).unwrap();
    let _ = put(&map, "child", row(Some("root"), 1)).unwrap();
    assert!(matches!(
        map.remove("root", "x"),
        Err(DeleteError::Referenced { count: 1, .. })
    ));
    let _ = map.remove("child", "x").unwrap();
    assert!(map.remove("root", "x").is_ok());
    assert!(map.referrers(&"root".to_string(), None, 10).is_empty());
}

#[test]
fn restoring_a_value_whose_target_is_gone_is_skipped() {
    let (orders, items) = pair(OnDelete::Restrict);
    let _ = orders.insert("o-1".into(), row(None, 0));
    let _ = put(&items, "i-1", row(Some("o-1"), 1)).unwrap();
    let removed = items.remove("i-1", "x").unwrap();
    let _ = orders.remove("o-1", "x").unwrap();
    let report = items.restore(removed.audit_id().unwrap(), "undo").unwrap();
    assert_eq!(
        report.skipped,
        vec![("i-1".to_string(), Skip::ReferenceMissing)]
    );
    assert!(items.get("i-1").is_none());
}

#[test]
fn retain_keeps_referenced_keys_and_says_so() {
    let (orders, items) = pair(OnDelete::Restrict);
    let _ = orders.insert("o-1".into(), row(None, 0));
    let _ = orders.insert("o-2".into(), row(None, 0));
    let _ = put(&items, "i-1", row(Some("o-1"), 1)).unwrap();
    let report = orders.retain(|_, _| false, "purge").unwrap();
    assert_eq!(report.removed, 1);
    assert_eq!(report.referenced, vec!["o-1".to_string()]);
    assert!(orders.contains_key("o-1"));
}

#[test]
fn building_refuses_duplicates_and_unnamed_maps() {
    let journal: Journal<String, Row> = Journal::new();
    let dup = SafeMap::builder()
        .name("a")
        .journal(journal.clone())
        .references("r", "a", OnDelete::Restrict, |r: &Row| r.parent.clone())
        .references("r", "a", OnDelete::Cascade, |r: &Row| r.parent.clone())
        .build_shared();
    assert_eq!(
        dup.err(),
        Some(BuildError::DuplicateReference { name: "r".into() })
    );
    let first = SafeMap::builder()
        .name("a")
        .journal(journal.clone())
        .build_shared()
        .unwrap();
    let second = SafeMap::builder()
        .name("a")
        .journal(journal.clone())
        .build_shared();
    assert_eq!(
        second.err(),
        Some(BuildError::DuplicateMap { name: "a".into() })
    );
    drop(first);
    // The name is free again once the map is dropped.
    assert!(
        SafeMap::builder()
            .name("a")
            .journal(journal.clone())
            .build_shared()
            .is_ok()
    );
    let unnamed = SafeMap::<String, Row>::builder()
        .journal(journal)
        .build_shared();
    assert_eq!(unnamed.err(), Some(BuildError::Unnamed));
}

#[test]
fn loaded_entries_rebuild_the_referrer_index() {
    let (orders, items) = pair(OnDelete::Restrict);
    let r = |n| safemap::Revision::new(n);
    // Recovery may load referrers before their targets.
    items.load_entry("i-1".into(), row(Some("o-1"), 1), r(2), r(2), 1);
    orders.load_entry("o-1".into(), row(None, 0), r(1), r(1), 1);
    assert_eq!(orders.referrers(&"o-1".to_string(), None, 10).len(), 1);
    assert!(matches!(
        orders.remove("o-1", "x"),
        Err(DeleteError::Referenced { count: 1, .. })
    ));
    // Loading a newer value of the same key moves its entry.
    items.load_entry("i-1".into(), row(None, 1), r(3), r(2), 2);
    assert!(orders.referrers(&"o-1".to_string(), None, 10).is_empty());
}

#[test]
fn racing_writers_never_leave_a_reference_dangling() {
    use std::thread;
    let (orders, items) = pair(OnDelete::Restrict);
    let orders_n = 8u32;
    let items_n = 16u32;
    for round in 0..20u32 {
        for o in 0..orders_n {
            let _ = orders.insert(format!("o-{o}"), row(None, round));
        }
        thread::scope(|s| {
            for t in 0..4u32 {
                let (orders, items) = (&orders, &items);
                s.spawn(move || {
                    for step in 0..200u32 {
                        let x = (t * 7919 + step * 104_729 + round) % 997;
                        let item = format!("i-{}", x % items_n);
                        let order = format!("o-{}", x % orders_n);
                        match x % 3 {
                            0 => {
                                let _ = put(items, &item, row(Some(&order), x));
                            }
                            1 => {
                                let _ = orders.remove(order.as_str(), "race");
                            }
                            _ => {
                                let _ = items.remove(item.as_str(), "race");
                            }
                        }
                    }
                });
            }
        });
        // No item refers to a missing order; every index is exact.
        for i in 0..items_n {
            let item = format!("i-{i}");
            if let Some(e) = items.get(item.as_str())
                && let Some(order) = &e.value().parent
            {
                assert!(orders.contains_key(order.as_str()), "{item} -> {order}");
            }
        }
        for o in 0..orders_n {
            let order = format!("o-{o}");
            let indexed: Vec<String> = orders
                .referrers(&order, None, 100)
                .into_iter()
                .map(|r| r.key)
                .collect();
            let mut actual: Vec<String> = (0..items_n)
                .map(|i| format!("i-{i}"))
                .filter(|i| {
                    items
                        .get(i.as_str())
                        .is_some_and(|e| e.value().parent.as_deref() == Some(order.as_str()))
                })
                .collect();
            actual.sort();
            assert_eq!(indexed, actual, "{order}");
        }
    }
}

#[test]
fn a_checked_refresh_counts_its_own_entries_and_is_all_or_nothing() {
    let map: Arc<Map> = SafeMap::builder()
        .name("tree")
        .references("parent", "tree", OnDelete::Restrict, |r: &Row| {
            r.parent.clone()
        })
        .build_shared()
        .unwrap();
    // A child before its parent in the same batch: the parent counts as present.
    let revisions = map
        .refresh_checked(
            vec![
                ("child".into(), row(Some("root"), 1)),
                ("root".into(), row(None, 0)),
            ],
            &Reason::none(),
        )
        .unwrap();
    assert_eq!(revisions.len(), 2);
    assert_eq!(map.referrers(&"root".to_string(), None, 10).len(), 1);
    // One missing target refuses the whole batch.
    let before = map.current_revision();
    assert_eq!(
        map.refresh_checked(
            vec![
                ("root".into(), row(None, 5)),
                ("orphan".into(), row(Some("nowhere"), 1)),
            ],
            &Reason::none(),
        ),
        Err(safemap::RefreshError::ReferenceMissing {
            entry: 1,
            reference: "parent".into(),
            map: "tree".into()
        })
    );
    assert_eq!(map.current_revision(), before);
    assert_eq!(map.get("root").unwrap().value().n, 0);
}

#[test]
fn a_cascade_over_a_cycle_is_restored_whole() {
    let journal = Journal::new();
    let build = |name: &str, to: &str| -> Arc<Map> {
        SafeMap::builder()
            .name(name)
            .journal(journal.clone())
            .references("to", to, OnDelete::Cascade, |r: &Row| r.parent.clone())
            .build_shared()
            .unwrap()
    };
    let (a, b) = (build("a", "b"), build("b", "a"));
    let _ = a.insert("1".into(), row(None, 0));
    let _ = put(&b, "1", row(Some("1"), 0)).unwrap();
    let _ = put(&a, "1", row(Some("1"), 1)).unwrap();
    let plan = a.plan_remove_cascade(safemap::Selector::all());
    assert_eq!(plan.count(), 2);
    let report = a.execute(plan.id(), 2, Reason::new("purge")).unwrap();
    assert_eq!(report.deleted, 2);
    // Each refers to the other: they come back together or not at all.
    let undo = a.restore_plan(plan.id(), Reason::new("undo")).unwrap();
    assert_eq!(undo.restored.len(), 1);
    assert_eq!(undo.other_maps.len(), 1);
    assert!(undo.other_maps[0].outcome.is_ok());
    assert_eq!(a.get("1").unwrap().value(), &row(Some("1"), 1));
    assert_eq!(b.get("1").unwrap().value(), &row(Some("1"), 0));
    assert_eq!(a.referrers(&"1".to_string(), None, 10).len(), 1);
    assert_eq!(b.referrers(&"1".to_string(), None, 10).len(), 1);
}

#[test]
fn a_cascading_plan_reloaded_after_a_restart_executes_its_tree() {
    let (orders, items) = pair(OnDelete::Cascade);
    let _ = orders.insert("o-1".into(), row(None, 0));
    let _ = items.insert("i-1".into(), row(Some("o-1"), 0));
    let plan = orders.plan_remove_cascade(safemap::Selector::all());
    assert_eq!(plan.count(), 2);
    // A second life of the same maps (as a server's recovery rebuilds them):
    // the plan comes back under its id with its tree and its count.
    let (orders2, items2) = pair(OnDelete::Cascade);
    let _ = orders2.insert("o-1".into(), orders.get("o-1").unwrap().value().clone());
    let _ = items2.insert("i-1".into(), items.get("i-1").unwrap().value().clone());
    let mut tree = plan.tree().to_vec();
    for (node, current) in tree.iter_mut().zip([&orders2, &items2]) {
        node.revision = current.get(&node.key).unwrap().revision();
    }
    orders2.load_plan_tree(
        plan.id(),
        plan.keys().to_vec(),
        tree.clone(),
        plan.expires_at(),
    );
    assert_eq!(orders2.planned_tree(plan.id()).unwrap(), tree);
    assert!(matches!(
        orders2.execute(plan.id(), 1, Reason::new("purge")),
        Err(safemap::ExecuteError::ConfirmCountMismatch { expected: 2, .. })
    ));
    let report = orders2.execute(plan.id(), 2, Reason::new("purge")).unwrap();
    assert_eq!(report.deleted, 2);
    assert!(items2.get("i-1").is_none());
    // Restored as a whole through the plan's map only.
    assert_eq!(
        items2.restore_plan(plan.id(), Reason::new("undo")),
        Err(safemap::RestoreError::NotFound)
    );
    let undo = orders2
        .restore_plan(plan.id(), Reason::new("undo"))
        .unwrap();
    assert_eq!((undo.restored.len(), undo.other_maps.len()), (1, 1));
}
