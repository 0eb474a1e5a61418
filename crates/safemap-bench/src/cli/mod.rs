//! Command line: one subcommand per workload, `all`, and the hidden
//! `__memory-child` the memory workload re-executes this binary with.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

mod args;

pub use args::{
    AllArgs, Cli, Cmd, DeleteArgs, IncidentArgs, MemoryArgs, MixesArgs, ReferencesArgs, ServerArgs,
    parse_duration,
};

use crate::machine::Machine;
use crate::progress::Progress;
use crate::report::{self, Results, Target};
use crate::workloads::{delete_cost, incident, memory, mixes, references, server};
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

fn run_references(a: &ReferencesArgs, p: &Progress, out: &Out, r: &mut Results) {
    let cfg = references::Config {
        ops: a.ops.max(1),
        repeats: a.repeats.max(1),
    };
    r.references_config = Some(format!(
        "{} keys per map, median of {} rounds after a warm-up round.",
        cfg.ops, cfg.repeats
    ));
    match references::run(&cfg, p, |row| out.row("references", row)) {
        Ok(rows) => r.references = rows,
        Err(e) => r.skipped.push(format!("references: {e}")),
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
         gateway, safemap through its HTTP API with a bearer token and an `X-Reason` on deletes. Cluster rows (durable): \
         `safemap-cluster` is 2 safemap servers (`--store etcd`) over a 3-member etcd cluster, the connections split across \
         the two servers; `etcd-cluster` is that 3-member cluster alone, the connections split across its members. Servers \
         and client share the machine's cores.",
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
        Cmd::References(a) => run_references(a, &progress, &out, &mut results),
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
    if !skip("references") {
        let args = ReferencesArgs {
            ops: if q { 1_000 } else { 100_000 },
            repeats: if q { 1 } else { 5 },
        };
        run_references(&args, p, out, r);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

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
    fn a_report_renders_again_from_its_results_file() {
        let dir = std::env::temp_dir().join(format!("safemap-bench-render-{}", std::process::id()));
        let mut r = Results::default();
        r.memory.push(memory::Row {
            variant: "safemap".into(),
            entries: 10,
            bytes_per_entry: 50.0,
            after_delete_90_bytes: 100,
            fresh_tenth_bytes: Some(50),
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
        // 100 bytes kept after the deletes over a fresh tenth of 50 bytes.
        assert!(md.contains("| 2.0× |"), "{md}");
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
