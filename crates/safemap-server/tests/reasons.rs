//! Reasons in any language (http-api.md, "Reasons"): `X-Reason-Encoded` carries
//! percent-encoded UTF-8 from clients that cannot send it raw (browsers), and
//! the audit record holds the decoded text.
#![allow(clippy::unwrap_used)]
mod common;

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::json;

/// "回滚错误的部署" ("roll back the bad deploy"), as `encodeURIComponent` sends it.
const CHINESE: &str = "回滚错误的部署";

fn encoded(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chinese_reason_is_recorded_decoded_on_delete_restore_and_plans() {
    let s = TestServer::start().await;
    let _ = s.put("orders", "o1", json!({"n": 1})).await;
    let _ = s.put("orders", "o2", json!({"n": 2})).await;
    let r = s
        .admin(Method::DELETE, "/v1/maps/orders/keys/o1")
        .header("x-reason-encoded", encoded(CHINESE))
        .send()
        .await
        .unwrap();
    let (st, del) = sj(r).await;
    assert_eq!(st, 200, "{del}");
    let audit_id = del["audit_id"].as_u64().unwrap();

    let r = s
        .admin(Method::POST, "/v1/maps/orders/restore")
        .header("x-reason-encoded", encoded("恢复 o1"))
        .json(&json!({"audit_id": audit_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (st, plan) = sj(s
        .admin(Method::POST, "/v1/maps/orders/delete-plans")
        .json(&json!({"keys": ["o2"]}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 201);
    let id = plan["plan_id"].as_str().unwrap();
    let r = s
        .admin(
            Method::POST,
            &format!("/v1/maps/orders/delete-plans/{id}/execute"),
        )
        .header("x-reason-encoded", encoded("清理 o2"))
        .header("x-confirm-count", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let reasons: Vec<_> = s
        .audit("map=orders")
        .await
        .iter()
        .filter(|r| r["op"] != "put")
        .map(|r| (r["op"].clone(), r["reason"].clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (json!("delete"), json!(CHINESE)),
            (json!("restore"), json!("恢复 o1")),
            (json!("delete"), json!("清理 o2")),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn both_headers_or_a_bad_encoding_is_refused_and_deletes_nothing() {
    let s = TestServer::start().await;
    let _ = s.put("m", "k", json!(1)).await;
    let cases: [&[(&str, &str)]; 4] = [
        &[("x-reason", "plain"), ("x-reason-encoded", "plain")],
        &[("x-reason-encoded", "%E5%9B")],
        &[("x-reason-encoded", "100%")],
        &[("x-reason-encoded", "%FF")],
    ];
    for headers in cases {
        let mut r = s.admin(Method::DELETE, "/v1/maps/m/keys/k");
        for (h, v) in headers {
            r = r.header(*h, *v);
        }
        let (st, body) = sj(r.send().await.unwrap()).await;
        assert_eq!((st, code(&body)), (400, "invalid_header"), "{headers:?}");
    }
    let (st, _) = sj(s.get("m", "k").await).await;
    assert_eq!(st, 200, "the key is still there");
    // Blank once decoded is a missing reason; the limit counts decoded characters.
    let (st, body) = sj(s
        .admin(Method::DELETE, "/v1/maps/m/keys/k")
        .header("x-reason-encoded", "%20")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&body)), (400, "reason_required"));
    let (st, body) = sj(s
        .admin(Method::DELETE, "/v1/maps/m/keys/k")
        .header("x-reason-encoded", encoded(&"删".repeat(513)))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&body)), (400, "reason_too_long"));
    let (st, _) = sj(s
        .admin(Method::DELETE, "/v1/maps/m/keys/k")
        .header("x-reason-encoded", encoded(&"删".repeat(512)))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200, "512 characters are allowed");
}
