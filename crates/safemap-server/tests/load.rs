//! Bounded load test on loopback: a child `safemap serve` takes concurrent
//! durable PUTs and GETs for a few seconds (SAFEMAP_LOAD_SECS, default 3; at
//! most 60) from SAFEMAP_LOAD_CLIENTS clients (default 32). It checks that
//! /healthz answers quickly under load, that no request fails, that memory is
//! flat once the key set is written and the journal (capacity 2000 here) has
//! wrapped (RSS at the end within 1.5× + 32 MiB of the RSS after warm-up), and prints the durable write throughput.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

/// Journal capacity of the server under test.
const JOURNAL: usize = 2000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_load_keeps_health_and_flat_memory() {
    let secs: u64 = std::env::var("SAFEMAP_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .clamp(1, 60);
    let clients: usize = std::env::var("SAFEMAP_LOAD_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
        .clamp(1, 512);
    let tmp = tempfile::tempdir().unwrap();
    // A small journal and page cache, so the steady state (where memory must be
    // flat) is reached within the warm-up.
    let cfg = tmp.path().join("load.toml");
    std::fs::write(
        &cfg,
        format!("[server]\njournal_capacity = {JOURNAL}\nstorage_cache_bytes = 16777216\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut child);
    let url = format!("http://{addr}");
    let token = std::fs::read_to_string(tmp.path().join("data/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let puts = Arc::new(AtomicU64::new(0));
    let gets = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        let (puts, gets, running) = (puts.clone(), gets.clone(), running.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                // 200 keys per client, overwritten in turn: the key set stops growing.
                let key = format!("c{c}-{}", n % 200);
                let path = format!("{url}/v1/maps/load/keys/{key}");
                let r = http
                    .put(&path)
                    .bearer_auth(&token)
                    .json(&json!({"n": n, "pad": "x".repeat(64)}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "PUT {}", r.status());
                puts.fetch_add(1, Ordering::Relaxed);
                let r = http.get(&path).bearer_auth(&token).send().await.unwrap();
                assert_eq!(r.status(), 200);
                gets.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    // Warm-up: until the journal has wrapped twice (at most 20 s), then the
    // baseline memory.
    let warm_start = Instant::now();
    while puts.load(Ordering::Relaxed) < 2 * JOURNAL as u64
        && warm_start.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warm_rss = rss_kib(child.id());
    let warm_puts = puts.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut worst_health = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let r = http.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        worst_health = worst_health.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let measured_puts = puts.load(Ordering::Relaxed) - warm_puts;
    let end_rss = rss_kib(child.id());
    running.store(false, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let commits = figure("safemap_fsync_duration_seconds_count");
    let records = figure("safemap_audit_records_total");
    let fsync_secs = figure("safemap_fsync_duration_seconds_sum");
    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "load: group commit: {records} records in {commits} durable commits ({:.1} per commit), mean commit {:.2} ms",
        records / commits.max(1.0),
        1000.0 * fsync_secs / commits.max(1.0)
    );
    println!(
        "load: {clients} clients, {secs} s: {:.0} durable PUT/s (each acknowledged after fsync), {} GETs in total; \
         worst /healthz {:?}; RSS {} KiB after warm-up, {} KiB at the end",
        measured_puts as f64 / elapsed,
        gets.load(Ordering::Relaxed),
        worst_health,
        warm_rss,
        end_rss
    );
    assert!(
        worst_health < Duration::from_secs(2),
        "healthz slow under load"
    );
    assert!(
        end_rss <= warm_rss * 3 / 2 + 32 * 1024,
        "memory grew under a steady load: {warm_rss} KiB -> {end_rss} KiB"
    );
}
