//! The console's page and its read-only data views (`/ui`, `/ui/data/*`):
//! served from the binary with a strict content policy, deletes newest first
//! with their previous values and filters, maps with breaker and policy.
#![allow(clippy::unwrap_used)]
mod common;

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::json;

const CONFIG: &str = r#"
[maps.orders]
retention = "2d"
delete_breaker = { max_deletes = 1, per_seconds = 60 }

[[maps.orders.deny_delete]]
name = "archived"
pointer = "/status"
equals = "archived"

[maps.brief]
retention = "1s"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_files_are_served_without_a_token() {
    let s = TestServer::start().await;
    let r = s.req(Method::GET, "/ui", None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let html = r.text().await.unwrap();
    assert!(html.contains("data-testid=\"token-input\""));
    let r = s
        .req(Method::GET, "/ui/assets/app.js", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let (st, body) = sj(s
        .req(Method::GET, "/ui/assets/nope.js", None)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&body)), (404, "not_found"));
    let (st, _) = sj(s
        .req(Method::GET, "/ui/assets/..%2Fapp.js", None)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_come_newest_first_with_previous_values_and_filters() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "o1", json!({"total": 1})).await;
    let _ = s.put("carts", "c1", json!([1, 2])).await;
    let _ = s.put("carts", "c2", json!(null)).await;
    assert_eq!(
        s.delete("orders", "o1", "Refund issued").await.status(),
        200
    );
    assert_eq!(s.delete("carts", "c1", "expired").await.status(), 200);
    let ops = s.token("ops", &["delete"]).await;
    let r = s
        .req(Method::DELETE, "/v1/maps/carts/keys/c2", Some(&ops))
        .header("x-reason", "expired too")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let get = |q: &str| {
        let q = q.to_string();
        let s = &s;
        async move {
            sj(s.admin(Method::GET, &format!("/ui/data/deletes{q}"))
                .send()
                .await
                .unwrap())
            .await
        }
    };
    let (st, all) = get("").await;
    assert_eq!(st, 200);
    let keys: Vec<_> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].clone())
        .collect();
    assert_eq!(
        keys,
        [json!("c2"), json!("c1"), json!("o1")],
        "newest first, deletes only"
    );
    let o1 = &all["rows"][2];
    assert_eq!(o1["previous_value"], json!({"total": 1}));
    assert_eq!(o1["reason"], "Refund issued");
    assert_eq!(o1["actor"], "admin");
    assert_eq!(o1["restorable"], true);
    let at = humantime::parse_rfc3339(o1["at"].as_str().unwrap()).unwrap();
    let until = humantime::parse_rfc3339(o1["restorable_until"].as_str().unwrap()).unwrap();
    assert_eq!(
        until.duration_since(at).unwrap().as_secs(),
        2 * 86400,
        "the map's retention"
    );
    // The value of a deleted `null` is null, and says so.
    assert_eq!(all["rows"][0]["previous_value"], json!(null));

    for (q, want) in [
        ("?map=carts", vec!["c2", "c1"]),
        ("?prefix=o", vec!["o1"]),
        ("?key=c1", vec!["c1"]),
        ("?key=c", vec![]),
        ("?actor=ops", vec!["c2"]),
        ("?reason=REFUND", vec!["o1"]),
        ("?map=carts&reason=too", vec!["c2"]),
        ("?limit=1", vec!["c2"]),
        ("?until=2000-01-01T00:00:00Z", vec![]),
        ("?since=2000-01-01T00:00:00Z&map=orders", vec!["o1"]),
    ] {
        let (st, v) = get(q).await;
        assert_eq!(st, 200, "{q}");
        let keys: Vec<&str> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, want, "{q}");
    }
    // Polling from the latest id gives only what came after.
    let latest = all["latest_id"].as_u64().unwrap();
    let (_, v) = get(&format!("?after={latest}")).await;
    assert!(v["rows"].as_array().unwrap().is_empty());
    let _ = s.put("carts", "c3", json!(3)).await;
    assert_eq!(s.delete("carts", "c3", "later").await.status(), 200);
    let (_, v) = get(&format!("?after={latest}")).await;
    let keys: Vec<_> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].clone())
        .collect();
    assert_eq!(keys, [json!("c3")]);
    assert!(v["latest_id"].as_u64().unwrap() > latest);

    for (q, want) in [
        ("?map=Bad!", "invalid_map_name"),
        ("?plan_id=xyz", "invalid_query"),
        ("?after=-1", "invalid_query"),
        ("?since=yesterday", "invalid_query"),
        ("?limit=0", "invalid_limit"),
        ("?limit=501", "invalid_limit"),
    ] {
        let (st, v) = get(q).await;
        assert_eq!((st, code(&v)), (400, want), "{q}");
    }
    // Reading deletes needs `read`.
    let (st, v) = sj(s
        .req(Method::GET, "/ui/data/deletes", Some(&ops))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (403, "forbidden"));
    let (st, _) = sj(s
        .req(Method::GET, "/ui/data/deletes", None)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 401);

    // Past the map's retention a row says so.
    let _ = s.put("brief", "b1", json!(1)).await;
    assert_eq!(s.delete("brief", "b1", "gone soon").await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (_, v) = get("?map=brief").await;
    assert_eq!(v["rows"][0]["restorable"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn maps_show_counts_breaker_and_policy() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "o1", json!({"status": "paid"})).await;
    let _ = s.put("orders", "o2", json!({"status": "paid"})).await;
    let _ = s.put("orders", "o3", json!({"status": "archived"})).await;
    assert_eq!(s.delete("orders", "o1", "one").await.status(), 200);
    assert_eq!(s.delete("orders", "o3", "vetoed").await.status(), 409);
    assert_eq!(s.delete("orders", "o2", "breaker").await.status(), 429);
    let (st, v) = sj(s.admin(Method::GET, "/ui/data/maps").send().await.unwrap()).await;
    assert_eq!(st, 200);
    let orders = v["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "orders")
        .unwrap();
    assert_eq!(orders["name"], "orders");
    assert_eq!(orders["entries"], 2);
    assert_eq!(orders["deletes"]["deleted"], 1);
    assert_eq!(orders["deletes"]["vetoed"], 1);
    assert_eq!(orders["deletes"]["breaker"], 1);
    assert_eq!(orders["breaker"]["open"], true);
    assert_eq!(orders["breaker"]["in_window"], 1);
    assert_eq!(orders["breaker"]["max"], 1);
    assert!(orders["breaker"]["retry_after_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(orders["policy"]["retention_seconds"], 2.0 * 86400.0);
    assert_eq!(
        orders["policy"]["deny"],
        json!([{"name": "archived", "pointer": "/status", "equals": "archived"}])
    );
}
