//! Delete plans in cluster mode: stored in etcd before their 201, executable
//! through any server, executed exactly once cluster-wide, surviving restarts
//! of every server.

use reqwest::Method;
use serde_json::{Value, json};

use super::harness::{Etcd, Server, etcd_available};
use super::{answer, code, get, put, two_servers};

/// `POST /v1/maps/m/delete-plans` through `s`.
pub async fn plan(s: &Server, admin: &str, body: Value) -> (u16, Option<u64>, Value) {
    let r = s
        .req(Method::POST, "/v1/maps/m/delete-plans", admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    answer(r).await
}

/// Executes plan `id` of map `m` through `s` with `X-Confirm-Count: count`.
pub async fn execute(s: &Server, admin: &str, id: &str, count: u64) -> (u16, Option<u64>, Value) {
    let r = s
        .req(
            Method::POST,
            &format!("/v1/maps/m/delete-plans/{id}/execute"),
            admin,
        )
        .header("x-reason", "cleanup")
        .header("x-confirm-count", count.to_string())
        .send()
        .await
        .unwrap();
    answer(r).await
}

/// Puts `keys` (value `{"n": i}`) through `s`; returns the last revision.
async fn put_all(s: &Server, admin: &str, keys: &[String]) -> u64 {
    let mut last = 0;
    for (i, k) in keys.iter().enumerate() {
        let (st, _, v) = put(s, admin, k, json!({ "n": i }), None).await;
        assert_eq!(st, 201, "{v}");
        last = v["revision"].as_u64().unwrap();
    }
    last
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plan_made_through_one_server_executes_exactly_once_through_any() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, admin) = two_servers(&etcd, tmp.path(), None).await;

    // Made through A, executed through B right after the 201.
    put_all(&a, &admin, &names("o-", 5)).await;
    put(&a, &admin, "keep", json!(1), None).await;
    let (s, planned_at, p) = plan(&a, &admin, json!({"prefix": "o-"})).await;
    assert_eq!((s, p["count"].as_u64()), (201, Some(5)), "{p}");
    let id = p["plan_id"].as_str().unwrap().to_string();
    // In etcd before its 201: its pinned keys, expiry and creator.
    let stored: Value =
        serde_json::from_str(&etcd.value(&format!("/t/plans/{id}")).await.unwrap()).unwrap();
    assert_eq!(
        stored["plan"]["keys"].as_array().map(Vec::len),
        Some(5),
        "{stored}"
    );
    assert!(
        stored["plan"]["expires_at_ms"].as_u64().is_some(),
        "{stored}"
    );
    assert!(stored["created_by"].is_string(), "{stored}");
    // Its tree through B, once B's replica reached the revision A answered
    // the 201 at (X-Safemap-Revision: at least the plan's write).
    let r = b
        .req(Method::GET, &format!("/v1/delete-plans/{id}/tree"), &admin)
        .header("x-min-revision", planned_at.unwrap().to_string())
        .send()
        .await
        .unwrap();
    let (s, _, v) = answer(r).await;
    assert_eq!(
        (s, v["items"].as_array().map(Vec::len)),
        (200, Some(5)),
        "{v}"
    );
    // A wrong count is refused and does not use the plan up.
    let (s, _, v) = execute(&b, &admin, &id, 4).await;
    assert_eq!((s, code(&v)), (412, "confirm_count_mismatch"), "{v}");
    let (s, rev_b, v) = execute(&b, &admin, &id, 5).await;
    assert_eq!((s, v["deleted"].as_u64()), (200, Some(5)), "{v}");
    assert_eq!(v["conflicts"], json!([]));
    let ids: Vec<u64> = v["audit_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1] - ids[0], 4, "one record per deleted key: {v}");
    // A sees the deletes (read-your-writes through X-Min-Revision), and the
    // plan is used up everywhere.
    for k in names("o-", 5) {
        assert_eq!(get(&a, &admin, &k, rev_b).await.0, 404);
    }
    assert_eq!(get(&a, &admin, "keep", None).await.0, 200);
    let (s, _, v) = execute(&a, &admin, &id, 5).await;
    assert_eq!((s, code(&v)), (410, "plan_gone"), "{v}");
    let r = a
        .req(Method::GET, &format!("/v1/audit?plan_id={id}"), &admin)
        .send()
        .await
        .unwrap();
    let (_, _, v) = answer(r).await;
    let keys: Vec<&str> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 5, "{v}");
    assert!(
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["op"] == "delete" && r["reason"] == "cleanup")
    );

    // Restore by plan id through A puts every key back.
    let r = a
        .req(Method::POST, "/v1/maps/m/restore", &admin)
        .header("x-reason", "undo")
        .json(&json!({ "plan_id": id }))
        .send()
        .await
        .unwrap();
    let (s, rev, v) = answer(r).await;
    assert_eq!(
        (s, v["restored"].as_array().map(Vec::len)),
        (200, Some(5)),
        "{v}"
    );
    assert_eq!(
        get(&b, &admin, "o-3", rev).await.2["value"],
        json!({"n": 3})
    );

    // Two executions at once, through A and B: one 200, one 410, and the
    // keys are deleted once (one record each).
    for round in 0..3 {
        let keys = names(&format!("c{round}-"), 3);
        put_all(&b, &admin, &keys).await;
        let (s, _, p) = plan(&a, &admin, json!({"prefix": format!("c{round}-")})).await;
        assert_eq!(s, 201, "{p}");
        let id = p["plan_id"].as_str().unwrap().to_string();
        let (x, y) = tokio::join!(execute(&a, &admin, &id, 3), execute(&b, &admin, &id, 3));
        let mut statuses = [x.0, y.0];
        statuses.sort();
        assert_eq!(statuses, [200, 410], "{} {}", x.2, y.2);
        let lost = if x.0 == 410 { &x.2 } else { &y.2 };
        assert_eq!(code(lost), "plan_gone");
        let won = if x.0 == 200 { &x.2 } else { &y.2 };
        assert_eq!(won["deleted"].as_u64(), Some(3), "{won}");
        let r = b
            .req(Method::GET, &format!("/v1/audit?plan_id={id}"), &admin)
            .header("x-min-revision", x.1.max(y.1).unwrap().to_string())
            .send()
            .await
            .unwrap();
        let (_, _, v) = answer(r).await;
        assert_eq!(v["records"].as_array().map(Vec::len), Some(3), "{v}");
    }

    // A pinned key changed through B after the plan: execution through A
    // skips it and reports it, as one server does; the rest is deleted.
    put_all(&a, &admin, &names("r-", 2)).await;
    let (_, _, p) = plan(&a, &admin, json!({"keys": ["r-0", "r-1"]})).await;
    let id = p["plan_id"].as_str().unwrap().to_string();
    let (s, _, moved) = put(&b, &admin, "r-0", json!("moved"), None).await;
    assert_eq!(s, 200, "{moved}");
    let (s, rev, v) = execute(&a, &admin, &id, 2).await;
    assert_eq!((s, v["deleted"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(v["conflicts"][0]["key"], "r-0", "{v}");
    assert_eq!(
        v["conflicts"][0]["current_revision"], moved["revision"],
        "{v}"
    );
    assert_eq!(get(&b, &admin, "r-0", rev).await.2["value"], json!("moved"));
    assert_eq!(get(&b, &admin, "r-1", rev).await.0, 404);

    // A plan larger than one etcd transaction can hold is refused at
    // creation, naming the limit; nothing is stored.
    let plans_before = etcd.keys("/t/plans/").await.len();
    put_all(&a, &admin, &names("big-", 101)).await;
    let (s, _, v) = plan(&a, &admin, json!({"prefix": "big-"})).await;
    assert_eq!((s, code(&v)), (413, "plan_too_large"), "{v}");
    assert_eq!(v["error"]["details"]["limit"].as_u64(), Some(100), "{v}");
    assert_eq!(etcd.keys("/t/plans/").await.len(), plans_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plan_survives_restarting_every_server() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = "[maps.short]\nplan_ttl = \"1s\"\n";
    let (a, b, admin) = two_servers(&etcd, tmp.path(), Some(config)).await;
    put_all(&a, &admin, &names("s-", 3)).await;
    let (s, _, p) = plan(&a, &admin, json!({"prefix": "s-"})).await;
    assert_eq!(s, 201, "{p}");
    let id = p["plan_id"].as_str().unwrap().to_string();
    a.kill();
    b.kill();
    a.restart().await;
    b.restart().await;
    let (s, _, v) = execute(&b, &admin, &id, 3).await;
    assert_eq!((s, v["deleted"].as_u64()), (200, Some(3)), "{v}");
    // Executed stays executed across restarts too.
    b.kill();
    b.restart().await;
    let (s, _, v) = execute(&b, &admin, &id, 3).await;
    assert_eq!((s, code(&v)), (410, "plan_gone"), "{v}");
    let (s, _, v) = execute(&a, &admin, "0123456789abcdef", 3).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");

    // A plan past its map's plan_ttl (1 s) is gone through every server.
    let r = a
        .req(Method::PUT, "/v1/maps/short/keys/k", &admin)
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = a
        .req(Method::POST, "/v1/maps/short/delete-plans", &admin)
        .json(&json!({"keys": ["k"]}))
        .send()
        .await
        .unwrap();
    let (s, _, p) = answer(r).await;
    assert_eq!(s, 201, "{p}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let id = p["plan_id"].as_str().unwrap();
    let r = b
        .req(
            Method::POST,
            &format!("/v1/maps/short/delete-plans/{id}/execute"),
            &admin,
        )
        .header("x-reason", "late")
        .header("x-confirm-count", "1")
        .send()
        .await
        .unwrap();
    let (s, _, v) = answer(r).await;
    assert_eq!((s, code(&v)), (410, "plan_gone"), "{v}");
}
