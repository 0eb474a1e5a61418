//! The story of the second outage, over HTTP: one batch meant to delete 327
//! archived orders. orders ← order_items ← item_notes cascade; shipments
//! refer to orders with `restrict`. The cascading plan shows every map's
//! count, the depth and the blocked orders (those with a shipment) with
//! their path; executing it with the confirmed total deletes exactly the
//! tree; one restore by plan id brings every row of every map back.
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[maps.orders]

[maps.order_items]

[[maps.order_items.references]]
name = "order"
pointer = "/order_id"
to = "orders"
on_delete = "cascade"

[maps.item_notes]

[[maps.item_notes.references]]
name = "item"
pointer = "/item_id"
to = "order_items"
on_delete = "cascade"

[maps.shipments]

[[maps.shipments.references]]
name = "order"
pointer = "/order_id"
to = "orders"
"#;

const ORDERS: usize = 400;
const ARCHIVED: usize = 327;
const ITEMS_PER_ORDER: usize = 3;
/// Archived orders that were shipped: a shipment refers to them.
const SHIPPED: [usize; 7] = [3, 50, 101, 150, 222, 300, 326];

fn order(i: usize) -> String {
    format!("o-{i:03}")
}

async fn refresh(s: &TestServer, map: &str, entries: serde_json::Map<String, Value>) {
    let (st, v) = sj(s
        .admin(Method::POST, &format!("/v1/maps/{map}/refresh"))
        .json(&json!({ "entries": entries }))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "{v}");
}

