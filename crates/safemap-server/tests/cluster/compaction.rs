//! A compaction gap (cluster.md: the replica is "rebuilt by a range read at
//! start (and after a compaction gap)"): a server whose watch has not yet
//! received revisions that etcd then compacts away must rebuild its replica
//! from a range read, deletes included, instead of missing them.
//!
//! Provoked from outside with real processes: server B is frozen (SIGSTOP),
//! a flood of writes fills etcd's buffers towards B's watch, then writes go
//! through server A, etcd is compacted at its latest revision, and B is
//! resumed (SIGCONT).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::{cluster, delete, get, put};

/// Sends `signal` (`STOP`, `CONT`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_behind_a_compaction_rebuilds_by_a_range_read() {
    let Some((etcd, a, b, admin)) = cluster(None).await else {
        return;
    };
    for i in 0..10 {
        assert_eq!(
            put(&a, &admin, &format!("k{i}"), json!(i), None).await.0,
            201
        );
    }
    let (s, _, v) = put(&a, &admin, "k9", json!(9), None).await;
    assert_eq!(s, 200, "{v}");
    let rev = v["revision"].as_u64().unwrap();
    assert_eq!(get(&b, &admin, "k0", Some(rev)).await.0, 200);

    signal(b.pid(), "STOP");
    // While B is frozen, writes under the prefix (outside the maps) that B's
    // watch cannot take: 8 MiB of values fill the stream's flow-control
    // window and socket buffers, then 300 revisions fill etcd's per-watch
    // queue (128 responses), so etcd holds B's watcher back and will have
    // to read what follows from its history...
    let eps: Vec<String> = etcd.endpoints().split(',').map(String::from).collect();
    let mut c = etcd_client::Client::connect(&eps, None).await.unwrap();
    let big = "x".repeat(1 << 20);
    for i in 0..8 {
        c.put(format!("/t/flood/big{}", i % 2), big.as_str(), None)
            .await
            .unwrap();
    }
    for i in 0..300 {
        c.put(format!("/t/flood/small{}", i % 10), "x", None)
            .await
            .unwrap();
    }
    // ...deletes, updates and creations through A...
    for i in 0..5 {
        let (s, _, v) = delete(&a, &admin, &format!("k{i}"), None).await;
        assert_eq!(s, 200, "{v}");
    }
    for i in 5..10 {
        assert_eq!(
            put(&a, &admin, &format!("k{i}"), json!("new"), None)
                .await
                .0,
            200
        );
    }
    let (s, _, v) = put(&a, &admin, "fresh", json!(true), None).await;
    assert_eq!(s, 201, "{v}");
    let last = v["revision"].as_u64().unwrap() as i64;
    // ...and that history is compacted away.
    let compact = etcd_client::CompactionOptions::new().with_physical();
    c.compact(last, Some(compact)).await.unwrap();
    // What A wrote is read through A at once.
    assert_eq!(get(&a, &admin, "k0", Some(last as u64)).await.0, 404);

    signal(b.pid(), "CONT");
    let (s, seen, v) = get(&b, &admin, "fresh", Some(last as u64)).await;
    let log = || std::fs::read_to_string(b.dir.join("server.log")).unwrap();
    assert_eq!(s, 200, "{v} {seen:?}, B's log:\n{}", log());
    assert!(seen.unwrap() >= last as u64);
    for i in 0..5 {
        let (s, _, v) = get(&b, &admin, &format!("k{i}"), None).await;
        assert_eq!(
            s, 404,
            "a delete made during the gap is reflected: k{i} {v}"
        );
    }
    for i in 5..10 {
        let (s, _, v) = get(&b, &admin, &format!("k{i}"), None).await;
        assert_eq!((s, &v["value"]), (200, &json!("new")), "k{i}");
    }
    // The listing agrees (the replica holds no ghost of a deleted key).
    let r = b
        .req(Method::GET, "/v1/maps/m/keys", &admin)
        .send()
        .await
        .unwrap();
    let listed: serde_json::Value = r.json().await.unwrap();
    let mut keys: Vec<String> = listed["items"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|e| e["key"].as_str().map(String::from))
        .collect();
    keys.sort();
    assert_eq!(keys, ["fresh", "k5", "k6", "k7", "k8", "k9"], "{listed}");
    // The gap was the compaction's (not a plain catch-up): B's log says so.
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(b.dir.join("server.log")).unwrap();
        if log.contains("rebuilding it by a range read") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "B never saw the compaction gap:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And B keeps following: a write through A after the gap reaches it.
    let (s, _, v) = put(&a, &admin, "after", json!(1), None).await;
    assert_eq!(s, 201, "{v}");
    let rev = v["revision"].as_u64().unwrap();
    assert_eq!(get(&b, &admin, "after", Some(rev)).await.0, 200);
}
