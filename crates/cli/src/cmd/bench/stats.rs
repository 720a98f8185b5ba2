//! A fixed-size, log-linear histogram of microsecond latencies.
//!
//! Values below 128 µs have a bucket each; above, every power of two is split
//! into 64 buckets, so any recorded value is known within 1/64 (< 1.6 %) and the
//! whole range of `u64` fits in 3,776 counters (30 KiB) however many samples a
//! run takes. Minimum, maximum and sum are exact. Receivers keep small local
//! sample buffers and merge them in under a lock, so the hot path has no shared
//! atomics.

use serde_json::{Value, json};

use super::round3;

/// Values with a bucket of their own.
const LINEAR: u64 = 128;
/// Buckets per power of two above `LINEAR`.
const SUB: u64 = 64;
/// `LINEAR` plus 57 powers of two (`2^7` .. `2^64`) of `SUB` buckets each.
const BUCKETS: usize = (LINEAR + 57 * SUB) as usize;

/// Counts of microsecond values in log-linear buckets.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let bits = u64::from(64 - v.leading_zeros()); // 8..=64
    let shift = bits - 7; // 1..=57
    let top = v >> shift; // 64..=127
    (LINEAR + (shift - 1) * SUB + (top - SUB)) as usize
}

/// The smallest and largest value that land in bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, i);
    }
    let j = i - LINEAR;
    let shift = j / SUB + 1;
    let low = (j % SUB + SUB) << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    /// Adds one value.
    pub(crate) fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.count += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds every value of `other`.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0.0–1.0): the middle of its bucket, kept within
    /// the exact minimum and maximum. `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bounds(i);
                let mid = low + (high - low) / 2;
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Mean of the recorded values.
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// `{count, min, mean, p50, p90, p99, p999, max}` in milliseconds.
    pub(crate) fn summary_ms(&self) -> Value {
        let ms = |v: Option<u64>| v.map_or(Value::Null, |us| round3(us as f64 / 1000.0));
        json!({
            "count": self.count,
            "min": ms((self.count > 0).then_some(self.min)),
            "mean": self.mean().map_or(Value::Null, |us| round3(us / 1000.0)),
            "p50": ms(self.quantile(0.50)),
            "p90": ms(self.quantile(0.90)),
            "p99": ms(self.quantile(0.99)),
            "p999": ms(self.quantile(0.999)),
            "max": ms((self.count > 0).then_some(self.max)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_u64_without_gaps() {
        assert_eq!(index(0), 0);
        assert_eq!(index(127), 127);
        assert_eq!(index(128), 128);
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        let mut expected_low = 0;
        for i in 0..BUCKETS {
            let (low, high) = bounds(i);
            assert_eq!(low, expected_low, "bucket {i}");
            assert_eq!(index(low), i);
            assert_eq!(index(high), i);
            // Relative width stays under 1/64.
            assert!(
                (high - low) as f64 <= low as f64 / 64.0 + 1.0,
                "bucket {i}: {low}..{high}"
            );
            expected_low = high.wrapping_add(1);
        }
        assert_eq!(expected_low, 0, "the last bucket ends at u64::MAX");
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v);
        }
        let close = |got: Option<u64>, want: u64| {
            let got = got.unwrap() as f64;
            assert!(
                (got - want as f64).abs() <= want as f64 / 64.0,
                "{got} vs {want}"
            );
        };
        close(h.quantile(0.5), 5000);
        close(h.quantile(0.99), 9900);
        assert_eq!(h.quantile(1.0), Some(10_000));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.mean(), Some(5000.5));
        assert_eq!(h.count, 10_000);
    }

    #[test]
    fn small_values_are_exact_and_empty_is_none() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.summary_ms()["p99"], Value::Null);
        for v in [3, 3, 3, 7] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(3));
        assert_eq!(h.quantile(0.75), Some(3));
        assert_eq!(h.quantile(0.76), Some(7));
        assert_eq!(h.summary_ms()["max"], json!(0.007));
    }

    #[test]
    fn merge_adds_counts_and_extremes() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(10);
        b.record(1_000_000);
        b.record(5);
        a.merge(&b);
        assert_eq!(a.count, 3);
        assert_eq!(a.quantile(0.0), Some(5));
        assert_eq!(a.quantile(1.0), Some(1_000_000));
        assert_eq!(a.summary_ms()["max"], json!(1000.0));
    }
}
