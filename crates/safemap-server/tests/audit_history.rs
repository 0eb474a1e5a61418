//! Audit history older than the in-memory journal (`journal_capacity`):
//! pages from redb continue into the window with no gap and no duplicate,
//! restores of old deletes work as recent ones, across a restart too, and a
//! delete past its retention is 410.
#![allow(clippy::unwrap_used)]
mod common;

use common::{TestServer, code, ids, sj};
use reqwest::Method;
use serde_json::{Value, json};

/// 50 records in memory; the checkpoint would fold only hourly, so every
/// page below the window must make it fold (never wait for the interval).
const CONFIG: &str = "[server]\njournal_capacity = 50\ncheckpoint_interval = \"1h\"\n\n[maps.short]\nretention = \"1s\"\n";

async fn delete_plan(s: &TestServer, map: &str, prefix: &str) -> String {
    let (st, v) = sj(s
        .admin(Method::POST, &format!("/v1/maps/{map}/delete-plans"))
        .json(&json!({"prefix": prefix}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["plan_id"].as_str().unwrap().to_string();
    let count = v["count"].as_u64().unwrap();
    let (st, v) = sj(s
        .admin(
            Method::POST,
            &format!("/v1/maps/{map}/delete-plans/{id}/execute"),
        )
        .header("x-reason", "cleanup")
        .header("x-confirm-count", count.to_string())
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "{v}");
    id
}

/// The whole history pages from id 1 to the newest, unfiltered and
/// filtered, each page size giving the same records.
async fn check_history(s: &TestServer) -> Vec<Value> {
    let all = s.audit_pages("", 1000).await;
    let n = all.len() as u64;
    assert!(n > 300, "{n}");
    assert_eq!(
        ids(&all),
        (1..=n).collect::<Vec<_>>(),
        "a gap or a duplicate"
    );
    assert_eq!(ids(&s.audit_pages("", 7).await), ids(&all));
    for (query, keep) in [
        (
            "map=a",
            Box::new(|r: &Value| r["map"] == "a") as Box<dyn Fn(&Value) -> bool>,
        ),
        (
            "map=a&key=k3",
            Box::new(|r: &Value| r["map"] == "a" && r["key"] == "k3"),
        ),
        ("key=first", Box::new(|r: &Value| r["key"] == "first")),
    ] {
        let want: Vec<u64> = ids(&all.iter().filter(|r| keep(r)).cloned().collect::<Vec<_>>());
        assert!(!want.is_empty(), "{query}");
        assert_eq!(ids(&s.audit_pages(query, 5).await), want, "{query}");
        assert_eq!(ids(&s.audit_pages(query, 1000).await), want, "{query}");
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn history_below_the_memory_window_pages_and_restores_across_a_restart() {
    let s = TestServer::start_with(CONFIG).await;
    // The oldest deletes: long evicted from memory once the writes below ran.
    let _ = s.put("m", "first", json!({"n": 1})).await;
    let _ = s.put("m", "second", json!({"n": 2})).await;
    let (_, v) = sj(s.delete("m", "first", "oops").await).await;
    let first = v["audit_id"].as_u64().unwrap();
    let (_, v) = sj(s.delete("m", "second", "oops").await).await;
    let second = v["audit_id"].as_u64().unwrap();
    for i in 0..5 {
        let _ = s.put("p", &format!("k{i}"), json!(i)).await;
        let _ = s.put("q", &format!("k{i}"), json!(i)).await;
    }
    let plan_p = delete_plan(&s, "p", "k").await;
    let plan_q = delete_plan(&s, "q", "k").await;
    let _ = s.put("short", "x", json!(1)).await;
    let (_, v) = sj(s.delete("short", "x", "oops").await).await;
    let short = v["audit_id"].as_u64().unwrap();
    for i in 0..300 {
        let map = if i % 3 == 0 { "b" } else { "a" };
        let r = s.put(map, &format!("k{}", i % 7), json!(i)).await;
        assert_eq!(r.status().as_u16() / 100, 2);
    }

    let all = check_history(&s).await;
    let plan_records = s.audit_pages(&format!("plan_id={plan_p}"), 2).await;
    assert_eq!(plan_records.len(), 5);
    assert!(plan_records.iter().all(|r| r["plan_id"] == plan_p.as_str()));

    // The first delete comes back exactly as a recent one would.
    let (st, v) = s.restore("m", json!({"audit_id": first})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restored"][0]["key"], "first", "{v}");
    let (_, got) = sj(s.get("m", "first").await).await;
    assert_eq!(got["value"], json!({"n": 1}), "{got}");
    let (st, v) = s.restore("m", json!({"audit_id": first})).await;
    assert_eq!(
        (st, &v["skipped"][0]["why"]),
        (200, &json!("recreated")),
        "{v}"
    );
    // Audited: the restore is the newest record of the key.
    let key_records = s.audit_pages("map=m&key=first", 1000).await;
    assert_eq!(key_records.last().unwrap()["op"], "restore");
    // A whole plan, every record long evicted.
    let (st, v) = s.restore("p", json!({"plan_id": plan_p})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restored"].as_array().unwrap().len(), 5, "{v}");
    // Past the map's retention (1 s): 410, from disk as from memory.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (st, v) = s.restore("short", json!({"audit_id": short})).await;
    assert_eq!((st, code(&v)), (410, "retention_expired"), "{v}");
    // Not a delete, and another map's record, are refused as before.
    let put_id = all[0]["id"].as_u64().unwrap();
    let (st, v) = s.restore("m", json!({"audit_id": put_id})).await;
    assert_eq!((st, code(&v)), (409, "not_a_delete"), "{v}");
    let (st, v) = s.restore("a", json!({"audit_id": second})).await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");

    // After a restart the journal holds only the newest 50: the rest is on disk.
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    let s = TestServer::start_in(&dir, CONFIG).await;
    let after_restart = check_history(&s).await;
    assert_eq!(ids(&after_restart)[..all.len()], ids(&all)[..]);
    let (st, v) = s.restore("m", json!({"audit_id": second})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restored"][0]["key"], "second", "{v}");
    let (st, v) = s.restore("q", json!({"plan_id": plan_q})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restored"].as_array().unwrap().len(), 5, "{v}");
    let (st, v) = s.restore("short", json!({"audit_id": short})).await;
    assert_eq!((st, code(&v)), (410, "retention_expired"), "{v}");
    drop(s);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread")]
async fn evicted_records_not_yet_folded_are_served_after_a_storage_failure_too() {
    let cfg = "[server]\njournal_capacity = 3\ncheckpoint_interval = \"1h\"\n";
    let s = TestServer::start_with(cfg).await;
    // Durable, and (with an hourly checkpoint) not folded: 1 and 2 leave memory.
    for k in ["a", "b", "c", "d", "e"] {
        assert_eq!(s.put("m", k, json!(1)).await.status(), 201);
    }
    s.state
        .local_storage("test")
        .unwrap()
        .inject_commit_failure();
    // Applied in memory (evicting 3), never durable.
    assert_eq!(s.put("m", "f", json!(1)).await.status(), 503);
    // 1..3 are folded on demand, although the log writer has failed.
    let (st, v) = sj(s
        .admin(Method::GET, "/v1/audit?limit=2")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(ids(v["records"].as_array().unwrap()), vec![1, 2], "{v}");
    assert_eq!(v["next"], 2);
    // The page reaching 6, which a crash would take back, is refused.
    let (st, v) = sj(s
        .admin(Method::GET, "/v1/audit?after=2&limit=10")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (503, "storage_unavailable"), "{v}");
    let (st, v) = sj(s
        .admin(Method::GET, "/v1/audit?after=2&limit=3")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(ids(v["records"].as_array().unwrap()), vec![3, 4, 5], "{v}");
}
