//! Recovery from a damaged write-ahead log (STORAGE.md, "Recovery at start"):
//! - a torn tail (the last record cut short, or its bytes flipped) is dropped,
//!   every record before it is kept, and the server says so in its log;
//! - a bad record followed by good ones refuses to start, with an error naming
//!   the file and the byte, and leaves the data directory as it was.
//!
//! The checkpoint interval is an hour, so the records stay in the log.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use safemap_server::storage::{
    Options, Recovered, Storage, StoredOp, StoredRecord, Target, now_ms,
};
use serde_json::json;

const HOUR: Duration = Duration::from_secs(3600);

fn options() -> Options {
    Options {
        checkpoint_interval: HOUR,
        ..Options::default()
    }
}

fn put(id: u64) -> StoredRecord {
    StoredRecord {
        id,
        at_ms: now_ms(),
        map: "m".into(),
        key: format!("k{id}"),
        op: StoredOp::Put,
        revision: id,
        previous_revision: None,
        create_revision: id,
        version: 1,
        reason: None,
        actor: Some("admin".into()),
        trace_id: None,
        plan_id: None,
        value: Some(json!({"n": id})),
        previous_value: None,
    }
}

/// Opens and closes cleanly: what a restart recovers.
fn reopen(dir: &Path) -> Result<Recovered, String> {
    let (s, r) = Storage::open_with(dir, HOUR, options()).map_err(|e| e.0)?;
    s.close();
    Ok(r)
}

/// Writes three acknowledged records and stops without a clean shutdown
/// (nothing folded: they are only in the log). Returns the segment's path.
async fn three_records_in_the_log(dir: &Path) -> PathBuf {
    let (s, _) = Storage::open_with(dir, HOUR, options()).unwrap();
    for id in 1..=3 {
        s.enqueue(Box::new(put(id)));
    }
    s.wait_durable(Target::AuditId(3)).await.unwrap();
    s.halt_as_crash();
    let seg = dir.join("wal/00000000000000000001.log");
    assert!(seg.exists());
    seg
}

fn keys(r: &Recovered) -> Vec<String> {
    let mut k: Vec<String> = r.entries.iter().map(|e| e.1.clone()).collect();
    k.sort();
    k
}

#[tokio::test]
async fn a_log_cut_mid_record_recovers_to_the_last_good_record() {
    let dir = tempfile::tempdir().unwrap();
    let seg = three_records_in_the_log(dir.path()).await;
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let r = reopen(dir.path()).unwrap();
    assert_eq!(keys(&r), ["k1", "k2"]);
    assert_eq!(r.log_records_replayed, 2);
    let torn = r.torn_tail.unwrap();
    assert!(
        torn.contains("runs past the end") && torn.contains("last good record is lsn 2"),
        "{torn}"
    );
    // Recovered for good: the next start finds a clean, empty log.
    let r = reopen(dir.path()).unwrap();
    assert_eq!((keys(&r).len(), r.torn_tail, r.unclean), (2, None, false));
}

#[tokio::test]
async fn flipped_bytes_in_the_last_record_recover_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let seg = three_records_in_the_log(dir.path()).await;
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    bytes[n - 4] ^= 0x01;
    std::fs::write(&seg, bytes).unwrap();
    let r = reopen(dir.path()).unwrap();
    assert_eq!(keys(&r), ["k1", "k2"]);
    assert!(r.torn_tail.unwrap().contains("checksum mismatch"));
    // New writes continue after the last good record, and survive.
    let (s, r) = Storage::open_with(dir.path(), HOUR, options()).unwrap();
    assert_eq!(r.last_audit_id, 2);
    s.enqueue(Box::new(put(3)));
    s.wait_durable(Target::AuditId(3)).await.unwrap();
    s.halt_as_crash();
    assert_eq!(keys(&reopen(dir.path()).unwrap()), ["k1", "k2", "k3"]);
}

/// Byte offset of the second record's payload in the segment.
fn second_record_payload(seg: &Path) -> usize {
    let bytes = std::fs::read(seg).unwrap();
    let first_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    8 + 8 + first_len + 8 + 9
}

#[tokio::test]
async fn a_bad_checksum_in_the_middle_refuses_to_start_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seg = three_records_in_the_log(dir.path()).await;
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = second_record_payload(&seg);
    bytes[at] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let err = reopen(dir.path()).unwrap_err();
    assert!(
        err.contains("the log is corrupt")
            && err.contains("00000000000000000001.log")
            && err.contains("checksum mismatch")
            && err.contains("refusing to start"),
        "{err}"
    );
    // Refusing again, with the log untouched: once the byte is repaired (from
    // a backup, say), every record is there.
    assert!(reopen(dir.path()).is_err());
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    bytes[at] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    assert_eq!(keys(&reopen(dir.path()).unwrap()), ["k1", "k2", "k3"]);
}

/// The same two cases through the `safemap` binary: what an operator sees.
#[tokio::test]
async fn the_server_logs_a_torn_tail_and_refuses_a_corrupt_log() {
    let run = |data: &Path| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_safemap"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A server that starts prints `listening on`; stop it then.
        let mut out = String::new();
        use std::io::{BufRead, BufReader};
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let started = lines.any(|l| l.unwrap().starts_with("listening on"));
        let _ = child.kill();
        let status = child.wait().unwrap();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (started, status, out)
    };
    let torn = tempfile::tempdir().unwrap();
    let seg = three_records_in_the_log(torn.path()).await;
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let (started, _, log) = run(torn.path());
    assert!(started, "{log}");
    assert!(
        log.contains("torn tail") && log.contains("last good record is lsn 2"),
        "{log}"
    );

    let corrupt = tempfile::tempdir().unwrap();
    let seg = three_records_in_the_log(corrupt.path()).await;
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[second_record_payload(&seg)] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let (started, status, log) = run(corrupt.path());
    assert!(!started && !status.success(), "{log}");
    assert!(
        log.contains("the log is corrupt") && log.contains("refusing to start"),
        "{log}"
    );
}

/// Small segments, frequent folds: sealed segments are deleted once folded,
/// and a crash at any point loses nothing acknowledged.
#[tokio::test]
async fn folded_segments_are_deleted_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        checkpoint_interval: Duration::from_millis(20),
        segment_bytes: 600,
        ..Options::default()
    };
    let (s, _) = Storage::open_with(dir.path(), HOUR, opts).unwrap();
    for id in 1..=60 {
        s.enqueue(Box::new(put(id)));
        s.wait_durable(Target::AuditId(id)).await.unwrap();
    }
    let segments = || std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    // About 20 segments were written; folding leaves the newest few.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while segments() > 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(segments() <= 2, "{} segments left", segments());
    s.enqueue(Box::new(put(61)));
    s.wait_durable(Target::AuditId(61)).await.unwrap();
    s.halt_as_crash();
    let r = reopen(dir.path()).unwrap();
    assert_eq!(r.entries.len(), 61);
    assert_eq!((r.last_audit_id, r.unclean), (61, true));
}
