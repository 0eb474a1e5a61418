//! The second outage of the story, replayed with references: one batch of 327
//! archived orders, items and notes that cascade, shipments that restrict.
//! The preview shows every map's count and the blocked orders with their
//! path; execution deletes exactly the tree; one restore brings it all back.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use safemap::{BlockedWhy, Journal, OnDelete, Reason, SafeMap, Selector};

#[derive(Clone, Debug, PartialEq)]
struct Row {
    status: &'static str,
    /// The order (for items and shipments) or the item (for notes).
    parent: Option<String>,
}

type Map = SafeMap<String, Row>;

struct Shop {
    orders: Arc<Map>,
    items: Arc<Map>,
    notes: Arc<Map>,
    shipments: Arc<Map>,
}

fn parent(r: &Row) -> Option<String> {
    r.parent.clone()
}

fn shop() -> Shop {
    let journal = Journal::new();
    let map = |name: &str| SafeMap::builder().name(name).journal(journal.clone());
    Shop {
        orders: map("orders").build_shared().unwrap(),
        items: map("order_items")
            .references("order", "orders", OnDelete::Cascade, parent)
            .build_shared()
            .unwrap(),
        notes: map("item_notes")
            .references("item", "order_items", OnDelete::Cascade, parent)
            .build_shared()
            .unwrap(),
        shipments: map("shipments")
            .references("order", "orders", OnDelete::Restrict, parent)
            .build_shared()
            .unwrap(),
    }
}

fn row(status: &'static str, parent: Option<&str>) -> Row {
    Row {
        status,
        parent: parent.map(str::to_owned),
    }
}

/// 400 orders, the first 327 archived; 2 items per order, 1 note per even
/// item; a shipment for every 100th archived order (4 of them) and for every
/// open order.
fn fill(shop: &Shop) -> usize {
    for i in 0..400 {
        let order = format!("o-{i:03}");
        let status = if i < 327 { "archived" } else { "open" };
        let _ = shop.orders.insert(order.clone(), row(status, None));
        for j in 0..2 {
            let item = format!("{order}/i{j}");
            let _ = shop.items.insert(item.clone(), row("", Some(&order)));
            if j == 0 {
                let _ = shop.notes.insert(format!("{item}/n"), row("", Some(&item)));
            }
        }
        if i % 100 == 0 || i >= 327 {
            let _ = shop
                .shipments
                .insert(format!("s-{i:03}"), row("", Some(&order)));
        }
    }
    shop.orders.len() + shop.items.len() + shop.notes.len() + shop.shipments.len()
}

