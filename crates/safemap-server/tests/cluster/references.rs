//! References between maps in cluster mode: integrity holds across servers
//! (a racing referrer put and delete of its target never both succeed), and
//! cascading plans are plans in etcd like any other.

use reqwest::Method;
use serde_json::{Value, json};

use super::harness::{Etcd, Server, etcd_available};
use super::{answer, code, two_servers};

/// orders ← items (cascade) ← notes (restrict).
const CONFIG: &str = r#"
[maps.orders]
[maps.items]
[[maps.items.references]]
name = "order"
pointer = "/order"
to = "orders"
on_delete = "cascade"
[maps.notes]
[[maps.notes.references]]
name = "item"
pointer = "/item"
to = "items"
on_delete = "restrict"
"#;

async fn put(s: &Server, admin: &str, map: &str, key: &str, value: Value) -> (u16, Value) {
    let r = s
        .req(Method::PUT, &format!("/v1/maps/{map}/keys/{key}"), admin)
        .json(&value)
        .send()
        .await
        .unwrap();
    let (st, _, v) = answer(r).await;
    (st, v)
}

async fn delete(s: &Server, admin: &str, map: &str, key: &str) -> (u16, Value) {
    let r = s
        .req(Method::DELETE, &format!("/v1/maps/{map}/keys/{key}"), admin)
        .header("x-reason", "test")
        .send()
        .await
        .unwrap();
    let (st, _, v) = answer(r).await;
    (st, v)
}

