//! A plan executed while writers update planned keys: exactly the keys that
//! changed before their turn are skipped, checked against the recorded history
//! (the journal).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use safemap::{Op, Reason, SafeMap, Selector};

#[test]
fn exactly_the_keys_changed_before_their_removal_are_skipped() {
    let mut total_conflicts = 0;
    for round in 0..10u64 {
        let map: SafeMap<String, u64> = SafeMap::builder().record_puts(true).build();
        let _ = map.refresh((0..3000u64).map(|i| (format!("k{i:05}"), i)));
        let plan = map.plan_remove(Selector::all());
        let planned: HashMap<String, safemap::Revision> = plan.keys().iter().cloned().collect();
        let done = AtomicBool::new(false);
        let report = std::thread::scope(|s| {
            for t in 0..2u64 {
                let (map, done) = (&map, &done);
                s.spawn(move || {
                    let mut x = round * 31 + t;
                    while !done.load(Ordering::Relaxed) {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let key = format!("k{:05}", (x >> 33) % 3000);
                        if x % 5 == 0 {
                            let _ = map.remove(&key, Reason::new("writer"));
                        } else {
                            let _ = map.insert(key, x);
                        }
                    }
                });
            }
            // Let the writers get going before the execution starts.
            while map.journal().unwrap().len() < 3100 {
                std::thread::yield_now();
            }
            let report = map
                .execute(plan.id(), plan.count(), Reason::new("cleanup"))
                .unwrap();
            done.store(true, Ordering::Relaxed);
            report
        });

        // From the journal: for each planned key, the first write after the plan.
        let mut first_after_plan: HashMap<String, (Op, bool)> = HashMap::new();
        for record in map.journal().unwrap().query(&Default::default()) {
            if record.revision > plan.at_revision() {
                first_after_plan
                    .entry(record.key.clone())
                    .or_insert((record.op, record.plan_id == Some(plan.id())));
            }
        }
        let removed_by_plan: HashSet<&String> = first_after_plan
            .iter()
            .filter(|(_, (op, by_plan))| *op == Op::Delete && *by_plan)
            .map(|(k, _)| k)
            .collect();
        let skipped: HashSet<&String> = report.conflicts.iter().map(|c| &c.key).collect();
        assert_eq!(report.deleted, removed_by_plan.len());
        assert_eq!(report.deleted + skipped.len(), planned.len());
        for key in planned.keys() {
            let changed_first = first_after_plan
                .get(key)
                .is_some_and(|(_, by_plan)| !by_plan);
            assert_eq!(skipped.contains(key), changed_first, "key {key}");
        }
        for conflict in &report.conflicts {
            assert_eq!(conflict.planned_revision, planned[&conflict.key]);
            assert_ne!(conflict.current_revision, Some(conflict.planned_revision));
        }
        let plan_records = map.journal().unwrap().for_plan(plan.id());
        assert_eq!(
            plan_records.len(),
            report.deleted,
            "one record per planned removal"
        );
        total_conflicts += report.conflicts.len();
    }
    assert!(
        total_conflicts > 0,
        "the writers raced the execution at least once"
    );
}
