//! The transaction limit follows the etcd the operator runs: etcd members
//! started with `--max-txn-ops 512` and servers told so (`max_txn_ops`)
//! hold and execute the story's plan of 327 keys in one transaction; a
//! server at the default refuses it at creation, naming both settings; a
//! server told more than its etcd allows gets etcd's refusal as a clear 503
//! and deletes nothing; so does an etcd whose `--max-request-bytes` is below
//! what the server sends. A single-key write needing more compares than
//! `max_txn_ops` (a value with many references, a map with many referring
//! maps) is a 413 that writes nothing, not a 503.

use reqwest::Method;
use serde_json::{Value, json};

use super::harness::{Etcd, Extra, Server, admin_token, etcd_available};
use super::plans::{execute, plan};
use super::{answer, code};

/// The story: 327 archived orders in one batch.
const STORY: usize = 327;

/// Puts `n` keys `{prefix}{i}` (value `{"n": i}`) into map `m` through `s`,
/// 16 at a time.
async fn put_many(s: &Server, admin: &str, prefix: &str, n: usize) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let r = s
            .req(Method::PUT, &format!("/v1/maps/m/keys/{prefix}{i}"), admin)
            .json(&json!({ "n": i }));
        set.spawn(async move { r.send().await.unwrap().status().as_u16() });
        if set.len() >= 16
            && let Some(st) = set.join_next().await
        {
            assert_eq!(st.unwrap(), 201);
        }
    }
    while let Some(st) = set.join_next().await {
        assert_eq!(st.unwrap(), 201);
    }
}

/// The audit records of plan `id`, read through `s` at revision `min`.
async fn plan_records(s: &Server, admin: &str, id: &str, min: Option<u64>) -> Vec<Value> {
    let mut r = s.req(
        Method::GET,
        &format!("/v1/audit?plan_id={id}&limit=1000"),
        admin,
    );
    if let Some(min) = min {
        r = r.header("x-min-revision", min.to_string());
    }
    let (st, _, v) = answer(r.send().await.unwrap()).await;
    assert_eq!(st, 200, "{v}");
    v["records"].as_array().cloned().unwrap_or_default()
}

/// The keys of map `m` under `prefix` (one page), read through `s` at `min`.
async fn count_keys(s: &Server, admin: &str, prefix: &str, min: Option<u64>) -> usize {
    let mut r = s.req(
        Method::GET,
        &format!("/v1/maps/m/keys?prefix={prefix}&limit=1000"),
        admin,
    );
    if let Some(min) = min {
        r = r.header("x-min-revision", min.to_string());
    }
    let (st, _, v) = answer(r.send().await.unwrap()).await;
    assert_eq!(st, 200, "{v}");
    v["items"].as_array().map_or(0, Vec::len)
}

