//! Cheap randomness for demo data and retry jitter: xorshift64 seeded from
//! the clock and advanced atomically, so one generator can be shared.
//! Variety is all it gives — never use it for secrets or ids.

use std::sync::atomic::{AtomicU64, Ordering};

/// A shared xorshift64 generator.
#[derive(Debug)]
pub struct Random(AtomicU64);

impl Random {
    /// A generator seeded from the clock, the process id and `salt`.
    pub fn seeded(salt: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // Truncation keeps the fast-moving low bits, which is what a seed needs.
        let mut seed = (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32);
        for b in salt.bytes() {
            seed = seed.rotate_left(5) ^ u64::from(b);
        }
        Self::with_seed(seed)
    }

    /// A generator with a fixed seed (tests).
    pub fn with_seed(seed: u64) -> Self {
        // Xorshift's one fixed point is zero.
        Self(AtomicU64::new(seed | 1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prev = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        step(prev)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number uniform in `[0, 1]`.
    pub fn unit(&self) -> f64 {
        // The top 53 bits make an exactly representable fraction.
        (self.next_u64() >> 11) as f64 / ((1u64 << 53) - 1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::Random;

    #[test]
    fn numbers_stay_in_range_and_vary() {
        let r = Random::with_seed(7);
        let units: Vec<f64> = (0..1000).map(|_| r.unit()).collect();
        assert!(units.iter().all(|u| (0.0..=1.0).contains(u)));
        assert!(units.iter().any(|u| *u < 0.1) && units.iter().any(|u| *u > 0.9));
        assert!((0..1000).all(|_| r.below(6) < 6));
        assert_eq!(r.below(0), 0);
    }
}
