//! Deny rules and the delete breaker.

use std::time::Duration;

use safemap::{DeleteError, Reason, SafeMap};

#[derive(Clone, Debug, PartialEq)]
enum Status {
    Open,
    Archived,
}

fn orders() -> SafeMap<String, Status> {
    SafeMap::builder()
        .name("orders")
        .deny_delete("archived", |_k, s| *s == Status::Archived)
        .build()
}

#[test]
fn a_deny_rule_vetoes_and_changes_nothing() {
    let map = orders();
    let w = map.insert("o-1".into(), Status::Archived).unwrap();
    let records_before = map.journal().unwrap().len();
    assert_eq!(
        map.remove("o-1", Reason::new("cleanup")),
        Err(DeleteError::Vetoed {
            rule: "archived".into()
        })
    );
    assert_eq!(map.get("o-1").unwrap().revision(), w.revision());
    assert_eq!(map.journal().unwrap().len(), records_before);
    let stats = map.stats();
    assert_eq!(stats.deletes.vetoed, 1);
    assert_eq!(stats.vetoes_by_rule, vec![("archived".to_string(), 1)]);
}

#[test]
fn the_rule_judges_the_value_at_removal_time() {
    let map = orders();
    let _ = map.insert("o-1".into(), Status::Open);
    let _ = map.insert("o-1".into(), Status::Archived);
    assert!(matches!(
        map.remove("o-1", Reason::new("x")),
        Err(DeleteError::Vetoed { .. })
    ));
    let _ = map.insert("o-1".into(), Status::Open);
    assert!(map.remove("o-1", Reason::new("x")).is_ok());
}

#[test]
fn the_breaker_opens_after_max_successful_removals_and_reports_retry_after() {
    let map: SafeMap<u32, u32> = SafeMap::builder()
        .delete_breaker(3, Duration::from_secs(60))
        .build();
    for k in 0..10 {
        let _ = map.insert(k, k);
    }
    // Refused removals do not count.
    assert_eq!(
        map.remove(&99, Reason::new("x")),
        Err(DeleteError::NotFound)
    );
    for k in 0..3 {
        assert!(map.remove(&k, Reason::new("x")).is_ok());
    }
    match map.remove(&3, Reason::new("x")) {
        Err(DeleteError::BreakerOpen { retry_after }) => {
            assert!(
                retry_after > Duration::from_secs(55) && retry_after <= Duration::from_secs(60)
            );
        }
        other => panic!("expected BreakerOpen, got {other:?}"),
    }
    assert!(map.contains_key(&3));
    let state = map.breaker_state().unwrap();
    assert!(state.open);
    assert_eq!((state.in_window, state.max, state.trips), (3, 3, 1));
    assert_eq!(map.stats().deletes.breaker, 1);
}

#[test]
fn the_breaker_closes_when_the_window_slides() {
    let map: SafeMap<u32, u32> = SafeMap::builder()
        .delete_breaker(1, Duration::from_millis(150))
        .build();
    let _ = map.insert(1, 1);
    let _ = map.insert(2, 2);
    assert!(map.remove(&1, Reason::new("x")).is_ok());
    assert!(matches!(
        map.remove(&2, Reason::new("x")),
        Err(DeleteError::BreakerOpen { .. })
    ));
    std::thread::sleep(Duration::from_millis(200));
    assert!(map.remove(&2, Reason::new("x")).is_ok());
}

#[test]
fn a_seeded_breaker_survives_a_restart() {
    let map: SafeMap<u32, u32> = SafeMap::builder()
        .delete_breaker(2, Duration::from_secs(60))
        .build();
    let now = std::time::SystemTime::now();
    map.seed_breaker([now - Duration::from_secs(10), now - Duration::from_secs(5)]);
    let _ = map.insert(1, 1);
    assert!(matches!(
        map.remove(&1, Reason::new("x")),
        Err(DeleteError::BreakerOpen { .. })
    ));
}

#[test]
fn retain_passes_the_guards() {
    let map = orders();
    let _ = map.insert("a".into(), Status::Open);
    let _ = map.insert("b".into(), Status::Archived);
    let report = map.retain(|_, _| false, Reason::new("purge")).unwrap();
    assert_eq!(report.removed, 1);
    assert_eq!(
        report.vetoed,
        vec![("b".to_string(), "archived".to_string())]
    );
    assert!(map.contains_key("b") && !map.contains_key("a"));
    assert_eq!(
        map.retain(|_, _| false, ""),
        Err(DeleteError::ReasonRequired)
    );
}

#[test]
fn retain_stops_at_the_breaker() {
    let map: SafeMap<u32, u32> = SafeMap::builder()
        .delete_breaker(5, Duration::from_secs(60))
        .build();
    let _ = map.refresh((0..20).map(|k| (k, k)));
    let report = map.retain(|_, _| false, Reason::new("purge")).unwrap();
    assert_eq!(report.removed, 5);
    assert!(report.stopped_by_breaker);
    assert_eq!(map.len(), 15);
}