fn extra(args: &[&str], env: &[(&str, &str)]) -> Extra {
    Extra {
        args: args.iter().map(|a| a.to_string()).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_story_plan_of_327_keys_executes_once_where_etcd_allows_it() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start_with_args(&["--max-txn-ops", "512"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let endpoints = etcd.endpoints();
    // A by flag, B by environment variable: both at 512, as etcd.
    let a = Server::start_extra(
        &endpoints,
        "/t/",
        &tmp.path().join("a"),
        None,
        extra(&["--etcd-max-txn-ops", "512"], &[]),
    )
    .await;
    let b = Server::start_extra(
        &endpoints,
        "/t/",
        &tmp.path().join("b"),
        None,
        extra(&[], &[("SAFEMAP_ETCD_MAX_TXN_OPS", "512")]),
    )
    .await;
    let admin = admin_token(&a.dir);

    put_many(&a, &admin, "archived-", STORY).await;
    let (s, _, p) = plan(&a, &admin, json!({"prefix": "archived-"})).await;
    assert_eq!((s, p["count"].as_u64()), (201, Some(STORY as u64)), "{p}");
    let id = p["plan_id"].as_str().unwrap().to_string();

    // Executed through B, with a concurrent execution through A: exactly
    // one commits, the other finds the tombstone.
    let (x, y) = tokio::join!(execute(&b, &admin, &id, STORY as u64), async {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        execute(&a, &admin, &id, STORY as u64).await
    });
    let mut statuses = [x.0, y.0];
    statuses.sort();
    assert_eq!(statuses, [200, 410], "{} {}", x.2, y.2);
    let (won, lost) = if x.0 == 200 { (&x, &y) } else { (&y, &x) };
    assert_eq!(code(&lost.2), "plan_gone", "{}", lost.2);
    assert_eq!(won.2["deleted"].as_u64(), Some(STORY as u64), "{}", won.2);
    let ids: Vec<u64> = won.2["audit_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    assert_eq!(ids[1] - ids[0], STORY as u64 - 1, "{}", won.2);
    // Once more through either: gone.
    let (s, _, v) = execute(&a, &admin, &id, STORY as u64).await;
    assert_eq!((s, code(&v)), (410, "plan_gone"), "{v}");
    let at = x.1.max(y.1);
    assert_eq!(count_keys(&a, &admin, "archived-", at).await, 0);
    let records = plan_records(&a, &admin, &id, at).await;
    assert_eq!(records.len(), STORY);
    assert!(records.iter().all(|r| r["op"] == "delete"));
    assert_eq!(plan_records(&b, &admin, &id, at).await.len(), STORY);

    // Restore by plan brings every key back.
    let r = a
        .req(Method::POST, "/v1/maps/m/restore", &admin)
        .header("x-reason", "undo the story")
        .json(&json!({ "plan_id": id }))
        .send()
        .await
        .unwrap();
    let (s, rev, v) = answer(r).await;
    assert_eq!(
        (s, v["restored"].as_array().map(Vec::len)),
        (200, Some(STORY)),
        "{v}"
    );
    assert_eq!(count_keys(&b, &admin, "archived-", rev).await, STORY);
    // B took 512 from the environment: it too plans all 327 (at the default
    // it would answer 413).
    let (s, _, p) = plan(&b, &admin, json!({"prefix": "archived-"})).await;
    assert_eq!((s, p["count"].as_u64()), (201, Some(STORY as u64)), "{p}");

    // A server at the default (128) over the same etcd refuses the same
    // selection at creation, naming etcd's flag and its own setting.
    let c = Server::start_with(&endpoints, "/t/", &tmp.path().join("c"), None).await;
    let plans_before = etcd.keys("/t/plans/").await.len();
    let (s, _, v) = plan(&c, &admin, json!({"prefix": "archived-"})).await;
    assert_eq!((s, code(&v)), (413, "plan_too_large"), "{v}");
    let details = &v["error"]["details"];
    assert_eq!(details["limit"].as_u64(), Some(100), "{v}");
    assert_eq!(details["size"].as_u64(), Some(STORY as u64), "{v}");
    assert_eq!(details["max_txn_ops"].as_u64(), Some(128), "{v}");
    assert_eq!(details["etcd_flag"], "--max-txn-ops", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("--max-txn-ops"), "{message}");
    assert!(message.contains("[store] max_txn_ops"), "{message}");
    assert!(message.contains("--etcd-max-txn-ops"), "{message}");
    assert_eq!(etcd.keys("/t/plans/").await.len(), plans_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_setting_above_etcds_limit_is_refused_cleanly_and_deletes_nothing() {
    if !etcd_available() {
        return;
    }
    // etcd at its default (128), the server told 512.
    let etcd = Etcd::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let endpoints = etcd.endpoints();
    let a = Server::start_extra(
        &endpoints,
        "/t/",
        &tmp.path().join("a"),
        None,
        extra(&["--etcd-max-txn-ops", "512"], &[]),
    )
    .await;
    let admin = admin_token(&a.dir);
    let n = 150;
    put_many(&a, &admin, "o-", n).await;
    let (s, _, p) = plan(&a, &admin, json!({"prefix": "o-"})).await;
    assert_eq!(s, 201, "{p}");
    let id = p["plan_id"].as_str().unwrap().to_string();
    let (s, _, v) = execute(&a, &admin, &id, n as u64).await;
    assert_eq!((s, code(&v)), (503, "etcd_limit_mismatch"), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("--max-txn-ops"), "{message}");
    assert!(message.contains("max_txn_ops = 512"), "{message}");
    assert!(message.contains("nothing was written"), "{message}");
    // Nothing deleted, no record, the plan still pending in etcd.
    assert_eq!(count_keys(&a, &admin, "o-", None).await, n);
    assert_eq!(etcd.keys("/t/maps/m/keys/").await.len(), n);
    assert!(plan_records(&a, &admin, &id, None).await.is_empty());
    let stored: Value =
        serde_json::from_str(&etcd.value(&format!("/t/plans/{id}")).await.unwrap()).unwrap();
    assert_eq!(stored["plan"]["executed"], false, "{stored}");

    // Restarted at the right setting (etcd's 128), the server refuses the
    // plan as too large (413, naming the settings) rather than failing in
    // etcd, and a plan within the limit executes.
    drop(a);
    let a = Server::start_with(&endpoints, "/t/", &tmp.path().join("a2"), None).await;
    let (s, _, v) = execute(&a, &admin, &id, n as u64).await;
    assert_eq!((s, code(&v)), (413, "plan_too_large"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_txn_ops"),
        "{v}"
    );
    let (s, _, p) = plan(&a, &admin, json!({"prefix": "o-1"})).await;
    assert_eq!(s, 201, "{p}");
    let count = p["count"].as_u64().unwrap();
    let (s, _, v) = execute(&a, &admin, p["plan_id"].as_str().unwrap(), count).await;
    assert_eq!((s, v["deleted"].as_u64()), (200, Some(count)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_etcd_with_a_smaller_request_size_is_named_and_nothing_is_written() {
    if !etcd_available() {
        return;
    }
    // etcd accepts requests of at most 100 000 bytes; the server sends up to
    // 1 400 000 (it assumes etcd's default of 1.5 MiB).
    let etcd = Etcd::start_with_args(&["--max-request-bytes", "100000"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let a = Server::start_with(&etcd.endpoints(), "/t/", &tmp.path().join("a"), None).await;
    let admin = admin_token(&a.dir);
    let big = "x".repeat(200_000);
    let r = a
        .req(Method::PUT, "/v1/maps/m/keys/big", &admin)
        .json(&json!({ "v": big }))
        .send()
        .await
        .unwrap();
    let (s, _, v) = answer(r).await;
    assert_eq!((s, code(&v)), (503, "etcd_limit_mismatch"), "{v}");
    assert_eq!(
        v["error"]["details"]["etcd_flag"], "--max-request-bytes",
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing was written"), "{message}");
    assert!(etcd.keys("/t/maps/m/keys/").await.is_empty());
    // A small value still goes through.
    let r = a
        .req(Method::PUT, "/v1/maps/m/keys/small", &admin)
        .json(&json!({ "v": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

/// Map `wide` declares 32 references into `t` (`/r0` .. `/r31`); maps
/// `ref0` .. `ref31` each refer to `hub`.
fn wide_config() -> String {
    let mut c = String::from("[maps.t]\n[maps.hub]\n[maps.wide]\n");
    for i in 0..32 {
        c.push_str(&format!(
            "[[maps.wide.references]]\nname = \"r{i}\"\npointer = \"/r{i}\"\nto = \"t\"\non_delete = \"restrict\"\n"
        ));
    }
    for i in 0..32 {
        c.push_str(&format!(
            "[maps.ref{i}]\n[[maps.ref{i}.references]]\nname = \"hub\"\npointer = \"/hub\"\nto = \"hub\"\non_delete = \"restrict\"\n"
        ));
    }
    c
}

/// Asserts a 413 `too_large_for_etcd` for `size` compares at `max_txn_ops` 32.
fn assert_too_many_compares(s: u16, v: &Value, size: u64) {
    assert_eq!((s, code(v)), (413, "too_large_for_etcd"), "{v}");
    let details = &v["error"]["details"];
    assert_eq!(details["unit"], "compares", "{v}");
    assert_eq!(details["limit"].as_u64(), Some(32), "{v}");
    assert_eq!(details["size"].as_u64(), Some(size), "{v}");
    assert_eq!(details["max_txn_ops"].as_u64(), Some(32), "{v}");
    assert_eq!(details["setting"], "max_txn_ops", "{v}");
    assert_eq!(details["etcd_flag"], "--max-txn-ops", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing was written"), "{message}");
    assert!(message.contains("--etcd-max-txn-ops"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_key_write_needing_more_compares_than_etcd_allows_is_413_and_writes_nothing() {
    if !etcd_available() {
        return;
    }
    // etcd and the server agree on 32 operations per transaction.
    let etcd = Etcd::start_with_args(&["--max-txn-ops", "32"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let a = Server::start_extra(
        &etcd.endpoints(),
        "/t/",
        &tmp.path().join("a"),
        Some(&wide_config()),
        extra(&["--etcd-max-txn-ops", "32"], &[]),
    )
    .await;
    let admin = admin_token(&a.dir);
    let put = |map: &str, key: &str, value: Value| {
        a.req(Method::PUT, &format!("/v1/maps/{map}/keys/{key}"), &admin)
            .json(&value)
            .send()
    };
    for i in 0..32 {
        assert_eq!(
            put("t", &format!("k{i}"), json!(i)).await.unwrap().status(),
            201
        );
    }
    let refs = |n: usize| -> Value {
        (0..n)
            .map(|i| (format!("r{i}"), json!(format!("k{i}"))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    // 31 references: 32 compares, exactly the limit.
    let (s, _, v) = answer(put("wide", "fits", refs(31)).await.unwrap()).await;
    assert_eq!(s, 201, "{v}");
    // 32 references: 33 compares, refused before anything is sent.
    let audit_before = etcd.keys("/t/audit/").await.len();
    let (s, _, v) = answer(put("wide", "over", refs(32)).await.unwrap()).await;
    assert_too_many_compares(s, &v, 33);
    assert_eq!(etcd.value("/t/maps/wide/keys/over").await, None);
    // An existing entry is not replaced either.
    let (s, _, v) = answer(put("wide", "fits", refs(32)).await.unwrap()).await;
    assert_too_many_compares(s, &v, 33);
    let stored: Value =
        serde_json::from_str(&etcd.value("/t/maps/wide/keys/fits").await.unwrap()).unwrap();
    assert_eq!(stored, refs(31));
    assert_eq!(etcd.keys("/t/audit/").await.len(), audit_before);

    // A delete from `hub` compares its entry and the 32 maps that refer to
    // it: refused once judged (an absent key is still 404), nothing deleted.
    assert_eq!(put("hub", "h", json!(1)).await.unwrap().status(), 201);
    let delete = |key: &str| {
        a.req(Method::DELETE, &format!("/v1/maps/hub/keys/{key}"), &admin)
            .header("x-reason", "test")
            .send()
    };
    let (s, _, v) = answer(delete("absent").await.unwrap()).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    let audit_before = etcd.keys("/t/audit/").await.len();
    let (s, _, v) = answer(delete("h").await.unwrap()).await;
    assert_too_many_compares(s, &v, 33);
    assert_eq!(etcd.value("/t/maps/hub/keys/h").await.as_deref(), Some("1"));
    assert_eq!(etcd.keys("/t/audit/").await.len(), audit_before);
}

#[test]
fn a_bad_max_txn_ops_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (bad, want)) in [
        ("31", "between 32 and 1028"),
        ("1029", "between 32 and 1028"),
        ("-1", "between 32 and 1028"),
        ("many", "invalid value"),
    ]
    .iter()
    .enumerate()
    {
        let (status, stderr) = Server::refused(
            "http://127.0.0.1:1",
            "/t/",
            &tmp.path().join(format!("s{i}")),
            extra(&["--etcd-max-txn-ops", bad], &[]),
        );
        assert_eq!(status, 2, "{bad}: {stderr}");
        assert!(stderr.contains(want), "{bad}: {stderr}");
    }
}
