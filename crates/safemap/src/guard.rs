//! What stands between a removal request and a removal: deny rules and the
//! delete breaker. Both are consulted under the key's write lock, so what they
//! judge is exactly what would be removed (no check-then-act gap).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::sync::Mutex;

type Predicate<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Named deny rules: a removal of a value that any rule matches is vetoed.
pub(crate) struct DenyRules<K, V> {
    rules: Vec<(String, Predicate<K, V>, AtomicU64)>,
}

impl<K, V> DenyRules<K, V> {
    pub(crate) fn new() -> Self {
        DenyRules { rules: Vec::new() }
    }

    pub(crate) fn add(&mut self, name: String, rule: Predicate<K, V>) {
        self.rules.push((name, rule, AtomicU64::new(0)));
    }

    /// The name of the first rule that matches, counting the veto.
    pub(crate) fn veto(&self, key: &K, value: &V) -> Option<&str> {
        let (name, _, vetoes) = self.rules.iter().find(|(_, rule, _)| rule(key, value))?;
        // Relaxed: a statistic; it publishes nothing.
        vetoes.fetch_add(1, Ordering::Relaxed);
        Some(name)
    }

    /// The first rule that matches, without counting (for dry runs).
    pub(crate) fn would_veto(&self, key: &K, value: &V) -> Option<&str> {
        self.rules
            .iter()
            .find(|(_, rule, _)| rule(key, value))
            .map(|(name, _, _)| name.as_str())
    }

    pub(crate) fn vetoes_by_rule(&self) -> Vec<(String, u64)> {
        self.rules
            .iter()
            .map(|(name, _, n)| (name.clone(), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The state of a delete breaker, as [`SafeMap::breaker_state`](crate::SafeMap::breaker_state) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerState {
    /// Whether the next single-key removal would be refused.
    pub open: bool,
    /// Successful removals in the current window.
    pub in_window: usize,
    /// The most removals a window allows.
    pub max: usize,
    /// The window's length.
    pub window: Duration,
    /// When the window has room again, if it is full now.
    pub retry_after: Option<Duration>,
    /// How many times the breaker has gone from closed to open.
    pub trips: u64,
}

/// At most `max` successful single-key removals per sliding `window`.
pub(crate) struct Breaker {
    max: usize,
    window: Duration,
    /// Times of the successful removals still inside the window, oldest first.
    recent: Mutex<VecDeque<Instant>>,
    open: AtomicBool,
    trips: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(max: usize, window: Duration) -> Self {
        Breaker {
            max,
            window,
            recent: Mutex::new(VecDeque::new()),
            open: AtomicBool::new(false),
            trips: AtomicU64::new(0),
        }
    }

    fn prune(&self, recent: &mut VecDeque<Instant>, now: Instant) {
        while recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            recent.pop_front();
        }
    }

    fn retry_after(&self, recent: &VecDeque<Instant>, now: Instant) -> Option<Duration> {
        if recent.len() < self.max {
            return None;
        }
        // The window has room when the oldest of the last `max` removals leaves it.
        let oldest_blocking = recent[recent.len() - self.max];
        Some((oldest_blocking + self.window).saturating_duration_since(now))
    }

    /// Admits and counts one more removal at `now`, or answers
    /// `Err(retry_after)`; counts a trip when the breaker goes from closed to
    /// open. Admitting and counting are one step under the breaker's mutex, so
    /// parallel removals never admit more than `max` per window; the caller
    /// calls it only once nothing can make its removal fail.
    pub(crate) fn admit(&self, now: Instant) -> Result<(), Duration> {
        let mut recent = self.recent.lock();
        self.prune(&mut recent, now);
        match self.retry_after(&recent, now) {
            None => {
                // Relaxed: `open` is a reported flag; the decision above is made
                // under the mutex, not from the flag.
                self.open.store(false, Ordering::Relaxed);
                recent.push_back(now);
                Ok(())
            }
            Some(wait) => {
                if !self.open.swap(true, Ordering::Relaxed) {
                    self.trips.fetch_add(1, Ordering::Relaxed);
                }
                Err(wait.max(Duration::from_millis(1)))
            }
        }
    }

    /// Counts removals of an earlier life (wall-clock times), so that a restart
    /// never resets the window.
    pub(crate) fn seed(&self, times: impl IntoIterator<Item = SystemTime>) {
        let (now, wall_now) = (Instant::now(), SystemTime::now());
        let mut recent = self.recent.lock();
        let mut seeded: Vec<Instant> = times
            .into_iter()
            .filter_map(|t| {
                let age = wall_now.duration_since(t).unwrap_or(Duration::ZERO);
                (age < self.window).then(|| now.checked_sub(age)).flatten()
            })
            .collect();
        seeded.extend(recent.drain(..));
        seeded.sort();
        recent.extend(seeded);
    }

    pub(crate) fn state(&self) -> BreakerState {
        let now = Instant::now();
        let mut recent = self.recent.lock();
        self.prune(&mut recent, now);
        let retry_after = self.retry_after(&recent, now);
        BreakerState {
            open: retry_after.is_some(),
            in_window: recent.len(),
            max: self.max,
            window: self.window,
            retry_after,
            trips: self.trips.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_at_max_and_closes_when_the_window_slides() {
        let breaker = Breaker::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(breaker.admit(t0).is_ok());
        assert!(breaker.admit(t0 + Duration::from_secs(1)).is_ok());
        let wait = breaker.admit(t0 + Duration::from_secs(2)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(8));
        assert!(breaker.admit(t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(breaker.state().trips, 1);
    }

    #[test]
    fn seeded_removals_count_only_inside_the_window() {
        let breaker = Breaker::new(2, Duration::from_secs(60));
        let now = SystemTime::now();
        breaker.seed([
            now - Duration::from_secs(3600),
            now - Duration::from_secs(5),
            now - Duration::from_secs(1),
        ]);
        let state = breaker.state();
        assert_eq!(state.in_window, 2);
        assert!(state.open);
        assert!(state.retry_after.unwrap() > Duration::from_secs(50));
    }

    #[test]
    fn deny_rules_name_the_first_match_and_count_vetoes() {
        let mut rules: DenyRules<&str, u32> = DenyRules::new();
        rules.add("big".into(), Box::new(|_, v| *v > 10));
        rules.add("odd".into(), Box::new(|_, v| v % 2 == 1));
        assert_eq!(rules.veto(&"a", &11), Some("big"));
        assert_eq!(rules.veto(&"a", &3), Some("odd"));
        assert_eq!(rules.veto(&"a", &4), None);
        assert_eq!(rules.would_veto(&"a", &12), Some("big"));
        assert_eq!(
            rules.vetoes_by_rule(),
            vec![("big".to_owned(), 1), ("odd".to_owned(), 1)]
        );
    }
}
