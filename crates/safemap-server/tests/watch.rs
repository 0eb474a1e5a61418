//! Watch over server-sent events: live events, from_revision replay, prefix
//! filter, Last-Event-ID, and clean end of streams at shutdown.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::Duration;

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::{Value, json};

/// Reads `n` SSE data events (skipping comments) within a timeout.
async fn read_events(resp: &mut reqwest::Response, n: usize) -> Vec<Value> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("timed out waiting for events")
            .unwrap()
            .expect("stream ended");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            for line in block.lines() {
                if let Some(d) = line.strip_prefix("data:") {
                    out.push(serde_json::from_str(d.trim()).unwrap());
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn live_events_in_revision_order() {
    let s = TestServer::start().await;
    let mut resp = s
        .admin(Method::GET, "/v1/maps/w/watch")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let _ = s.put("w", "a", json!(1)).await;
    let _ = s.put("w", "a", json!(2)).await;
    let _ = s.delete("w", "a", "r").await;
    let ev = read_events(&mut resp, 3).await;
    assert_eq!(
        ev[0],
        json!({"op": "put", "key": "a", "revision": 1, "value": 1})
    );
    assert_eq!(ev[1]["revision"], 2);
    assert_eq!(ev[2], json!({"op": "delete", "key": "a", "revision": 3}));
}

#[tokio::test(flavor = "multi_thread")]
async fn from_revision_replays_and_prefix_filters() {
    let s = TestServer::start().await;
    let _ = s.put("w", "x1", json!(1)).await; // rev 1
    let _ = s.put("other", "x", json!(0)).await; // rev 2, another map
    let _ = s.put("w", "y1", json!(2)).await; // rev 3
    let _ = s.put("w", "x2", json!(3)).await; // rev 4
    let mut resp = s
        .admin(Method::GET, "/v1/maps/w/watch?from_revision=1&prefix=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ev = read_events(&mut resp, 2).await;
    assert_eq!(ev[0]["revision"], 1);
    assert_eq!(ev[1]["revision"], 4);
    // Last-Event-ID resumes after that revision.
    let mut resp = s
        .admin(Method::GET, "/v1/maps/w/watch")
        .header("last-event-id", "3")
        .send()
        .await
        .unwrap();
    let ev = read_events(&mut resp, 1).await;
    assert_eq!(ev[0]["key"], "x2");
    let (st, v) = sj(s
        .admin(Method::GET, "/v1/maps/w/watch?from_revision=abc")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (400, "invalid_query"));
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_end_at_shutdown() {
    let s = TestServer::start().await;
    let mut resp = s
        .admin(Method::GET, "/v1/maps/w/watch")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stopping = tokio::spawn(s.stop());
    // The stream ends (None) rather than hanging the shutdown.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
    assert!(end.is_ok(), "watch stream did not end at shutdown");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown hung")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn compacted_history_is_410() {
    let s = TestServer::start_with("[server]\njournal_capacity = 4\n").await;
    for i in 0..10 {
        let _ = s.put("w", &format!("k{i}"), json!(i)).await;
    }
    let (st, v) = sj(s
        .admin(Method::GET, "/v1/maps/w/watch?from_revision=1")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (410, "compacted"));
    let mut resp = s
        .admin(Method::GET, "/v1/maps/w/watch?from_revision=8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ev = read_events(&mut resp, 1).await;
    assert_eq!(ev[0]["revision"], 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn history_before_a_restart_that_is_not_held_is_410() {
    let cfg = "[server]\njournal_capacity = 4\n";
    let s = TestServer::start_with(cfg).await;
    for i in 0..10 {
        let _ = s.put("w", &format!("k{i}"), json!(i)).await;
    }
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    let s = TestServer::start_in(&dir, cfg).await;
    let (st, v) = sj(s
        .admin(Method::GET, "/v1/maps/w/watch?from_revision=2")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (410, "compacted"), "{v}");
    let mut resp = s
        .admin(Method::GET, "/v1/maps/w/watch?from_revision=9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ev = read_events(&mut resp, 2).await;
    assert_eq!(
        (ev[0]["revision"].as_u64(), ev[1]["revision"].as_u64()),
        (Some(9), Some(10))
    );
    drop(s);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread")]
async fn history_pruned_from_disk_is_410_after_restart() {
    use safemap_server::storage::{Storage, StoredOp, StoredRecord, Target, now_ms};
    // A data directory whose audit rows are all past retention (8 days old).
    let tmp = tempfile::tempdir().unwrap();
    {
        let week = Duration::from_secs(7 * 86_400);
        let (st, _) = Storage::open(tmp.path(), week).unwrap();
        for i in 1..=5u64 {
            st.enqueue(Box::new(StoredRecord {
                id: i,
                at_ms: now_ms() - 8 * 86_400_000,
                map: "w".into(),
                key: format!("k{i}"),
                op: StoredOp::Put,
                revision: i,
                previous_revision: None,
                create_revision: i,
                version: 1,
                reason: None,
                actor: None,
                trace_id: None,
                plan_id: None,
                value: Some(json!(i)),
                previous_value: None,
            }));
        }
        st.wait_durable(Target::AuditId(5)).await.unwrap();
        st.close();
    }
    let s = TestServer::start_in(tmp.path(), "").await;
    // The entries are there, the history is not: watching from it is 410.
    let (_, v) = sj(s.get("w", "k3").await).await;
    assert_eq!(v["revision"], 3);
    let (st, v) = sj(s
        .admin(Method::GET, "/v1/maps/w/watch?from_revision=2")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (410, "compacted"), "{v}");
    // The counter continues above the pruned history.
    let (_, v) = sj(s.put("w", "new", json!(0)).await).await;
    assert_eq!(v["revision"], 6);
    let mut resp = s
        .admin(Method::GET, "/v1/maps/w/watch?from_revision=6")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ev = read_events(&mut resp, 1).await;
    assert_eq!(ev[0]["key"], "new");
    drop(s);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_streams_get_keep_alive_comments() {
    let s = TestServer::start_with("[server]\nwatch_keepalive = \"200ms\"\n").await;
    let mut resp = s
        .admin(Method::GET, "/v1/maps/w/watch")
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.lines().any(|l| l.starts_with(':')) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("no keep-alive comment")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.contains(":keep-alive") || text.contains(": keep-alive"),
        "{text:?}"
    );
}
