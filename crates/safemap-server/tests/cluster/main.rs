//! Cluster mode (cluster.md) with real processes: a 3-member etcd cluster and
//! `safemap serve --store etcd` servers over it (feature `etcd`). Skipped
//! with a message where etcd is not installed, failed under CI.
#![allow(clippy::unwrap_used)]

mod compaction;
mod harness;
mod plans;
mod references;
mod secure;
mod txn_limits;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::{Etcd, Server, admin_token, etcd_available};
use reqwest::Method;
use serde_json::{Value, json};

/// Status, `X-Safemap-Revision` and JSON body of a response.
async fn answer(r: reqwest::Response) -> (u16, Option<u64>, Value) {
    let status = r.status().as_u16();
    let rev = r
        .headers()
        .get("x-safemap-revision")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok());
    let text = r.text().await.unwrap();
    (
        status,
        rev,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// A fresh 3-member etcd cluster and the scratch directory of its servers
/// (removed after the members stop).
struct Fixture {
    etcd: Etcd,
    _tmp: tempfile::TempDir,
}

impl std::ops::Deref for Fixture {
    type Target = Etcd;
    fn deref(&self) -> &Etcd {
        &self.etcd
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut Etcd {
        &mut self.etcd
    }
}

/// The start of most tests: a fresh 3-member etcd cluster, two servers over
/// it (prefix `/t/`, this configuration) and the admin token; `None` (with a
/// message) where etcd is not installed.
async fn cluster(config: Option<&str>) -> Option<(Fixture, Server, Server, String)> {
    if !etcd_available() {
        return None;
    }
    let etcd = Etcd::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, admin) = two_servers(&etcd, tmp.path(), config).await;
    Some((Fixture { etcd, _tmp: tmp }, a, b, admin))
}

/// Two servers over `etcd` (prefix `/t/`), and the admin token.
async fn two_servers(
    etcd: &Etcd,
    dir: &std::path::Path,
    config: Option<&str>,
) -> (Server, Server, String) {
    let prefix = "/t/";
    let a = Server::start_with(&etcd.endpoints(), prefix, &dir.join("a"), config).await;
    let b = Server::start_with(&etcd.endpoints(), prefix, &dir.join("b"), config).await;
    let admin = admin_token(&a.dir);
    assert!(
        !b.dir.join("admin.token").exists(),
        "only the first server creates the admin token"
    );
    (a, b, admin)
}

async fn put(
    s: &Server,
    admin: &str,
    key: &str,
    value: Value,
    if_match: Option<u64>,
) -> (u16, Option<u64>, Value) {
    let mut r = s
        .req(Method::PUT, &format!("/v1/maps/m/keys/{key}"), admin)
        .json(&value);
    if let Some(rev) = if_match {
        r = r.header("if-match", format!("\"{rev}\""));
    }
    answer(r.send().await.unwrap()).await
}

async fn delete(
    s: &Server,
    admin: &str,
    key: &str,
    if_match: Option<u64>,
) -> (u16, Option<u64>, Value) {
    let mut r = s
        .req(Method::DELETE, &format!("/v1/maps/m/keys/{key}"), admin)
        .header("x-reason", "test");
    if let Some(rev) = if_match {
        r = r.header("if-match", format!("\"{rev}\""));
    }
    answer(r.send().await.unwrap()).await
}

async fn get(s: &Server, admin: &str, key: &str, min: Option<u64>) -> (u16, Option<u64>, Value) {
    let mut r = s.req(Method::GET, &format!("/v1/maps/m/keys/{key}"), admin);
    if let Some(min) = min {
        r = r.header("x-min-revision", min.to_string());
    }
    answer(r.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_through_one_server_is_read_through_another() {
    let Some((etcd, a, b, admin)) = cluster(None).await else {
        return;
    };

    let (s, seen, v) = put(&a, &admin, "k%201", json!({"n": 1}), None).await;
    assert_eq!(s, 201, "{v}");
    let rev = v["revision"].as_u64().unwrap();
    assert_eq!(v["create_revision"].as_u64(), Some(rev));
    assert_eq!(v["version"].as_u64(), Some(1));
    assert!(seen.unwrap() >= rev, "a server reads its own writes");

    let (s, seen, v) = get(&b, &admin, "k%201", Some(rev)).await;
    assert_eq!(s, 200, "{v}");
    assert!(seen.unwrap() >= rev);
    assert_eq!(v["value"], json!({"n": 1}));
    assert_eq!(v["revision"].as_u64(), Some(rev));
    // The value is in etcd verbatim, under the percent-encoded key.
    assert_eq!(
        etcd.value("/t/maps/m/keys/k%201").await.as_deref(),
        Some(r#"{"n":1}"#)
    );

    // An update through B is seen by A with X-Min-Revision; etcd's version counts.
    let (s, _, v) = put(&b, &admin, "k%201", json!({"n": 2}), Some(rev)).await;
    assert_eq!(s, 200, "{v}");
    let rev2 = v["revision"].as_u64().unwrap();
    assert_eq!(
        (v["create_revision"].as_u64(), v["version"].as_u64()),
        (Some(rev), Some(2))
    );
    let (s, _, v) = get(&a, &admin, "k%201", Some(rev2)).await;
    assert_eq!((s, &v["value"]), (200, &json!({"n": 2})));

    // Malformed X-Min-Revision: 400; one never reached: 504 after 5 s.
    let r = a
        .req(Method::GET, "/v1/maps/m/keys/k%201", &admin)
        .header("x-min-revision", "soon")
        .send()
        .await
        .unwrap();
    let (s, seen, v) = answer(r).await;
    assert_eq!((s, code(&v)), (400, "invalid_header"));
    assert!(
        seen.is_some(),
        "every /v1/ answer carries X-Safemap-Revision"
    );
    // Without a token the 401 comes first (http-api.md's order).
    let r = a
        .http
        .get(format!("{}/v1/maps/m/keys/k%201", a.url))
        .header("x-min-revision", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let started = Instant::now();
    let (s, _, v) = get(&a, &admin, "k%201", Some(rev2 + 1_000_000)).await;
    assert_eq!((s, code(&v)), (504, "replica_behind"), "{v}");
    assert!(v["error"]["details"]["replica_revision"].as_u64().unwrap() >= rev2);
    assert!(started.elapsed() >= Duration::from_secs(4));
    // Without a valid token nothing waits: 401 at once.
    let started = Instant::now();
    let (s, _, _) = get(&a, "not-a-token", "k%201", Some(rev2 + 1_000_000)).await;
    assert_eq!(s, 401);
    assert!(started.elapsed() < Duration::from_secs(2));

    // A value whose write and audit record exceed etcd's request limit: 413, nothing written.
    let big = "x".repeat(800_000);
    let (s, _, v) = put(&a, &admin, "k%201", json!(big), None).await;
    assert_eq!((s, code(&v)), (413, "too_large_for_etcd"), "{v}");
    assert_eq!(
        etcd.value("/t/maps/m/keys/k%201").await.as_deref(),
        Some(r#"{"n":2}"#)
    );

    // Plans live in etcd: an unknown one is 404 through any server.
    let r = a
        .req(
            Method::GET,
            "/v1/delete-plans/0123456789abcdef/tree",
            &admin,
        )
        .send()
        .await
        .unwrap();
    let (s, _, v) = answer(r).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");

    // Tokens live in etcd: created through A, usable through B within 1 s;
    // revoked through A, refused by B 1 s later.
    let r = a
        .req(Method::POST, "/v1/tokens", &admin)
        .json(&json!({"name": "reader", "roles": ["read"]}))
        .send()
        .await
        .unwrap();
    let (s, _, v) = answer(r).await;
    assert_eq!(s, 201, "{v}");
    let reader = v["token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (s, _, _) = get(&b, &reader, "k%201", None).await;
    assert_eq!(s, 200);
    let r = a
        .req(Method::DELETE, "/v1/tokens/reader", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (s, _, _) = get(&b, &reader, "k%201", None).await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_writes_through_two_servers_have_one_winner_and_one_record() {
    let Some((etcd, a, b, admin)) = cluster(None).await else {
        return;
    };
    let servers = [&a, &b];
    let audit_before = etcd.keys("/t/audit/").await.len();
    let rounds = 10;
    for round in 0..rounds {
        let key = format!("c{round}");
        let (s, _, v) = put(&a, &admin, &key, json!(0), None).await;
        assert_eq!(s, 201, "{v}");
        let rev = v["revision"].as_u64().unwrap();
        // Two If-Match puts of the same revision, one through each server.
        let (x, y) = tokio::join!(
            put(servers[0], &admin, &key, json!("a"), Some(rev)),
            put(servers[1], &admin, &key, json!("b"), Some(rev)),
        );
        let mut results = [x, y];
        results.sort_by_key(|r| r.0);
        let [(s1, _, won), (s2, _, lost)] = results;
        assert_eq!((s1, s2), (200, 412), "{won} {lost}");
        assert_eq!(code(&lost), "revision_mismatch");
        let winner = won["revision"].as_u64().unwrap();
        assert_eq!(
            lost["error"]["details"]["current_revision"].as_u64(),
            Some(winner),
            "{lost}"
        );
        // Two If-Match deletes of the winner's revision: one 200, the other
        // answers as one server would after it (the key is gone: 404).
        let (x, y) = tokio::join!(
            delete(servers[round % 2], &admin, &key, Some(winner)),
            delete(servers[(round + 1) % 2], &admin, &key, Some(winner)),
        );
        let mut statuses = [x.0, y.0];
        statuses.sort();
        assert_eq!(statuses, [200, 404], "{} {}", x.2, y.2);
        let deleted = if x.0 == 200 { &x.2 } else { &y.2 };
        // Audit ids are the write's revision * 1000 (+ its index in a plan's execution).
        assert_eq!(
            deleted["audit_id"].as_u64(),
            deleted["revision"].as_u64().map(|r| r * 1000),
            "{deleted}"
        );
        // Unconditional deletes of a gone key: 404 through both.
        assert_eq!(delete(&b, &admin, &key, None).await.0, 404);
        // The audit trail, through the other server: one record per winning
        // write, ids from the writes' revisions, in commit order.
        let last = deleted["revision"].as_u64().unwrap();
        let r = servers[(round + 1) % 2]
            .req(Method::GET, &format!("/v1/audit?map=m&key={key}"), &admin)
            .header("x-min-revision", last.to_string())
            .send()
            .await
            .unwrap();
        let (s, _, v) = answer(r).await;
        assert_eq!(s, 200, "{v}");
        let trail: Vec<(u64, &str)> = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_u64().unwrap(), r["op"].as_str().unwrap()))
            .collect();
        assert_eq!(
            trail,
            [
                (rev * 1000, "put"),
                (winner * 1000, "put"),
                (last * 1000, "delete")
            ],
            "{v}"
        );
    }
    // One record per winning write: the create, the put, the delete of each round.
    let records = etcd.keys("/t/audit/").await.len() - audit_before;
    assert_eq!(records, rounds * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deny_rules_judge_the_value_the_transaction_compares() {
    let config = r#"
[maps.m]
[[maps.m.deny_delete]]
name = "archived"
pointer = "/status"
equals = "archived"
"#;
    let Some((etcd, a, b, admin)) = cluster(Some(config)).await else {
        return;
    };
    let (s, _, v) = put(&a, &admin, "o", json!({"status": "open"}), None).await;
    assert_eq!(s, 201);
    let rev = v["revision"].as_u64().unwrap();
    // Archived through A; B's replica may still hold "open", but the delete
    // is judged on what etcd holds when it commits.
    let (s, _, v) = put(&a, &admin, "o", json!({"status": "archived"}), Some(rev)).await;
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = delete(&b, &admin, "o", None).await;
    assert_eq!((s, code(&v)), (409, "delete_vetoed"), "{v}");
    // A reason is required, as on one server.
    let r = b
        .req(Method::DELETE, "/v1/maps/m/keys/o", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        etcd.value("/t/maps/m/keys/o").await.is_some(),
        "nothing was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_delete_breaker_holds_across_servers() {
    let config = "[maps.m]\ndelete_breaker = { max_deletes = 5, per_seconds = 60 }\n";
    let Some((etcd, a, b, admin)) = cluster(Some(config)).await else {
        return;
    };
    for i in 0..12 {
        assert_eq!(
            put(&a, &admin, &format!("b{i}"), json!(i), None).await.0,
            201
        );
    }
    // 12 concurrent deletes into an empty window of 5, through two servers:
    // exactly 5 succeed, the others are refused with 429 and Retry-After.
    let mut tasks = Vec::new();
    let servers = Arc::new([a, b]);
    for i in 0..12usize {
        let servers = Arc::clone(&servers);
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            let s = &servers[i % 2];
            let r = s
                .req(Method::DELETE, &format!("/v1/maps/m/keys/b{i}"), &admin)
                .header("x-reason", "cleanup")
                .send()
                .await
                .unwrap();
            let retry = r.headers().get("retry-after").is_some();
            let (status, _, v) = answer(r).await;
            (status, retry, v)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, retry, v) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(code(&v), "delete_breaker_open", "{v}");
                assert!(retry);
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(etcd.keys("/t/maps/m/keys/").await.len(), 7);
}

/// 4 writers (2 through each server) putting fresh keys until `fault` has run
/// and `settle` has passed; returns each writer's acknowledged (key, revision)
/// and its longest wait between two acknowledgements.
async fn under_writers<F: std::future::Future<Output = ()>>(
    servers: &Arc<[Server; 2]>,
    admin: &str,
    fault: F,
) -> Vec<(usize, Vec<(String, u64)>, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4usize {
        let servers = Arc::clone(servers);
        let stop = Arc::clone(&stop);
        let admin = admin.to_string();
        writers.push(tokio::spawn(async move {
            let s = &servers[w % 2];
            let mut acked: Vec<(String, u64)> = Vec::new();
            let mut longest_gap = Duration::ZERO;
            let mut last_ok = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w}-{i}");
                let r = s
                    .req(Method::PUT, &format!("/v1/maps/m/keys/{key}"), &admin)
                    .json(&json!(i))
                    .send()
                    .await;
                match r {
                    Ok(r) => {
                        let (status, _, v) = answer(r).await;
                        if status == 201 {
                            acked.push((key, v["revision"].as_u64().unwrap()));
                            longest_gap = longest_gap.max(last_ok.elapsed());
                            last_ok = Instant::now();
                        } else {
                            assert_eq!(status, 503, "{v}");
                            assert_eq!(code(&v), "store_unavailable");
                        }
                    }
                    // The server was killed: not acknowledged.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                // A fresh key per attempt: an unacknowledged write may have committed.
                i += 1;
            }
            (w, acked, longest_gap)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fault.await;
    stop.store(true, Ordering::Relaxed);
    let mut out = Vec::new();
    for w in writers {
        out.push(w.await.unwrap());
    }
    out
}

/// Every acknowledged write is readable through every server at its
/// revision, and has its audit record.
async fn check_acknowledged(servers: &[Server; 2], admin: &str, acked: &[(String, u64)]) {
    let top = acked.iter().map(|(_, r)| *r).max().unwrap();
    for s in servers {
        for (key, rev) in acked {
            let (status, _, v) = get(s, admin, key, Some(top)).await;
            assert_eq!(status, 200, "{key} acknowledged at {rev} is lost: {v}");
            assert_eq!(v["revision"].as_u64(), Some(*rev));
        }
    }
    let mut ids = std::collections::HashSet::new();
    let mut after = 0u64;
    loop {
        let r = servers[0]
            .req(
                Method::GET,
                &format!("/v1/audit?map=m&after={after}&limit=1000"),
                admin,
            )
            .send()
            .await
            .unwrap();
        let (s, _, v) = answer(r).await;
        assert_eq!(s, 200, "{v}");
        for r in v["records"].as_array().unwrap() {
            // Each record's revision is its write's (its id is revision * 1000).
            ids.insert(r["revision"].as_u64().unwrap());
        }
        match v["next"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    for (key, rev) in acked {
        assert!(ids.contains(rev), "no audit record of {key} at {rev}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_etcd_leader_under_writers_loses_no_acknowledged_write() {
    let Some((mut etcd, a, b, admin)) = cluster(None).await else {
        return;
    };
    let servers = Arc::new([a, b]);
    let leader = etcd.leader().await;
    let results = under_writers(&servers, &admin, async {
        etcd.kill(leader);
        tokio::time::sleep(Duration::from_secs(4)).await;
    })
    .await;
    let mut acked = Vec::new();
    for (w, keys, gap) in results {
        // Writes succeed again within a few seconds of losing the leader.
        eprintln!(
            "writer {w}: {} acknowledged, longest wait {gap:?}",
            keys.len()
        );
        assert!(gap < Duration::from_secs(4), "a writer waited {gap:?}");
        assert!(!keys.is_empty());
        acked.extend(keys);
    }
    // The cluster really lost its leader: another member leads now.
    let new_leader = etcd.leader().await;
    assert_ne!(new_leader, leader);
    eprintln!("leader {leader} killed, member {new_leader} leads");
    etcd.restart(leader);
    etcd.wait_healthy(Duration::from_secs(30)).await;
    check_acknowledged(&servers, &admin, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_server_then_the_whole_cluster_loses_no_acknowledged_write() {
    let Some((mut etcd, a, b, admin)) = cluster(None).await else {
        return;
    };
    let servers = Arc::new([a, b]);
    // kill -9 of server A under writers, then A again.
    let results = under_writers(&servers, &admin, async {
        servers[0].kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        servers[0].restart().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let mut acked = Vec::new();
    for (w, keys, gap) in results {
        if w % 2 == 1 {
            // B's writers never noticed.
            assert!(gap < Duration::from_secs(2), "writer {w} waited {gap:?}");
        }
        assert!(!keys.is_empty());
        acked.extend(keys);
    }
    check_acknowledged(&servers, &admin, &acked).await;
    // Every server and member SIGKILLed at once, then started.
    servers[0].kill();
    servers[1].kill();
    for i in 0..3 {
        etcd.kill(i);
    }
    for i in 0..3 {
        etcd.restart(i);
    }
    etcd.wait_healthy(Duration::from_secs(30)).await;
    servers[0].restart().await;
    servers[1].restart().await;
    check_acknowledged(&servers, &admin, &acked).await;
    // Revisions go on from where they were: never reused.
    let top = acked.iter().map(|(_, r)| *r).max().unwrap();
    let (s, _, v) = put(&servers[1], &admin, "after", json!(1), None).await;
    assert_eq!(s, 201, "{v}");
    assert!(v["revision"].as_u64().unwrap() > top);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_server_rebuilds_its_replica() {
    let Some((_etcd, a, b, admin)) = cluster(None).await else {
        return;
    };
    for i in 0..20 {
        assert_eq!(
            put(&a, &admin, &format!("r{i}"), json!(i), None).await.0,
            201
        );
    }
    a.kill();
    // While A is down, B changes and deletes.
    let (s, _, v) = put(&b, &admin, "r0", json!("changed"), None).await;
    assert_eq!(s, 200, "{v}");
    let changed = v["revision"].as_u64().unwrap();
    assert_eq!(delete(&b, &admin, "r1", None).await.0, 200);
    let (s, _, v) = put(&b, &admin, "new", json!(true), None).await;
    assert_eq!(s, 201, "{v}");
    let last = v["revision"].as_u64().unwrap();
    a.restart().await;
    // Ready means caught up with the revision read at start: no X-Min-Revision needed.
    let (s, seen, v) = get(&a, &admin, "r0", None).await;
    assert_eq!((s, &v["value"]), (200, &json!("changed")));
    assert_eq!(v["revision"].as_u64(), Some(changed));
    assert!(seen.unwrap() >= last);
    assert_eq!(get(&a, &admin, "r1", None).await.0, 404);
    assert_eq!(get(&a, &admin, "new", None).await.0, 200);
    for i in 2..20 {
        let (s, _, v) = get(&a, &admin, &format!("r{i}"), None).await;
        assert_eq!((s, &v["value"]), (200, &json!(i)));
    }
    // The admin token lives in etcd: the restarted server knows it.
    let r = a
        .req(Method::GET, "/v1/whoami", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cluster_mode_cannot_do_yet_stops_the_server_with_its_name() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let tmp = tempfile::tempdir().unwrap();
    // A breaker above what a map's slot keys hold in cluster mode.
    let path = tmp.path().join("breaker.toml");
    let config = "[maps.a]\ndelete_breaker = { max_deletes = 1001, per_seconds = 60 }\n";
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args([
            "serve",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &etcd.endpoints(),
        ])
        .arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", harness::free_port()))
        .arg("--data-dir")
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("maps.a.delete_breaker") && err.contains("--store etcd"),
        "{err}"
    );
    // A prefix must end with '/'.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args([
            "serve",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &etcd.endpoints(),
        ])
        .args(["--etcd-prefix", "/nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must end with '/'"));
    assert!(
        etcd.keys("/").await.is_empty(),
        "nothing was written to etcd"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_policies_differ_from_the_clusters_refuses_to_start() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let config =
        "[maps.m]\n[[maps.m.deny_delete]]\nname = \"keep\"\npointer = \"/keep\"\nequals = true\n";
    let _a = Server::start_with(
        &etcd.endpoints(),
        "/t/",
        &tmp.path().join("a"),
        Some(config),
    )
    .await;
    // Without the deny rule, deletes through this server would bypass it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args([
            "serve",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &etcd.endpoints(),
        ])
        .args(["--etcd-prefix", "/t/"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", harness::free_port()))
        .arg("--data-dir")
        .arg(tmp.path().join("b"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("maps.m") && err.contains("same policies"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_writes_answer_503_and_reads_keep_answering() {
    let Some((mut etcd, a, _b, admin)) = cluster(None).await else {
        return;
    };
    let (s, _, v) = put(&a, &admin, "q", json!(1), None).await;
    assert_eq!(s, 201, "{v}");
    let rev = v["revision"].as_u64().unwrap();
    etcd.kill(0);
    etcd.kill(1);
    let started = Instant::now();
    let r = a
        .req(Method::PUT, "/v1/maps/m/keys/q", &admin)
        .json(&json!(2))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("retry-after").is_some());
    let (s, _, v) = answer(r).await;
    assert_eq!((s, code(&v)), (503, "store_unavailable"), "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Reads keep answering from the replica, with its revision; still ready.
    let (s, seen, v) = get(&a, &admin, "q", None).await;
    assert_eq!((s, &v["value"]), (200, &json!(1)));
    assert!(seen.unwrap() >= rev);
    let r = a
        .http
        .get(format!("{}/readyz", a.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Quorum back: writes succeed again. The 503 write's outcome was unknown:
    // it may have committed, so the retry is conditional on what is read.
    etcd.restart(0);
    etcd.restart(1);
    etcd.wait_healthy(Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, _, v) = put(&a, &admin, "q", json!(3), None).await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not come back: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_and_the_console_delete_feed_work_through_any_server() {
    let Some((_etcd, a, b, admin)) = cluster(None).await else {
        return;
    };
    let r = a
        .req(Method::POST, "/v1/maps/m/refresh", &admin)
        .json(&json!({"entries": {"x": 1, "y": 2, "z": 3}}))
        .send()
        .await
        .unwrap();
    let (s, _, v) = answer(r).await;
    assert_eq!(s, 200, "{v}");
    let revs: Vec<u64> = ["x", "y", "z"]
        .iter()
        .map(|k| v["revisions"][k].as_u64().unwrap())
        .collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "each entry its own write: {v}"
    );
    let (s, _, v) = get(&b, &admin, "z", Some(revs[2])).await;
    assert_eq!((s, &v["value"]), (200, &json!(3)));
    let (s, _, v) = delete(&b, &admin, "y", None).await;
    assert_eq!(s, 200, "{v}");
    let id = v["audit_id"].as_u64().unwrap();
    // The console's delete feed on A shows B's delete once A's replica has it.
    let (s, _, _) = get(&a, &admin, "x", Some(id / 1000)).await;
    assert_eq!(s, 200);
    let r = a
        .req(Method::GET, "/ui/data/deletes?map=m", &admin)
        .send()
        .await
        .unwrap();
    let (s, _, v) = answer(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rows"][0]["id"].as_u64(), Some(id), "{v}");
    assert_eq!(v["rows"][0]["key"], "y");
    assert_eq!(v["latest_id"].as_u64(), Some(id));

    // Restore by audit id through A; B reads it back; a second restore finds
    // the key present and skips it; a put's record is not a delete.
    let restore = |body: Value| {
        a.req(Method::POST, "/v1/maps/m/restore", &admin)
            .header("x-reason", "undo")
            .json(&body)
            .send()
    };
    let (s, _, v) = answer(restore(json!({"audit_id": id})).await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["restored"][0]["key"], "y", "{v}");
    let back = v["restored"][0]["revision"].as_u64().unwrap();
    let (s, _, v) = get(&b, &admin, "y", Some(back)).await;
    assert_eq!(
        (s, &v["value"], v["version"].as_u64()),
        (200, &json!(2), Some(1))
    );
    let (s, _, v) = answer(restore(json!({"audit_id": id})).await.unwrap()).await;
    assert_eq!(
        (s, &v["skipped"][0]["why"]),
        (200, &json!("recreated")),
        "{v}"
    );
    let (s, _, v) = answer(restore(json!({"audit_id": revs[0] * 1000})).await.unwrap()).await;
    assert_eq!((s, code(&v)), (409, "not_a_delete"), "{v}");
    let (s, _, v) = answer(
        restore(json!({"plan_id": "0123456789abcdef"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    // The restore has its record.
    let r = b
        .req(Method::GET, "/v1/audit?map=m&key=y", &admin)
        .header("x-min-revision", back.to_string())
        .send()
        .await
        .unwrap();
    let (_, _, v) = answer(r).await;
    let ops: Vec<&str> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["put", "delete", "restore"], "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_through_one_server_sees_writes_through_another_in_order() {
    let Some((_etcd, a, b, admin)) = cluster(None).await else {
        return;
    };
    let (s, _, v) = put(&a, &admin, "a", json!(1), None).await;
    assert_eq!(s, 201, "{v}");
    let first = v["revision"].as_u64().unwrap();
    // Another map's write in between is not part of this map's stream.
    let r = a
        .req(Method::PUT, "/v1/maps/other/keys/z", &admin)
        .json(&json!(0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut stream = b
        .req(
            Method::GET,
            &format!("/v1/maps/m/watch?from_revision={first}"),
            &admin,
        )
        .header("x-min-revision", first.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let (s, _, v) = put(&a, &admin, "a", json!(2), Some(first)).await;
    assert_eq!(s, 200, "{v}");
    let second = v["revision"].as_u64().unwrap();
    let (s, _, v) = delete(&a, &admin, "a", None).await;
    assert_eq!(s, 200, "{v}");
    let third = v["revision"].as_u64().unwrap();
    let mut text = String::new();
    let mut events: Vec<(u64, Value)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.len() < 3 {
        let chunk = tokio::time::timeout_at(deadline.into(), stream.chunk())
            .await
            .expect("three events within 10 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|s| s.trim().parse::<u64>().unwrap());
            let data = block.lines().find_map(|l| l.strip_prefix("data:"));
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, serde_json::from_str(data.trim()).unwrap()));
            }
        }
    }
    let seen: Vec<(u64, &str)> = events
        .iter()
        .map(|(id, d)| (*id, d["op"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [(first, "put"), (second, "put"), (third, "delete")]);
    assert_eq!(events[1].1["value"], json!(2));
    assert_eq!(events[1].1["key"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_records_past_retention_are_pruned_from_etcd() {
    let config = "[maps.m]\nretention = \"2s\"\n[maps.keep]\n";
    let Some((etcd, a, _b, admin)) = cluster(Some(config)).await else {
        return;
    };
    assert_eq!(put(&a, &admin, "p", json!(1), None).await.0, 201);
    assert_eq!(delete(&a, &admin, "p", None).await.0, 200);
    let r = a
        .req(Method::PUT, "/v1/maps/keep/keys/k", &admin)
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(etcd.keys("/t/audit/").await.len(), 3);
    // Map m keeps its records 2 s: pruned within a few seconds after that;
    // map keep (7 days by default) keeps its record.
    let deadline = Instant::now() + Duration::from_secs(10);
    while etcd.keys("/t/audit/").await.len() > 1 {
        assert!(
            Instant::now() < deadline,
            "records past retention were not pruned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = etcd.keys("/t/audit/").await;
    let record = etcd.value(&left[0]).await.unwrap();
    assert!(record.contains("\"map\":\"keep\""), "{record}");
}
