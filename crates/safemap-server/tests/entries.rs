//! Entries: GET/PUT with ETag, If-Match, If-None-Match; list pages; refresh.
#![allow(clippy::unwrap_used)]
mod common;

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn put_get_etag_and_versions() {
    let s = TestServer::start().await;
    let r = s.put("orders", "o-1", json!({"status": "open"})).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["etag"], "\"1\"");
    let (_, v) = sj(r).await;
    assert_eq!(
        v,
        json!({"key": "o-1", "revision": 1, "create_revision": 1, "version": 1})
    );
    let r = s.put("orders", "o-1", json!({"status": "paid"})).await;
    assert_eq!(r.status(), 200);
    let (_, v) = sj(r).await;
    assert_eq!(
        (v["revision"].as_u64(), v["version"].as_u64()),
        (Some(2), Some(2))
    );
    let r = s.get("orders", "o-1").await;
    assert_eq!(r.headers()["etag"], "\"2\"");
    let (st, v) = sj(r).await;
    assert_eq!(st, 200);
    assert_eq!(v["value"], json!({"status": "paid"}));
    assert_eq!(v["create_revision"], 1);
    // If-None-Match with the current ETag: 304.
    let r = s
        .admin(Method::GET, "/v1/maps/orders/keys/o-1")
        .header("if-none-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // Missing key, missing map: 404 not_found.
    let (st, v) = sj(s.get("orders", "nope").await).await;
    assert_eq!((st, code(&v)), (404, "not_found"));
    let (st, v) = sj(s.get("nomap", "x").await).await;
    assert_eq!((st, code(&v)), (404, "not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_puts() {
    let s = TestServer::start().await;
    let _ = s.put("m", "k", json!(1)).await;
    let put = |h: (&'static str, &'static str)| {
        s.admin(Method::PUT, "/v1/maps/m/keys/k")
            .header(h.0, h.1)
            .json(&json!(2))
            .send()
    };
    let (st, v) = sj(put(("if-match", "\"7\"")).await.unwrap()).await;
    assert_eq!((st, code(&v)), (412, "revision_mismatch"));
    assert_eq!(v["error"]["details"]["current_revision"], 1);
    let (st, v) = sj(put(("if-none-match", "*")).await.unwrap()).await;
    assert_eq!((st, code(&v)), (412, "already_exists"));
    let (st, v) = sj(put(("if-match", "\"1\"")).await.unwrap()).await;
    assert_eq!((st, v["revision"].as_u64()), (200, Some(2)));
    // If-Match on an absent key: revision_mismatch with current_revision null.
    let (st, v) = sj(s
        .admin(Method::PUT, "/v1/maps/m/keys/absent")
        .header("if-match", "\"2\"")
        .json(&json!(0))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (412, "revision_mismatch"));
    assert!(v["error"]["details"]["current_revision"].is_null());
    // If-None-Match: * creates.
    let (st, _) = sj(s
        .admin(Method::PUT, "/v1/maps/m/keys/new")
        .header("if-none-match", "*")
        .json(&json!(0))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 201);
    // A malformed If-Match is a 400, and nothing was written.
    let (st, v) = sj(put(("if-match", "seven")).await.unwrap()).await;
    assert_eq!((st, code(&v)), (400, "invalid_header"));
    let (_, v) = sj(s.get("m", "k").await).await;
    assert_eq!(v["value"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_with_slashes_and_unicode() {
    let s = TestServer::start().await;
    let r = s.put("m", "a%2Fb%20c", json!("x")).await;
    assert_eq!(r.status(), 201);
    let (_, v) = sj(s.get("m", "a%2Fb%20c").await).await;
    assert_eq!(v["key"], "a/b c");
    let r = s.put("m", "%C3%A9t%C3%A9", json!("summer")).await;
    assert_eq!(r.status(), 201);
    let (_, v) = sj(s.get("m", "%C3%A9t%C3%A9").await).await;
    assert_eq!(v["key"], "été");
    let long = "k".repeat(1024);
    assert_eq!(s.put("m", &long, json!(1)).await.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_pages_in_key_order() {
    let s = TestServer::start().await;
    for i in (0..25).rev() {
        let _ = s.put("m", &format!("k{i:02}"), json!(i)).await;
    }
    let _ = s.put("m", "other", json!(0)).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/maps/m/keys?prefix=k&limit=10".to_string();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (st, v) = sj(s.admin(Method::GET, &path).send().await.unwrap()).await;
        assert_eq!(st, 200);
        for it in v["items"].as_array().unwrap() {
            assert!(it["revision"].as_u64().is_some());
            seen.push(it["key"].as_str().unwrap().to_string());
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    assert_eq!(seen, want);
    // A map that does not exist lists as empty.
    let (st, v) = sj(s
        .admin(Method::GET, "/v1/maps/none/keys")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, v["items"].as_array().map(Vec::len)), (200, Some(0)));
    for bad in ["0", "1001", "x", "-1"] {
        let (st, _) = sj(s
            .admin(Method::GET, &format!("/v1/maps/m/keys?limit={bad}"))
            .send()
            .await
            .unwrap())
        .await;
        assert_eq!(st, 400, "limit={bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_upserts_all_or_nothing() {
    let s = TestServer::start().await;
    let _ = s.put("cfg", "a", json!(1)).await;
    let (st, v) = sj(s
        .admin(Method::POST, "/v1/maps/cfg/refresh")
        .json(&json!({"entries": {"a": 10, "b": 20}}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["revisions"]["a"], 2);
    assert_eq!(v["revisions"]["b"], 3);
    let (_, v) = sj(s.get("cfg", "a").await).await;
    assert_eq!(
        (v["value"].as_u64(), v["version"].as_u64()),
        (Some(10), Some(2))
    );
    // A bad key: 400, nothing applied.
    let long = "x".repeat(1025);
    let (st, _) = sj(s
        .admin(Method::POST, "/v1/maps/cfg/refresh")
        .json(&json!({"entries": {"a": 99, long: 1}}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 400);
    let (_, v) = sj(s.get("cfg", "a").await).await;
    assert_eq!(v["value"], 10);
    // More than 1000 entries: 400.
    let many: serde_json::Map<String, serde_json::Value> =
        (0..1001).map(|i| (format!("k{i}"), json!(i))).collect();
    let (st, _) = sj(s
        .admin(Method::POST, "/v1/maps/cfg/refresh")
        .json(&json!({"entries": many}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 400);
    // One audit record per refreshed entry.
    assert_eq!(s.audit("map=cfg").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_survive_a_clean_restart_and_revisions_continue() {
    let s = TestServer::start().await;
    let _ = s.put("m", "a", json!(1)).await;
    let _ = s.put("m", "b", json!(2)).await;
    let _ = s.delete("m", "a", "gone").await;
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    let s = TestServer::start_in(&dir, "").await;
    let (st, _) = sj(s.get("m", "a").await).await;
    assert_eq!(st, 404);
    let (_, v) = sj(s.get("m", "b").await).await;
    assert_eq!(v["revision"], 2);
    let (_, v) = sj(s.put("m", "c", json!(3)).await).await;
    assert_eq!(v["revision"], 4);
    assert_eq!(s.audit("map=m").await.len(), 4);
    drop(s);
    drop(tmp);
}
