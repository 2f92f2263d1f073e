//! One latency distribution: count, mean, standard deviation, exact minimum
//! and maximum, and percentiles from an HDR histogram.
//!
//! How each figure is obtained (the summary's documented contract):
//! - **percentiles** come from an HDR histogram (Gil Tene's HdrHistogram, via
//!   the `hdrhistogram` crate) holding values rounded to the nearest integer
//!   microsecond with 3 significant digits. The histogram reports the
//!   *highest value equivalent* to the sample at rank `ceil(q · n)` (the
//!   HdrHistogram convention, no interpolation), so a percentile may read up
//!   to 0.1% above the true sample; it is then clamped into the exact
//!   `[min, max]`. Values below 2048 µs are represented exactly.
//! - **min / max** are exact (computed from the nanosecond values).
//! - **mean / std** are computed from the exact nanosecond values, not from
//!   the histogram. The mean is the sum of the values divided by their count
//!   (exact integer-valued terms, so for whole-nanosecond samples it is the
//!   correctly rounded mean). The std is the population standard deviation
//!   (divisor n, as `numpy.std` in vLLM's benchmark), accumulated with West's
//!   weighted incremental algorithm (D. H. D. West, "Updating mean and
//!   variance estimates: an improved method", CACM 22(9), 1979), which stays
//!   accurate where the textbook `Σx² − (Σx)²/n` cancels catastrophically.
//!   The accumulation order is fixed by the caller (request index order), so
//!   the floating-point result is the same on every run.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Significant decimal digits kept by the histograms (DESIGN: "µs, 3
/// significant digits").
const SIGNIFICANT_DIGITS: u8 = 3;

/// Largest value a histogram must hold: any `u64` nanosecond span, in µs.
/// Fixed bounds (rather than auto-resize) make recording infallible.
const HIGHEST_US: u64 = u64::MAX / 1_000 + 1;

const NS_PER_MS: f64 = 1e6;
const US_PER_MS: f64 = 1e3;

/// Quantiles reported for every distribution, in the order of the fields of
/// [`LatencyStats`].
const QUANTILES: [f64; 5] = [0.50, 0.90, 0.95, 0.99, 0.999];

/// Statistics of one latency distribution, all in milliseconds.
///
/// Every figure is `None` (JSON `null`) when the distribution is empty, so a
/// summary never holds a NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyStats {
    /// Number of samples (per-token ITL: number of tokens).
    pub count: u64,
    pub mean_ms: Option<f64>,
    /// Population standard deviation.
    pub std_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p99_9_ms: Option<f64>,
}

/// Accumulates samples of one distribution.
pub(crate) struct Distribution {
    histogram: Histogram<u64>,
    /// Total weight (number of samples).
    count: u64,
    /// Sum of all samples, in ns.
    sum_ns: f64,
    /// West's running mean and weighted sum of squared deviations, in ns.
    mean_ns: f64,
    sum_sq_dev_ns: f64,
    min_ns: f64,
    max_ns: f64,
}

impl Distribution {
    pub(crate) fn new() -> Self {
        // The bounds are constants that satisfy the crate's preconditions
        // (low >= 1, high >= 2 * low, sigfig <= 5); nothing here depends on
        // input, so a failure would be a programming error.
        let histogram = Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Self {
            histogram,
            count: 0,
            sum_ns: 0.0,
            mean_ns: 0.0,
            sum_sq_dev_ns: 0.0,
            min_ns: f64::INFINITY,
            max_ns: f64::NEG_INFINITY,
        }
    }

    /// One sample of `ns` nanoseconds.
    pub(crate) fn add_ns(&mut self, ns: u64) {
        self.add_ratio(ns, 1, 1);
    }

    /// `weight` samples, each of `numer_ns / denom` nanoseconds (TPOT is one
    /// sample of a span divided by a token count; per-token ITL is `k`
    /// samples of a gap divided by `k`). `denom` and `weight` of zero add
    /// nothing.
    pub(crate) fn add_ratio(&mut self, numer_ns: u64, denom: u64, weight: u64) {
        if denom == 0 || weight == 0 {
            return;
        }
        let value_ns = numer_ns as f64 / denom as f64;
        // Rounded to the nearest µs (half up), in integers so it is exact.
        let denom_us = u128::from(denom) * 1_000;
        let value_us = (u128::from(numer_ns) + denom_us / 2) / denom_us;
        // value_us <= u64::MAX / 1000 + 1 = HIGHEST_US, inside the bounds, so
        // saturation never actually clamps.
        let value_us = u64::try_from(value_us).unwrap_or(HIGHEST_US);
        self.histogram.saturating_record_n(value_us, weight);

        // `weight` samples of numer/denom sum to exactly `numer` when the
        // weight is the denominator (per-token ITL): keep that exact.
        self.sum_ns += if weight == denom {
            numer_ns as f64
        } else {
            weight as f64 * value_ns
        };

        // West (1979), weighted incremental mean and variance.
        self.count += weight;
        let delta = value_ns - self.mean_ns;
        self.mean_ns += delta * weight as f64 / self.count as f64;
        self.sum_sq_dev_ns += weight as f64 * delta * (value_ns - self.mean_ns);

        self.min_ns = self.min_ns.min(value_ns);
        self.max_ns = self.max_ns.max(value_ns);
    }

