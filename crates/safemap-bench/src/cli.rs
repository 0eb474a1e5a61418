//! Command line: one subcommand per workload, `all`, and the hidden
//! `__memory-child` the memory workload re-executes this binary with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::machine::Machine;
use crate::progress::Progress;
use crate::report::{self, Results, Target};
use crate::workloads::{delete_cost, incident, memory, mixes, server};

/// safemap against its peers: the incident replay, conc-map-bench mixes,
/// delete cost, memory and servers.
#[derive(Debug, Parser)]
#[command(name = "safemap-bench", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Cmd,
    /// Print one JSON line per result on stdout (else a readable line).
    #[arg(long, global = true)]
    pub json: bool,
    /// Write BENCHMARKS.md (and charts) into this directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Where the SVG charts go (default DIR/bench-charts).
    #[arg(long, global = true, value_name = "DIR")]
    pub charts: Option<PathBuf>,
    /// A Markdown file appended to the report as its closing notes.
    #[arg(long, global = true, value_name = "FILE")]
    pub notes: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// The incident refresh: readers against a refresher, each peer without and with it.
    Incident(IncidentArgs),
    /// read-heavy, exchange and rapid-grow (bustle) at several thread counts.
    Mixes(MixesArgs),
    /// ns and bytes allocated per delete, by the ways code deletes.
    DeleteCost(DeleteArgs),
    /// Resident bytes per entry, then after removing 90 %.
    Memory(MemoryArgs),
    /// safemap vs etcd vs redis over loopback.
    Server(ServerArgs),
    /// Every workload in turn (the server last).
    All(AllArgs),
    /// Re-render a report from the `results.json` a previous run wrote beside
    /// its charts (the figures and the machine of that run), e.g. after
    /// editing the notes. Needs --report.
    Render {
        /// The `results.json` of a previous run.
        #[arg(long, value_name = "FILE")]
        results: PathBuf,
    },
    /// Internal: measure one memory variant in this fresh process.
    #[command(name = "__memory-child", hide = true)]
    MemoryChild {
        /// Variant to measure.
        #[arg(long)]
        variant: String,
        /// Entries.
        #[arg(long)]
        entries: u64,
    },
}

/// Options of `incident`.
#[derive(Debug, Clone, Args)]
pub struct IncidentArgs {
    /// Reader threads (default: cores − 1, at least 1).
    #[arg(long)]
    pub readers: Option<usize>,
    /// Keys in the map.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Measured window per run, e.g. 3s or 500ms.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Percentage of keys each refresh brings to a new value.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub invalidate_pct: u64,
    /// Pause between refreshes, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub pause_ms: u64,
    /// Rounds (all variants once per round); each figure is the median run.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Only these variants (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub variants: Vec<String>,
}

/// Options of `mixes`.
#[derive(Debug, Clone, Args)]
pub struct MixesArgs {
    /// Thread counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    pub threads: Vec<usize>,
    /// Operations per run, all threads together.
    #[arg(long, default_value_t = 4_000_000)]
    pub ops: u64,
    /// Initial table capacity as a power of two (conc-map-bench uses 25).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(6..=28))]
    pub capacity_log2: u8,
    /// Runs per figure; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Only these variants (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub variants: Vec<String>,
}

/// Options of `delete-cost`.
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// Deletes per round.
    #[arg(long, default_value_t = 100_000)]
    pub ops: u64,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

/// Options of `memory`.
#[derive(Debug, Clone, Args)]
pub struct MemoryArgs {
    /// Entries per map.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// Only these variants (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub variants: Vec<String>,
}

/// Options of `server`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Length of each phase (one op against one server setting).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// The safemap server binary (default: $SAFEMAP_BIN, next to this binary, or on the PATH).
    #[arg(long)]
    pub safemap_bin: Option<PathBuf>,
    /// Do not run apt-get when etcd or redis is missing.
    #[arg(long)]
    pub no_install: bool,
    /// Only these servers (comma-separated: safemap, etcd, redis).
    #[arg(long, value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Worker threads of the load generator's tokio runtime.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
}

/// Options of `all`.
#[derive(Debug, Clone, Args)]
pub struct AllArgs {
    /// Tiny sizes everywhere (a smoke run of a few seconds).
    #[arg(long)]
    pub quick: bool,
    /// Skip these workloads (comma-separated: incident, mixes, delete-cost, memory, server).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Length of each server phase.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub server_duration: Duration,
    /// The safemap server binary.
    #[arg(long)]
    pub safemap_bin: Option<PathBuf>,
}