#[test]
fn the_327_archived_orders_previewed_executed_and_restored() {
    let shop = shop();
    let rows = fill(&shop);

    // A single delete of an archived order is refused: items refer to it.
    assert!(matches!(
        shop.orders.remove("o-001", "cleanup"),
        Err(safemap::DeleteError::Referenced { count: 2, .. })
    ));

    let plan = shop
        .orders
        .plan_remove_cascade(Selector::all().filter(|_, r: &Row| r.status == "archived"));
    // Orders 0, 100, 200, 300 have shipments: blocked, with their path.
    let blocked: Vec<_> = plan.blocked().iter().map(|b| b.key.as_str()).collect();
    assert_eq!(blocked, ["o-000", "o-100", "o-200", "o-300"]);
    let first = &plan.blocked()[0];
    assert_eq!(
        first.why,
        BlockedWhy::Restricted {
            reference: "order".into()
        }
    );
    let path: Vec<_> = first.path.iter().map(|(m, k)| format!("{m}:{k}")).collect();
    assert_eq!(path, ["orders:o-000", "shipments:s-000"]);

    // The preview: every map's count, the depth, the tree parents first.
    let expected: BTreeMap<String, usize> = [
        ("orders".to_string(), 323),
        ("order_items".to_string(), 646),
        ("item_notes".to_string(), 323),
    ]
    .into();
    assert_eq!(plan.tree_counts(), expected);
    assert_eq!(plan.count(), 323 + 646 + 323);
    assert_eq!(plan.depth(), 3);
    let mut seen = std::collections::HashSet::new();
    for node in plan.tree() {
        if let Some(parent) = &node.parent {
            assert!(seen.contains(parent), "{node:?} before its parent");
        }
        seen.insert((node.map.clone(), node.key.clone()));
    }
    assert_eq!(seen.len(), plan.count());
    // Nothing happened yet.
    assert_eq!(
        shop.orders.len() + shop.items.len() + shop.notes.len() + shop.shipments.len(),
        rows
    );

    // Confirming the roots' count alone is not enough.
    assert!(
        shop.orders
            .execute(plan.id(), 323, Reason::new("archive purge"))
            .is_err()
    );
    let report = shop
        .orders
        .execute(plan.id(), plan.count(), Reason::new("archive purge"))
        .unwrap();
    assert_eq!(report.deleted, plan.count());
    assert!(report.conflicts.is_empty());
    assert_eq!(shop.orders.len(), 400 - 323);
    assert_eq!(shop.items.len(), 800 - 646);
    assert_eq!(shop.notes.len(), 400 - 323);
    assert_eq!(shop.shipments.len(), 77);
    assert!(shop.orders.contains_key("o-100") && shop.items.contains_key("o-100/i1"));
    // Every deleted key has its own audit record carrying the plan id.
    let journal = shop.orders.journal().unwrap();
    assert_eq!(journal.for_plan(plan.id()).len(), plan.count());

    // One restore by plan id brings every row of every map back.
    let undo = shop
        .orders
        .restore_plan(plan.id(), Reason::new("wrong batch"))
        .unwrap();
    assert_eq!(undo.restored.len(), 323);
    assert!(undo.skipped.is_empty());
    assert_eq!(undo.other_maps.len(), 646 + 323);
    assert!(undo.other_maps.iter().all(|i| i.outcome.is_ok()));
    assert_eq!(
        shop.orders.len() + shop.items.len() + shop.notes.len() + shop.shipments.len(),
        rows
    );
    // The index came back with them.
    assert_eq!(
        shop.orders.referrers(&"o-001".to_string(), None, 10).len(),
        2
    );
    assert_eq!(
        shop.items.get("o-001/i0").unwrap().value(),
        &row("", Some("o-001"))
    );
}

#[test]
fn a_root_whose_subtree_changed_is_left_whole_and_reported() {
    let shop = shop();
    let _ = fill(&shop);
    let plan = shop.orders.plan_remove_cascade(Selector::all().keys(vec![
        "o-001".to_string(),
        "o-002".to_string(),
        "o-003".to_string(),
    ]));
    assert_eq!(plan.count(), 3 * 4);
    // After the plan: a note of o-001 changes, o-002 gains a shipment.
    let changed = shop
        .notes
        .insert("o-001/i0/n".into(), row("edited", Some("o-001/i0")))
        .unwrap()
        .revision();
    let _ = shop
        .shipments
        .insert("s-late".into(), row("", Some("o-002")));
    let report = shop
        .orders
        .execute(plan.id(), plan.count(), Reason::new("purge"))
        .unwrap();
    assert_eq!(report.deleted, 4, "only o-003's subtree");
    assert_eq!(report.conflicts.len(), 2);
    let c1 = report.conflicts[0].changed.as_ref().unwrap();
    assert_eq!(report.conflicts[0].key, "o-001");
    assert_eq!((&*c1.map, c1.key.as_str()), ("item_notes", "o-001/i0/n"));
    assert_eq!(c1.current_revision, Some(changed));
    assert_eq!(c1.why, safemap::ChangeKind::Changed);
    let c2 = report.conflicts[1].changed.as_ref().unwrap();
    assert_eq!(report.conflicts[1].key, "o-002");
    assert_eq!(
        (&*c2.map, c2.key.as_str(), c2.why),
        ("shipments", "s-late", safemap::ChangeKind::NewReferrer)
    );
    // All-or-nothing per root: o-001 and o-002 keep every key.
    for key in ["o-001/i0", "o-001/i1", "o-002/i0", "o-002/i1"] {
        assert!(shop.items.contains_key(key), "{key}");
    }
    assert!(shop.notes.contains_key("o-002/i0/n"));
    assert!(!shop.items.contains_key("o-003/i0"));
}