async fn plan(s: &Server, admin: &str, body: Value) -> (u16, Value) {
    let r = s
        .req(Method::POST, "/v1/maps/orders/delete-plans", admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (st, _, v) = answer(r).await;
    (st, v)
}

async fn execute(s: &Server, admin: &str, p: &Value) -> (u16, Option<u64>, Value) {
    let id = p["plan_id"].as_str().unwrap();
    let r = s
        .req(
            Method::POST,
            &format!("/v1/maps/orders/delete-plans/{id}/execute"),
            admin,
        )
        .header("x-reason", "cascade")
        .header("x-confirm-count", p["count"].to_string())
        .send()
        .await
        .unwrap();
    answer(r).await
}

/// Whether (map, key) is in etcd (the truth, not a replica).
async fn in_etcd(etcd: &Etcd, map: &str, key: &str) -> bool {
    etcd.value(&format!("/t/maps/{map}/keys/{key}"))
        .await
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn references_hold_across_servers() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, admin) = two_servers(&etcd, tmp.path(), Some(CONFIG)).await;

    // A put whose target is missing: 409, nothing written.
    assert_eq!(put(&a, &admin, "orders", "o1", json!({})).await.0, 201);
    let (s, v) = put(&a, &admin, "items", "bad", json!({"order": "nope"})).await;
    assert_eq!((s, code(&v)), (409, "reference_missing"), "{v}");
    assert_eq!(v["error"]["details"]["key"], "nope", "{v}");
    assert!(!in_etcd(&etcd, "items", "bad").await);

    // A referrer put through B right away: the delete of its target through
    // A is refused, whatever A's replica had applied.
    assert_eq!(
        put(&b, &admin, "items", "i1", json!({"order": "o1"}))
            .await
            .0,
        201
    );
    let (s, v) = delete(&a, &admin, "orders", "o1").await;
    assert_eq!((s, code(&v)), (409, "referenced"), "{v}");
    assert_eq!(
        v["error"]["details"]["referrers"],
        json!([{"map": "items", "key": "i1", "reference": "order"}]),
        "{v}"
    );
    // The referrer deleted through B: the target's delete through A passes.
    assert_eq!(delete(&b, &admin, "items", "i1").await.0, 200);
    let (s, v) = delete(&a, &admin, "orders", "o1").await;
    assert_eq!(s, 200, "{v}");

    // A referrer put and a delete of its target, racing through two
    // servers: never both, and etcd never holds a dangling reference.
    let mut both_refused = 0;
    for round in 0..20 {
        let order = format!("t{round}");
        let item = format!("x{round}");
        assert_eq!(put(&a, &admin, "orders", &order, json!({})).await.0, 201);
        let (p, d) = if round % 2 == 0 {
            tokio::join!(
                put(&a, &admin, "items", &item, json!({ "order": order })),
                delete(&b, &admin, "orders", &order)
            )
        } else {
            tokio::join!(
                put(&b, &admin, "items", &item, json!({ "order": order })),
                delete(&a, &admin, "orders", &order)
            )
        };
        assert!(
            !(p.0 == 201 && d.0 == 200),
            "both the referrer put and its target's delete succeeded: {} {}",
            p.1,
            d.1
        );
        match (p.0, d.0) {
            (201, _) => assert_eq!(code(&d.1), "referenced", "{}", d.1),
            (_, 200) => assert_eq!(code(&p.1), "reference_missing", "{}", p.1),
            _ => both_refused += 1,
        }
        if in_etcd(&etcd, "items", &item).await {
            assert!(in_etcd(&etcd, "orders", &order).await, "dangling {item}");
        }
    }
    assert_eq!(both_refused, 0, "one of the two always wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cascading_plan_made_through_one_server_executes_through_another() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, admin) = two_servers(&etcd, tmp.path(), Some(CONFIG)).await;
    put(&a, &admin, "orders", "c1", json!({})).await;
    put(&a, &admin, "items", "c1-a", json!({"order": "c1"})).await;
    put(&b, &admin, "items", "c1-b", json!({"order": "c1"})).await;
    // A restrict reference from outside blocks a root.
    put(&a, &admin, "orders", "c2", json!({})).await;
    put(&a, &admin, "items", "c2-a", json!({"order": "c2"})).await;
    let (s, _) = put(&b, &admin, "notes", "n1", json!({"item": "c2-a"})).await;
    assert_eq!(s, 201);

    // Made through B right after writes through A (a plan is judged on a
    // replica caught up with etcd), executed through A.
    let (s, p) = plan(&b, &admin, json!({"keys": ["c1", "c2"], "cascade": true})).await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["count"].as_u64(), Some(3), "{p}");
    assert_eq!(p["tree"], json!({"orders": 1, "items": 2}), "{p}");
    assert_eq!(p["blocked"][0]["key"], "c2", "{p}");
    assert_eq!(p["blocked"][0]["why"], "restricted", "{p}");
    let (s, rev, v) = execute(&a, &admin, &p).await;
    assert_eq!((s, v["deleted"].as_u64()), (200, Some(3)), "{v}");
    // Once, cluster-wide.
    let (s, _, v) = execute(&b, &admin, &p).await;
    assert_eq!((s, code(&v)), (410, "plan_gone"), "{v}");
    for (map, key) in [("orders", "c1"), ("items", "c1-a"), ("items", "c1-b")] {
        assert!(!in_etcd(&etcd, map, key).await, "{map}/{key} is deleted");
        let r = b
            .req(Method::GET, &format!("/v1/maps/{map}/keys/{key}"), &admin)
            .header("x-min-revision", rev.unwrap().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    assert!(in_etcd(&etcd, "orders", "c2").await);

    // The whole tree restored through B, parents first.
    let r = b
        .req(Method::POST, "/v1/maps/orders/restore", &admin)
        .header("x-reason", "undo")
        .json(&json!({ "plan_id": p["plan_id"] }))
        .send()
        .await
        .unwrap();
    let (s, _, v) = answer(r).await;
    assert_eq!(s, 200, "{v}");
    for (map, key) in [("orders", "c1"), ("items", "c1-a"), ("items", "c1-b")] {
        assert!(in_etcd(&etcd, map, key).await, "{map}/{key} restored: {v}");
    }

    // A referrer that appears through B after the plan: the root is not
    // deleted through A, and the new referrer is named.
    put(&a, &admin, "orders", "c3", json!({})).await;
    put(&a, &admin, "items", "c3-a", json!({"order": "c3"})).await;
    let (_, p) = plan(&a, &admin, json!({"keys": ["c3"], "cascade": true})).await;
    assert_eq!(p["count"].as_u64(), Some(2), "{p}");
    let (s, _) = put(&b, &admin, "notes", "n3", json!({"item": "c3-a"})).await;
    assert_eq!(s, 201);
    let (s, _, v) = execute(&a, &admin, &p).await;
    assert_eq!((s, v["deleted"].as_u64()), (200, Some(0)), "{v}");
    assert_eq!(v["conflicts"][0]["key"], "c3", "{v}");
    assert_eq!(v["conflicts"][0]["changed"]["why"], "new_referrer", "{v}");
    assert_eq!(v["conflicts"][0]["changed"]["key"], "n3", "{v}");
    assert!(in_etcd(&etcd, "orders", "c3").await);
    assert!(in_etcd(&etcd, "items", "c3-a").await);

    // A refresh of a map that declares references is one transaction: one
    // missing target refuses the whole batch, nothing applied.
    let refresh = |body: Value| {
        b.req(Method::POST, "/v1/maps/items/refresh", &admin)
            .header("x-reason", "r")
            .json(&body)
            .send()
    };
    let r = refresh(json!({"entries": {"f1": {"order": "c3"}, "f2": {"order": "gone"}}}));
    let (s, _, v) = answer(r.await.unwrap()).await;
    assert_eq!((s, code(&v)), (409, "reference_missing"), "{v}");
    assert_eq!(v["error"]["details"]["entry"], "f2", "{v}");
    assert!(!in_etcd(&etcd, "items", "f1").await);
    let r = refresh(json!({"entries": {"f1": {"order": "c3"}, "f2": {"order": "c1"}}}));
    let (s, _, v) = answer(r.await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert!(in_etcd(&etcd, "items", "f1").await && in_etcd(&etcd, "items", "f2").await);
    // Each entry has its record (one audit batch, ids in entry order).
    let rev = v["revisions"]["f2"].as_u64().unwrap();
    let r = a
        .req(Method::GET, "/v1/audit?map=items&key=f2", &admin)
        .header("x-min-revision", rev.to_string())
        .send()
        .await
        .unwrap();
    let (_, _, v) = answer(r).await;
    assert_eq!(v["records"][0]["revision"].as_u64(), Some(rev), "{v}");
}
