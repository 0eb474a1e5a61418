//! The machine and run a report was measured on: cores, CPU model, memory,
//! kernel, date, toolchain, the versions of every peer crate, and the command.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Crates whose versions the report records (from the workspace `Cargo.lock`).
pub const RECORDED_CRATES: [&str; 10] = [
    "papaya",
    "dashmap",
    "scc",
    "moka",
    "arc-swap",
    "hashbrown",
    "bustle",
    "foldhash",
    "plotters",
    "tokio",
];

/// The workspace lock file, embedded at build time so the versions printed
/// are the ones this binary was built with.
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");

/// A description of the machine and the run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// Logical cores.
    pub cores: usize,
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu: String,
    /// Total memory, from `/proc/meminfo`.
    pub memory: String,
    /// Kernel release.
    pub kernel: String,
    /// UTC date and time of the run, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// `rustc --version`, when a toolchain is on the PATH.
    pub rustc: String,
    /// (crate, version) of each peer and tool crate.
    pub versions: Vec<(String, String)>,
    /// The command line that produced the figures.
    pub command: String,
    /// `release` or `debug`: how this binary was compiled.
    pub profile: String,
    /// The git commit of the work tree the run was made from (short hash,
    /// `+dirty` when it had uncommitted changes), or `unknown`.
    pub commit: String,
}

impl Machine {
    /// Describe this machine and this run.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let args: Vec<String> = std::env::args().skip(1).collect();
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            memory: field(&meminfo, "MemTotal")
                .and_then(|v| v.trim_end_matches(" kB").trim().parse::<u64>().ok())
                .map_or_else(
                    || "unknown".into(),
                    |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
                ),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
            date: utc_date(SystemTime::now()),
            rustc: Command::new("rustc")
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map_or_else(|| "unknown".into(), |s| s.trim().to_string()),
            versions: RECORDED_CRATES
                .iter()
                .map(|c| {
                    (
                        c.to_string(),
                        locked_version(CARGO_LOCK, c).unwrap_or_else(|| "?".into()),
                    )
                })
                .collect(),
            command: format!("safemap-bench {}", args.join(" ")),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
            commit: git_commit().unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// `git rev-parse --short HEAD` of the current directory, `+dirty` if the
/// safemap crates have uncommitted changes.
fn git_commit() -> Option<String> {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
    };
    let head = run(&["rev-parse", "--short", "HEAD"])?.trim().to_string();
    let dirty = run(&[
        "status",
        "--porcelain",
        "--",
        "crates/safemap",
        "crates/safemap-bench",
    ])
    .is_some_and(|s| !s.trim().is_empty());
    Some(if dirty { format!("{head}+dirty") } else { head })
}

/// The value of the first `key : value` line of a `/proc` file.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
    })
}

/// The version of `name` in a `Cargo.lock` (the highest, if several).
pub fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut found: Vec<String> = Vec::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"")
            && let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
        {
            found.push(v.trim_end_matches('"').to_string());
        }
    }
    found.into_iter().max_by_key(|v| {
        v.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    })
}

/// `YYYY-MM-DD HH:MM UTC` for a time (days-to-civil conversion, proleptic Gregorian).
pub fn utc_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (hh, mm) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_convert() {
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        // 2024-02-29 12:34 UTC
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_secs(1_709_210_040)),
            "2024-02-29 12:34 UTC"
        );
    }

    #[test]
    fn lock_versions_are_found() {
        let lock = "[[package]]\nname = \"papaya\"\nversion = \"0.2.5\"\n\n[[package]]\nname = \"hashbrown\"\nversion = \"0.15.2\"\n[[package]]\nname = \"hashbrown\"\nversion = \"0.16.1\"\n";
        assert_eq!(locked_version(lock, "papaya").as_deref(), Some("0.2.5"));
        assert_eq!(locked_version(lock, "hashbrown").as_deref(), Some("0.16.1"));
        assert_eq!(locked_version(lock, "scc"), None);
        assert!(Machine::detect().cores >= 1);
    }
}
