//! When a failed delivery is tried again: exponential backoff with jitter.
//!
//! After the `n`-th failed attempt the next waits
//! `min(backoff_max_ms, backoff_ms · 2^(n-1))`, scaled by a random factor in
//! `[0.5, 1.0]`, so many deliveries that failed together (an endpoint that
//! was down) do not all come back at the same moment. The randomness is a
//! xorshift generator seeded from the clock: spreading retries needs no
//! cryptographic quality, and no dependency.

/// The delay before the attempt after `failed` failed attempts (`failed` ≥
/// 1), in ms; `unit` is a random number in `[0, 1]` (see [`crate::random::Random::unit`]).
pub fn delay_ms(base_ms: u64, max_ms: u64, failed: u32, unit: f64) -> u64 {
    let doublings = failed.saturating_sub(1);
    let full = match 1u64.checked_shl(doublings) {
        Some(factor) => base_ms.saturating_mul(factor),
        None => u64::MAX,
    }
    .min(max_ms);
    let scale = 0.5 + 0.5 * unit.clamp(0.0, 1.0);
    // `full` fits an f64 closely enough for a delay; the conversion back
    // saturates.
    let scaled = (full as f64 * scale) as u64;
    scaled.clamp(1, full.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum() {
        // With the top of the jitter range the delay is the full one.
        let full: Vec<u64> = (1..=6).map(|n| delay_ms(100, 1000, n, 1.0)).collect();
        assert_eq!(full, [100, 200, 400, 800, 1000, 1000]);
        // The bottom halves it.
        assert_eq!(delay_ms(100, 1000, 3, 0.0), 200);
        // Huge attempt counts saturate instead of overflowing.
        assert_eq!(delay_ms(100, 1000, 200, 0.5), 750);
        assert_eq!(delay_ms(u64::MAX, u64::MAX, 64, 1.0), u64::MAX);
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let j = crate::random::Random::with_seed(42);
        let draws: Vec<f64> = (0..1000).map(|_| j.unit()).collect();
        assert!(draws.iter().all(|u| (0.0..=1.0).contains(u)));
        let low = draws.iter().filter(|u| **u < 0.5).count();
        assert!((350..650).contains(&low), "{low} of 1000 below 0.5");
        for n in 1..10 {
            let d = delay_ms(1000, 300_000, n, j.unit());
            let full = (1000u64 << (n - 1)).min(300_000);
            assert!(
                d >= full / 2 && d <= full,
                "{d} outside [{}, {full}]",
                full / 2
            );
        }
    }
}
