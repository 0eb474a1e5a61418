//! The delete breakers' windows, rebuilt at start from the newest audit rows.
//!
//! A map's breaker counts its successful single-key deletes (op `delete`, no
//! `plan_id`) of the last `per_seconds`; it refuses once `max_deletes` of them
//! are in the window. Recovery seeds it with those deletes so a restart never
//! resets it (STORAGE.md, "Recovery at start").
//!
//! Invariants that bound the scan (rows are read newest first):
//! - audit ids follow the order of the writes and each record's `at_ms` is
//!   taken under the library's write lock, so `at_ms` does not decrease with
//!   the id (but for a wall clock stepped back, see [`BreakerScan::done`]):
//!   once a row is older than the start of the longest window, no older row
//!   can be inside any window;
//! - a breaker only needs its newest `max_deletes` deletes inside its window
//!   (it is open exactly when it holds that many), so a map stops collecting
//!   at `max_deletes`, and the scan stops once every map has stopped.
//!
//! So at most the rows written within the longest breaker window are examined,
//! and at most `max_deletes` times per map are kept, whatever the retention.

use std::collections::HashMap;
use std::time::Duration;

use super::codec::StoredOp;

/// One map's breaker while its window is being rebuilt.
#[derive(Debug)]
struct Window {
    max: usize,
    /// Deletes at or after this time (ms since the epoch) count.
    start_ms: u64,
    /// Their times, newest first, at most `max`.
    times: Vec<u64>,
}

/// Collects the deletes inside each breaker's window, newest row first.
#[derive(Debug)]
pub(crate) struct BreakerScan {
    windows: HashMap<String, Window>,
    /// The start of the longest window: no row older than it is needed.
    oldest_start_ms: u64,
    /// Maps that have not yet collected `max` deletes.
    open: usize,
}

impl BreakerScan {
    /// A scan for `breakers` (map → (max deletes, window)) as of `now_ms`.
    pub fn new(breakers: &[(String, usize, Duration)], now_ms: u64) -> BreakerScan {
        let mut windows = HashMap::new();
        for (map, max, window) in breakers {
            let start_ms = now_ms.saturating_sub(window.as_millis() as u64);
            windows.insert(
                map.clone(),
                Window {
                    max: *max,
                    start_ms,
                    times: Vec::new(),
                },
            );
        }
        let oldest_start_ms = windows
            .values()
            .map(|w| w.start_ms)
            .min()
            .unwrap_or(u64::MAX);
        let open = windows.values().filter(|w| w.max > 0).count();
        BreakerScan {
            windows,
            oldest_start_ms,
            open,
        }
    }

    /// Whether no older row can matter: every breaker is full, or `at_ms`
    /// (the time of the row just offered) is before every window. A wall clock
    /// stepped back by more than a window could hide older deletes behind such
    /// a row; they are then not counted (the breaker errs towards admitting).
    pub fn done(&self, at_ms: u64) -> bool {
        self.open == 0 || at_ms < self.oldest_start_ms
    }

    /// Whether nothing is wanted at all (no breaker, or all full).
    pub fn satisfied(&self) -> bool {
        self.open == 0
    }

    /// Offers one row (newer rows first).
    pub fn offer(&mut self, map: &str, op: StoredOp, planned: bool, at_ms: u64) {
        if op != StoredOp::Delete || planned {
            return;
        }
        let Some(w) = self.windows.get_mut(map) else {
            return;
        };
        if at_ms < w.start_ms || w.times.len() >= w.max {
            return;
        }
        w.times.push(at_ms);
        if w.times.len() == w.max {
            self.open -= 1;
        }
    }

    /// The collected times by map (maps without any are left out).
    pub fn into_seeds(self) -> HashMap<String, Vec<u64>> {
        self.windows
            .into_iter()
            .filter(|(_, w)| !w.times.is_empty())
            .map(|(m, w)| (m, w.times))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keeps_the_newest_max_inside_the_window_and_stops() {
        let now = 1_000_000;
        let mut s = BreakerScan::new(&[("m".into(), 2, Duration::from_secs(60))], now);
        assert!(!s.done(now));
        s.offer("m", StoredOp::Put, false, now - 1);
        s.offer("m", StoredOp::Delete, true, now - 2);
        s.offer("other", StoredOp::Delete, false, now - 3);
        s.offer("m", StoredOp::Delete, false, now - 4);
        assert!(!s.done(now - 4));
        s.offer("m", StoredOp::Delete, false, now - 5);
        assert!(s.done(now - 5));
        assert_eq!(s.into_seeds()["m"], vec![now - 4, now - 5]);
    }

    #[test]
    fn a_row_before_every_window_ends_the_scan() {
        let now = 1_000_000;
        let s = BreakerScan::new(&[("m".into(), 5, Duration::from_secs(60))], now);
        assert!(!s.done(now - 60_000));
        assert!(s.done(now - 60_001));
        assert!(BreakerScan::new(&[], now).satisfied());
    }
}
