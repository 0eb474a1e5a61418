//! Crash test: a child `safemap serve` process takes concurrent writes and is
//! killed with SIGKILL at random moments, then restarted on the same data
//! directory. After every restart:
//! - every acknowledged write is there (or superseded only by the one write
//!   that was in flight on that key when the process died);
//! - every acknowledged write has its audit record (same key, op and revision);
//! - the revision counter continues above every acknowledged revision;
//! - the server logged that it recovered from an unclean shutdown.
//!
//! 20 cycles by default; `SAFEMAP_CRASH_CYCLES=200` for more,
//! `SAFEMAP_CRASH_SEED=<n>` to replay a run, `SAFEMAP_CRASH_JOURNAL_CAPACITY=<n>`
//! to hold only n audit records in memory (the rest is paged from disk).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

const WRITERS: usize = 4;
const KEYS_PER_WRITER: usize = 6;
const MAP: &str = "crash";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Pending {
    Put(Value),
    Delete,
}

#[derive(Clone, Debug, Default)]
struct KeyState {
    /// Last acknowledged state: value and revision, or None when absent.
    acked: Option<(Value, u64)>,
    /// The write in flight when the server died, if any.
    pending: Option<Pending>,
}

#[derive(Default)]
struct Book {
    keys: HashMap<String, KeyState>,
    /// (key, op, revision) of every acknowledged write.
    acked_writes: Vec<(String, &'static str, u64)>,
    max_acked_revision: u64,
    /// Highest revision any reader saw (lists may show writes in flight).
    max_seen_revision: u64,
}

struct Server {
    child: Child,
    url: String,
    token: String,
    log: std::path::PathBuf,
}

fn start(dir: &Path, cycle: usize) -> Server {
    let log = dir.join(format!("server-{cycle}.log"));
    let config = dir.join("safemap.toml");
    // The default journal_capacity (100 000): a long run's first records,
    // once evicted from memory, are read back from disk. A small one makes
    // most of the history come from disk (and exercises the seam each cycle).
    let config_text = match std::env::var("SAFEMAP_CRASH_JOURNAL_CAPACITY") {
        Ok(n) => format!("[server]\njournal_capacity = {}\n", n.trim()),
        Err(_) => "[server]\n".to_string(),
    };
    std::fs::write(&config, config_text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut child);
    let token = std::fs::read_to_string(dir.join("data/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    Server {
        child,
        url: format!("http://{addr}"),
        token,
        log,
    }
}

async fn verify(http: &reqwest::Client, s: &Server, book: &mut Book) {
    // 1. Entries: acknowledged state, or the in-flight write applied.
    for (key, st) in book.keys.iter_mut() {
        let r = http
            .get(format!("{}/v1/maps/{MAP}/keys/{key}", s.url))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        let observed: Option<(Value, u64)> = match r.status().as_u16() {
            200 => {
                let v: Value = r.json().await.unwrap();
                Some((v["value"].clone(), v["revision"].as_u64().unwrap()))
            }
            404 => None,
            other => panic!("GET {key}: {other}"),
        };
        let ok = match (&observed, &st.acked, &st.pending) {
            (o, a, _) if o == a => true,
            (Some((v, r)), a, Some(Pending::Put(pv))) => {
                v == pv && a.as_ref().is_none_or(|(_, ar)| r > ar)
            }
            (None, Some(_), Some(Pending::Delete)) => true,
            _ => false,
        };
        assert!(
            ok,
            "key {key}: observed {observed:?}, acknowledged {:?}, in flight {:?}",
            st.acked, st.pending
        );
        st.acked = observed;
        st.pending = None;
    }
    // 2. Audit: every acknowledged write has its record (paged from the
    // first, on disk or in memory).
    let mut seen: HashSet<(String, String, u64)> = HashSet::new();
    let mut after = 0u64;
    loop {
        let v: Value = http
            .get(format!(
                "{}/v1/audit?map={MAP}&limit=1000&after={after}",
                s.url
            ))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for r in v["records"].as_array().unwrap() {
            seen.insert((
                r["key"].as_str().unwrap().to_string(),
                r["op"].as_str().unwrap().to_string(),
                r["revision"].as_u64().unwrap(),
            ));
        }
        match v["next"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    for (key, op, rev) in &book.acked_writes {
        assert!(
            seen.contains(&(key.clone(), op.to_string(), *rev)),
            "acknowledged {op} of {key} at revision {rev} has no audit record"
        );
    }
    // 3. The counter continues above every acknowledged revision.
    let r: Value = http
        .put(format!("{}/v1/maps/{MAP}/keys/probe", s.url))
        .bearer_auth(&s.token)
        .json(&json!("probe"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rev = r["revision"].as_u64().unwrap();
    assert!(
        rev > book.max_acked_revision,
        "revision went backwards: {rev} <= {}",
        book.max_acked_revision
    );
    // Never reused: not even a revision a reader saw before it was durable.
    assert!(
        rev > book.max_seen_revision,
        "revision {rev} reused: a reader saw revision {} before the crash",
        book.max_seen_revision
    );
    book.max_acked_revision = rev;
    book.max_seen_revision = rev;
}

/// Lists the map over and over, noting the highest revision it sees.
async fn reader(http: reqwest::Client, url: String, token: String, book: Arc<Mutex<Book>>) {
    loop {
        let Ok(r) = http
            .get(format!("{url}/v1/maps/{MAP}/keys?limit=1000"))
            .bearer_auth(&token)
            .send()
            .await
        else {
            return;
        };
        let Ok(v) = r.json::<Value>().await else {
            return;
        };
        let max = v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["revision"].as_u64())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let mut b = book.lock().unwrap();
        b.max_seen_revision = b.max_seen_revision.max(max);
    }
}

async fn writer(
    http: reqwest::Client,
    url: String,
    token: String,
    w: usize,
    cycle: usize,
    seed: u64,
    book: Arc<Mutex<Book>>,
) {
    let mut rng = Rng(seed | 1);
    for n in 0.. {
        let key = format!("w{w}-k{}", rng.below(KEYS_PER_WRITER as u64));
        let delete = rng.below(4) == 0;
        let value = json!({"w": w, "cycle": cycle, "n": n});
        {
            let mut b = book.lock().unwrap();
            b.keys.entry(key.clone()).or_default().pending = Some(if delete {
                Pending::Delete
            } else {
                Pending::Put(value.clone())
            });
        }
        let path = format!("{url}/v1/maps/{MAP}/keys/{key}");
        let req = if delete {
            http.delete(&path).header("x-reason", "crash test")
        } else {
            http.put(&path).json(&value)
        };
        let resp = match req.bearer_auth(&token).send().await {
            Ok(r) => r,
            Err(_) => return, // the server died: the write stays "in flight"
        };
        let status = resp.status().as_u16();
        let body: Value = match resp.json().await {
            Ok(v) => v,
            Err(_) => return,
        };
        let mut b = book.lock().unwrap();
        match (delete, status) {
            (false, 200 | 201) => {
                let rev = body["revision"].as_u64().unwrap();
                let st = b.keys.get_mut(&key).unwrap();
                st.acked = Some((value, rev));
                st.pending = None;
                b.acked_writes.push((key, "put", rev));
                b.max_acked_revision = b.max_acked_revision.max(rev);
            }
            (true, 200) => {
                let rev = body["revision"].as_u64().unwrap();
                let st = b.keys.get_mut(&key).unwrap();
                st.acked = None;
                st.pending = None;
                b.acked_writes.push((key, "delete", rev));
                b.max_acked_revision = b.max_acked_revision.max(rev);
            }
            (true, 404) => {
                b.keys.get_mut(&key).unwrap().pending = None;
            }
            (_, other) => panic!("unexpected status {other}: {body}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9() {
    let cycles: usize = std::env::var("SAFEMAP_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("SAFEMAP_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test: {cycles} cycles, SAFEMAP_CRASH_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let tmp = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let book = Arc::new(Mutex::new(Book::default()));
    let mut total_acked = 0;
    for cycle in 0..cycles {
        let mut s = start(tmp.path(), cycle);
        if cycle > 0 {
            // The server logs through a background writer: the line may land
            // in the file a moment after "listening on" is printed.
            let mut log = std::fs::read_to_string(&s.log).unwrap();
            for _ in 0..100 {
                if log.contains("unclean shutdown") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                log = std::fs::read_to_string(&s.log).unwrap();
            }
            assert!(
                log.contains("unclean shutdown"),
                "cycle {cycle}: recovery not logged:\n{log}"
            );
        }
        {
            let mut b = std::mem::take(&mut *book.lock().unwrap());
            verify(&http, &s, &mut b).await;
            *book.lock().unwrap() = b;
        }
        let before = book.lock().unwrap().acked_writes.len();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            tasks.push(tokio::spawn(writer(
                http.clone(),
                s.url.clone(),
                s.token.clone(),
                w,
                cycle,
                rng.next(),
                book.clone(),
            )));
        }
        tasks.push(tokio::spawn(reader(
            http.clone(),
            s.url.clone(),
            s.token.clone(),
            book.clone(),
        )));
        // Kill at a random moment once this cycle has at least one acknowledged
        // write (so a slow machine cannot make a cycle vacuous).
        let waiting = std::time::Instant::now();
        while book.lock().unwrap().acked_writes.len() == before
            && waiting.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        s.child.kill().unwrap(); // SIGKILL
        s.child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let after = book.lock().unwrap().acked_writes.len();
        assert!(after > before, "cycle {cycle}: no write was acknowledged");
        total_acked = after;
    }
    let mut s = start(tmp.path(), cycles);
    let mut b = std::mem::take(&mut *book.lock().unwrap());
    verify(&http, &s, &mut b).await;
    println!(
        "crash test: {cycles} kill -9 cycles, {total_acked} acknowledged writes verified with their audit records, last revision {}",
        b.max_acked_revision
    );
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}
