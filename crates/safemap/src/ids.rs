//! Identifiers that carry their meaning in their type: revisions, audit ids, plan ids.

use std::fmt;
use std::str::FromStr;

/// A point in a map's history, from one monotonic counter (etcd's model).
///
/// Every successful write (put, remove, restore) takes the next revision. Revisions
/// are never reused and never go backwards, so a key that was removed and created
/// again never matches a revision from its previous life (no ABA).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(u64);

impl Revision {
    /// The revision before any write: no entry ever carries it.
    pub const ZERO: Revision = Revision(0);

    /// Wraps a raw revision number (as read from storage or the network).
    pub const fn new(raw: u64) -> Self {
        Revision(raw)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of one audit record. Ids increase in the order records are appended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditId(u64);

impl AuditId {
    /// Wraps a raw audit id (as read from storage or the network).
    pub const fn new(raw: u64) -> Self {
        AuditId(raw)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for AuditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of a removal plan: 16 lowercase hex digits, hard to guess and never
/// reused within a process (a process-random key mixed with a counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlanId(u64);

impl PlanId {
    /// Wraps a raw plan id.
    pub const fn new(raw: u64) -> Self {
        PlanId(raw)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// A fresh id: distinct from every other id this process made.
    pub(crate) fn fresh() -> Self {
        use std::hash::{BuildHasher, RandomState};
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static KEY: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let key = *KEY.get_or_init(|| RandomState::new().hash_one(0x5afe_u64) | 1);
        // Relaxed: only uniqueness of the counter value matters, which every
        // atomic RMW guarantees; nothing else is published through it.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // An odd multiplier is a bijection on u64, and xor with a constant too:
        // distinct counters give distinct ids.
        PlanId(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key)
    }
}

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The text is not a plan id (16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a plan id is 16 hexadecimal digits")]
pub struct ParsePlanIdError;

impl FromStr for PlanId {
    type Err = ParsePlanIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParsePlanIdError);
        }
        u64::from_str_radix(s, 16)
            .map(PlanId)
            .map_err(|_| ParsePlanIdError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_ids_are_distinct_and_round_trip_through_text() {
        let a = PlanId::fresh();
        let b = PlanId::fresh();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 16);
        assert_eq!(a.to_string().parse::<PlanId>(), Ok(a));
    }

    #[test]
    fn malformed_plan_ids_are_rejected() {
        for bad in [
            "",
            "123",
            "zzzzzzzzzzzzzzzz",
            "0123456789abcdef0",
            "+123456789abcdef",
        ] {
            assert_eq!(bad.parse::<PlanId>(), Err(ParsePlanIdError), "{bad:?}");
        }
    }
}
