//! Recovery reads only what start-up needs (STORAGE.md, "Recovery at
//! start"): the newest `journal_capacity` audit records, the deletes inside
//! the breakers' windows, the plans and `audit_maps`; the rest of the history
//! stays in redb and is still served from there after a restart.
#![allow(clippy::unwrap_used)]
mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestServer, code, ids, sj};
use reqwest::Method;
use safemap_server::storage::{
    Bounds, Options, Storage, StoredOp, StoredPlan, StoredRecord, Target, now_ms,
};
use serde_json::{Value, json};

const CONFIG: &str = "[server]\njournal_capacity = 50\n\n[maps.orders]\ndelete_breaker = { max_deletes = 3, per_seconds = 3600 }\n";

async fn execute(s: &TestServer, map: &str, id: &str, count: u64) -> (u16, Value) {
    sj(s.admin(
        Method::POST,
        &format!("/v1/maps/{map}/delete-plans/{id}/execute"),
    )
    .header("x-reason", "cleanup")
    .header("x-confirm-count", count.to_string())
    .send()
    .await
    .unwrap())
    .await
}

async fn put_revision(s: &TestServer, map: &str, key: &str, v: Value) -> u64 {
    let (st, body) = sj(s.put(map, key, v).await).await;
    assert_eq!(st / 100, 2, "{body}");
    body["revision"].as_u64().unwrap()
}

