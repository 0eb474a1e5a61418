//! Servers over loopback: GET, PUT and DELETE at a fixed number of
//! concurrent connections against safemap, etcd 3.4 and redis 7, from one
//! tokio load generator in this process. Each server runs twice: durable
//! (safemap's default fsync'd writes, etcd's default, redis
//! `appendfsync always`) and relaxed (the data directory on tmpfs so fsync
//! costs nothing; redis `appendfsync everysec`). Phases run in order put,
//! get, delete: puts write fresh keys, gets read keys the puts wrote,
//! deletes remove them. A server that cannot be installed or started is
//! skipped with a message; nothing here fails the run.
//!
//! Cluster rows (durable only): `safemap-cluster` is 2 `safemap serve
//! --store etcd` servers over a 3-member etcd cluster, the connections split
//! evenly across the two servers (needs a safemap binary built with
//! `--features etcd`, else the row is skipped with that reason);
//! `etcd-cluster` is the same 3-member cluster alone, the connections split
//! across its members. Every process shares the machine's cores.

pub mod clients;
pub mod load;
pub mod procs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::progress::Progress;
use clients::Op;

/// Parameters of the server workload.
#[derive(Debug, Clone)]
pub struct Config {
    /// Concurrent connections (client tasks).
    pub connections: usize,
    /// Length of each phase (one operation against one server setting).
    pub duration: Duration,
    /// The `safemap` server binary (else found as [`procs::find_safemap`] says).
    pub safemap_bin: Option<PathBuf>,
    /// Run `servers.sh install` (apt-get) when etcd or redis is missing.
    pub install: bool,
    /// Only these servers (all when empty): `safemap`, `etcd`, `redis`,
    /// `safemap-cluster`, `etcd-cluster`.
    pub only: Vec<String>,
    /// Worker threads of the client's tokio runtime.
    pub client_threads: usize,
}

impl Config {
    /// 32 connections, 10 s per phase, every server, install when missing.
    pub fn defaults() -> Self {
        Self {
            connections: 32,
            duration: Duration::from_secs(10),
            safemap_bin: None,
            install: true,
            only: Vec::new(),
            client_threads: 1,
        }
    }
}

/// One JSON line of the server workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// `safemap`, `etcd`, `redis`, `safemap-cluster` or `etcd-cluster`.
    pub server: String,
    /// `get`, `put` or `delete`.
    pub op: String,
    /// Durable setting (fsync before acknowledging) or relaxed.
    pub durable: bool,
    /// Concurrent connections.
    pub connections: usize,
    /// Successful requests per second.
    pub rps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

/// The run's scratch directories, removed when dropped.
struct Scratch {
    disk: PathBuf,
    tmpfs: Option<PathBuf>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.disk);
        if let Some(t) = &self.tmpfs {
            let _ = std::fs::remove_dir_all(t);
        }
    }
}

/// The versions of the servers that are installed, for the report.
pub fn versions(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for program in ["etcd", "redis-server"] {
        if procs::on_path(program)
            && let Some(v) = procs::version_of(Path::new(program))
        {
            out.push(v);
        }
    }
    if let Some(bin) = procs::find_safemap(cfg.safemap_bin.as_deref()) {
        out.push(format!("safemap server at {}", bin.display()));
    }
    out
}

