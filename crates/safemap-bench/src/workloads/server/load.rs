//! The load generator: `connections` tokio tasks, each issuing one request
//! at a time for the phase's duration (closed loop). The first tenth of
//! each phase (at most 1 s) is warm-up and not counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::clients::{Endpoint, Op};
use super::{Config, PHASES};
use crate::rng::FastRng;
use crate::stats::Percentiles;

/// How long a server may take to answer its readiness probe.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What one phase measured.
#[derive(Debug, Clone, Default)]
pub struct PhaseStats {
    /// Successful requests per second after warm-up.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Failed requests.
    pub errors: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
}

/// Keys task `t` wrote: `k{t}-{i}` for `i` below `written[t]`.
fn key(task: usize, i: u64) -> String {
    format!("k{task:03}-{i:09}")
}

/// Wait for the server, then run every phase against it.
pub async fn run_server(ep: &Endpoint, cfg: &Config) -> Result<Vec<(Op, PhaseStats)>, String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.connections)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ep.ready(&http).await {
        if Instant::now() > deadline {
            return Err(format!("not ready within {READY_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ep = Arc::new(ep.clone());
    let written: Arc<Vec<AtomicU64>> =
        Arc::new((0..cfg.connections).map(|_| AtomicU64::new(0)).collect());
    let mut out = Vec::new();
    for op in PHASES {
        let stats = phase(&ep, &http, op, cfg, &written).await;
        out.push((op, stats));
    }
    Ok(out)
}

/// What one task measured.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u64>,
    /// When the task's last counted request finished.
    last: Option<Instant>,
}

async fn phase(
    ep: &Arc<Endpoint>,
    http: &reqwest::Client,
    op: Op,
    cfg: &Config,
    written: &Arc<Vec<AtomicU64>>,
) -> PhaseStats {
    let start = Instant::now();
    let warm = (cfg.duration / 10).min(Duration::from_secs(1));
    let counted_from = start + warm;
    let end = start + cfg.duration;
    let conns = cfg.connections.max(1);
    let mut tasks = Vec::new();
    for t in 0..conns {
        let (ep, http, written) = (Arc::clone(ep), http.clone(), Arc::clone(written));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let ep = ep.for_task(t);
            let mut conn = match ep.connect(&http).await {
                Ok(c) => c,
                Err(e) => {
                    tally.errors += 1;
                    tally.first_error = Some(e);
                    return tally;
                }
            };
            let mut rng = FastRng::new(t as u64 + 1);
            let mut deleted = 0u64;
            while Instant::now() < end {
                let k = match op {
                    Op::Put => key(t, written[t].load(Ordering::Relaxed)),
                    Op::Get => {
                        let owner = rng.below(conns as u64) as usize;
                        let n = written[owner].load(Ordering::Relaxed);
                        if n == 0 {
                            break;
                        }
                        key(owner, rng.below(n))
                    }
                    Op::Delete => {
                        if deleted >= written[t].load(Ordering::Relaxed) {
                            break; // every key this task wrote is gone
                        }
                        deleted += 1;
                        key(t, deleted - 1)
                    }
                };
                let t0 = Instant::now();
                let result = ep.call(&mut conn, op, &k, rng.next_u64() >> 16).await;
                let done = Instant::now();
                match result {
                    Ok(()) => {
                        if op == Op::Put {
                            written[t].fetch_add(1, Ordering::Relaxed);
                        }
                        if t0 >= counted_from {
                            tally.ok += 1;
                            tally.latencies_us.push((done - t0).as_micros() as u64);
                            tally.last = Some(done);
                        }
                    }
                    Err(e) => {
                        tally.errors += 1;
                        if tally.first_error.is_none() {
                            tally.first_error = Some(e);
                        }
                        if tally.errors > 1000 {
                            break;
                        }
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        if let Ok(tally) = t.await {
            all.ok += tally.ok;
            all.errors += tally.errors;
            all.first_error = all.first_error.or(tally.first_error);
            all.latencies_us.extend(tally.latencies_us);
            all.last = all.last.max(tally.last);
        }
    }
    // Deletes may run out of keys before the end: divide by the time actually used.
    let window = all.last.map_or(Duration::ZERO, |l| {
        l.saturating_duration_since(counted_from)
    });
    let p = Percentiles::of(&mut all.latencies_us);
    PhaseStats {
        rps: if window.is_zero() {
            0.0
        } else {
            all.ok as f64 / window.as_secs_f64()
        },
        p50_ms: p.p50 as f64 / 1000.0,
        p99_ms: p.p99 as f64 / 1000.0,
        errors: all.errors,
        first_error: all.first_error,
    }
}
