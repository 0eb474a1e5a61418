//! Deletes and their guards: reason, If-Match, deny rules, breaker (also across
//! a restart), and the spec's error precedence.
#![allow(clippy::unwrap_used)]
mod common;

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::json;

const CONFIG: &str = r#"
[maps.orders]
delete_breaker = { max_deletes = 3, per_seconds = 60 }

[[maps.orders.deny_delete]]
name = "archived"
pointer = "/status"
equals = "archived"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn delete_needs_a_reason_and_reports_previous() {
    let s = TestServer::start().await;
    let _ = s.put("m", "k", json!({"a": 1})).await;
    let (st, v) = sj(s
        .admin(Method::DELETE, "/v1/maps/m/keys/k")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (400, "reason_required"));
    let (st, v) = sj(s.delete("m", "k", "").await).await;
    assert_eq!((st, code(&v)), (400, "reason_required"));
    let (st, v) = sj(s.delete("m", "k", &"r".repeat(513)).await).await;
    assert_eq!((st, code(&v)), (400, "reason_too_long"));
    let (st, v) = sj(s.delete("m", "k", "cleanup").await).await;
    assert_eq!(st, 200);
    assert_eq!(v["key"], "k");
    assert_eq!(v["revision"], 2);
    assert_eq!(v["previous"], json!({"value": {"a": 1}, "revision": 1}));
    let id = v["audit_id"].as_u64().unwrap();
    let recs = s.audit("map=m").await;
    assert_eq!(recs.last().unwrap()["id"].as_u64(), Some(id));
    assert_eq!(recs.last().unwrap()["reason"], "cleanup");
    // Twice: not_found, nothing journaled.
    let (st, v) = sj(s.delete("m", "k", "again").await).await;
    assert_eq!((st, code(&v)), (404, "not_found"));
    assert_eq!(s.audit("map=m").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_if_match() {
    let s = TestServer::start().await;
    let _ = s.put("m", "k", json!(1)).await;
    let _ = s.put("m", "k", json!(2)).await;
    let del = |etag: &'static str| {
        s.admin(Method::DELETE, "/v1/maps/m/keys/k")
            .header("x-reason", "r")
            .header("if-match", etag)
            .send()
    };
    let (st, v) = sj(del("\"1\"").await.unwrap()).await;
    assert_eq!((st, code(&v)), (412, "revision_mismatch"));
    assert_eq!(v["error"]["details"]["current_revision"], 2);
    let (st, v) = sj(del("bad").await.unwrap()).await;
    assert_eq!((st, code(&v)), (400, "invalid_header"));
    let (st, _) = sj(del("\"2\"").await.unwrap()).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_rule_vetoes_with_its_name() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "o-1", json!({"status": "archived"})).await;
    let (st, v) = sj(s.delete("orders", "o-1", "oops").await).await;
    assert_eq!((st, code(&v)), (409, "delete_vetoed"));
    assert_eq!(v["error"]["details"]["rule"], "archived");
    assert_eq!(s.get("orders", "o-1").await.status(), 200);
    // Vetoed deletes are not journaled, but counted in metrics.
    assert_eq!(s.audit("map=orders").await.len(), 1);
    let m = s
        .req(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("safemap_deletes_total{map=\"orders\",outcome=\"vetoed\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn breaker_opens_and_survives_restart() {
    let s = TestServer::start_with(CONFIG).await;
    for i in 0..5 {
        let _ = s
            .put("orders", &format!("o-{i}"), json!({"status": "open"}))
            .await;
    }
    for i in 0..3 {
        assert_eq!(
            s.delete("orders", &format!("o-{i}"), "r").await.status(),
            200
        );
    }
    let r = s.delete("orders", "o-3", "r").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let (_, v) = sj(r).await;
    assert_eq!(code(&v), "delete_breaker_open");
    // A not-found delete does not count and answers 404 (404 wins over 429).
    let (st, _) = sj(s.delete("orders", "nope", "r").await).await;
    assert_eq!(st, 404);
    // Restart: the window is rebuilt from the journal.
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    let s = TestServer::start_in(&dir, CONFIG).await;
    let (st, v) = sj(s.delete("orders", "o-3", "r").await).await;
    assert_eq!((st, code(&v)), (429, "delete_breaker_open"));
    drop(s);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_precedence() {
    let s = TestServer::start_with(CONFIG).await;
    let reader = s.token("reader", &["read"]).await;
    let _ = s.put("orders", "a", json!({"status": "archived"})).await;
    // 401 beats everything: no token, no reason, unknown map.
    let (st, _) = sj(s
        .req(Method::DELETE, "/v1/maps/zzz/keys/x", None)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 401);
    // 403 beats 400.
    let (st, _) = sj(s
        .req(Method::DELETE, "/v1/maps/zzz/keys/x", Some(&reader))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 403);
    // 400 beats 404.
    let (st, v) = sj(s
        .admin(Method::DELETE, "/v1/maps/zzz/keys/x")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (400, "reason_required"));
    // 404 on a map that does not exist.
    let (st, _) = sj(s.delete("zzz", "x", "r").await).await;
    assert_eq!(st, 404);
    // 412 beats 409: a vetoed value with a wrong If-Match.
    let (st, v) = sj(s
        .admin(Method::DELETE, "/v1/maps/orders/keys/a")
        .header("x-reason", "r")
        .header("if-match", "\"99\"")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (412, "revision_mismatch"));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deletes_of_one_key_exactly_one_wins() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let _ = s.put("m", "k", json!(1)).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.delete("m", "k", "race").await.status().as_u16()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 404).count(), 15, "{codes:?}");
    let deletes: Vec<_> = s
        .audit("map=m")
        .await
        .into_iter()
        .filter(|r| r["op"] == "delete")
        .collect();
    assert_eq!(deletes.len(), 1);
}
