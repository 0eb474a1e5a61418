//! Model checking (shuttle) of references: a put that adds a reference and a
//! delete of its target never both succeed, the referrer index stays exactly
//! in step with the values, a cascade execution and a checked refresh racing
//! other writes are all-or-nothing, and writes across maps that refer to each
//! other never deadlock.
//!
//! Run with `cargo test -p safemap --features shuttle --test shuttle_refs`
//! (without the feature this file is empty). Each test samples PCT + random
//! schedules (300 + 300 in CI, every schedule with `SAFEMAP_PROOF_LONG=1`).
//! A control shows the exploration has teeth: the same check done outside the
//! map (look up the target, then put) is caught dangling.

#![cfg(feature = "shuttle")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::explore::{Fixed, exhaustive_when_long};
use safemap::{
    ChangeKind, DeleteError, Expect, Journal, OnDelete, PutError, Reason, SafeMap, Selector,
};
use shuttle::thread;

/// Values name the key (of `orders`) they refer to, if any.
type Map = SafeMap<u32, Option<u32>, Fixed>;

const ITERATIONS: usize = 300;

struct Maps {
    orders: Arc<Map>,
    items: Arc<Map>,
}

fn maps(on_delete: OnDelete) -> Maps {
    let journal = Journal::new();
    let orders = SafeMap::builder()
        .name("orders")
        .hasher(Fixed::default())
        .journal(journal.clone())
        .build_shared()
        .unwrap();
    let items = SafeMap::builder()
        .name("items")
        .hasher(Fixed::default())
        .journal(journal)
        .references("order", "orders", on_delete, |v: &Option<u32>| *v)
        .build_shared()
        .unwrap();
    Maps { orders, items }
}

fn put(map: &Map, key: u32, value: Option<u32>) -> Result<(), PutError> {
    map.put(key, value, Expect::Any, &Reason::none())
        .map(|_| ())
}

/// No item refers to a missing order, and every order's referrers are
/// exactly the items that refer to it.
fn assert_consistent(m: &Maps, orders: &[u32], items: &[u32]) {
    for &item in items {
        if let Some(Some(order)) = m.items.get(&item).map(|e| *e.value()) {
            assert!(
                m.orders.contains_key(&order),
                "item {item} dangles to {order}"
            );
        }
    }
    for &order in orders {
        let mut indexed: Vec<u32> = m
            .orders
            .referrers(&order, None, 100)
            .iter()
            .map(|r| r.key)
            .collect();
        indexed.sort_unstable();
        let actual: Vec<u32> = items
            .iter()
            .copied()
            .filter(|i| m.items.get(i).is_some_and(|e| *e.value() == Some(order)))
            .collect();
        assert_eq!(indexed, actual, "index of order {order}");
    }
}

#[test]
fn a_reference_adding_put_and_a_delete_of_its_target_never_both_succeed() {
    exhaustive_when_long(ITERATIONS, || {
        let m = maps(OnDelete::Restrict);
        let _ = m.orders.insert(1, None);
        let items = Arc::clone(&m.items);
        let adder = thread::spawn(move || put(&items, 10, Some(1)));
        let orders = Arc::clone(&m.orders);
        let remover = thread::spawn(move || orders.remove(&1, "cleanup"));
        let (added, removed) = (adder.join().unwrap(), remover.join().unwrap());
        match (&added, &removed) {
            (Ok(()), Err(DeleteError::Referenced { count: 1, .. })) => {}
            (Err(PutError::ReferenceMissing { .. }), Ok(_)) => {}
            other => panic!("both or neither: {other:?}"),
        }
        assert_consistent(&m, &[1], &[10]);
    });
}

#[test]
fn moving_a_reference_while_both_targets_are_removed_leaves_nothing_dangling() {
    exhaustive_when_long(ITERATIONS, || {
        let m = maps(OnDelete::Restrict);
        let _ = m.orders.insert(1, None);
        let _ = m.orders.insert(2, None);
        put(&m.items, 10, Some(1)).unwrap();
        let items = Arc::clone(&m.items);
        let mover = thread::spawn(move || put(&items, 10, Some(2)));
        let removers: Vec<_> = [1, 2]
            .into_iter()
            .map(|order| {
                let orders = Arc::clone(&m.orders);
                thread::spawn(move || orders.remove(&order, "cleanup").is_ok())
            })
            .collect();
        let moved = mover.join().unwrap().is_ok();
        let removed: Vec<bool> = removers.into_iter().map(|h| h.join().unwrap()).collect();
        // Whichever order the item ends on survives; the other may go.
        let on = if moved { 2 } else { 1 };
        assert!(
            !removed[on as usize - 1],
            "order {on} removed under item 10"
        );
        assert_consistent(&m, &[1, 2], &[10]);
    });
}

