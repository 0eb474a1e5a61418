//! Delete plans: dry run, confirm count, conflicts, plan_gone, unknown plans,
//! and restoring a whole plan.
#![allow(clippy::unwrap_used)]
mod common;

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[maps.orders]
delete_breaker = { max_deletes = 2, per_seconds = 60 }

[[maps.orders.deny_delete]]
name = "archived"
pointer = "/status"
equals = "archived"
"#;

async fn plan(s: &TestServer, body: Value) -> (u16, Value) {
    sj(s.admin(Method::POST, "/v1/maps/orders/delete-plans")
        .json(&body)
        .send()
        .await
        .unwrap())
    .await
}

async fn execute(
    s: &TestServer,
    id: &str,
    count: Option<&str>,
    reason: Option<&str>,
) -> (u16, Value) {
    let mut r = s.admin(
        Method::POST,
        &format!("/v1/maps/orders/delete-plans/{id}/execute"),
    );
    if let Some(c) = count {
        r = r.header("x-confirm-count", c);
    }
    if let Some(why) = reason {
        r = r.header("x-reason", why);
    }
    sj(r.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_then_execute_with_confirmation() {
    let s = TestServer::start_with(CONFIG).await;
    for i in 0..30 {
        let status = if i % 10 == 0 { "archived" } else { "stale" };
        let _ = s
            .put("orders", &format!("o-{i:02}"), json!({"status": status}))
            .await;
    }
    let _ = s.put("orders", "keep", json!({"status": "stale"})).await;
    let (st, p) = plan(
        &s,
        json!({"prefix": "o-", "where": {"pointer": "/status", "equals": "stale"}}),
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(p["count"], 27);
    assert_eq!(p["sample"].as_array().unwrap().len(), 20);
    assert_eq!(p["sample"][0], "o-01");
    assert_eq!(p["vetoed"], json!([]));
    assert!(p["expires_at"].as_str().unwrap().ends_with('Z'));
    let id = p["plan_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16);
    // Nothing deleted yet.
    assert_eq!(s.get("orders", "o-01").await.status(), 200);
    // Refusals leave the plan usable: no reason, no count, wrong count.
    let (st, v) = execute(&s, &id, Some("27"), None).await;
    assert_eq!((st, code(&v)), (400, "reason_required"));
    // A missing X-Confirm-Count is malformed input (400), even for an unknown plan.
    let (st, v) = execute(&s, &id, None, Some("cleanup")).await;
    assert_eq!((st, code(&v)), (400, "invalid_header"));
    assert_eq!(v["error"]["details"]["header"], "X-Confirm-Count");
    let (st, v) = execute(&s, "0123456789abcdef", None, Some("cleanup")).await;
    assert_eq!((st, code(&v)), (400, "invalid_header"));
    let (st, v) = execute(&s, &id, Some("many"), Some("cleanup")).await;
    assert_eq!((st, code(&v)), (400, "invalid_header"));
    let (st, v) = execute(&s, &id, Some("26"), Some("cleanup")).await;
    assert_eq!((st, code(&v)), (412, "confirm_count_mismatch"));
    // A key changed since the plan is skipped and reported.
    let _ = s
        .put(
            "orders",
            "o-05",
            json!({"status": "stale", "touched": true}),
        )
        .await;
    let (st, v) = execute(&s, &id, Some("27"), Some("nightly cleanup")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["deleted"], 26);
    assert_eq!(v["conflicts"][0]["key"], "o-05");
    assert!(
        v["conflicts"][0]["current_revision"].as_u64().unwrap()
            > v["conflicts"][0]["planned_revision"].as_u64().unwrap()
    );
    let ids = v["audit_ids"].as_array().unwrap();
    assert_eq!(ids[1].as_u64().unwrap() - ids[0].as_u64().unwrap(), 25);
    // Planned deletes do not count against the breaker (max 2 here).
    assert_eq!(s.delete("orders", "keep", "r").await.status(), 200);
    // Executed once: plan_gone.
    let (st, v) = execute(&s, &id, Some("27"), Some("again")).await;
    assert_eq!((st, code(&v)), (410, "plan_gone"));
    // The audit records carry the plan id.
    let recs = s.audit(&format!("plan_id={id}")).await;
    assert_eq!(recs.len(), 26);
    assert!(
        recs.iter()
            .all(|r| r["reason"] == "nightly cleanup" && r["op"] == "delete")
    );
    // Restore the whole plan, after recreating one key.
    let _ = s.put("orders", "o-01", json!({"status": "new"})).await;
    let (st, v) = sj(s
        .admin(Method::POST, "/v1/maps/orders/restore")
        .header("x-reason", "undo cleanup")
        .json(&json!({"plan_id": id}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restored"].as_array().unwrap().len(), 25);
    assert_eq!(v["skipped"], json!([{"key": "o-01", "why": "recreated"}]));
    let (_, e) = sj(s.get("orders", "o-02").await).await;
    assert_eq!(e["value"], json!({"status": "stale"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn vetoed_keys_are_listed_not_counted() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "a", json!({"status": "archived"})).await;
    let _ = s.put("orders", "b", json!({"status": "open"})).await;
    let (st, p) = plan(&s, json!({"keys": ["a", "b", "missing"]})).await;
    assert_eq!(st, 201);
    assert_eq!(p["count"], 1);
    assert_eq!(p["vetoed"], json!([{"key": "a", "rule": "archived"}]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_plans_and_unknown_plans() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "a", json!(1)).await;
    let (st, _) = plan(&s, json!({})).await;
    assert_eq!(st, 400);
    let (st, _) = plan(&s, json!({"prefix": "a", "bogus": 1})).await;
    assert_eq!(st, 400);
    let (st, _) = plan(&s, json!({"where": {"pointer": "status", "equals": 1}})).await;
    assert_eq!(st, 400);
    let (st, v) = execute(&s, "0123456789abcdef", Some("1"), Some("r")).await;
    assert_eq!((st, code(&v)), (404, "not_found"));
    let (st, v) = execute(&s, "not-a-plan", Some("1"), Some("r")).await;
    assert_eq!((st, code(&v)), (404, "not_found"));
    // A plan on a map that does not exist: 404.
    let (st, _) = sj(s
        .admin(Method::POST, "/v1/maps/ghost/delete-plans")
        .json(&json!({"prefix": ""}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 404);
}

/// A plan needs a selector, and a selector that is present is not `null`.
#[tokio::test]
async fn plan_bodies_without_a_real_selector_are_400() {
    let s = TestServer::start().await;
    let _ = s.put("orders", "o-1", json!({"status": "stale"})).await;
    for body in [
        json!({}),
        json!({"where": null}),
        json!({"prefix": null}),
        json!({"keys": null}),
        json!({"prefix": "o-", "where": null}),
    ] {
        let (st, v) = plan(&s, body.clone()).await;
        assert_eq!((st, code(&v)), (400, "invalid_body"), "{body}");
    }
    let (st, _) = plan(&s, json!({"prefix": "o-"})).await;
    assert_eq!(st, 201);
}

/// Plans outlive a restart (issue 11): a pending plan executes afterwards by
/// its id with its confirmed count, an executed one stays gone (410), after a
/// clean stop and after a crash (the plan then only in the log).
#[tokio::test(flavor = "multi_thread")]
async fn plans_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = TestServer::start_in(dir, CONFIG).await;
    for i in 0..5 {
        let _ = s
            .put("orders", &format!("r-{i}"), json!({"status": "stale"}))
            .await;
    }
    let _ = s.put("orders", "other", json!({"status": "stale"})).await;
    let (st, pending) = plan(&s, json!({"prefix": "r-"})).await;
    assert_eq!((st, pending["count"].as_u64()), (201, Some(5)));
    let pending = pending["plan_id"].as_str().unwrap().to_string();
    let (st, used) = plan(&s, json!({"keys": ["other"]})).await;
    assert_eq!(st, 201);
    let used = used["plan_id"].as_str().unwrap().to_string();
    let (st, v) = execute(&s, &used, Some("1"), Some("before the restart")).await;
    assert_eq!((st, v["deleted"].as_u64()), (200, Some(1)));
    s.stop().await;

    let s = TestServer::start_in(dir, CONFIG).await;
    let (st, v) = execute(&s, &used, Some("1"), Some("again")).await;
    assert_eq!((st, code(&v)), (410, "plan_gone"));
    // Still the same plan: the wrong count is refused and does not use it up.
    let (st, v) = execute(&s, &pending, Some("4"), Some("cleanup")).await;
    assert_eq!((st, code(&v)), (412, "confirm_count_mismatch"));
    let (st, v) = execute(&s, &pending, Some("5"), Some("after the restart")).await;
    assert_eq!((st, v["deleted"].as_u64()), (200, Some(5)), "{v}");
    for i in 0..5 {
        assert_eq!(s.get("orders", &format!("r-{i}")).await.status(), 404);
    }
    let records = s.audit(&format!("plan_id={pending}")).await;
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|r| r["reason"] == "after the restart"));

    // A crash right after the plan is acknowledged: it is in the log only.
    let _ = s.put("orders", "late", json!({"status": "stale"})).await;
    let (st, crashed) = plan(&s, json!({"keys": ["late"]})).await;
    assert_eq!(st, 201);
    let crashed = crashed["plan_id"].as_str().unwrap().to_string();
    s.state.local_storage("test").unwrap().halt_as_crash();
    s.stop().await;

    let s = TestServer::start_in(dir, CONFIG).await;
    let (st, v) = execute(&s, &pending, Some("5"), Some("twice")).await;
    assert_eq!((st, code(&v)), (410, "plan_gone"));
    let (st, v) = execute(&s, &crashed, Some("1"), Some("after the crash")).await;
    assert_eq!((st, v["deleted"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(s.get("orders", "late").await.status(), 404);
    s.stop().await;
}
