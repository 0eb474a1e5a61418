//! Restore from the journal.

use std::time::Duration;

use safemap::{Op, Reason, RestoreError, SafeMap, Selector, Skip};

#[test]
fn restore_writes_the_removed_value_back_as_a_new_revision() {
    let map = SafeMap::new();
    let _ = map.insert("k".to_string(), 1);
    let _ = map.insert("k".to_string(), 2);
    let removed = map.remove("k", Reason::new("oops")).unwrap();
    let report = map
        .restore(
            removed.audit_id().unwrap(),
            Reason::new("undo").with_actor("ops"),
        )
        .unwrap();
    let entry = map.get("k").unwrap();
    assert_eq!(report.restored, vec![("k".to_string(), entry.revision())]);
    assert_eq!(*entry.value(), 2);
    assert!(entry.revision() > removed.revision());
    assert_eq!(
        (entry.create_revision(), entry.version()),
        (entry.revision(), 1)
    );
    let last = map
        .journal()
        .unwrap()
        .for_key(&"k".to_string())
        .pop()
        .unwrap();
    assert_eq!(last.op, Op::Restore);
    assert_eq!(last.actor.as_deref(), Some("ops"));
    assert_eq!(last.value, Some(2));
}

#[test]
fn restore_after_the_key_was_recreated_is_skipped_not_overwritten() {
    let map = SafeMap::new();
    let _ = map.insert("k".to_string(), 1);
    let removed = map.remove("k", "oops").unwrap();
    let recreated = map.insert("k".to_string(), 99).unwrap();
    let records_before = map.journal().unwrap().len();
    let report = map.restore(removed.audit_id().unwrap(), "undo").unwrap();
    assert!(report.restored.is_empty());
    assert_eq!(report.skipped, vec![("k".to_string(), Skip::Recreated)]);
    assert_eq!(map.get("k").unwrap().revision(), recreated.revision());
    assert_eq!(
        map.journal().unwrap().len(),
        records_before,
        "a skipped restore writes no record"
    );
}

#[test]
fn restoring_twice_skips_the_second_time() {
    let map = SafeMap::new();
    let _ = map.insert("k", 1);
    let id = map.remove("k", "oops").unwrap().audit_id().unwrap();
    assert_eq!(map.restore(id, "undo").unwrap().restored.len(), 1);
    assert_eq!(
        map.restore(id, "undo").unwrap().skipped,
        vec![("k", Skip::Recreated)]
    );
}

#[test]
fn only_removals_of_this_map_can_be_restored() {
    let map = SafeMap::builder().record_puts(true).build();
    let put = map.insert("k", 1).unwrap().audit_id().unwrap();
    assert_eq!(map.restore(put, "x"), Err(RestoreError::NotADelete));
    assert_eq!(
        map.restore(safemap::AuditId::new(999), "x"),
        Err(RestoreError::NotFound)
    );
    assert_eq!(map.restore(put, ""), Err(RestoreError::ReasonRequired));
    let plain: SafeMap<&str, i32> = SafeMap::builder().without_journal().build();
    assert_eq!(plain.restore(put, "x"), Err(RestoreError::JournalDisabled));
}

#[test]
fn restore_past_retention_is_refused() {
    let map = SafeMap::builder()
        .retain_deleted_for(Duration::from_millis(50))
        .build();
    let _ = map.insert("k", 1);
    let id = map.remove("k", "x").unwrap().audit_id().unwrap();
    std::thread::sleep(Duration::from_millis(80));
    let _ = map.insert("other", 1); // an append evicts what is past retention
    assert_eq!(map.restore(id, "undo"), Err(RestoreError::RetentionExpired));
    assert!(!map.contains_key("k"));
}

