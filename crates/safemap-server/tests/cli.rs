//! The `safemap` client subcommands against a live server, as an operator
//! would use them (token from SAFEMAP_TOKEN).
#![allow(clippy::unwrap_used)]
mod common;

use std::process::Command;

use common::TestServer;
use serde_json::{Value, json};

fn cli(s: &TestServer, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args(args)
        .args(["--url", &s.url])
        .env("SAFEMAP_TOKEN", &s.admin)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_round_trip() {
    let s = TestServer::start().await;
    let (code, out, _) = cli(&s, &["put", "orders", "o/1", r#"{"status":"open"}"#]);
    assert_eq!(code, 0);
    assert_eq!(json_of(&out)["revision"], 1);
    let (code, out, _) = cli(&s, &["get", "orders", "o/1"]);
    assert_eq!(code, 0);
    assert_eq!(json_of(&out)["value"], json!({"status": "open"}));
    let (code, _, err) = cli(&s, &["delete", "orders", "o/1", "--reason", ""]);
    assert_eq!(code, 1);
    assert!(err.contains("reason_required"), "{err}");
    let (code, out, _) = cli(
        &s,
        &["delete", "orders", "o/1", "--reason", "customer asked"],
    );
    assert_eq!(code, 0);
    let audit_id = json_of(&out)["audit_id"].as_u64().unwrap().to_string();
    let (code, out, _) = cli(&s, &["audit", "--map", "orders"]);
    assert_eq!(code, 0);
    assert_eq!(json_of(&out)["records"].as_array().unwrap().len(), 2);
    let (code, out, _) = cli(
        &s,
        &[
            "restore",
            "orders",
            "--audit-id",
            &audit_id,
            "--reason",
            "undo",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json_of(&out)["restored"][0]["key"], "o/1");
    for i in 0..3 {
        let _ = cli(&s, &["put", "orders", &format!("old-{i}"), "1"]);
    }
    let (code, out, _) = cli(&s, &["plan", "create", "orders", "--prefix", "old-"]);
    assert_eq!(code, 0);
    let plan = json_of(&out);
    assert_eq!(plan["count"], 3);
    let id = plan["plan_id"].as_str().unwrap();
    let (code, _, err) = cli(
        &s,
        &[
            "plan", "execute", "orders", id, "--count", "2", "--reason", "x",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("confirm_count_mismatch"), "{err}");
    let (code, out, _) = cli(
        &s,
        &[
            "plan", "execute", "orders", id, "--count", "3", "--reason", "x",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(json_of(&out)["deleted"], 3);
    let (code, out, _) = cli(&s, &["list", "orders"]);
    assert_eq!(code, 0);
    assert_eq!(json_of(&out)["items"].as_array().unwrap().len(), 1);
    let (code, out, _) = cli(&s, &["token", "create", "ci", "--role", "read,write"]);
    assert_eq!(code, 0);
    assert!(json_of(&out)["token"].as_str().unwrap().starts_with("smp_"));
    // Not reachable: exit code 2.
    let out = Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args(["get", "m", "k", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serve_refuses_a_bad_config_naming_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("safemap.toml");
    std::fs::write(
        &cfg,
        "[maps.orders]\nretention = \"7d\"\n\n[[maps.orders.deny_delete]]\nname = \"archived\"\npointer = \"status\"\nequals = \"archived\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("safemap.toml:6:"), "{err}");
    assert!(err.contains("maps.orders.deny_delete[0].pointer"), "{err}");
    std::fs::write(&cfg, "[maps.orders]\nretention = \"7d\"\nbreaker = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("safemap.toml:3:") && err.contains("breaker"),
        "{err}"
    );
}

fn serve(args: &[&str], dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_safemap"))
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A binary built without the `etcd` feature says how to get one that has it,
/// and creates nothing.
#[cfg(not(feature = "etcd"))]
#[test]
fn a_binary_without_the_etcd_feature_refuses_the_etcd_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let endpoints = ["--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:9"];
    let (code, err) = serve(&endpoints, &dir);
    assert_ne!(code, 0);
    assert!(err.contains("--features etcd"), "{err}");
    assert!(!dir.exists(), "nothing is created");
}

#[test]
fn store_flags_are_checked_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "--store",
                "etcd",
                "--etcd-endpoints",
                "http://127.0.0.1:9",
                "--etcd-prefix",
                "/x",
            ],
            "must end with '/'",
        ),
        (&["--store", "etcd"], "at least one endpoint"),
        (
            &["--store", "etcd", "--etcd-endpoints", "127.0.0.1:2379"],
            "is not a URL",
        ),
        (
            &["--store", "local", "--etcd-endpoints", "http://127.0.0.1:9"],
            "apply only to --store etcd",
        ),
        (
            &[
                "--store",
                "etcd",
                "--etcd-endpoints",
                "http://127.0.0.1:9",
                "--etcd-max-txn-ops",
                "1029",
            ],
            "--etcd-max-txn-ops (or SAFEMAP_ETCD_MAX_TXN_OPS): max_txn_ops must be between 32 and 1028",
        ),
        (
            &[
                "--store",
                "etcd",
                "--etcd-endpoints",
                "http://127.0.0.1:9",
                "--etcd-max-txn-ops",
                "lots",
            ],
            "invalid value 'lots'",
        ),
        (
            &["--store", "local", "--etcd-max-txn-ops", "512"],
            "apply only to --store etcd",
        ),
    ];
    for (args, message) in cases {
        let (code, err) = serve(args, &dir);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    assert!(!dir.exists(), "nothing is created");
}

/// `[store] max_txn_ops` out of range stops the start with exit code 2, the
/// file, line and field named; the flag overrides the file.
#[test]
fn a_bad_max_txn_ops_in_the_config_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let cfg = tmp.path().join("safemap.toml");
    std::fs::write(
        &cfg,
        "[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:9\"]\nmax_txn_ops = 31\n",
    )
    .unwrap();
    let config = cfg.to_str().unwrap();
    let (code, err) = serve(&["--config", config], &dir);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("safemap.toml:4:"), "{err}");
    assert!(err.contains("store.max_txn_ops"), "{err}");
    assert!(err.contains("between 32 and 1028"), "{err}");
    assert!(err.contains("got 31"), "{err}");
    // The environment variable is read as the flag is.
    let out = Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "etcd"])
        .args(["--etcd-endpoints", "http://127.0.0.1:9", "--data-dir"])
        .arg(&dir)
        .env("SAFEMAP_ETCD_MAX_TXN_OPS", "20")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("SAFEMAP_ETCD_MAX_TXN_OPS"), "{err}");
    assert!(err.contains("between 32 and 1028"), "{err}");
    assert!(err.contains("got 20"), "{err}");
    assert!(!dir.exists(), "nothing is created");
}