#[test]
fn a_cascade_racing_a_new_referrer_is_all_or_nothing() {
    exhaustive_when_long(ITERATIONS, || {
        let m = maps(OnDelete::Cascade);
        let _ = m.orders.insert(1, None);
        put(&m.items, 10, Some(1)).unwrap();
        let plan = m.orders.plan_remove_cascade(Selector::all().keys(vec![1]));
        assert_eq!(plan.count(), 2);
        let items = Arc::clone(&m.items);
        let adder = thread::spawn(move || put(&items, 11, Some(1)));
        let orders = Arc::clone(&m.orders);
        let id = plan.id();
        let executor = thread::spawn(move || orders.execute(id, 2, Reason::new("purge")).unwrap());
        let added = adder.join().unwrap();
        let report = executor.join().unwrap();
        match added {
            // The new referrer came first: nothing of the subtree went.
            Ok(()) => {
                assert_eq!(report.deleted, 0);
                let changed = report.conflicts[0].changed.as_ref().unwrap();
                assert_eq!((changed.key, changed.why), (11, ChangeKind::NewReferrer));
                assert!(m.orders.contains_key(&1) && m.items.contains_key(&10));
            }
            // The subtree went first, whole.
            Err(PutError::ReferenceMissing { .. }) => {
                assert_eq!(report.deleted, 2);
                assert!(!m.orders.contains_key(&1) && !m.items.contains_key(&10));
            }
            Err(other) => panic!("{other:?}"),
        }
        assert_consistent(&m, &[1], &[10, 11]);
    });
}

#[test]
fn a_checked_refresh_racing_a_delete_of_a_target_is_all_or_nothing() {
    exhaustive_when_long(ITERATIONS, || {
        let m = maps(OnDelete::Restrict);
        let _ = m.orders.insert(1, None);
        let _ = m.orders.insert(2, None);
        let items = Arc::clone(&m.items);
        let refresher = thread::spawn(move || {
            items.refresh_checked(vec![(10, Some(1)), (11, Some(2))], &Reason::none())
        });
        let orders = Arc::clone(&m.orders);
        let remover = thread::spawn(move || orders.remove(&2, "cleanup").is_ok());
        let refreshed = refresher.join().unwrap();
        let removed = remover.join().unwrap();
        match refreshed {
            Ok(revisions) => {
                assert_eq!(revisions.len(), 2);
                assert!(!removed, "order 2 removed under item 11");
            }
            Err(_) => {
                assert!(removed);
                assert!(!m.items.contains_key(&10), "a refused batch writes nothing");
            }
        }
        assert_consistent(&m, &[1, 2], &[10, 11]);
    });
}

#[test]
fn maps_referring_to_each_other_never_deadlock() {
    exhaustive_when_long(ITERATIONS, || {
        let journal = Journal::new();
        let build = |name: &str, to: &str| -> Arc<Map> {
            SafeMap::builder()
                .name(name)
                .hasher(Fixed::default())
                .journal(journal.clone())
                .references("r", to, OnDelete::Restrict, |v: &Option<u32>| *v)
                .build_shared()
                .unwrap()
        };
        let (a, b) = (build("a", "b"), build("b", "a"));
        let _ = a.insert(1, None);
        let _ = b.insert(1, None);
        let handles = vec![
            {
                let (a, b) = (Arc::clone(&a), Arc::clone(&b));
                thread::spawn(move || {
                    let _ = put(&a, 2, Some(1));
                    let _ = b.remove(&1, "x");
                })
            },
            {
                let (a, b) = (Arc::clone(&a), Arc::clone(&b));
                thread::spawn(move || {
                    let _ = put(&b, 2, Some(1));
                    let _ = a.remove(&1, "x");
                })
            },
        ];
        for h in handles {
            h.join().unwrap();
        }
        // Whatever happened, nothing dangles.
        for (from, to) in [(&a, &b), (&b, &a)] {
            if let Some(Some(target)) = from.get(&2).map(|e| *e.value()) {
                assert!(to.contains_key(&target));
            }
        }
    });
}

/// The exploration has teeth: checking the target outside the map (a lookup,
/// then a put to a map that declares no reference) lets a delete slip in
/// between, and shuttle finds that schedule.
#[test]
fn shuttle_catches_a_reference_checked_outside_the_map() {
    let caught = std::panic::catch_unwind(|| {
        shuttle::check_dfs(
            || {
                let journal = Journal::new();
                let orders: Map = SafeMap::builder()
                    .name("orders")
                    .hasher(Fixed::default())
                    .journal(journal.clone())
                    .build();
                let items: Map = SafeMap::builder()
                    .name("items")
                    .hasher(Fixed::default())
                    .journal(journal)
                    .build();
                let (orders, items) = (Arc::new(orders), Arc::new(items));
                let _ = orders.insert(1, None);
                let (o, i) = (Arc::clone(&orders), Arc::clone(&items));
                let adder = thread::spawn(move || {
                    if o.contains_key(&1) {
                        let _ = i.insert(10, Some(1));
                    }
                });
                let o = Arc::clone(&orders);
                let remover = thread::spawn(move || {
                    let _ = o.remove(&1, "cleanup");
                });
                adder.join().unwrap();
                remover.join().unwrap();
                if items.contains_key(&10) {
                    assert!(orders.contains_key(&1), "item 10 dangles");
                }
            },
            None,
        )
    });
    assert!(caught.is_err(), "shuttle missed the dangling reference");
}