    /// The distribution's figures in milliseconds.
    pub(crate) fn stats(&self) -> LatencyStats {
        if self.count == 0 {
            return LatencyStats {
                count: 0,
                mean_ms: None,
                std_ms: None,
                min_ms: None,
                max_ms: None,
                p50_ms: None,
                p90_ms: None,
                p95_ms: None,
                p99_ms: None,
                p99_9_ms: None,
            };
        }
        let min_ms = self.min_ns / NS_PER_MS;
        let max_ms = self.max_ns / NS_PER_MS;
        let variance = (self.sum_sq_dev_ns / self.count as f64).max(0.0);
        let [p50, p90, p95, p99, p99_9] = QUANTILES.map(|q| {
            let us = self.histogram.value_at_quantile(q);
            finite((us as f64 / US_PER_MS).clamp(min_ms, max_ms))
        });
        LatencyStats {
            count: self.count,
            mean_ms: finite(self.sum_ns / self.count as f64 / NS_PER_MS),
            std_ms: finite(variance.sqrt() / NS_PER_MS),
            min_ms: finite(min_ms),
            max_ms: finite(max_ms),
            p50_ms: p50,
            p90_ms: p90,
            p95_ms: p95,
            p99_ms: p99,
            p99_9_ms: p99_9,
        }
    }
}

/// `Some(x)` for a finite number, `None` otherwise: JSON has no NaN or
/// infinity, and a reader must never meet one.
pub(crate) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_distribution_has_count_zero_and_no_figures() {
        let s = Distribution::new().stats();
        assert_eq!(s.count, 0);
        assert_eq!(s.mean_ms, None);
        assert_eq!(s.p99_9_ms, None);
        assert_eq!(s.min_ms, None);
    }

    #[test]
    fn small_values_are_exact_and_percentiles_use_nearest_rank() {
        let mut d = Distribution::new();
        for us in [100, 200, 300, 400] {
            d.add_ns(us * 1_000);
        }
        let s = d.stats();
        assert_eq!(s.count, 4);
        assert_eq!(s.mean_ms, Some(0.25));
        assert_eq!(s.min_ms, Some(0.1));
        assert_eq!(s.max_ms, Some(0.4));
        // rank ceil(0.5 * 4) = 2 → the second value, no interpolation.
        assert_eq!(s.p50_ms, Some(0.2));
        assert_eq!(s.p90_ms, Some(0.4));
        assert_eq!(s.p99_9_ms, Some(0.4));
        // Population std of {1,2,3,4}·100 µs = 100 µs · sqrt(1.25).
        let std = s.std_ms.expect("std present");
        assert!((std - 0.1 * 1.25f64.sqrt()).abs() < 1e-15, "{std}");
    }

    #[test]
    fn large_values_are_quantized_within_a_thousandth_and_clamped_to_max() {
        let mut d = Distribution::new();
        d.add_ns(10_000_000); // 10 ms, above the exact range of the histogram
        let s = d.stats();
        // HDR's highest equivalent of 10 000 µs is 10 007 µs; clamping to
        // the exact max brings it back.
        assert_eq!(s.p50_ms, Some(10.0));
        let mut d = Distribution::new();
        d.add_ns(10_000_000);
        d.add_ns(20_000_000);
        let p50 = d.stats().p50_ms.expect("p50 present");
        assert!((10.0..=10.0 * 1.001).contains(&p50), "{p50}");
    }

    #[test]
    fn weighted_samples_count_as_repeated_samples() {
        let mut weighted = Distribution::new();
        weighted.add_ratio(300_000, 3, 3); // 3 × 100 µs
        weighted.add_ns(400_000);
        let mut repeated = Distribution::new();
        for ns in [100_000, 100_000, 100_000, 400_000] {
            repeated.add_ns(ns);
        }
        assert_eq!(weighted.stats(), repeated.stats());
        assert_eq!(weighted.stats().mean_ms, Some(0.175));
    }

    #[test]
    fn sub_microsecond_values_round_to_nearest_microsecond_in_the_histogram() {
        let mut d = Distribution::new();
        d.add_ratio(1_000, 3, 1); // 333.3 ns → 0 µs in the histogram
        let s = d.stats();
        // The histogram says 0 µs; clamping to the exact min restores it.
        assert_eq!(s.p50_ms, Some(1_000.0 / 3.0 / 1e6));
        assert_eq!(s.min_ms, s.max_ms);
    }
}