/// Parse `3s`, `500ms`, `1.5s`, `2m`.
///
/// # Errors
///
/// Anything else, or a negative or absurd (over a day) duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        return Err(format!("{s:?}: give a unit, e.g. 3s, 500ms or 2m"));
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration"))?;
    let secs = v * scale;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s:?}: between 0 and 24 hours, please"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Prints rows as JSON lines or readable lines.
struct Out {
    json: bool,
}

impl Out {
    fn row<T: Serialize>(&self, workload: &str, row: &T) {
        let line = serde_json::to_string(row).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        if self.json {
            println!("{line}");
        } else {
            println!("{workload:>11}  {}", readable(&line));
        }
    }
}

/// `key=value` pairs of a JSON object line, in the line's field order,
/// floats with at most 3 decimals.
fn readable(line: &str) -> String {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_string();
    };
    let mut fields: Vec<_> = obj.iter().collect();
    fields.sort_by_key(|(k, _)| line.find(&format!("\"{k}\":")).unwrap_or(usize::MAX));
    fields
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            serde_json::Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(0.0);
                if f.abs() >= 1000.0 {
                    format!("{k}={f:.0}")
                } else {
                    format!("{k}={f:.3}")
                }
            }
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn incident_cfg(a: &IncidentArgs) -> incident::Config {
    let d = incident::Config::defaults();
    incident::Config {
        readers: a.readers.unwrap_or(d.readers).max(1),
        keys: a.keys.max(1),
        duration: a.duration,
        invalidate_pct: a.invalidate_pct,
        pause: Duration::from_millis(a.pause_ms),
        only: a.variants.clone(),
        repeats: a.repeats.max(1),
    }
}

fn describe_incident(c: &incident::Config) -> String {
    format!(
        "{} keys (u64 → u64), {} reader thread(s), one refresher bringing {} % of the keys to a new value every {} ms; \
         {:?} measured per run after a warm-up of {} reads per reader; {} rounds with the variants interleaved, each row \
         the run with the median read throughput. Reading the clock twice costs {} ns here (the floor under every latency figure).",
        c.keys,
        c.readers,
        c.invalidate_pct,
        c.pause.as_millis(),
        c.duration,
        incident::WARMUP_READS,
        c.repeats,
        incident::clock_overhead_ns()
    )
}

fn run_incident(a: &IncidentArgs, p: &Progress, out: &Out, r: &mut Results) {
    let cfg = incident_cfg(a);
    r.incident_config = Some(describe_incident(&cfg));
    r.incident = incident::run(&cfg, p, |row| out.row("incident", row));
}

fn run_mixes(a: &MixesArgs, p: &Progress, out: &Out, r: &mut Results) {
    let cfg = mixes::Config {
        threads: a.threads.iter().copied().filter(|t| *t > 0).collect(),
        ops: a.ops.max(100),
        capacity_log2: a.capacity_log2,
        repeats: a.repeats.max(1),
        only: a.variants.clone(),
    };
    r.mixes_config = Some(format!(
        "Initial capacity 2^{} (conc-map-bench: 2^25), {} operations per run, threads {:?}, median of {} runs; u64 keys from bustle, value = key.",
        cfg.capacity_log2, cfg.ops, cfg.threads, cfg.repeats
    ));
    r.mixes = mixes::run(&cfg, p, |row| out.row("mixes", row));
}

/// The helper binary that counts allocations, next to this one.
fn alloc_helper() -> Option<PathBuf> {
    let p = std::env::current_exe()
        .ok()?
        .parent()?
        .join("safemap-bench-alloc");
    p.is_file().then_some(p)
}

