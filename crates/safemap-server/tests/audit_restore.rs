//! Audit queries (actor, trace id, paging) and single-key restore.
#![allow(clippy::unwrap_used)]
mod common;

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn records_carry_actor_reason_and_trace_id() {
    let s = TestServer::start().await;
    let writer = s.token("deployer", &["write", "delete"]).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = s
        .req(Method::PUT, "/v1/maps/m/keys/k", Some(&writer))
        .header("traceparent", tp)
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["x-trace-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let r = s
        .req(Method::DELETE, "/v1/maps/m/keys/k", Some(&writer))
        .header("x-reason", "rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let recs = s.audit("map=m").await;
    assert_eq!(recs.len(), 2);
    let put = &recs[0];
    assert_eq!(put["op"], "put");
    assert_eq!(put["actor"], "deployer");
    assert_eq!(put["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(put["previous_revision"].is_null());
    assert!(put["at"].as_str().unwrap().contains('T'));
    let del = &recs[1];
    assert_eq!(del["op"], "delete");
    assert_eq!(del["reason"], "rotate");
    assert_eq!(del["previous_revision"], 1);
    assert_eq!(del["trace_id"].as_str().unwrap().len(), 32);
    assert!(del["id"].as_u64() > put["id"].as_u64());
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_pages_and_filters() {
    let s = TestServer::start().await;
    for i in 0..7 {
        let _ = s.put("a", &format!("k{i}"), json!(i)).await;
        let _ = s.put("b", "x", json!(i)).await;
    }
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let (st, v) = sj(s
            .admin(
                Method::GET,
                &format!("/v1/audit?map=a&limit=3&after={after}"),
            )
            .send()
            .await
            .unwrap())
        .await;
        assert_eq!(st, 200);
        for r in v["records"].as_array().unwrap() {
            assert_eq!(r["map"], "a");
            ids.push(r["id"].as_u64().unwrap());
        }
        match v["next"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(ids.len(), 7);
    // A page that holds the rest says there is no next page.
    let (_, v) = sj(s
        .admin(Method::GET, "/v1/audit?map=a&limit=7")
        .send()
        .await
        .unwrap())
    .await;
    assert!(v["next"].is_null(), "{v}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(s.audit("map=b&key=x").await.len(), 7);
    for bad in ["limit=0", "limit=1001", "after=x", "plan_id=xyz", "map=BAD"] {
        let (st, _) = sj(s
            .admin(Method::GET, &format!("/v1/audit?{bad}"))
            .send()
            .await
            .unwrap())
        .await;
        assert_eq!(st, 400, "{bad}");
    }
    // The largest audit id has nothing after it (found by schemathesis: a 500).
    let (st, v) = sj(s
        .admin(Method::GET, &format!("/v1/audit?after={}", u64::MAX))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, v["records"].as_array().map(Vec::len)), (200, Some(0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_single_delete() {
    let s = TestServer::start().await;
    let _ = s.put("m", "k", json!({"v": 1})).await;
    let (_, d) = sj(s.delete("m", "k", "mistake").await).await;
    let id = d["audit_id"].as_u64().unwrap();
    let restore = |body: serde_json::Value, reason: Option<&'static str>| {
        let mut r = s.admin(Method::POST, "/v1/maps/m/restore").json(&body);
        if let Some(why) = reason {
            r = r.header("x-reason", why);
        }
        r.send()
    };
    let (st, v) = sj(restore(json!({"audit_id": id}), None).await.unwrap()).await;
    assert_eq!((st, code(&v)), (400, "reason_required"));
    let (st, _) = sj(restore(json!({"audit_id": id, "plan_id": "x"}), Some("r"))
        .await
        .unwrap())
    .await;
    assert_eq!(st, 400);
    // JSON Schema's integer: 5.0 is the audit id 5; 5.5 is no audit id.
    let (st, v) = sj(restore(json!({"audit_id": 0.5}), Some("r")).await.unwrap()).await;
    assert_eq!((st, code(&v)), (400, "invalid_body"));
    let (st, v) = sj(restore(json!({"audit_id": id as f64}), Some("undo"))
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restored"][0]["key"], "k");
    let rev = v["restored"][0]["revision"].as_u64().unwrap();
    let (_, e) = sj(s.get("m", "k").await).await;
    assert_eq!(
        (e["value"].clone(), e["revision"].as_u64()),
        (json!({"v": 1}), Some(rev))
    );
    let last = s.audit("map=m").await.pop().unwrap();
    assert_eq!(
        (last["op"].as_str(), last["reason"].as_str()),
        (Some("restore"), Some("undo"))
    );
    // Again: the key exists now, so it is skipped as recreated.
    let (st, v) = sj(restore(json!({"audit_id": id}), Some("undo"))
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["skipped"], json!([{"key": "k", "why": "recreated"}]));
    // Unknown id: 404; a put record: not a delete.
    let (st, _) = sj(restore(json!({"audit_id": 999}), Some("r")).await.unwrap()).await;
    assert_eq!(st, 404);
    let (st, v) = sj(restore(json!({"audit_id": 1}), Some("r")).await.unwrap()).await;
    assert_eq!((st, code(&v)), (409, "not_a_delete"));
    // Restore needs admin.
    let del = s.token("deleter", &["delete", "write", "read"]).await;
    let (st, _) = sj(s
        .req(Method::POST, "/v1/maps/m/restore", Some(&del))
        .header("x-reason", "r")
        .json(&json!({"audit_id": id}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_after_restart() {
    let s = TestServer::start().await;
    let _ = s.put("m", "k", json!("v")).await;
    let (_, d) = sj(s.delete("m", "k", "oops").await).await;
    let id = d["audit_id"].as_u64().unwrap();
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    let s = TestServer::start_in(&dir, "").await;
    let (st, v) = sj(s
        .admin(Method::POST, "/v1/maps/m/restore")
        .header("x-reason", "undo")
        .json(&json!({"audit_id": id}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restored"][0]["revision"], 3);
    drop(s);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_past_retention_is_410() {
    let s = TestServer::start_with("[maps.short]\nretention = \"1s\"\n").await;
    let _ = s.put("short", "k", json!(1)).await;
    let (_, d) = sj(s.delete("short", "k", "gone").await).await;
    let id = d["audit_id"].as_u64().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (st, v) = sj(s
        .admin(Method::POST, "/v1/maps/short/restore")
        .header("x-reason", "too late")
        .json(&json!({"audit_id": id}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (410, "retention_expired"), "{v}");
    assert_eq!(s.get("short", "k").await.status(), 404);
}