/// Run the workload; returns the rows and the parts skipped (with why).
pub fn run(
    cfg: &Config,
    progress: &Progress,
    mut emit: impl FnMut(&Row),
) -> (Vec<Row>, Vec<String>) {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let want = |s: &str| cfg.only.is_empty() || cfg.only.iter().any(|o| o == s);
    let scratch = Scratch {
        disk: std::env::temp_dir().join(format!("safemap-bench-servers-{}", std::process::id())),
        tmpfs: Path::new("/dev/shm").is_dir().then(|| {
            PathBuf::from(format!(
                "/dev/shm/safemap-bench-servers-{}",
                std::process::id()
            ))
        }),
    };
    if let Err(e) = std::fs::create_dir_all(&scratch.disk) {
        skipped.push(format!(
            "server: cannot create {}: {e}",
            scratch.disk.display()
        ));
        return (rows, skipped);
    }
    let script = match procs::write_script(&scratch.disk) {
        Ok(s) => s,
        Err(e) => {
            skipped.push(format!("server: {e}"));
            return (rows, skipped);
        }
    };
    if cfg.install
        && (want("etcd") || want("redis"))
        && !(procs::on_path("etcd") && procs::on_path("redis-server"))
        && let Err(e) = procs::install(&script)
    {
        skipped.push(format!("server: {e}"));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.client_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            skipped.push(format!("server: cannot start the tokio runtime: {e}"));
            return (rows, skipped);
        }
    };

    let safemap_bin = procs::find_safemap(cfg.safemap_bin.as_deref());
    let mut plan: Vec<(&str, bool)> = Vec::new();
    for server in ["safemap", "etcd", "redis"] {
        for durable in [true, false] {
            if want(server) {
                plan.push((server, durable));
            }
        }
    }
    for server in ["safemap-cluster", "etcd-cluster"] {
        if want(server) {
            plan.push((server, true));
        }
    }
    let bar = progress.bar("server", plan.len() as u64);
    for (server, durable) in plan {
        let setting = if durable { "durable" } else { "relaxed" };
        bar.set_message(format!("{server} {setting}"));
        let base = if durable {
            Some(&scratch.disk)
        } else {
            scratch.tmpfs.as_ref()
        };
        let Some(base) = base else {
            skipped.push(format!(
                "{server} relaxed: no tmpfs at /dev/shm to hold its data"
            ));
            bar.inc(1);
            continue;
        };
        let dir = base.join(format!("{server}-{setting}"));
        let started = match server {
            "safemap" => match &safemap_bin {
                Some(bin) => procs::start_safemap(bin, &dir),
                None => Err(
                    "the `safemap` server binary was not found (build crates/safemap-server, \
                             or pass --safemap-bin / SAFEMAP_BIN)"
                        .to_string(),
                ),
            },
            "safemap-cluster" if procs::on_path("etcd") => match &safemap_bin {
                Some(bin) => procs::start_safemap_cluster(&script, bin, &dir, CLUSTER_SERVERS)
                    .map_err(|e| {
                        if e.contains("without the etcd store") {
                            format!(
                                "{} was built without the `etcd` feature (cargo build --release -p safemap-server --features etcd)",
                                bin.display()
                            )
                        } else {
                            e
                        }
                    }),
                None => Err(
                    "the `safemap` server binary was not found (build crates/safemap-server \
                             with --features etcd, or pass --safemap-bin / SAFEMAP_BIN)"
                        .to_string(),
                ),
            },
            "etcd-cluster" if procs::on_path("etcd") => procs::start_etcd_cluster(&script, &dir),
            "safemap-cluster" => {
                Err("etcd is not installed (crates/safemap-bench/scripts/servers.sh install)".into())
            }
            "etcd" if procs::on_path("etcd") => procs::start_etcd(&script, &dir),
            "redis" if procs::on_path("redis-server") => procs::start_redis(&script, &dir, durable),
            other => Err(format!(
                "{other} is not installed (crates/safemap-bench/scripts/servers.sh install)"
            )),
        };
        let srv = match started {
            Ok(s) => s,
            Err(e) => {
                skipped.push(format!("{server} {setting}: {e}"));
                bar.inc(1);
                continue;
            }
        };
        match runtime.block_on(load::run_server(&srv.endpoint, cfg)) {
            Ok(results) => {
                for (op, stats) in results {
                    let row = Row {
                        server: server.to_string(),
                        op: op.as_str().to_string(),
                        durable,
                        connections: cfg.connections,
                        rps: stats.rps,
                        p50_ms: stats.p50_ms,
                        p99_ms: stats.p99_ms,
                    };
                    if stats.errors > 0 {
                        skipped.push(format!(
                            "{server} {setting} {}: {} requests failed (first: {})",
                            op.as_str(),
                            stats.errors,
                            stats.first_error.as_deref().unwrap_or("?")
                        ));
                    }
                    emit(&row);
                    rows.push(row);
                }
            }
            Err(e) => skipped.push(format!("{server} {setting}: {e}")),
        }
        drop(srv);
        let _ = std::fs::remove_dir_all(&dir);
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(scratch);
    (rows, skipped)
}

/// safemap servers of the `safemap-cluster` row.
pub const CLUSTER_SERVERS: usize = 2;

/// The phases, in the order they run.
pub const PHASES: [Op; 3] = [Op::Put, Op::Get, Op::Delete];