#[test]
fn restore_plan_undoes_a_planned_removal_and_skips_recreated_keys() {
    let map: SafeMap<String, u32> = SafeMap::new();
    let _ = map.refresh((0..10).map(|i| (format!("k{i}"), i)));
    let plan = map.plan_remove(Selector::all().filter(|_, v| v % 2 == 0));
    let report = map.execute(plan.id(), 5, "cleanup").unwrap();
    assert_eq!(report.deleted, 5);
    let _ = map.insert("k4".into(), 400);
    let undo = map.restore_plan(plan.id(), "undo").unwrap();
    assert_eq!(undo.restored.len(), 4);
    assert_eq!(undo.skipped, vec![("k4".to_string(), Skip::Recreated)]);
    assert_eq!(map.len(), 10);
    assert_eq!(map.get("k4").unwrap().value(), &400);
    assert_eq!(
        map.restore_plan(safemap::PlanId::new(1), "x"),
        Err(RestoreError::NotFound)
    );
}

/// Keeps a copy of every record, as a server's storage does.
#[derive(Default)]
struct Kept(std::sync::Mutex<Vec<safemap::AuditRecord<String, u32>>>);

impl safemap::JournalSink<String, u32> for Kept {
    fn append(&self, record: &std::sync::Arc<safemap::AuditRecord<String, u32>>) {
        if let Ok(mut kept) = self.0.lock() {
            kept.push((**record).clone());
        }
    }
}

#[test]
fn records_evicted_from_memory_are_restored_from_the_callers_copy() {
    let kept = std::sync::Arc::new(Kept::default());
    let journal = safemap::Journal::builder()
        .capacity(3)
        .sink(kept.clone())
        .build();
    let map: SafeMap<String, u32> = SafeMap::builder()
        .name("orders")
        .journal(journal.clone())
        .build();
    let _ = map.insert("k".into(), 7);
    let id = map.remove("k", "oops").unwrap().audit_id().unwrap();
    for i in 0..5 {
        let _ = map.insert(format!("other{i}"), i);
    }
    assert!(id < journal.first_held_id());
    assert_eq!(map.restore(id, "undo"), Err(RestoreError::RetentionExpired));
    let copy = |id| {
        kept.0
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .unwrap()
    };
    let report = map.restore_record(copy(id), "undo").unwrap();
    assert_eq!(report.restored.len(), 1);
    assert_eq!(map.get("k").unwrap().value(), &7);
    // Restored once: the key exists again.
    let again = map.restore_record(copy(id), "undo").unwrap();
    assert_eq!(again.skipped, vec![("k".to_string(), Skip::Recreated)]);
    // Another map's record, or a put, is not restored.
    let mut other = copy(id);
    other.map = "items".into();
    assert_eq!(
        map.restore_record(other, "undo"),
        Err(RestoreError::NotFound)
    );
    let put = copy(safemap::AuditId::new(id.get() + 1));
    assert_eq!(
        map.restore_record(put, "undo"),
        Err(RestoreError::NotADelete)
    );
}

#[test]
fn a_plan_partly_evicted_from_memory_is_restored_whole_with_the_callers_copy() {
    let kept = std::sync::Arc::new(Kept::default());
    let journal = safemap::Journal::builder()
        .capacity(3)
        .sink(kept.clone())
        .build();
    let map: SafeMap<String, u32> = SafeMap::builder()
        .name("orders")
        .journal(journal.clone())
        .build();
    let _ = map.refresh((0..6).map(|i| (format!("k{i}"), i)));
    let plan = map.plan_remove(Selector::all());
    let report = map.execute(plan.id(), 6, "cleanup").unwrap();
    assert_eq!(report.deleted, 6);
    // Only the last three deletes are held; the journal alone restores those.
    assert_eq!(journal.for_plan(plan.id()).len(), 3);
    // Everything the caller kept, held records included: no key comes back twice.
    let older = kept.0.lock().unwrap().clone();
    let undo = map.restore_plan_with(plan.id(), older, "undo").unwrap();
    assert_eq!(undo.restored.len(), 6);
    assert!(undo.skipped.is_empty());
    assert_eq!(map.len(), 6);
}
