//! Starting and stopping the servers: etcd and redis through the crate's
//! `scripts/servers.sh` (embedded in the binary and written to the run's
//! temporary directory), safemap by running its binary. Each server is a
//! child process of this one, stopped by its own process id when the
//! [`Server`] is dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::clients::Endpoint;

/// The script, embedded so the binary works from any directory.
pub const SCRIPT: &str = include_str!("../../../scripts/servers.sh");

/// How long a server may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server (or cluster): its processes killed and reaped on drop,
/// the last started first.
pub struct Server {
    children: Vec<Child>,
    /// How to reach it.
    pub endpoint: Endpoint,
}

impl Server {
    fn one(child: Child, endpoint: Endpoint) -> Server {
        Server {
            children: vec![child],
            endpoint,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        while let Some(mut child) = self.children.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Write the script into `dir` and return its path.
pub fn write_script(dir: &Path) -> Result<PathBuf, String> {
    let p = dir.join("servers.sh");
    std::fs::write(&p, SCRIPT).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    Ok(p)
}

/// Run `servers.sh install`; `Err` with its message when it could not install.
pub fn install(script: &Path) -> Result<(), String> {
    let out = Command::new("bash")
        .arg(script)
        .arg("install")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "servers.sh install failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether a program is on the PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Start redis (durable: AOF with fsync on every write) in `dir`.
pub fn start_redis(script: &Path, dir: &Path, durable: bool) -> Result<Server, String> {
    let port = free_port()?;
    let child = Command::new("bash")
        .arg(script)
        .args([
            "redis",
            &dir.to_string_lossy(),
            &port.to_string(),
            if durable { "durable" } else { "relaxed" },
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis: {e}"))?;
    let addr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    Ok(Server::one(child, Endpoint::Redis(addr)))
}

/// Start etcd (its defaults: fsync per commit) in `dir`.
pub fn start_etcd(script: &Path, dir: &Path) -> Result<Server, String> {
    let (port, peer) = (free_port()?, free_port()?);
    let child = Command::new("bash")
        .arg(script)
        .args([
            "etcd",
            &dir.to_string_lossy(),
            &port.to_string(),
            &peer.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start etcd: {e}"))?;
    Ok(Server::one(
        child,
        Endpoint::Etcd(format!("http://127.0.0.1:{port}")),
    ))
}

/// Start a 3-member etcd cluster (etcd's defaults: fsync per commit), its
/// members' data in `dir`. The endpoint spreads tasks over the 3 members.
pub fn start_etcd_cluster(script: &Path, dir: &Path) -> Result<Server, String> {
    let mut ports = Vec::new();
    for _ in 0..3 {
        ports.push((free_port()?, free_port()?));
    }
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut server = Server {
        children: Vec::new(),
        endpoint: Endpoint::Spread(Vec::new()),
    };
    let mut parts = Vec::new();
    for (i, (port, peer)) in ports.iter().enumerate() {
        let child = Command::new("bash")
            .arg(script)
            .args([
                "etcd-member",
                &dir.to_string_lossy(),
                &format!("m{i}"),
                &port.to_string(),
                &peer.to_string(),
                &cluster,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start etcd: {e}"))?;
        server.children.push(child);
        parts.push(Endpoint::Etcd(format!("http://127.0.0.1:{port}")));
    }
    server.endpoint = Endpoint::Spread(parts);
    Ok(server)
}

/// Start `safemap serve` with its data in `dir`, wait for its `listening on`
/// line and read the admin token it wrote.
pub fn start_safemap(bin: &Path, dir: &Path) -> Result<Server, String> {
    start_safemap_with(bin, dir, &[], &dir.join("admin.token"))
}

/// Start a 3-member etcd cluster and `servers` safemap servers over it
/// (`--store etcd`, the binary built with `--features etcd`), each with its
/// own directory under `dir`; the endpoint spreads tasks over the safemap
/// servers (the admin token is the first server's: tokens live in etcd).
pub fn start_safemap_cluster(
    script: &Path,
    bin: &Path,
    dir: &Path,
    servers: usize,
) -> Result<Server, String> {
    let mut cluster = start_etcd_cluster(script, dir)?;
    let Endpoint::Spread(members) =
        std::mem::replace(&mut cluster.endpoint, Endpoint::Spread(Vec::new()))
    else {
        return Err("the etcd cluster has no members".into());
    };
    let endpoints = members
        .iter()
        .filter_map(|m| match m {
            Endpoint::Etcd(url) => Some(url.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(",");
    let health = Endpoint::Spread(members);
    if !wait_ready(&health) {
        return Err(format!(
            "the 3-member etcd cluster did not become healthy within {START_TIMEOUT:?}"
        ));
    }
    let token = dir.join("s0").join("admin.token");
    let mut parts = Vec::new();
    for i in 0..servers.max(1) {
        let args = [
            "--store",
            "etcd",
            "--etcd-endpoints",
            &endpoints,
            "--etcd-prefix",
            "/bench/",
        ];
        let mut s = start_safemap_with(bin, &dir.join(format!("s{i}")), &args, &token)?;
        cluster.children.append(&mut s.children);
        parts.push(std::mem::replace(
            &mut s.endpoint,
            Endpoint::Spread(Vec::new()),
        ));
    }
    cluster.endpoint = Endpoint::Spread(parts);
    Ok(cluster)
}

/// Waits until `endpoint` answers its readiness probe, at most [`START_TIMEOUT`].
fn wait_ready(endpoint: &Endpoint) -> bool {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return false;
    };
    let http = reqwest::Client::new();
    rt.block_on(async {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if endpoint.ready(&http).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    })
}

/// Start `safemap serve` with its data in `dir` and more `args`, wait for its
/// `listening on` line and read the admin token at `token_path`.
pub fn start_safemap_with(
    bin: &Path,
    dir: &Path,
    args: &[&str],
    token_path: &Path,
) -> Result<Server, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--data-dir",
            &dir.to_string_lossy(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            // Keep draining after the line is found, so the server never blocks on
            // a full pipe; once nobody listens, in bulk (its access log is one line
            // per request, which must not cost the load generator's core).
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                if tx.send(std::mem::take(&mut line)).is_err() {
                    break;
                }
            }
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
    }
    // Only the readers hold senders now: when the child exits, recv says so.
    drop(tx);
    // Owned from here on: any early return below stops the child.
    let mut server = Server::one(child, Endpoint::Etcd(String::new()));
    let deadline = Instant::now() + START_TIMEOUT;
    let mut said = Vec::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                said.push(line.trim().to_string());
                if said.len() > 5 {
                    said.remove(0);
                }
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_matches(|c| c == '"' || c == ',');
                    break addr.trim_start_matches("http://").to_string();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!(
                    "safemap exited before listening: {}",
                    said.join(" / ")
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "safemap did not print `listening on` within {START_TIMEOUT:?}"
                ));
            }
        }
    };
    let token = std::fs::read_to_string(token_path)
        .map_err(|e| format!("cannot read {}: {e}", token_path.display()))?
        .trim()
        .to_string();
    server.endpoint = Endpoint::Safemap {
        base: format!("http://{addr}"),
        token,
    };
    Ok(server)
}

/// The first line `program --version` prints, if it runs.
pub fn version_of(program: &Path) -> Option<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// The safemap server binary: `explicit`, else `SAFEMAP_BIN`, else `safemap`
/// next to this binary, else on the PATH.
pub fn find_safemap(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("SAFEMAP_BIN") {
        return Some(PathBuf::from(p));
    }
    let sibling = std::env::current_exe().ok()?.parent()?.join("safemap");
    if sibling.is_file() {
        return Some(sibling);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("safemap"))
            .find(|p| p.is_file())
    })
}
