//! Planned removal: dry run, confirmed execution, conflicts.

use std::time::Duration;

use safemap::{Conflict, ExecuteError, Op, Reason, SafeMap, Selector};

fn filled(n: u32) -> SafeMap<String, u32> {
    let map = SafeMap::builder()
        .name("orders")
        .deny_delete("vip", |_k, v: &u32| *v == 7)
        .delete_breaker(1, Duration::from_secs(3600))
        .build();
    for i in 0..n {
        let _ = map.insert(format!("o-{i:02}"), i);
    }
    let _ = map.insert("other".to_string(), 0);
    map
}

#[test]
fn a_plan_removes_nothing_and_pins_revisions() {
    let map = filled(10);
    let plan = map.plan_remove(Selector::all().prefix("o-"));
    assert_eq!(map.len(), 11);
    assert_eq!(plan.count(), 9, "o-07 is vetoed, listed and not counted");
    assert_eq!(plan.vetoed(), &[("o-07".to_string(), "vip".to_string())]);
    assert_eq!(plan.sample(3), vec!["o-00", "o-01", "o-02"]);
    for (key, revision) in plan.keys() {
        assert_eq!(map.get(key).unwrap().revision(), *revision);
    }
    assert!(plan.at_revision() >= plan.keys().iter().map(|k| k.1).max().unwrap());
}

#[test]
fn selectors_combine_with_and() {
    let map = filled(10);
    let plan = map.plan_remove(
        Selector::all()
            .prefix("o-")
            .keys(vec![
                "o-01".into(),
                "o-02".into(),
                "other".into(),
                "missing".into(),
            ])
            .filter(|_, v| *v != 2),
    );
    let keys: Vec<_> = plan.keys().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["o-01"]);
}

#[test]
fn a_plan_executed_after_some_planned_keys_were_updated_skips_them() {
    let map = filled(10);
    let plan = map.plan_remove(Selector::all().prefix("o-"));
    let planned_03 = plan.keys()[3].1;
    let updated = map.insert("o-03".into(), 300).unwrap();
    let _ = map.remove("o-04", Reason::new("meanwhile")).unwrap();
    let report = map.execute(plan.id(), 9, Reason::new("cleanup")).unwrap();
    assert_eq!(report.deleted, 7);
    assert_eq!(
        report.conflicts,
        vec![
            Conflict {
                key: "o-03".to_string(),
                planned_revision: planned_03,
                current_revision: Some(updated.revision()),
                changed: None,
            },
            Conflict {
                key: "o-04".to_string(),
                planned_revision: plan.keys()[4].1,
                current_revision: None,
                changed: None,
            },
        ]
    );
    assert_eq!(map.get("o-03").unwrap().value(), &300);
    let (first, last) = report.audit_ids.unwrap();
    let records = map.journal().unwrap().for_plan(plan.id());
    assert_eq!(records.len(), 7);
    assert_eq!((records[0].id, records[6].id), (first, last));
    assert!(
        records
            .iter()
            .all(|r| r.op == Op::Delete && r.reason.as_deref() == Some("cleanup"))
    );
}

#[test]
fn planned_removals_bypass_the_breaker() {
    let map = filled(10);
    let plan = map.plan_remove(Selector::all().prefix("o-"));
    let report = map
        .execute(plan.id(), plan.count(), Reason::new("x"))
        .unwrap();
    assert_eq!(report.deleted, 9);
    assert!(!map.breaker_state().unwrap().open);
}

#[test]
fn a_wrong_count_or_missing_reason_leaves_the_plan_usable() {
    let map = filled(5);
    let plan = map.plan_remove(Selector::all().prefix("o-"));
    assert_eq!(
        map.execute(plan.id(), 4, Reason::new("x")),
        Err(ExecuteError::ConfirmCountMismatch {
            expected: 5,
            got: 4
        })
    );
    assert_eq!(
        map.execute(plan.id(), 5, ""),
        Err(ExecuteError::ReasonRequired)
    );
    assert_eq!(map.len(), 6);
    assert_eq!(map.execute(plan.id(), 5, "x").unwrap().deleted, 5);
}

#[test]
fn a_plan_executes_at_most_once() {
    let map = filled(5);
    let plan = map.plan_remove(Selector::all().prefix("o-"));
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| map.execute(plan.id(), 5, "x")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| *r == Err(ExecuteError::Gone))
    );
    assert_eq!(map.execute(plan.id(), 5, "x"), Err(ExecuteError::Gone));
}

#[test]
fn an_expired_plan_is_gone_and_an_unknown_one_not_found() {
    let map: SafeMap<String, u32> = SafeMap::builder()
        .plan_ttl(Duration::from_millis(50))
        .build();
    let _ = map.insert("a".into(), 1);
    let plan = map.plan_remove(Selector::all());
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(map.execute(plan.id(), 1, "x"), Err(ExecuteError::Gone));
    assert!(map.contains_key("a"));
    let other: SafeMap<String, u32> = SafeMap::new();
    assert_eq!(
        other.execute(plan.id(), 1, "x"),
        Err(ExecuteError::NotFound)
    );
}

#[test]
fn a_key_that_became_vetoed_after_the_plan_is_not_removed() {
    let map = filled(3);
    let plan = map.plan_remove(Selector::all().keys(vec!["o-01".into()]));
    let _ = map.insert("o-01".into(), 7);
    let report = map.execute(plan.id(), 1, "x").unwrap();
    assert_eq!(report.deleted, 0);
    assert_eq!(
        report.conflicts.len(),
        1,
        "changed since the plan, so skipped"
    );
    assert!(map.contains_key("o-01"));
}

#[test]
fn a_plan_loaded_after_a_restart_executes_under_its_original_id() {
    let before: SafeMap<String, u32> = SafeMap::builder().name("orders").build();
    for i in 0..3 {
        let _ = before.insert(format!("o-{i}"), i);
    }
    let plan = before.plan_remove(Selector::all().prefix("o-"));
    // A new life: the same entries, and the plan as storage kept it.
    let after: SafeMap<String, u32> = SafeMap::builder().name("orders").build();
    for (key, revision) in plan.keys() {
        let value = *before.get(key).unwrap().value();
        after.load_entry(key.clone(), value, *revision, *revision, 1);
    }
    after.load_plan(plan.id(), plan.keys().to_vec(), plan.expires_at());
    let report = after.execute(plan.id(), 3, "cleanup").unwrap();
    assert_eq!(report.deleted, 3);
    assert!(after.is_empty());
    assert_eq!(
        after.execute(plan.id(), 3, "again"),
        Err(safemap::ExecuteError::Gone)
    );
    let expired = before.plan_remove(Selector::all());
    after.load_plan(expired.id(), Vec::new(), std::time::SystemTime::UNIX_EPOCH);
    assert_eq!(
        after.execute(expired.id(), 0, "late"),
        Err(safemap::ExecuteError::Gone)
    );
}
