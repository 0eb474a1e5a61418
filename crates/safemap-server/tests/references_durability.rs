//! References across restarts (references.md, STORAGE.md "References"): the
//! referrer index rebuilt from the recovered entries after a clean stop and
//! after `kill -9`, and a cascading plan that survives a restart, executes
//! after it and is restored by plan id after another.
#![allow(clippy::unwrap_used)]
mod common;

use std::process::Command;

use common::references::{CONFIG, execute, plan, referrers};
use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn the_index_and_a_pending_cascade_plan_survive_a_restart() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "o-1", json!({})).await;
    let _ = s.put("orders", "o-2", json!({})).await;
    let _ = s
        .put("order_items", "i-1", json!({"order_id": "o-1"}))
        .await;
    let _ = s
        .put("order_items", "i-2", json!({"order_id": "o-2"}))
        .await;
    let _ = s.put("shipments", "s-1", json!({"order_id": "o-1"})).await;
    let (_, p) = plan(&s, "orders", json!({"keys": ["o-2"], "cascade": true})).await;
    let id = p["plan_id"].as_str().unwrap().to_string();
    assert_eq!(p["count"], 2);
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    let s = TestServer::start_in(&dir, CONFIG).await;
    let (st, v) = sj(s.delete("orders", "o-1", "x").await).await;
    assert_eq!((st, code(&v)), (409, "referenced"), "{v}");
    assert_eq!(v["error"]["details"]["count"], 2);
    let (_, v) = referrers(&s, "orders", "o-1", "").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (st, v) = sj(s
        .put("order_items", "i-3", json!({"order_id": "o-9"}))
        .await)
    .await;
    assert_eq!((st, code(&v)), (409, "reference_missing"));
    // The unexecuted cascade plan came back with its tree and its count.
    let (st, v) = sj(s
        .admin(Method::GET, &format!("/v1/delete-plans/{id}/tree"))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (st, r) = execute(&s, "orders", &id, 2).await;
    assert_eq!((st, &r["deleted"]), (200, &json!(2)), "{r}");
    assert_eq!(s.get("order_items", "i-2").await.status(), 404);
    // After another restart, one restore by plan id brings both maps back.
    let _ = s.stop().await;
    let s = TestServer::start_in(&dir, CONFIG).await;
    let (st, v) = sj(s
        .admin(Method::POST, "/v1/maps/orders/restore")
        .header("x-reason", "undo")
        .json(&json!({ "plan_id": id }))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "{v}");
    let restored: Vec<(&str, &str)> = v["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["map"].as_str().unwrap(), r["key"].as_str().unwrap()))
        .collect();
    assert_eq!(restored, [("orders", "o-2"), ("order_items", "i-2")]);
    assert_eq!(s.get("order_items", "i-2").await.status(), 200);
    drop(tmp);
}

/// The referrer index after `kill -9`: a child `safemap serve` is killed
/// with SIGKILL right after acknowledged writes, then restarted on the same
/// data directory; the index is rebuilt from the recovered entries.
#[tokio::test(flavor = "multi_thread")]
async fn the_index_is_right_after_kill_9() {
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("safemap.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_safemap"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = common::listening_addr(&mut child);
        (KillOnDrop(child), format!("http://{addr}/v1"))
    };
    let http = reqwest::Client::new();
    let (mut child, url) = start();
    let token = std::fs::read_to_string(tmp.path().join("data/admin.token")).unwrap();
    let token = token.trim().to_string();
    let send = |m: Method, path: String, body: Option<Value>| {
        let mut r = http
            .request(m, format!("{url}{path}"))
            .bearer_auth(&token)
            .header("x-reason", "test");
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move { sj(r.send().await.unwrap()).await }
    };
    for o in ["o-1", "o-2"] {
        let (st, _) = send(
            Method::PUT,
            format!("/maps/orders/keys/{o}"),
            Some(json!({})),
        )
        .await;
        assert_eq!(st, 201);
    }
    for (i, o) in [("i-1", "o-1"), ("i-2", "o-2"), ("i-3", "o-2")] {
        let (st, _) = send(
            Method::PUT,
            format!("/maps/order_items/keys/{i}"),
            Some(json!({"order_id": o})),
        )
        .await;
        assert_eq!(st, 201);
    }
    // i-3 moves to o-1: o-2 keeps one referrer, o-1 has two.
    let (st, _) = send(
        Method::PUT,
        "/maps/order_items/keys/i-3".into(),
        Some(json!({"order_id": "o-1"})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = send(Method::DELETE, "/maps/order_items/keys/i-2".into(), None).await;
    assert_eq!(st, 200);
    child.kill_9();

    let (mut child, url2) = start();
    let get = |path: &str| {
        let r = http.get(format!("{url2}{path}")).bearer_auth(&token).send();
        async move { sj(r.await.unwrap()).await }
    };
    let (_, v) = get("/maps/orders/keys/o-1/referrers").await;
    let keys: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["i-1", "i-3"]);
    let (_, v) = get("/maps/orders/keys/o-2/referrers").await;
    assert_eq!(v["items"], json!([]));
    let del = |key: &str| {
        let r = http
            .delete(format!("{url2}/maps/orders/keys/{key}"))
            .bearer_auth(&token)
            .header("x-reason", "after the crash")
            .send();
        async move { sj(r.await.unwrap()).await }
    };
    let (st, v) = del("o-1").await;
    assert_eq!((st, code(&v)), (409, "referenced"), "{v}");
    assert_eq!(del("o-2").await.0, 200);
    child.kill_9();
}

/// A child server, killed with SIGKILL when dropped (also when a test fails).
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill_9();
    }
}
