//! Shared by the reference tests (references.rs, references_durability.rs):
//! maps that refer to each other, and the plan and referrers requests.

use reqwest::Method;
use serde_json::Value;

use super::{TestServer, sj};

/// orders (deny rule `locked`) ← order_items (cascade), ← shipments
/// (restrict); nodes → nodes (a map referring to itself).
pub const CONFIG: &str = r#"
[maps.orders]

[[maps.orders.deny_delete]]
name = "locked"
pointer = "/locked"
equals = true

[maps.order_items]

[[maps.order_items.references]]
name = "order"
pointer = "/order_id"
to = "orders"
on_delete = "cascade"

[maps.shipments]

[[maps.shipments.references]]
name = "order"
pointer = "/order_id"
to = "orders"

[maps.nodes]

[[maps.nodes.references]]
name = "up"
pointer = "/up"
to = "nodes"
"#;

/// `GET /v1/maps/{map}/keys/{key}/referrers?{query}`.
pub async fn referrers(s: &TestServer, map: &str, key: &str, query: &str) -> (u16, Value) {
    sj(s.admin(
        Method::GET,
        &format!("/v1/maps/{map}/keys/{key}/referrers?{query}"),
    )
    .send()
    .await
    .unwrap())
    .await
}

/// Creates a delete plan of `map` with `body`.
pub async fn plan(s: &TestServer, map: &str, body: Value) -> (u16, Value) {
    sj(
        s.admin(Method::POST, &format!("/v1/maps/{map}/delete-plans"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Executes plan `id` of `map`, confirming `count`.
pub async fn execute(s: &TestServer, map: &str, id: &str, count: u64) -> (u16, Value) {
    sj(s.admin(
        Method::POST,
        &format!("/v1/maps/{map}/delete-plans/{id}/execute"),
    )
    .header("x-reason", "cleanup")
    .header("x-confirm-count", count.to_string())
    .send()
    .await
    .unwrap())
    .await
}