fn run_delete(a: &DeleteArgs, p: &Progress, out: &Out, r: &mut Results) {
    let cfg = delete_cost::Config {
        ops: a.ops.max(1),
        repeats: a.repeats.max(1),
    };
    r.delete_cost_config = Some(format!(
        "{} deletes per round (every key once, in key order, from a map of that many entries), median of {} rounds after a warm-up round.",
        cfg.ops, cfg.repeats
    ));
    if let Some(helper) = alloc_helper() {
        let run = std::process::Command::new(&helper)
            .args([
                "--ops",
                &cfg.ops.to_string(),
                "--repeats",
                &cfg.repeats.to_string(),
            ])
            .output();
        match run {
            Ok(o) if o.status.success() => {
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    if let Ok(row) = serde_json::from_str::<delete_cost::Row>(line) {
                        out.row("delete-cost", &row);
                        r.delete_cost.push(row);
                    }
                }
                return;
            }
            Ok(o) => r.skipped.push(format!(
                "delete-cost: the allocation-counting helper failed ({}): {}; ran without byte counts",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => r.skipped.push(format!("delete-cost: cannot run {}: {e}; ran without byte counts", helper.display())),
        }
    } else {
        r.skipped.push("delete-cost: the safemap-bench-alloc helper is not next to this binary; bytes per op not counted".into());
    }
    r.delete_cost = delete_cost::run(&cfg, &delete_cost::NotCounted, p, |row| {
        out.row("delete-cost", row)
    });
}

fn run_memory(a: &MemoryArgs, p: &Progress, out: &Out, r: &mut Results) {
    let cfg = memory::Config {
        entries: a.entries.max(10),
        only: a.variants.clone(),
    };
    r.memory_config = Some(format!(
        "{} entries inserted one at a time (no presizing), then every key not divisible by 10 removed one at a time.",
        cfg.entries
    ));
    match memory::run(&cfg, p, |row| out.row("memory", row)) {
        Ok(rows) => r.memory = rows,
        Err(e) => r.skipped.push(format!("memory: {e}")),
    }
}

fn run_server(a: &ServerArgs, p: &Progress, out: &Out, r: &mut Results) {
    let cfg = server::Config {
        connections: a.connections.max(1),
        duration: a.duration,
        safemap_bin: a.safemap_bin.clone(),
        install: !a.no_install,
        only: a.servers.clone(),
        client_threads: a.client_threads.max(1),
    };
    r.server_config = Some(format!(
        "{} concurrent connections (closed loop, {} tokio worker thread(s) in the benchmark process), {:?} per phase \
         (first tenth, at most 1 s, is warm-up), phases put → get → delete. Durable: safemap's default (fsync'd writes), \
         etcd's default, redis `appendonly yes` + `appendfsync always`; relaxed: data directory on tmpfs (fsync costs nothing), \
         redis `appendfsync everysec`. Puts are unconditional (redis SET, etcd put, safemap PUT); etcd through its v3 JSON \
         gateway, safemap through its HTTP API with a bearer token and an `X-Reason` on deletes. Servers and client share \
         the machine's cores.",
        cfg.connections, cfg.client_threads, cfg.duration
    ));
    let (rows, skipped) = server::run(&cfg, p, |row| out.row("server", row));
    let versions = server::versions(&cfg);
    if let Some(c) = r.server_config.as_mut()
        && !versions.is_empty()
    {
        c.push_str(&format!(" Versions: {}.", versions.join("; ")));
    }
    r.server = rows;
    r.skipped.extend(skipped);
}

/// Run the parsed command line.
///
/// # Errors
///
/// A workload that cannot run at all, or a report that cannot be written.
pub fn run(cli: Cli) -> Result<(), String> {
    let progress = if cli.quiet {
        Progress::hidden()
    } else {
        Progress::stderr()
    };
    let out = Out { json: cli.json };
    let mut results = Results::default();
    match &cli.command {
        Cmd::MemoryChild { variant, entries } => {
            let row = memory::child(variant, *entries)?;
            println!(
                "{}",
                serde_json::to_string(&row).map_err(|e| e.to_string())?
            );
            return Ok(());
        }
        Cmd::Incident(a) => run_incident(a, &progress, &out, &mut results),
        Cmd::Mixes(a) => run_mixes(a, &progress, &out, &mut results),
        Cmd::DeleteCost(a) => run_delete(a, &progress, &out, &mut results),
        Cmd::Memory(a) => run_memory(a, &progress, &out, &mut results),
        Cmd::Server(a) => run_server(a, &progress, &out, &mut results),
        Cmd::All(a) => run_all(a, &progress, &out, &mut results),
        Cmd::Render { results: file } => {
            let dir = cli
                .report
                .as_deref()
                .ok_or("render needs --report DIR (where BENCHMARKS.md goes)")?;
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let (machine, results): (Machine, Results) = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not a results file: {e}", file.display()))?;
            let target = Target::new(dir, cli.charts.as_deref(), cli.notes.as_deref());
            let path = report::write(&results, &machine, &target)?;
            eprintln!("report written to {}", path.display());
            return Ok(());
        }
    }
    for s in &results.skipped {
        eprintln!("skipped: {s}");
    }
    if let Some(dir) = &cli.report {
        let machine = Machine::detect();
        let target = Target::new(dir, cli.charts.as_deref(), cli.notes.as_deref());
        let path = report::write(&results, &machine, &target)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

fn run_all(a: &AllArgs, p: &Progress, out: &Out, r: &mut Results) {
    let skip = |w: &str| a.skip.iter().any(|s| s == w);
    let q = a.quick;
    if !skip("incident") {
        let args = IncidentArgs {
            readers: None,
            keys: if q { 2_000 } else { 100_000 },
            duration: if q {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(3)
            },
            invalidate_pct: 30,
            pause_ms: 10,
            repeats: if q { 1 } else { 3 },
            variants: Vec::new(),
        };
        run_incident(&args, p, out, r);
    }
    if !skip("mixes") {
        let args = MixesArgs {
            threads: vec![1, 2],
            ops: if q { 20_000 } else { 4_000_000 },
            capacity_log2: if q { 12 } else { 20 },
            repeats: if q { 1 } else { 3 },
            variants: Vec::new(),
        };
        run_mixes(&args, p, out, r);
    }
    if !skip("delete-cost") {
        let args = DeleteArgs {
            ops: if q { 1_000 } else { 100_000 },
            repeats: if q { 1 } else { 5 },
        };
        run_delete(&args, p, out, r);
    }
    if !skip("memory") {
        let args = MemoryArgs {
            entries: if q { 10_000 } else { 1_000_000 },
            variants: Vec::new(),
        };
        run_memory(&args, p, out, r);
    }
    if !skip("server") {
        let args = ServerArgs {
            connections: if q { 4 } else { 32 },
            duration: if q {
                Duration::from_millis(500)
            } else {
                a.server_duration
            },
            safemap_bin: a.safemap_bin.clone(),
            no_install: false,
            servers: Vec::new(),
            client_threads: 1,
        };
        run_server(&args, p, out, r);
    } else {
        r.skipped
            .push("server: skipped on request (--skip server)".into());
    }
}

/// Whether `path` exists (for callers that check a report directory).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn readable_lines_are_key_value_pairs() {
        let v =
            r#"{"variant":"papaya","threads":2,"ops_per_sec":41234567.891,"miss_rate":0.01234}"#;
        assert_eq!(
            readable(v),
            "variant=papaya threads=2 ops_per_sec=41234568 miss_rate=0.012"
        );
    }

    #[test]
    fn durations_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("3").unwrap_err().contains("unit"));
        assert!(parse_duration("xs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn the_spec_command_lines_parse() {
        let c = Cli::try_parse_from([
            "safemap-bench",
            "incident",
            "--readers",
            "2",
            "--keys",
            "1000",
            "--duration",
            "3s",
            "--invalidate-pct",
            "30",
            "--pause-ms",
            "10",
            "--json",
        ])
        .unwrap();
        assert!(c.json);
        assert!(
            matches!(c.command, Cmd::Incident(ref a) if a.readers == Some(2) && a.keys == 1000)
        );
        let c = Cli::try_parse_from([
            "safemap-bench",
            "mixes",
            "--threads",
            "1,2",
            "--ops",
            "1000",
            "--json",
        ])
        .unwrap();
        assert!(matches!(c.command, Cmd::Mixes(ref a) if a.threads == vec![1, 2]));
        assert!(Cli::try_parse_from(["safemap-bench", "memory", "--json"]).is_ok());
        assert!(
            Cli::try_parse_from([
                "safemap-bench",
                "server",
                "--connections",
                "32",
                "--duration",
                "10s",
                "--json"
            ])
            .is_ok()
        );
        assert!(Cli::try_parse_from(["safemap-bench", "all", "--report", "."]).is_ok());
        assert!(
            Cli::try_parse_from(["safemap-bench", "incident", "--invalidate-pct", "0"]).is_err()
        );
    }

    #[test]
    fn a_report_renders_again_from_its_results_file() {
        let dir = std::env::temp_dir().join(format!("safemap-bench-render-{}", std::process::id()));
        let mut r = Results::default();
        r.memory.push(memory::Row {
            variant: "safemap".into(),
            entries: 10,
            bytes_per_entry: 50.0,
            after_delete_90_bytes: 100,
        });
        let first = report::write(&r, &Machine::detect(), &Target::new(&dir, None, None)).unwrap();
        std::fs::remove_file(&first).unwrap();
        let notes = dir.join("notes.md");
        std::fs::write(&notes, "## Notes\n\nhand-written").unwrap();
        let results = dir.join("bench-charts/results.json");
        let cli = Cli::try_parse_from([
            "safemap-bench",
            "render",
            "--results",
            results.to_str().unwrap(),
            "--report",
            dir.to_str().unwrap(),
            "--notes",
            notes.to_str().unwrap(),
        ])
        .unwrap();
        run(cli).unwrap();
        let md = std::fs::read_to_string(dir.join("BENCHMARKS.md")).unwrap();
        assert!(
            md.contains("| safemap |") && md.contains("hand-written"),
            "{md}"
        );
        let bad = Cli::try_parse_from([
            "safemap-bench",
            "render",
            "--results",
            notes.to_str().unwrap(),
            "--report",
            "/tmp",
        ])
        .unwrap();
        assert!(run(bad).unwrap_err().contains("not a results file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
