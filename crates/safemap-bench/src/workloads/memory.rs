//! Memory: resident bytes per entry at 1M u64 → u64 entries, per peer, each
//! in a fresh child process (this binary re-executed with the hidden
//! `__memory-child` subcommand), so that no peer inherits another's heap.
//! Then 90 % of the entries are removed, the peer does what its users would
//! to give memory back (`shrink_to_fit`, waiting for reclamation), and the
//! resident growth is measured again. RSS is read from `/proc/self/statm`
//! (Linux only; elsewhere the workload reports that it cannot run).

use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::peers::{self, MemoryMap};
use crate::progress::Progress;

/// Page size assumed when converting `/proc/self/statm` pages to bytes
/// (4 KiB on the x86-64 and most arm64 Linux kernels this runs on).
pub const PAGE_SIZE: u64 = 4096;

/// Parameters of the memory workload.
#[derive(Debug, Clone)]
pub struct Config {
    /// Entries per map.
    pub entries: u64,
    /// Only run variants whose name is in this list (all when empty).
    pub only: Vec<String>,
}

impl Config {
    /// 1M entries, every variant.
    pub fn defaults() -> Self {
        Self {
            entries: 1_000_000,
            only: Vec::new(),
        }
    }
}

/// One JSON line of the memory workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// Peer variant.
    pub variant: String,
    /// Entries inserted.
    pub entries: u64,
    /// Resident growth per entry after the inserts.
    pub bytes_per_entry: f64,
    /// Resident growth (bytes, over the empty process) after removing 90 %
    /// and reclaiming.
    pub after_delete_90_bytes: u64,
    /// Resident growth of a fresh map of the tenth that is kept (built in a
    /// child of its own): what `after_delete_90_bytes` would ideally be.
    /// Absent from rows written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_tenth_bytes: Option<u64>,
}

impl Row {
    /// Resident size after removing 90 % over a fresh map of the kept tenth.
    pub fn kept_over_fresh_tenth(&self) -> Option<f64> {
        let fresh = self.fresh_tenth_bytes?;
        (fresh > 0).then(|| self.after_delete_90_bytes as f64 / fresh as f64)
    }
}

type Measure = fn(u64) -> Result<Row, String>;

/// Every variant in report order, with what it does to give memory back.
pub fn variants() -> Vec<(&'static str, &'static str, Measure)> {
    fn entry<M: MemoryMap>() -> (&'static str, &'static str, Measure) {
        (M::VARIANT, M::RECLAIM, measure::<M>)
    }
    vec![
        entry::<peers::safemap::Memory>(),
        entry::<peers::safemap::BareMemory>(),
        entry::<peers::safemap::JournalMemory>(),
        entry::<peers::dashmap::Memory>(),
        entry::<peers::papaya::Memory>(),
        entry::<peers::scc::Memory>(),
        entry::<peers::rwlock::Memory>(),
        entry::<peers::arcswap::Memory>(),
        entry::<peers::moka::Memory>(),
        entry::<peers::hashbrown::Memory>(),
    ]
}

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> Result<u64, String> {
    let statm = std::fs::read_to_string("/proc/self/statm")
        .map_err(|e| format!("cannot read /proc/self/statm: {e}"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| format!("unexpected /proc/self/statm content: {statm:?}"))?;
    Ok(pages * PAGE_SIZE)
}

/// Build, measure, delete 90 %, reclaim, measure: runs in the child.
pub fn measure<M: MemoryMap>(n: u64) -> Result<Row, String> {
    let base = rss_bytes()?;
    let mut map = M::build(n);
    let full = rss_bytes()?.saturating_sub(base);
    if map.len() as u64 != n {
        return Err(format!(
            "{}: built {} entries, expected {n}",
            M::VARIANT,
            map.len()
        ));
    }
    map.remove_where(n, &|k| k % 10 != 0);
    map.reclaim();
    std::thread::sleep(Duration::from_millis(50));
    let after = rss_bytes()?.saturating_sub(base);
    let left = map.len() as u64;
    if left != n.div_ceil(10) {
        return Err(format!(
            "{}: {left} entries left after removing 90 %, expected {}",
            M::VARIANT,
            n.div_ceil(10)
        ));
    }
    std::hint::black_box(&map);
    Ok(Row {
        variant: M::VARIANT.to_string(),
        entries: n,
        bytes_per_entry: if n == 0 { 0.0 } else { full as f64 / n as f64 },
        after_delete_90_bytes: after,
        fresh_tenth_bytes: None,
    })
}

/// The child's side: measure `variant` and return its row.
pub fn child(variant: &str, entries: u64) -> Result<Row, String> {
    let (_, _, measure) = variants()
        .into_iter()
        .find(|(name, _, _)| *name == variant)
        .ok_or_else(|| format!("unknown memory variant {variant:?}"))?;
    measure(entries)
}

/// One child process measuring `variant` with `entries` entries.
fn child_row(exe: &std::path::Path, variant: &str, entries: u64) -> Result<Row, String> {
    let out = Command::new(exe)
        .args([
            "__memory-child",
            "--variant",
            variant,
            "--entries",
            &entries.to_string(),
        ])
        .output()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last().map(serde_json::from_str::<Row>) {
        Some(Ok(row)) if out.status.success() => Ok(row),
        _ => Err(format!(
            "failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// The parent's side: per variant, one fresh child process for the full map
/// and one for a fresh map of the tenth that the full one keeps. A variant
/// whose child fails is reported on stderr and left out.
pub fn run(
    cfg: &Config,
    progress: &Progress,
    mut emit: impl FnMut(&Row),
) -> Result<Vec<Row>, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this binary to re-run it: {e}"))?;
    let selected: Vec<_> = variants()
        .into_iter()
        .filter(|(name, _, _)| cfg.only.is_empty() || cfg.only.iter().any(|o| o == name))
        .collect();
    let bar = progress.bar("memory", selected.len() as u64);
    let mut rows = Vec::new();
    for (name, _, _) in selected {
        bar.set_message(name);
        let tenth = cfg.entries.div_ceil(10);
        let fresh = child_row(&exe, name, tenth)
            .map(|r| (r.bytes_per_entry * r.entries as f64).round() as u64);
        match child_row(&exe, name, cfg.entries) {
            Ok(mut row) => {
                match fresh {
                    Ok(bytes) => row.fresh_tenth_bytes = Some(bytes),
                    Err(e) => bar.println(format!("memory: {name}, fresh tenth: {e}")),
                }
                emit(&row);
                rows.push(row);
            }
            Err(e) => bar.println(format!("memory: {name}: {e}")),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_readable_and_positive() {
        assert!(rss_bytes().unwrap() > 0);
    }

    #[test]
    fn measuring_in_process_checks_counts() {
        let row = measure::<peers::hashbrown::Memory>(10_000).unwrap();
        assert_eq!(row.variant, "hashbrown");
        assert_eq!(row.entries, 10_000);
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 4);
    }

    #[test]
    fn unknown_variant_is_an_error() {
        assert!(
            child("btree", 10)
                .unwrap_err()
                .contains("unknown memory variant")
        );
    }
}
