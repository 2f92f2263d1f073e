//! Seeded speed variation: how much slower or faster than nominal a request
//! is served, as a pure function of the drift seed and the request's
//! sequence number.
//!
//! It exists so that `verify`'s statistics can be tested end to end against
//! variation with known parameters. On real machines the largest variance is
//! between runs (DESIGN "Statistics"), so there are two levels, both
//! log-normal with median 1:
//!
//! - per run: requests `[b·K, (b+1)·K)` (block `b`, `K` = `run_requests`)
//!   share the factor `exp(run_sigma · z_b)`;
//! - per request: request `i` gets its own `exp(request_sigma · u_i)`.
//!
//! A request's factor is their product. `z_b` is the first
//! [`Rng::next_normal`] of `Rng::new(Rng::new(seed, 1).next_u64(), b)`, and
//! `u_i` that of `Rng::new(Rng::new(seed, 2).next_u64(), i)`: one stream per
//! block and per request, so concurrency changes which factor a request gets
//! only through its place in arrival order; the two levels never share a
//! stream, and (but for a 2⁻⁶⁴ chance) neither shares one with the fault
//! draws.

use std::num::NonZeroU64;
use std::time::Duration;

use crate::rng::Rng;

/// Derives the per-run level's generators from the seed.
const RUN_LEVEL: u64 = 1;
/// Derives the per-request level's generators from the seed.
const REQUEST_LEVEL: u64 = 2;

/// Log-normal speed variation per run and per request; all zero (the
/// default) leaves the nominal timing untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// Seeds both levels.
    pub seed: u64,
    /// Standard deviation of the log factor shared by one run.
    pub run_sigma: f64,
    /// Requests in one run: the factor is redrawn every this many requests.
    /// Required when `run_sigma` is above 0; unset, the whole life of the
    /// server is one run.
    pub run_requests: Option<NonZeroU64>,
    /// Standard deviation of each request's own log factor.
    pub request_sigma: f64,
}

impl Default for Drift {
    fn default() -> Self {
        Drift {
            seed: 0,
            run_sigma: 0.0,
            run_requests: None,
            request_sigma: 0.0,
        }
    }
}

impl Drift {
    /// The run in which request `seq` (from 0, arrival order) falls.
    pub fn run_of(&self, seq: u64) -> u64 {
        self.run_requests.map_or(0, |k| seq / k.get())
    }

    /// The factor shared by every request of request `seq`'s run; exactly 1
    /// when `run_sigma` is 0.
    pub fn run_factor(&self, seq: u64) -> f64 {
        lognormal(self.seed, RUN_LEVEL, self.run_of(seq), self.run_sigma)
    }

    /// Request `seq`'s own factor; exactly 1 when `request_sigma` is 0.
    pub fn request_factor(&self, seq: u64) -> f64 {
        lognormal(self.seed, REQUEST_LEVEL, seq, self.request_sigma)
    }

    /// What request `seq`'s TTFT and every gap between its chunks are
    /// multiplied by: `run_factor(seq) × request_factor(seq)`.
    pub fn factor(&self, seq: u64) -> f64 {
        self.run_factor(seq) * self.request_factor(seq)
    }
}

/// `exp(sigma · z)` with `z` the standard normal of `index` at `level`; no
/// draw (and exactly 1) when `sigma` is 0.
fn lognormal(seed: u64, level: u64, index: u64, sigma: f64) -> f64 {
    if sigma == 0.0 {
        return 1.0;
    }
    let level_seed = Rng::new(seed, level).next_u64();
    (sigma * Rng::new(level_seed, index).next_normal()).exp()
}