#[test]
fn without_cascade_a_referenced_root_is_blocked_with_its_first_referrer() {
    let shop = shop();
    let _ = fill(&shop);
    let _ = shop.orders.insert("o-lonely".into(), row("archived", None));
    let plan = shop
        .orders
        .plan_remove(Selector::all().keys(vec!["o-001".into(), "o-lonely".into()]));
    assert_eq!(plan.count(), 1);
    assert_eq!(plan.depth(), 1);
    let b = &plan.blocked()[0];
    assert_eq!((b.key.as_str(), &b.why), ("o-001", &BlockedWhy::Referenced));
    let path: Vec<_> = b.path.iter().map(|(m, k)| format!("{m}:{k}")).collect();
    assert_eq!(path, ["orders:o-001", "order_items:o-001/i0"]);
}

#[test]
fn a_vetoed_key_below_a_root_blocks_it_and_cycles_end() {
    let journal = Journal::new();
    // Two maps referring to each other in a cycle, both cascading; b vetoes "keep".
    let a: Arc<Map> = SafeMap::builder()
        .name("a")
        .journal(journal.clone())
        .references("b", "b", OnDelete::Cascade, parent)
        .build_shared()
        .unwrap();
    let b: Arc<Map> = SafeMap::builder()
        .name("b")
        .journal(journal)
        .deny_delete("kept", |_, r: &Row| r.status == "keep")
        .references("a", "a", OnDelete::Cascade, parent)
        .build_shared()
        .unwrap();
    // a:1 and b:1 refer to each other (created in two steps).
    let _ = a.insert("1".into(), row("", None));
    let _ = b.insert("1".into(), row("", Some("1")));
    let _ = a.insert("1".into(), row("", Some("1")));
    let _ = a.insert("2".into(), row("", None));
    let _ = b.insert("2".into(), row("keep", Some("2")));
    let plan = a.plan_remove_cascade(Selector::all());
    assert_eq!(plan.count(), 2, "the cycle is planned once: a:1, b:1");
    assert_eq!(plan.depth(), 2);
    let blocked = &plan.blocked()[0];
    assert_eq!(
        blocked.why,
        BlockedWhy::Vetoed {
            rule: "kept".into()
        }
    );
    let path: Vec<_> = blocked
        .path
        .iter()
        .map(|(m, k)| format!("{m}:{k}"))
        .collect();
    assert_eq!(path, ["a:2", "b:2"]);
    let report = a.execute(plan.id(), 2, Reason::new("purge")).unwrap();
    assert_eq!(report.deleted, 2);
    assert!(!a.contains_key("1") && !b.contains_key("1"));
}

#[test]
fn a_pending_plans_tree_can_be_read_back_and_a_used_one_is_gone() {
    let shop = shop();
    let _ = fill(&shop);
    let plan = shop
        .orders
        .plan_remove_cascade(Selector::all().keys(vec!["o-001".to_string()]));
    let tree = shop.orders.planned_tree(plan.id()).unwrap();
    assert_eq!(tree, plan.tree());
    assert_eq!(tree.len(), 4);
    assert_eq!(tree[0].depth, 1);
    assert_eq!(tree[3].depth, 3);
    let _ = shop
        .orders
        .execute(plan.id(), 4, Reason::new("purge"))
        .unwrap();
    assert_eq!(
        shop.orders.planned_tree(plan.id()),
        Err(safemap::ExecuteError::Gone)
    );
}

#[test]
fn references_to_maps_never_registered_are_reported() {
    let journal: Journal<String, Row> = Journal::new();
    let items: Arc<Map> = SafeMap::builder()
        .name("items")
        .journal(journal)
        .references("order", "orders", OnDelete::Restrict, parent)
        .build_shared()
        .unwrap();
    assert_eq!(
        items.unresolved_references(),
        vec![("order".to_string(), "orders".to_string())]
    );
    assert!(matches!(
        items.insert_if_absent("i".into(), row("", Some("o"))),
        Err(safemap::PutError::ReferenceMissing { .. })
    ));
}
