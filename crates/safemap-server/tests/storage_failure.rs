//! When a durable commit fails (an fsync error, injected here), the write is
//! not acknowledged (503 `storage_unavailable`), `/readyz` turns 503, every
//! later write is refused, and after a restart the revision counter continues
//! above everything that was acknowledged.
#![allow(clippy::unwrap_used)]
mod common;

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn failed_fsync_turns_writes_and_readiness_503() {
    let s = TestServer::start().await;
    let (st, v) = sj(s.put("m", "a", json!(1)).await).await;
    assert_eq!((st, v["revision"].as_u64()), (201, Some(1)));
    s.state
        .local_storage("test")
        .unwrap()
        .inject_commit_failure();
    let (st, v) = sj(s.put("m", "b", json!(2)).await).await;
    assert_eq!((st, code(&v)), (503, "storage_unavailable"));
    let (st, _) = sj(s.req(Method::GET, "/readyz", None).send().await.unwrap()).await;
    assert_eq!(st, 503);
    let (st, v) = sj(s.delete("m", "a", "r").await).await;
    assert_eq!((st, code(&v)), (503, "storage_unavailable"));
    // Reads still work; health is still fine (the process is up).
    assert_eq!(s.get("m", "a").await.status(), 200);
    let (st, _) = sj(s.req(Method::GET, "/healthz", None).send().await.unwrap()).await;
    assert_eq!(st, 200);
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    let s = TestServer::start_in(&dir, "").await;
    assert_eq!(
        s.get("m", "b").await.status(),
        404,
        "an unacknowledged write survived"
    );
    let (_, v) = sj(s.put("m", "c", json!(3)).await).await;
    assert!(v["revision"].as_u64().unwrap() >= 2);
    drop(s);
    drop(tmp);
}
