//! Progress bars on stderr (indicatif), one per workload. Hidden when
//! stderr is not a terminal or when asked to be quiet, so that JSON on
//! stdout and logs in CI stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Makes one progress bar per workload.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    /// Bars drawn on stderr (when it is a terminal).
    pub fn stderr() -> Self {
        Self { visible: true }
    }

    /// No bars at all.
    pub fn hidden() -> Self {
        Self { visible: false }
    }

    /// A bar named `workload` with `len` steps.
    pub fn bar(&self, workload: &str, len: u64) -> ProgressBar {
        let target = if self.visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        let style = ProgressStyle::with_template(
            "{prefix:>12} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(workload.to_string());
        bar
    }
}