/// `d × factor` to the nanosecond; `d` itself when the factor is 1, so the
/// nominal timing stays exact (a round trip through f64 seconds would not).
pub(super) fn scale(d: Duration, factor: f64) -> Duration {
    if factor == 1.0 {
        return d;
    }
    // `as` saturates: an absurd product becomes u64::MAX ns (584 years),
    // which the schedule then caps.
    Duration::from_nanos((d.as_nanos() as f64 * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(seed: u64, sigma: f64, k: u64) -> Drift {
        Drift {
            seed,
            run_sigma: sigma,
            run_requests: NonZeroU64::new(k),
            ..Drift::default()
        }
    }

    #[test]
    fn zero_sigma_is_exactly_nominal() {
        let d = Drift::default();
        for seq in [0, 1, 99, u64::MAX] {
            assert_eq!(d.factor(seq).to_bits(), 1.0f64.to_bits());
        }
        let ttft = Duration::from_nanos(50_000_001);
        assert_eq!(scale(ttft, d.factor(3)), ttft);
    }

    #[test]
    fn run_factor_is_constant_within_a_run_and_changes_between_runs() {
        let d = runs(4, 0.2, 7);
        for b in 0..50u64 {
            let first = d.run_factor(b * 7);
            for seq in b * 7..(b + 1) * 7 {
                assert_eq!(d.run_factor(seq).to_bits(), first.to_bits(), "seq {seq}");
                assert_eq!(d.factor(seq).to_bits(), first.to_bits(), "no jitter set");
            }
            assert_ne!(d.run_factor((b + 1) * 7), first, "run {b} to {}", b + 1);
        }
    }

    /// Mean and sample standard deviation of `ln(factor)` over `n` draws.
    fn log_moments(n: u64, factor: impl Fn(u64) -> f64) -> (f64, f64) {
        let logs: Vec<f64> = (0..n).map(|i| factor(i).ln()).collect();
        let mean = logs.iter().sum::<f64>() / n as f64;
        let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (mean, var.sqrt())
    }

    #[test]
    fn run_log_factors_have_mean_zero_and_sd_sigma() {
        // 2000 runs of sigma 0.1: the mean's standard error is
        // 0.1/sqrt(2000) = 0.0022 and the sd's about 0.1/sqrt(2·1999) =
        // 0.0016; the margins below are over 4 standard errors.
        let sigma = 0.1;
        let d = runs(12, sigma, 10);
        let (mean, sd) = log_moments(2000, |b| d.run_factor(b * 10));
        assert!(mean.abs() < 0.01, "mean log factor {mean}");
        assert!((sd - sigma).abs() < 0.007, "sd of log factor {sd}");
    }

    #[test]
    fn request_log_factors_have_mean_zero_and_sd_sigma() {
        // As above: 2000 requests, sigma 0.05, margins over 4 standard errors.
        let sigma = 0.05;
        let d = Drift {
            seed: 12,
            request_sigma: sigma,
            ..Drift::default()
        };
        let (mean, sd) = log_moments(2000, |i| d.factor(i));
        assert!(mean.abs() < 0.005, "mean log factor {mean}");
        assert!((sd - sigma).abs() < 0.0035, "sd of log factor {sd}");
    }

    #[test]
    fn run_and_request_levels_are_independent() {
        // The same sigma at both levels must not give the same draws.
        let both = Drift {
            request_sigma: 0.1,
            ..runs(3, 0.1, 1)
        };
        let (mut same, n) = (0, 500);
        for seq in 0..n {
            if both.run_factor(seq) == both.request_factor(seq) {
                same += 1;
            }
        }
        assert_eq!(same, 0);
        // With K = 1 each request is its own run: the log factor is a sum
        // of two independent N(0, 0.1²), so its sd is 0.1·√2 = 0.141.
        let (_, sd) = log_moments(2000, |i| both.factor(i));
        assert!((sd - 0.1 * 2f64.sqrt()).abs() < 0.01, "sd {sd}");
    }

    #[test]
    fn same_seed_gives_the_same_factors_and_another_seed_others() {
        let jittered = |seed| Drift {
            request_sigma: 0.05,
            ..runs(seed, 0.2, 3)
        };
        let a: Vec<u64> = (0..100).map(|i| jittered(5).factor(i).to_bits()).collect();
        let b: Vec<u64> = (0..100).map(|i| jittered(5).factor(i).to_bits()).collect();
        let c: Vec<u64> = (0..100).map(|i| jittered(6).factor(i).to_bits()).collect();
        assert_eq!(a, b);
        assert!(
            a.iter().zip(&c).all(|(x, y)| x != y),
            "seed 6 repeats a factor of seed 5"
        );
    }

    #[test]
    fn factors_are_frozen() {
        // Calibration runs are compared across versions: a change here moves
        // every drifted timing.
        let d = Drift {
            request_sigma: 0.1,
            ..runs(0, 0.2, 2)
        };
        let f: Vec<String> = (0..4).map(|i| format!("{:.6}", d.factor(i))).collect();
        insta::assert_snapshot!(f.join(" "), @"0.909043 0.709323 0.887563 0.881798");
    }

    #[test]
    fn scale_rounds_to_the_nanosecond_and_saturates() {
        assert_eq!(
            scale(Duration::from_millis(50), 1.5),
            Duration::from_millis(75)
        );
        assert_eq!(scale(Duration::from_nanos(3), 0.5), Duration::from_nanos(2));
        assert_eq!(scale(Duration::MAX, 2.0), Duration::from_nanos(u64::MAX));
        assert_eq!(scale(Duration::ZERO, 3.0), Duration::ZERO);
    }
}
