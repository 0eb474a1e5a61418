//! References between maps over HTTP (references.md): dangling puts and
//! refreshes refused, referenced deletes refused with their referrers, the
//! referrers route, cascade conflicts and the tree route, the configuration
//! and the client. Restarts and `kill -9`: references_durability.rs.
#![allow(clippy::unwrap_used)]
mod common;

use std::path::Path;
use std::process::Command;

use common::references::{CONFIG, execute, plan, referrers};
use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::{Value, json};

async fn refresh(s: &TestServer, map: &str, entries: Value) -> (u16, Value) {
    sj(s.admin(Method::POST, &format!("/v1/maps/{map}/refresh"))
        .json(&json!({ "entries": entries }))
        .send()
        .await
        .unwrap())
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_that_would_dangle_is_refused_and_nothing_is_written() {
    let s = TestServer::start_with(CONFIG).await;
    let (st, v) = sj(s
        .put("order_items", "i-1", json!({"order_id": "o-9"}))
        .await)
    .await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(code(&v), "reference_missing");
    assert_eq!(
        v["error"]["details"],
        json!({"reference": "order", "map": "orders", "key": "o-9"})
    );
    assert_eq!(s.get("order_items", "i-1").await.status(), 404);

    // A string that cannot be a key is bad input (400), before anything else.
    for bad in [json!(""), json!("k".repeat(1025))] {
        let (st, v) = sj(s.put("order_items", "i-1", json!({"order_id": bad})).await).await;
        assert_eq!((st, code(&v)), (400, "invalid_reference"), "{v}");
        assert_eq!(v["error"]["details"]["reference"], "order");
    }
    // Absent or not a string: it refers to nothing.
    assert_eq!(
        s.put("order_items", "i-2", json!({"n": 1})).await.status(),
        201
    );
    assert_eq!(
        s.put("order_items", "i-3", json!({"order_id": 7}))
            .await
            .status(),
        201
    );
    // Once the target exists the same put succeeds; a value may refer to its own key.
    assert_eq!(s.put("orders", "o-9", json!({})).await.status(), 201);
    assert_eq!(
        s.put("order_items", "i-1", json!({"order_id": "o-9"}))
            .await
            .status(),
        201
    );
    assert_eq!(
        s.put("nodes", "root", json!({"up": "root"})).await.status(),
        201
    );
    // ...and its own reference never blocks its delete.
    assert_eq!(s.delete("nodes", "root", "done").await.status(), 200);
    // The refused puts were not journaled: one record, the put that succeeded.
    assert_eq!(s.audit("map=order_items&key=i-1").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_is_checked_as_one_batch() {
    let s = TestServer::start_with(CONFIG).await;
    // Entries of the same batch count as present.
    let (st, v) = refresh(
        &s,
        "nodes",
        json!({"a": {"up": "b"}, "b": {"up": "c"}, "c": {}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // One missing target refuses the whole batch; nothing is applied.
    let (st, v) = refresh(&s, "nodes", json!({"d": {}, "e": {"up": "zz"}})).await;
    assert_eq!((st, code(&v)), (409, "reference_missing"), "{v}");
    assert_eq!(
        v["error"]["details"],
        json!({"reference": "up", "map": "nodes", "key": "zz", "entry": "e"})
    );
    assert_eq!(s.get("nodes", "d").await.status(), 404);
    let (st, v) = refresh(&s, "order_items", json!({"i-1": {"order_id": ""}})).await;
    assert_eq!((st, code(&v)), (400, "invalid_reference"), "{v}");
    assert_eq!(v["error"]["details"]["entry"], "i-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_referenced_key_cannot_be_deleted_alone() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "o-1", json!({"locked": false})).await;
    for i in (1..=22).rev() {
        let r = s
            .put(
                "order_items",
                &format!("i-{i:02}"),
                json!({"order_id": "o-1"}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let _ = s.put("shipments", "s-1", json!({"order_id": "o-1"})).await;
    let (st, v) = sj(s.delete("orders", "o-1", "cleanup").await).await;
    assert_eq!((st, code(&v)), (409, "referenced"), "{v}");
    let d = &v["error"]["details"];
    assert_eq!(d["count"], 23);
    let listed = d["referrers"].as_array().unwrap();
    assert_eq!(listed.len(), 20);
    assert_eq!(
        listed[0],
        json!({"map": "order_items", "key": "i-01", "reference": "order"})
    );
    assert_eq!(listed[19]["key"], "i-20");
    assert_eq!(s.get("orders", "o-1").await.status(), 200);
    assert!(
        s.audit("map=orders&key=o-1")
            .await
            .iter()
            .all(|r| r["op"] != "delete")
    );

    // Precedence: 412 first, then delete_vetoed, then referenced.
    let (st, v) = sj(s
        .admin(Method::DELETE, "/v1/maps/orders/keys/o-1")
        .header("x-reason", "x")
        .header("if-match", "\"999999\"")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (412, "revision_mismatch"));
    let _ = s.put("orders", "o-1", json!({"locked": true})).await;
    let (st, v) = sj(s.delete("orders", "o-1", "cleanup").await).await;
    assert_eq!((st, code(&v)), (409, "delete_vetoed"));

    // A planned key that gains a referrer before the execution is a
    // conflict naming it (not a refused single delete).
    let _ = s.put("orders", "o-5", json!({})).await;
    let (_, p) = plan(&s, "orders", json!({"keys": ["o-5"]})).await;
    assert_eq!(p["count"], 1);
    let _ = s.put("shipments", "s-5", json!({"order_id": "o-5"})).await;
    let (st, r) = execute(&s, "orders", p["plan_id"].as_str().unwrap(), 1).await;
    assert_eq!((st, &r["deleted"]), (200, &json!(0)), "{r}");
    assert_eq!(
        r["conflicts"][0]["changed"],
        json!({"map": "shipments", "key": "s-5", "planned_revision": null,
               "current_revision": null, "why": "new_referrer"})
    );
    // The metrics count refused single deletes under the outcome `referenced`.
    let text = s
        .req(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("safemap_deletes_total")
                && l.contains("map=\"orders\"")
                && l.contains("outcome=\"referenced\"")
        })
        .unwrap_or_else(|| panic!("no referenced outcome in\n{text}"));
    assert!(line.ends_with(" 1"), "{line}");

    // Once nothing refers to it, it goes.
    let _ = s.put("orders", "o-1", json!({})).await;
    for i in 1..=22 {
        let r = s.delete("order_items", &format!("i-{i:02}"), "x").await;
        assert_eq!(r.status(), 200);
    }
    let (st, v) = sj(s.delete("orders", "o-1", "cleanup").await).await;
    assert_eq!((st, &v["error"]["details"]["count"]), (409, &json!(1)));
    assert_eq!(s.delete("shipments", "s-1", "x").await.status(), 200);
    assert_eq!(s.delete("orders", "o-1", "cleanup").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_are_listed_in_order_a_page_at_a_time() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "o-1", json!({})).await;
    let _ = s.put("shipments", "s-1", json!({"order_id": "o-1"})).await;
    for k in ["i-b", "i-a", "i-c"] {
        let _ = s.put("order_items", k, json!({"order_id": "o-1"})).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            None => "limit=2".to_string(),
            Some(a) => format!("limit=2&after={a}"),
        };
        let (st, v) = referrers(&s, "orders", "o-1", &q).await;
        assert_eq!(st, 200, "{v}");
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().cloned());
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    let keys: Vec<(&str, &str)> = seen
        .iter()
        .map(|r| (r["map"].as_str().unwrap(), r["key"].as_str().unwrap()))
        .collect();
    assert_eq!(
        keys,
        [
            ("order_items", "i-a"),
            ("order_items", "i-b"),
            ("order_items", "i-c"),
            ("shipments", "s-1")
        ]
    );
    assert_eq!(seen[3]["reference"], "order");
    // Nothing refers to it: an empty page; bad limits and cursors are 400.
    let (st, v) = referrers(&s, "order_items", "i-a", "").await;
    assert_eq!((st, v), (200, json!({"items": [], "next": null})));
    let (st, v) = referrers(&s, "nope", "x", "").await;
    assert_eq!((st, &v["items"]), (200, &json!([])));
    for q in ["limit=0", "limit=1001", "limit=x", "after=zz", "after=7b"] {
        let (st, v) = referrers(&s, "orders", "o-1", q).await;
        assert_eq!(st, 400, "{q}: {v}");
    }
    // Role `read` suffices; no token is 401.
    let reader = s.token("reader", &["read"]).await;
    let r = s
        .req(
            Method::GET,
            "/v1/maps/orders/keys/o-1/referrers",
            Some(&reader),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .req(Method::GET, "/v1/maps/orders/keys/o-1/referrers", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_whose_subtree_changed_is_not_deleted_at_all() {
    let s = TestServer::start_with(CONFIG).await;
    for o in ["o-1", "o-2", "o-3"] {
        let _ = s.put("orders", o, json!({})).await;
        for i in 1..=2 {
            let r = s
                .put("order_items", &format!("{o}-i{i}"), json!({"order_id": o}))
                .await;
            assert_eq!(r.status(), 201);
        }
    }
    // Without cascade, a referenced root is blocked.
    let (st, p) = plan(&s, "orders", json!({"keys": ["o-1"]})).await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["count"], 0);
    assert_eq!(p["blocked"][0]["why"], "referenced");
    assert_eq!(
        p["blocked"][0]["path"],
        json!([{"map": "orders", "key": "o-1"}, {"map": "order_items", "key": "o-1-i1"}])
    );

    let (st, p) = plan(&s, "orders", json!({"prefix": "o-", "cascade": true})).await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["count"], 9);
    assert_eq!(p["tree"], json!({"order_items": 6, "orders": 3}));
    assert_eq!(p["depth"], 2);
    // o-1's subtree changes; o-2 gains a referrer; o-3 is untouched.
    let _ = s
        .put("order_items", "o-1-i2", json!({"order_id": "o-1", "n": 2}))
        .await;
    let _ = s.put("shipments", "s-2", json!({"order_id": "o-2"})).await;
    let (st, r) = execute(&s, "orders", p["plan_id"].as_str().unwrap(), 9).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["deleted"], 3);
    let conflicts = r["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 2, "{r}");
    assert_eq!(conflicts[0]["key"], "o-1");
    assert_eq!(conflicts[0]["changed"]["map"], "order_items");
    assert_eq!(conflicts[0]["changed"]["key"], "o-1-i2");
    assert_eq!(conflicts[0]["changed"]["why"], "changed");
    assert_eq!(conflicts[1]["key"], "o-2");
    assert_eq!(
        (
            &conflicts[1]["changed"]["map"],
            &conflicts[1]["changed"]["why"]
        ),
        (&json!("shipments"), &json!("new_referrer"))
    );
    for k in ["o-1", "o-2"] {
        assert_eq!(s.get("orders", k).await.status(), 200);
        assert_eq!(s.get("order_items", &format!("{k}-i1")).await.status(), 200);
    }
    assert_eq!(s.get("orders", "o-3").await.status(), 404);
    assert_eq!(s.get("order_items", "o-3-i1").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tree_route_pages_the_plan_and_answers_gone_and_unknown() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "o-1", json!({})).await;
    for i in 0..5 {
        let _ = s
            .put("order_items", &format!("i-{i}"), json!({"order_id": "o-1"}))
            .await;
    }
    let (_, p) = plan(&s, "orders", json!({"keys": ["o-1"], "cascade": true})).await;
    let id = p["plan_id"].as_str().unwrap().to_string();
    let tree = |q: String| {
        let s = &s;
        let id = id.clone();
        async move {
            sj(
                s.admin(Method::GET, &format!("/v1/delete-plans/{id}/tree?{q}"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (st, first) = tree("limit=4".into()).await;
    assert_eq!(st, 200, "{first}");
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(
        items[0],
        json!({"map": "orders", "key": "o-1", "revision": items[0]["revision"], "parent": null, "depth": 1})
    );
    assert_eq!(items[1]["parent"], json!({"map": "orders", "key": "o-1"}));
    assert_eq!(items[1]["depth"], 2);
    let next = first["next"].as_str().unwrap().to_string();
    let (_, rest) = tree(format!("limit=4&after={next}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert_eq!(rest["next"], Value::Null);
    for q in ["limit=0", "after=nonsense"] {
        assert_eq!(tree(q.into()).await.0, 400);
    }
    let (st, v) = sj(s
        .admin(Method::GET, "/v1/delete-plans/00000000000000ff/tree")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (404, "not_found"));
    let (st, _) = execute(&s, "orders", &id, 6).await;
    assert_eq!(st, 200);
    let (st, v) = tree(String::new()).await;
    assert_eq!((st, code(&v)), (410, "plan_gone"));
}

#[test]
fn a_reference_to_an_unknown_map_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("safemap.toml");
    std::fs::write(
        &cfg,
        "[maps.orders]\n\n[[maps.order_items.references]]\nname = \"order\"\npointer = \"/order_id\"\nto = \"ordres\"\n",
    )
    .unwrap();
    let serve = |cfg: &Path| {
        Command::new(env!("CARGO_BIN_EXE_safemap"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(cfg)
            .arg("--data-dir")
            .arg(tmp.path().join("d"))
            .output()
            .unwrap()
    };
    let out = serve(&cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("safemap.toml:6:"), "{err}");
    assert!(err.contains("maps.order_items.references[0].to"), "{err}");
    assert!(err.contains("\"ordres\""), "{err}");
    // Nor does an on_delete other than restrict/cascade.
    std::fs::write(
        &cfg,
        "[maps.orders]\n[[maps.orders.references]]\nname = \"up\"\npointer = \"/up\"\nto = \"orders\"\non_delete = \"set_null\"\n",
    )
    .unwrap();
    let out = serve(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("safemap.toml:6:") && err.contains("on_delete") && err.contains("set_null"),
        "{err}"
    );
    assert!(!tmp.path().join("d").exists(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_whose_target_is_gone_is_skipped() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "o-1", json!({})).await;
    let _ = s
        .put("order_items", "i-1", json!({"order_id": "o-1"}))
        .await;
    let (_, item) = sj(s.delete("order_items", "i-1", "x").await).await;
    assert_eq!(s.delete("orders", "o-1", "x").await.status(), 200);
    let (st, v) = sj(s
        .admin(Method::POST, "/v1/maps/order_items/restore")
        .header("x-reason", "undo")
        .json(&json!({"audit_id": item["audit_id"]}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restored"], json!([]));
    assert_eq!(
        v["skipped"],
        json!([{"key": "i-1", "why": "reference_missing"}])
    );
    assert_eq!(s.get("order_items", "i-1").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_prints_the_tree_per_map_and_lists_referrers() {
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "o-1", json!({"status": "archived"})).await;
    let _ = s.put("orders", "o-2", json!({"status": "archived"})).await;
    let _ = s
        .put("order_items", "i-1", json!({"order_id": "o-1"}))
        .await;
    let _ = s.put("shipments", "s-2", json!({"order_id": "o-2"})).await;
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_safemap"))
            .args(args)
            .args(["--url", &s.url])
            .env("SAFEMAP_TOKEN", &s.admin)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, out, err) = cli(&[
        "plan",
        "create",
        "orders",
        "--pointer",
        "/status",
        "--equals",
        "\"archived\"",
        "--cascade",
    ]);
    assert_eq!(status, Some(0), "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["tree"], json!({"order_items": 1, "orders": 1}));
    assert!(err.contains("tree: 2 keys, depth 2"), "{err}");
    assert!(
        err.contains("  order_items: 1") && err.contains("  orders: 1"),
        "{err}"
    );
    assert!(
        err.contains("blocked o-2: restricted (order): orders/o-2 <- shipments/s-2"),
        "{err}"
    );
    let (status, out, err) = cli(&["referrers", "orders", "o-1"]);
    assert_eq!(status, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["items"],
        json!([{"map": "order_items", "key": "i-1", "reference": "order"}])
    );
    let (status, _, err) = cli(&["delete", "orders", "o-1", "--reason", "x"]);
    assert_eq!(status, Some(1));
    assert!(err.contains("referenced (409)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vetoed_key_below_a_root_blocks_it_and_the_breaker_comes_last() {
    let config = r#"
[maps.orders]
delete_breaker = { max_deletes = 1, per_seconds = 3600 }

[maps.order_items]

[[maps.order_items.deny_delete]]
name = "held"
pointer = "/held"
equals = true

[[maps.order_items.references]]
name = "order"
pointer = "/order_id"
to = "orders"
on_delete = "cascade"
"#;
    let s = TestServer::start_with(config).await;
    for o in ["o-1", "o-2", "o-3"] {
        let _ = s.put("orders", o, json!({})).await;
    }
    let _ = s
        .put(
            "order_items",
            "i-1",
            json!({"order_id": "o-1", "held": true}),
        )
        .await;
    let _ = s
        .put("order_items", "i-2", json!({"order_id": "o-2"}))
        .await;
    let (st, p) = plan(
        &s,
        "orders",
        json!({"keys": ["o-1", "o-2"], "cascade": true}),
    )
    .await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["count"], 2);
    assert_eq!(
        p["blocked"],
        json!([{"key": "o-1", "why": "vetoed", "rule": "held",
                "path": [{"map": "orders", "key": "o-1"}, {"map": "order_items", "key": "i-1"}]}])
    );
    // The breaker admits one single delete; then it is open (429), but a
    // referenced key answers 409 `referenced` first.
    assert_eq!(s.delete("orders", "o-3", "x").await.status(), 200);
    let (st, v) = sj(s.delete("orders", "o-2", "x").await).await;
    assert_eq!((st, code(&v)), (409, "referenced"), "{v}");
    let _ = s.put("orders", "o-4", json!({})).await;
    let (st, v) = sj(s.delete("orders", "o-4", "x").await).await;
    assert_eq!((st, code(&v)), (429, "delete_breaker_open"), "{v}");
}
