//! Real processes: a 3-member etcd cluster on loopback (Debian's
//! `etcd-server`, temporary directories, free ports) and `safemap serve
//! --store etcd` servers over it. Every process is SIGKILLed when its handle
//! drops.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

/// Whether etcd is installed; outside CI a missing etcd skips the test with a
/// message, under CI (`CI` set) it fails.
pub fn etcd_available() -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install etcd (apt-get install -y etcd-server)"
        );
        eprintln!("skipped: `etcd` is not on PATH (apt-get install etcd-server)");
    }
    found
}

/// A free loopback port below Linux's ephemeral range (32768–60999), so that
/// no outgoing connection takes it while its process is down (a killed member
/// restarts on the same ports). Random, and checked by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ (u64::from(std::process::id()) << 32);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // splitmix64
        let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let port = 10_000 + (z % 22_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// A 3-member etcd cluster.
pub struct Etcd {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    token: String,
    /// More flags of every member (e.g. `--max-txn-ops 512`).
    args: Vec<String>,
    http: reqwest::Client,
}

impl Etcd {
    /// Starts 3 members and waits until the cluster is healthy.
    pub async fn start() -> Etcd {
        Etcd::start_with_args(&[]).await
    }

    /// As [`Etcd::start`], every member with these more flags.
    pub async fn start_with_args(args: &[&str]) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (0..3)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let token = format!("safemap-test-{}", std::process::id());
        let mut etcd = Etcd {
            dir,
            members,
            token,
            args: args.iter().map(|a| a.to_string()).collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
        };
        for i in 0..3 {
            etcd.spawn(i);
        }
        etcd.wait_healthy(Duration::from_secs(30)).await;
        etcd
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .unwrap();
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // Fast failover for tests: leader loss is noticed within ~0.5 s.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        self.members[i].child = Some(child);
    }

    /// Client URLs, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The etcdctl endpoints flag value for the members running.
    fn running_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// Waits until every running member answers /health with true.
    pub async fn wait_healthy(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let mut all = true;
            for url in self.running_endpoints() {
                let ok = match self.http.get(format!("{url}/health")).send().await {
                    Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["health"] == "true"),
                    Err(_) => false,
                };
                all &= ok;
            }
            if all {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "etcd did not become healthy within {limit:?} (logs in {})",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the current leader (asked of each running member).
    pub async fn leader(&self) -> usize {
        for _ in 0..100 {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                let url = format!("http://127.0.0.1:{}/v3/maintenance/status", m.client);
                let Ok(r) = self.http.post(url).json(&json!({})).send().await else {
                    continue;
                };
                let Ok(v) = r.json::<Value>().await else {
                    continue;
                };
                // The JSON gateway renders uint64 as strings.
                if v["leader"].is_string() && v["leader"] == v["header"]["member_id"] {
                    return i;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no etcd leader found");
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// A range read through etcd's JSON gateway (what `etcdctl get` shows).
    async fn range(&self, key: &str, prefix: bool) -> Vec<(String, String)> {
        let mut end = key.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut body = json!({"key": b64(key.as_bytes())});
        if prefix {
            body["range_end"] = json!(b64(&end));
        }
        for url in self.running_endpoints() {
            let Ok(r) = self
                .http
                .post(format!("{url}/v3/kv/range"))
                .json(&body)
                .send()
                .await
            else {
                continue;
            };
            let Ok(v) = r.json::<Value>().await else {
                continue;
            };
            let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
            return kvs
                .iter()
                .map(|kv| {
                    let text =
                        |f: &str| String::from_utf8(unb64(kv[f].as_str().unwrap_or(""))).unwrap();
                    (text("key"), text("value"))
                })
                .collect();
        }
        panic!("no etcd member answered a range read");
    }

    /// Keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        self.range(prefix, true)
            .await
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The value of `key`.
    pub async fn value(&self, key: &str) -> Option<String> {
        self.range(key, false)
            .await
            .into_iter()
            .next()
            .map(|(_, v)| v)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let Some(v) = B64.iter().position(|&x| x == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// One `safemap serve --store etcd` process.
pub struct Server {
    pub url: String,
    pub dir: PathBuf,
    port: u16,
    endpoints: String,
    prefix: String,
    config: Option<PathBuf>,
    /// More `serve` flags and environment variables (TLS, etcd user).
    extra: Extra,
    child: std::sync::Mutex<Option<Child>>,
    pub http: reqwest::Client,
}

/// More `safemap serve` flags and environment variables than the harness's own.
#[derive(Clone, Default)]
pub struct Extra {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server over `etcd` with `prefix`, its data directory `dir`
    /// and this TOML configuration text; waits until `/readyz` answers 200.
    pub async fn start_with(
        endpoints: &str,
        prefix: &str,
        dir: &Path,
        config: Option<&str>,
    ) -> Server {
        Server::start_extra(endpoints, prefix, dir, config, Extra::default()).await
    }

    /// As [`Server::start_with`], with more flags and environment variables.
    pub async fn start_extra(
        endpoints: &str,
        prefix: &str,
        dir: &Path,
        config: Option<&str>,
        extra: Extra,
    ) -> Server {
        let config = config.map(|text| {
            std::fs::create_dir_all(dir).unwrap();
            let path = dir.join("safemap.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let mut s = Server {
            config,
            extra,
            url: String::new(),
            dir: dir.to_path_buf(),
            port: free_port(),
            endpoints: endpoints.to_string(),
            prefix: prefix.to_string(),
            child: std::sync::Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        };
        s.url = format!("http://127.0.0.1:{}", s.port);
        s.spawn();
        s.wait_ready().await;
        s
    }

    fn spawn(&self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting safemap");
        *self.child.lock().unwrap() = Some(child);
    }

    /// The `safemap serve` command of this server.
    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_safemap"));
        cmd.arg("serve")
            .args(["--store", "etcd", "--etcd-endpoints", &self.endpoints])
            .args(["--etcd-prefix", &self.prefix])
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(
                self.config
                    .iter()
                    .flat_map(|c| [std::ffi::OsStr::new("--config"), c.as_os_str()]),
            )
            .args(&self.extra.args)
            .envs(self.extra.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info");
        cmd
    }

    /// Runs a server that must refuse to start: its exit code and stderr.
    pub fn refused(endpoints: &str, prefix: &str, dir: &Path, extra: Extra) -> (i32, String) {
        let s = Server {
            config: None,
            extra,
            url: String::new(),
            dir: dir.to_path_buf(),
            port: free_port(),
            endpoints: endpoints.to_string(),
            prefix: prefix.to_string(),
            child: std::sync::Mutex::new(None),
            http: reqwest::Client::new(),
        };
        std::fs::create_dir_all(dir).unwrap();
        let log_path = dir.join("refused.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = s
            .command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting safemap");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "safemap did not refuse to start within 30 s:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
        (status.code().unwrap_or(-1), stderr)
    }

    /// The server's process id (for SIGSTOP / SIGCONT).
    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap()
            .as_ref()
            .map(Child::id)
            .expect("the server runs")
    }

    async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.url)).send().await
                && r.status() == 200
            {
                return;
            }
            let exited = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("safemap exited with {status}:\n{log}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "safemap did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the server.
    pub fn kill(&self) {
        let child = self.child.lock().unwrap().take();
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again (same port, directory, etcd) and waits until ready.
    pub async fn restart(&self) {
        self.spawn();
        self.wait_ready().await;
    }

    /// A request with `token`.
    pub fn req(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(token)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The admin token the first server wrote.
pub fn admin_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin.token"))
        .expect("the first server writes admin.token")
        .trim()
        .to_string()
}
