//! The command line's shape: subcommands and their options (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

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
    /// What a declared reference costs the maps around it (ns per put, get, remove).
    References(ReferencesArgs),
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

/// Options of `references`.
#[derive(Debug, Clone, Args)]
pub struct ReferencesArgs {
    /// Keys per map.
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
    /// Only these servers (comma-separated: safemap, etcd, redis,
    /// safemap-cluster, etcd-cluster).
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
    /// Skip these workloads (comma-separated: incident, mixes, delete-cost, memory, references, server).
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
