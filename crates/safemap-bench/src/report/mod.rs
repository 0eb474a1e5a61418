//! The report: every workload's rows, the machine, and the Markdown and SVG
//! charts made from them (`--report DIR`).

pub mod charts;
pub mod markdown;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::workloads::{delete_cost, incident, memory, mixes, references, server};

/// Everything one run measured, plus what it skipped and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// Incident rows.
    pub incident: Vec<incident::Row>,
    /// Parameters of the incident run, in words.
    pub incident_config: Option<String>,
    /// Mixes rows.
    pub mixes: Vec<mixes::Row>,
    /// Parameters of the mixes run, in words.
    pub mixes_config: Option<String>,
    /// Delete-cost rows.
    pub delete_cost: Vec<delete_cost::Row>,
    /// Parameters of the delete-cost run, in words.
    pub delete_cost_config: Option<String>,
    /// Memory rows.
    pub memory: Vec<memory::Row>,
    /// Parameters of the memory run, in words.
    pub memory_config: Option<String>,
    /// Reference-cost rows (absent from results written before it existed).
    #[serde(default)]
    pub references: Vec<references::Row>,
    /// Parameters of the reference-cost run, in words.
    #[serde(default)]
    pub references_config: Option<String>,
    /// Server rows.
    pub server: Vec<server::Row>,
    /// Parameters of the server run, in words.
    pub server_config: Option<String>,
    /// Parts that could not run, each with the reason.
    pub skipped: Vec<String>,
}

/// Where a report goes: the Markdown file and the chart directory.
#[derive(Debug, Clone)]
pub struct Target {
    /// The report directory (`BENCHMARKS.md` is written here).
    pub dir: PathBuf,
    /// Where the SVG charts go (default `DIR/bench-charts`).
    pub charts: PathBuf,
    /// A Markdown file whose text closes the report (the engineer's notes).
    pub notes: Option<PathBuf>,
}

impl Target {
    /// A target writing `DIR/BENCHMARKS.md`, charts in `charts` or `DIR/bench-charts`.
    pub fn new(dir: &Path, charts: Option<&Path>, notes: Option<&Path>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            charts: charts.map_or_else(|| dir.join("bench-charts"), Path::to_path_buf),
            notes: notes.map(Path::to_path_buf),
        }
    }

    /// How the Markdown file links to a chart: relative to the report directory
    /// when the chart directory is inside it, otherwise as given.
    pub fn chart_link(&self, file: &str) -> String {
        let rel = self
            .charts
            .strip_prefix(&self.dir)
            .map_or_else(|_| self.charts.clone(), Path::to_path_buf);
        let rel = rel.to_string_lossy().trim_start_matches("./").to_string();
        if rel.is_empty() {
            file.to_string()
        } else {
            format!("{rel}/{file}")
        }
    }
}

/// Write `BENCHMARKS.md` and the charts; returns the Markdown path.
///
/// # Errors
///
/// A directory or file that cannot be written, or a chart that cannot be drawn.
pub fn write(results: &Results, machine: &Machine, target: &Target) -> Result<PathBuf, String> {
    std::fs::create_dir_all(&target.dir)
        .map_err(|e| format!("cannot create {}: {e}", target.dir.display()))?;
    std::fs::create_dir_all(&target.charts)
        .map_err(|e| format!("cannot create {}: {e}", target.charts.display()))?;
    // The raw figures first, so that a failure below loses nothing: `render` can redo the rest.
    let raw = serde_json::to_string_pretty(&(machine, results)).map_err(|e| e.to_string())?;
    let raw_path = target.charts.join("results.json");
    std::fs::write(&raw_path, raw)
        .map_err(|e| format!("cannot write {}: {e}", raw_path.display()))?;
    let charts = charts::draw_all(results, &target.charts)?;
    let notes = match &target.notes {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read notes {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let md = markdown::render(results, machine, &charts, target, notes.as_deref());
    let path = target.dir.join("BENCHMARKS.md");
    std::fs::write(&path, md).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// `value / base`, formatted as a ratio (`1.00×`), or `–` without a base.
pub fn ratio(value: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 && value.is_finite() => format!("{:.2}×", value / b),
        _ => "–".to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chart_links_are_relative_to_the_report() {
        let t = Target::new(
            Path::new("."),
            Some(Path::new("./crates/safemap-bench/charts")),
            None,
        );
        assert_eq!(t.chart_link("a.svg"), "crates/safemap-bench/charts/a.svg");
        let t = Target::new(Path::new("/tmp/r"), None, None);
        assert_eq!(t.chart_link("a.svg"), "bench-charts/a.svg");
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(2.0, Some(4.0)), "0.50×");
        assert_eq!(ratio(2.0, None), "–");
        assert_eq!(ratio(2.0, Some(0.0)), "–");
    }
}
