//! Regression: a deny rule that panics part-way through a plan execution.
//!
//! `execute` documents this case: "the plan is then used up, and the keys
//! removed before the panic are journaled with the plan's id". Those removals
//! drew revisions and were published, but the journal's write wrapper only
//! published the new `current_revision` (and woke watchers) after its closure
//! returned normally. After the unwind, `current_revision()` stayed below
//! revisions that readers could already see in the map and in the journal,
//! and a watcher blocked in `next_blocking` was not woken for them.

#![allow(clippy::unwrap_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use safemap::{Op, Reason, SafeMap, Selector};

/// A map whose deny rule panics on the value 13 once `armed` is set (so that
/// planning, which also consults the rule, succeeds first).
fn armed_map() -> (SafeMap<u32, u32>, Arc<AtomicBool>) {
    let armed = Arc::new(AtomicBool::new(false));
    let trigger = Arc::clone(&armed);
    let map = SafeMap::builder()
        .deny_delete("explodes", move |_k, v: &u32| {
            assert!(
                !(trigger.load(Ordering::SeqCst) && *v == 13),
                "deny rule failed on 13"
            );
            false
        })
        .build();
    for k in 0..4 {
        let _ = map.insert(k, if k == 2 { 13 } else { k });
    }
    (map, armed)
}

#[test]
fn a_deny_rule_panicking_mid_execution_leaves_the_revision_counter_consistent() {
    let (map, armed) = armed_map();
    let plan = map.plan_remove(Selector::all());
    assert_eq!(plan.count(), 4);
    armed.store(true, Ordering::SeqCst);
    // Keys go in key order: 0 and 1 are removed, then the rule panics on 2.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        map.execute(plan.id(), plan.count(), Reason::new("cleanup"))
    }));
    assert!(outcome.is_err(), "the rule's panic propagates");
    let removed: Vec<_> = map
        .journal()
        .unwrap()
        .for_plan(plan.id())
        .into_iter()
        .filter(|r| r.op == Op::Delete)
        .collect();
    assert_eq!(
        removed.len(),
        2,
        "keys 0 and 1 were removed before the panic"
    );
    let last = removed.iter().map(|r| r.revision).max().unwrap();
    assert!(
        map.current_revision() >= last,
        "current_revision {} is below the journaled removal at {last}",
        map.current_revision()
    );
    // The lock is usable and the counter continues from there.
    armed.store(false, Ordering::SeqCst);
    let next = map.insert(9, 9).unwrap().revision();
    assert_eq!(next.get(), last.get() + 1);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "measures wall time, which Miri stretches a thousandfold"
)]
fn a_blocked_watcher_is_woken_for_removals_made_before_a_deny_rule_panicked() {
    let (map, armed) = armed_map();
    let plan = map.plan_remove(Selector::all());
    let mut watcher = map.watch(None).unwrap();
    armed.store(true, Ordering::SeqCst);
    std::thread::scope(|s| {
        let waiting = s.spawn(move || {
            let started = Instant::now();
            let event = watcher.next_blocking(Duration::from_secs(5)).unwrap();
            (event.map(|e| e.op), started.elapsed())
        });
        // Let the watcher block first.
        std::thread::sleep(Duration::from_millis(100));
        let _ = catch_unwind(AssertUnwindSafe(|| {
            map.execute(plan.id(), plan.count(), Reason::new("cleanup"))
        }));
        let (op, waited) = waiting.join().unwrap();
        assert_eq!(op, Some(Op::Delete));
        assert!(
            waited < Duration::from_secs(4),
            "the watcher slept through the removals ({waited:?})"
        );
    });
}
