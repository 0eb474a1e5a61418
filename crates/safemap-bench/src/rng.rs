//! A tiny, fast pseudo-random generator for picking keys in hot loops.
//!
//! The workloads need uniform keys at a few nanoseconds each; a
//! cryptographic or general-purpose generator would dominate the loop.
//! This is wyrand (64-bit state, one multiply per draw): not for anything
//! but choosing benchmark keys.

/// wyrand: one 64-bit word of state, one 128-bit multiply per output.
#[derive(Debug, Clone)]
pub struct FastRng(u64);

impl FastRng {
    /// A generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xA076_1D64_78BD_642F);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xE703_7ED1_A0B4_28DB);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A uniform value in `0..n` (multiply-shift; `n` must be non-zero).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::FastRng;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = FastRng::new(7);
        let mut seen = [false; 10];
        for _ in 0..10_000 {
            let v = rng.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "every bucket hit: {seen:?}");
    }

    #[test]
    fn different_seeds_differ() {
        assert_ne!(FastRng::new(1).next_u64(), FastRng::new(2).next_u64());
    }
}