/// Everything a restart must keep, with the records that prove it (the
/// breaker's deletes, an old delete, an executed plan) far older than the
/// newest 50 that the journal loads.
#[tokio::test(flavor = "multi_thread")]
async fn old_history_breaker_and_plans_survive_a_restart_with_a_small_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = TestServer::start_in(dir, CONFIG).await;
    // A map whose only trace will be an old delete.
    put_revision(&s, "gone", "x", json!({"n": 1})).await;
    let (st, v) = sj(s.delete("gone", "x", "oops").await).await;
    assert_eq!(st, 200, "{v}");
    let old_delete = v["audit_id"].as_u64().unwrap();
    // The breaker's window fills (3 per hour).
    for i in 0..4 {
        put_revision(&s, "orders", &format!("o{i}"), json!(i)).await;
    }
    for i in 0..3 {
        let (st, v) = sj(s.delete("orders", &format!("o{i}"), "r").await).await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = sj(s.delete("orders", "o3", "r").await).await;
    assert_eq!((st, code(&v)), (429, "delete_breaker_open"), "{v}");
    // An executed plan.
    for i in 0..3 {
        put_revision(&s, "items", &format!("p-{i}"), json!(i)).await;
    }
    let (st, v) = sj(s
        .admin(Method::POST, "/v1/maps/items/delete-plans")
        .json(&json!({"prefix": "p-"}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 201, "{v}");
    let plan = v["plan_id"].as_str().unwrap().to_string();
    let (st, v) = execute(&s, "items", &plan, 3).await;
    assert_eq!(st, 200, "{v}");
    // A few hundred writes push all of that out of the newest 50.
    let mut last_revision = 0;
    for i in 0..300 {
        last_revision = put_revision(&s, "items", &format!("k{}", i % 13), json!(i)).await;
    }
    let before = ids(&s.audit_pages("", 100).await);
    s.stop().await;

    let s = TestServer::start_in(dir, CONFIG).await;
    // The journal holds the newest 50 only; the rest pages from disk.
    assert!(s.state.journal.first_held_id().get() > old_delete + 200);
    let after = ids(&s.audit_pages("", 100).await);
    let n = after.len() as u64;
    assert!(n > 300, "{n}");
    assert_eq!(after, (1..=n).collect::<Vec<_>>(), "a gap or a duplicate");
    assert_eq!(after, before);
    assert_eq!(ids(&s.audit_pages("", 7).await), after);
    // The map known only from its old delete exists; the delete restores.
    let (st, v) = s.restore("gone", json!({"audit_id": old_delete})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restored"][0]["key"], "x", "{v}");
    // The breaker's window was full: it still refuses.
    let (st, v) = sj(s.delete("orders", "o3", "r").await).await;
    assert_eq!((st, code(&v)), (429, "delete_breaker_open"), "{v}");
    // The executed plan stays gone.
    let (st, v) = execute(&s, "items", &plan, 3).await;
    assert_eq!((st, code(&v)), (410, "plan_gone"), "{v}");
    // Revisions continue above everything before the restart.
    let r = put_revision(&s, "items", "fresh", json!(1)).await;
    assert!(r > last_revision, "{r} <= {last_revision}");
    let last_revision = r;

    // After a crash too, with the skip over what may have been in flight.
    s.state.local_storage("test").unwrap().halt_as_crash();
    s.stop().await;
    let s = TestServer::start_in(dir, CONFIG).await;
    let r = put_revision(&s, "items", "after-crash", json!(1)).await;
    assert!(r > last_revision + (1 << 24) - 1, "{r}");
    let (st, v) = sj(s.delete("orders", "o3", "r").await).await;
    assert_eq!((st, code(&v)), (429, "delete_breaker_open"), "{v}");
    let after_crash = ids(&s.audit_pages("", 100).await);
    assert_eq!(after_crash[..after.len()], after[..]);
    s.stop().await;
}

fn record(id: u64, at_ms: u64, map: &str, op: StoredOp, plan_id: Option<&str>) -> StoredRecord {
    StoredRecord {
        id,
        at_ms,
        map: map.into(),
        key: format!("k{id}"),
        op,
        revision: id,
        previous_revision: None,
        create_revision: id,
        version: 1,
        reason: None,
        actor: Some("admin".into()),
        trace_id: None,
        plan_id: plan_id.map(str::to_string),
        value: (op != StoredOp::Delete).then(|| json!(id)),
        previous_value: (op == StoredOp::Delete).then(|| json!(id)),
    }
}

fn bounded(capacity: usize, breakers: Vec<(String, usize, Duration)>) -> Options {
    Options {
        recovery: Bounds {
            journal_capacity: capacity,
            breakers,
        },
        ..Options::default()
    }
}

const WEEK: Duration = Duration::from_secs(7 * 86_400);

/// Writes `records` through the storage and closes it cleanly.
async fn write(dir: &Path, records: Vec<StoredRecord>, plans: Vec<StoredPlan>) {
    let (s, _) = Storage::open(dir, WEEK).unwrap();
    let last = records.last().map(|r| r.id);
    for r in records {
        s.enqueue(Box::new(r));
    }
    if let Some(last) = last {
        s.wait_durable(Target::AuditId(last)).await.unwrap();
    }
    for p in plans {
        s.plan(p).await.unwrap();
    }
    s.close();
}

/// The storage reads the newest `capacity` rows and, past them, only the
/// rows inside the breakers' windows (at most their `max_deletes`); counters
/// come from `meta`; a plan whose deletes are stored counts as executed even
/// without its executed row.
#[tokio::test]
async fn recovery_reads_only_the_newest_rows_and_the_breaker_windows() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let hour = 3_600_000;
    let mut records = Vec::new();
    // 1..=1000: two days ago, hourly-ish deletes in "b" (outside a 1 h window).
    for id in 1..=1000 {
        records.push(record(
            id,
            now - 2 * 86_400_000 + id,
            "b",
            StoredOp::Delete,
            None,
        ));
    }
    // 1001..=1010: within the last hour, deletes in "b"; 1011: a planned one.
    for id in 1001..=1010 {
        records.push(record(id, now - hour / 2 + id, "b", StoredOp::Delete, None));
    }
    records.push(record(
        1011,
        now - 1000,
        "b",
        StoredOp::Delete,
        Some("00000000000000aa"),
    ));
    // 1012..=1111: the newest 100, puts in "a".
    for id in 1012..=1111 {
        records.push(record(id, now - 500, "a", StoredOp::Put, None));
    }
    let pending = StoredPlan {
        id: "00000000000000aa".into(),
        map: "b".into(),
        keys: vec![("k1011".into(), 1011)],
        expires_at_ms: now + hour,
        executed: false,
        tree: Vec::new(),
    };
    let untouched = StoredPlan {
        id: "00000000000000bb".into(),
        ..pending.clone()
    };
    write(dir.path(), records, vec![pending, untouched]).await;

    let hour_breaker = vec![("b".to_string(), 50, Duration::from_secs(3600))];
    let (s, r) = Storage::open_with(dir.path(), WEEK, bounded(100, hour_breaker)).unwrap();
    s.close();
    drop(s);
    assert_eq!((r.last_audit_id, r.last_revision), (1111, 1111));
    assert_eq!(r.records.len(), 100);
    assert_eq!(r.records[0].id, 1012);
    // 100 for the journal, 11 inside the window, 1 that ends the scan.
    assert_eq!(r.audit_rows_read, 112);
    assert_eq!(r.breaker_deletes["b"].len(), 10);
    assert!(r.executed_plans.contains("00000000000000aa"));
    assert!(!r.executed_plans.contains("00000000000000bb"));
    let mut maps = r.audit_maps.clone();
    maps.sort();
    assert_eq!(maps, ["a", "b"]);

    // A full breaker stops the scan at its max.
    let (s, r) = Storage::open_with(
        dir.path(),
        WEEK,
        bounded(100, vec![("b".into(), 4, Duration::from_secs(3600))]),
    )
    .unwrap();
    s.close();
    drop(s);
    assert_eq!(
        r.breaker_deletes["b"],
        [
            now - hour / 2 + 1010,
            now - hour / 2 + 1009,
            now - hour / 2 + 1008,
            now - hour / 2 + 1007
        ]
    );
    assert_eq!(r.audit_rows_read, 100 + 1 + 4);

    // Without breakers, nothing past the journal's rows is read.
    let (s, r) = Storage::open_with(dir.path(), WEEK, bounded(10, Vec::new())).unwrap();
    s.close();
    assert_eq!(r.audit_rows_read, 10);
    assert_eq!(r.records.first().unwrap().id, 1102);
    assert_eq!(r.last_audit_id, 1111);
}

/// An unreadable audit row is skipped, counted and logged at start, never a
/// panic; the rows around it are read as before.
#[tokio::test]
async fn a_corrupt_audit_row_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let records = (1..=20)
        .map(|id| record(id, now - 1000, "b", StoredOp::Delete, None))
        .collect();
    write(dir.path(), records, Vec::new()).await;
    {
        let db = redb::Database::create(dir.path().join("safemap.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");
            let mut t = txn.open_table(def).unwrap();
            t.insert(15, b"{not json".as_slice()).unwrap();
            t.insert(5, b"{\"at_ms\": \"soon\"}".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let breakers = vec![("b".to_string(), 100, Duration::from_secs(3600))];
    let (s, r) = Storage::open_with(dir.path(), WEEK, bounded(10, breakers)).unwrap();
    s.close();
    assert_eq!(r.skipped_rows, 2);
    assert_eq!(r.records.len(), 9);
    assert!(r.records.iter().all(|r| r.id > 10 && r.id != 15));
    assert_eq!(r.breaker_deletes["b"].len(), 18);
    assert_eq!(r.last_audit_id, 20);
}

/// Reads table `audit_maps` and `meta.format` of the closed database in `dir`.
fn audit_maps_and_format(dir: &Path) -> (Vec<(String, u64)>, u64) {
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb::Database::create(dir.join("safemap.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("audit_maps");
    let maps = txn
        .open_table(def)
        .unwrap()
        .iter()
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.value().to_string(), v.value())
        })
        .collect();
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    let format = txn
        .open_table(meta)
        .unwrap()
        .get("format")
        .unwrap()
        .unwrap()
        .value();
    (maps, format)
}

/// A file of an older format (4: no `plan_audit`; 5: no `audit_maps`) gets
/// the missing tables built at its first start: the maps of its history are
/// listed with the time of their newest record, and a plan whose deletes are
/// stored but whose row is not marked executed (a crash between the two)
/// counts as executed. The file is then of format 6.
#[tokio::test]
async fn an_older_file_gets_audit_maps_and_the_plan_index_at_start() {
    for old_format in [4u64, 5] {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let plan = "00000000000000cc";
        let records = vec![
            record(1, now - 5000, "a", StoredOp::Put, None),
            record(2, now - 4000, "b", StoredOp::Delete, Some(plan)),
            record(3, now - 3000, "a", StoredOp::Put, None),
        ];
        let row = StoredPlan {
            id: plan.into(),
            map: "b".into(),
            keys: vec![("k2".into(), 2)],
            expires_at_ms: now + 3_600_000,
            executed: false,
            tree: Vec::new(),
        };
        write(dir.path(), records, vec![row]).await;
        let expected = vec![("a".to_string(), now - 3000), ("b".to_string(), now - 4000)];
        assert_eq!(audit_maps_and_format(dir.path()), (expected.clone(), 6));
        // What a server of `old_format` left.
        {
            let db = redb::Database::create(dir.path().join("safemap.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            let maps: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("audit_maps");
            assert!(txn.delete_table(maps).unwrap());
            if old_format < 5 {
                let index: redb::TableDefinition<(&str, u64), ()> =
                    redb::TableDefinition::new("plan_audit");
                assert!(txn.delete_table(index).unwrap());
            }
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            txn.open_table(meta)
                .unwrap()
                .insert("format", old_format)
                .unwrap();
            txn.commit().unwrap();
        }
        let (s, r) = Storage::open(dir.path(), WEEK).unwrap();
        s.close();
        drop(s);
        let mut maps = r.audit_maps.clone();
        maps.sort();
        assert_eq!(maps, ["a", "b"], "format {old_format}");
        assert!(r.executed_plans.contains(plan), "format {old_format}");
        assert_eq!(r.plans.len(), 1);
        assert_eq!(audit_maps_and_format(dir.path()), (expected, 6));
    }
}

/// A map whose newest record is past retention is not listed (nor any of
/// its rows loaded), though the prune pass has not removed it yet.
#[tokio::test]
async fn a_map_with_history_only_past_retention_is_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let records = vec![
        record(1, now - 3 * 3_600_000, "old", StoredOp::Put, None),
        record(2, now - 1000, "new", StoredOp::Put, None),
    ];
    write(dir.path(), records, Vec::new()).await;
    let (s, r) = Storage::open(dir.path(), Duration::from_secs(3600)).unwrap();
    s.close();
    assert_eq!(r.audit_maps, ["new"]);
    assert_eq!(r.records.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
}
