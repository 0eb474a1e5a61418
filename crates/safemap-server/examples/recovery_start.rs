//! Measures start-up recovery on a large data directory.
//!
//! ```text
//! cargo run --release -p safemap-server --example recovery_start -- gen  DIR 1000000
//! /usr/bin/time -v target/release/examples/recovery_start open DIR
//! ```
//!
//! `gen` writes N audit records through the server's own storage API
//! (`Storage::enqueue`, the log and the checkpoint, as the server does), spread
//! evenly over the last six days (within the default 7-day retention), over
//! 10 000 keys of map `orders` (every 10th write a delete). `open` runs the
//! server's recovery (`Shared::open`, with a `delete_breaker` of 100 per 60 s
//! on `orders` and the default `journal_capacity`), prints how long it took
//! and the peak RSS (VmHWM), then closes the storage cleanly. The figures in
//! STORAGE.md ("Recovery at start", "What a start costs") come from it.
//!
//! `gen` refuses a DIR that already holds audit records: its rows' times start
//! six days back, so rows appended after newer ones would break the order of
//! `at_ms` by audit id that recovery relies on. The first `open` of a file of an older format
//! also builds the tables it lacks (one pass over `audit`), so time the
//! starts after it separately.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use safemap_server::config::Config;
use safemap_server::state::Shared;
use safemap_server::storage::{Storage, StoredOp, StoredRecord, Target, now_ms};
use serde_json::json;

const SPAN_MS: u64 = 6 * 86_400_000;
const CONFIG: &str = "[maps.orders]\ndelete_breaker = { max_deletes = 100, per_seconds = 60 }\n";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") if args.len() == 4 => generate(Path::new(&args[2]), args[3].parse().unwrap()),
        Some("open") if args.len() == 3 => open(Path::new(&args[2])),
        _ => {
            eprintln!("usage: recovery_start gen DIR N | recovery_start open DIR");
            std::process::exit(2);
        }
    }
}

fn generate(dir: &Path, n: u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let week = Duration::from_secs(7 * 86_400);
    let (storage, rec) = Storage::open(dir, week).unwrap();
    if rec.last_audit_id > 0 {
        storage.close();
        eprintln!(
            "{} already holds audit records: gen wants a new directory",
            dir.display()
        );
        std::process::exit(2);
    }
    let (first_id, first_rev) = (rec.last_audit_id + 1, rec.last_revision + 1);
    let start = now_ms() - SPAN_MS;
    let t = Instant::now();
    let mut revision_of: Vec<Option<(u64, u64)>> = vec![None; 10_000];
    for i in 0..n {
        let id = first_id + i;
        let revision = first_rev + i;
        let slot = (i % 10_000) as usize;
        let key = format!("o-{slot}");
        let delete = i % 10 == 9 && revision_of[slot].is_some();
        let (op, previous, create, version, value, previous_value) = match revision_of[slot] {
            Some((prev, create)) if delete => {
                revision_of[slot] = None;
                (
                    StoredOp::Delete,
                    Some(prev),
                    create,
                    1,
                    None,
                    Some(json!({"n": i})),
                )
            }
            Some((prev, create)) => {
                revision_of[slot] = Some((revision, create));
                (
                    StoredOp::Put,
                    Some(prev),
                    create,
                    2,
                    Some(json!({"n": i, "status": "open"})),
                    None,
                )
            }
            None => {
                revision_of[slot] = Some((revision, revision));
                (
                    StoredOp::Put,
                    None,
                    revision,
                    1,
                    Some(json!({"n": i, "status": "open"})),
                    None,
                )
            }
        };
        storage.enqueue(Box::new(StoredRecord {
            id,
            at_ms: start + i * SPAN_MS / n.max(1),
            map: "orders".into(),
            key,
            op,
            revision,
            previous_revision: previous,
            create_revision: create,
            version,
            reason: Some("bench".into()),
            actor: Some("admin".into()),
            trace_id: None,
            plan_id: None,
            value,
            previous_value,
        }));
        if i % 50_000 == 49_999 {
            rt.block_on(storage.wait_durable(Target::AuditId(id)))
                .unwrap();
        }
    }
    rt.block_on(storage.wait_durable(Target::AuditId(first_id + n - 1)))
        .unwrap();
    storage.close();
    println!("wrote {n} audit records in {:.1?}", t.elapsed());
}

fn open(dir: &Path) {
    let config = Config::parse(Path::new("bench.toml"), CONFIG).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let shared = Shared::open(dir, config, true, rx).unwrap();
    let took = t.elapsed();
    let held = shared.journal.first_held_id();
    println!(
        "recovered in {took:.2?}; journal holds from audit id {}; peak RSS {}",
        held.get(),
        vm_hwm()
    );
    if let Ok(s) = shared.local_storage("recovery_start") {
        s.close();
    }
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