/// Every entry of `map`, key → value.
async fn all(s: &TestServer, map: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/maps/{map}/keys?limit=1000");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (_, v) = sj(s.admin(Method::GET, &path).send().await.unwrap()).await;
        for e in v["items"].as_array().unwrap() {
            out.insert(e["key"].as_str().unwrap().to_string(), e["value"].clone());
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_327_archived_orders_are_previewed_deleted_and_restored_as_one_tree() {
    let s = TestServer::start_with(CONFIG).await;
    // The shop: 400 orders (the first 327 archived), 3 items each, a note on
    // every other item, and shipments for 7 archived orders and some live ones.
    let mut orders = serde_json::Map::new();
    let (mut items, mut notes, mut shipments) = (
        serde_json::Map::new(),
        serde_json::Map::new(),
        serde_json::Map::new(),
    );
    for i in 0..ORDERS {
        let status = if i < ARCHIVED { "archived" } else { "open" };
        orders.insert(order(i), json!({"status": status, "total": i}));
        for j in 0..ITEMS_PER_ORDER {
            let item = format!("{}-i{j}", order(i));
            if j % 2 == 0 {
                notes.insert(
                    format!("{item}-n"),
                    json!({"item_id": item, "text": "fragile"}),
                );
            }
            items.insert(item, json!({"order_id": order(i), "sku": j}));
        }
    }
    for i in SHIPPED.iter().copied().chain([330, 399]) {
        shipments.insert(format!("s-{}", order(i)), json!({"order_id": order(i)}));
    }
    refresh(&s, "orders", orders).await;
    let items: Vec<_> = items.into_iter().collect();
    for chunk in items.chunks(1000) {
        refresh(&s, "order_items", chunk.iter().cloned().collect()).await;
    }
    refresh(&s, "item_notes", notes).await;
    refresh(&s, "shipments", shipments).await;
    let maps = ["orders", "order_items", "item_notes", "shipments"];
    let mut before = HashMap::new();
    for m in maps {
        before.insert(m, all(&s, m).await);
    }
    assert_eq!(before["order_items"].len(), ORDERS * ITEMS_PER_ORDER);

    // The preview: every map's count, the depth, the blocked orders with their path.
    let (st, plan) = sj(s
        .admin(Method::POST, "/v1/maps/orders/delete-plans")
        .json(&json!({"where": {"pointer": "/status", "equals": "archived"}, "cascade": true}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 201, "{plan}");
    let deletable = ARCHIVED - SHIPPED.len();
    let notes_per_order = ITEMS_PER_ORDER.div_ceil(2);
    assert_eq!(
        plan["tree"],
        json!({
            "orders": deletable,
            "order_items": deletable * ITEMS_PER_ORDER,
            "item_notes": deletable * notes_per_order,
        })
    );
    let total = deletable * (1 + ITEMS_PER_ORDER + notes_per_order);
    assert_eq!(plan["count"], total);
    assert_eq!(plan["depth"], 3);
    let blocked = plan["blocked"].as_array().unwrap();
    assert_eq!(blocked.len(), SHIPPED.len(), "{plan}");
    for (b, i) in blocked.iter().zip(SHIPPED) {
        assert_eq!(
            b,
            &json!({
                "key": order(i),
                "why": "restricted",
                "reference": "order",
                "path": [
                    {"map": "orders", "key": order(i)},
                    {"map": "shipments", "key": format!("s-{}", order(i))},
                ],
            })
        );
    }
    let id = plan["plan_id"].as_str().unwrap().to_string();

    // The whole tree, a page at a time: parents before children, exactly `count` keys.
    let mut tree = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/delete-plans/{id}/tree?limit=500");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (st, page) = sj(s.admin(Method::GET, &path).send().await.unwrap()).await;
        assert_eq!(st, 200, "{page}");
        tree.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(tree.len(), total);
    let mut depth_of: HashMap<(String, String), u64> = HashMap::new();
    for n in &tree {
        let id = (
            n["map"].as_str().unwrap().to_string(),
            n["key"].as_str().unwrap().to_string(),
        );
        let depth = n["depth"].as_u64().unwrap();
        match n["parent"].as_object() {
            None => assert_eq!((id.0.as_str(), depth), ("orders", 1)),
            Some(p) => {
                let parent = (
                    p["map"].as_str().unwrap().to_string(),
                    p["key"].as_str().unwrap().to_string(),
                );
                assert_eq!(depth_of.get(&parent), Some(&(depth - 1)), "{n}");
            }
        }
        assert!(depth_of.insert(id, depth).is_none(), "planned twice: {n}");
    }

    // Nothing was deleted by the preview; a wrong total is refused and keeps the plan.
    assert_eq!(all(&s, "orders").await, before["orders"]);
    let exec = |count: usize| {
        let s = &s;
        let id = id.clone();
        async move {
            sj(s.admin(
                Method::POST,
                &format!("/v1/maps/orders/delete-plans/{id}/execute"),
            )
            .header("x-reason", "purge archived orders")
            .header("x-confirm-count", count.to_string())
            .send()
            .await
            .unwrap())
            .await
        }
    };
    let (st, v) = exec(deletable).await;
    assert_eq!((st, code(&v)), (412, "confirm_count_mismatch"));
    let (st, report) = exec(total).await;
    assert_eq!(st, 200, "{report}");
    assert_eq!(report["deleted"], total);
    assert_eq!(report["conflicts"], json!([]));

    // Exactly the tree is gone, in every map; everything else is untouched.
    let planned: HashSet<(String, String)> = depth_of.keys().cloned().collect();
    for m in maps {
        let now = all(&s, m).await;
        for (k, v) in &before[m] {
            let gone = planned.contains(&(m.to_string(), k.clone()));
            assert_eq!(now.get(k), (!gone).then_some(v), "{m}/{k}");
        }
    }
    for i in SHIPPED {
        assert_eq!(s.get("orders", &order(i)).await.status(), 200);
        assert_eq!(
            s.get("order_items", &format!("{}-i0", order(i)))
                .await
                .status(),
            200
        );
    }
    // Every deleted key has its own audit record carrying the plan id.
    let mut records = 0;
    let mut after = 0u64;
    loop {
        let page = s
            .audit(&format!("plan_id={id}&after={after}&limit=1000"))
            .await;
        let Some(last) = page.last() else { break };
        after = last["id"].as_u64().unwrap();
        records += page.iter().filter(|r| r["op"] == "delete").count();
    }
    assert_eq!(records, total);

    // The restore goes through the plan's own map only.
    let restore = |map: &'static str| {
        let s = &s;
        let id = id.clone();
        async move {
            sj(s.admin(Method::POST, &format!("/v1/maps/{map}/restore"))
                .header("x-reason", "that was a mistake")
                .json(&json!({"plan_id": id}))
                .send()
                .await
                .unwrap())
            .await
        }
    };
    let (st, v) = restore("order_items").await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
    let (st, v) = restore("orders").await;
    assert_eq!(st, 200, "{v}");
    let restored = v["restored"].as_array().unwrap();
    assert_eq!(restored.len(), total);
    assert_eq!(v["skipped"], json!([]));
    // Parents first: every key comes back after the key it refers to.
    let mut back: HashMap<(String, String), usize> = HashMap::new();
    for (at, r) in restored.iter().enumerate() {
        back.insert(
            (
                r["map"].as_str().unwrap().to_string(),
                r["key"].as_str().unwrap().to_string(),
            ),
            at,
        );
    }
    for n in &tree {
        if let Some(p) = n["parent"].as_object() {
            let me = (
                n["map"].as_str().unwrap().to_string(),
                n["key"].as_str().unwrap().to_string(),
            );
            let parent = (
                p["map"].as_str().unwrap().to_string(),
                p["key"].as_str().unwrap().to_string(),
            );
            assert!(back[&parent] < back[&me], "{n}");
        }
    }
    for m in maps {
        assert_eq!(all(&s, m).await, before[m], "{m}");
    }
    // And the references hold again: an order is protected by its items.
    let (st, v) = sj(s.delete("orders", &order(0), "x").await).await;
    assert_eq!((st, code(&v)), (409, "referenced"));
    assert_eq!(v["error"]["details"]["count"], ITEMS_PER_ORDER);
}
