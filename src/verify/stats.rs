//! The statistics of `verify`: how sure we are that a re-measured metric
//! matches the reported one, and the verdict that follows.
//!
//! For each metric the quantity judged is the ratio *re-measured /
//! reported*, with a confidence interval from the **percentile bootstrap**
//! (B. Efron and R. J. Tibshirani, *An Introduction to the Bootstrap*,
//! Chapman & Hall, 1993, ch. 13): the re-measured statistic is recomputed
//! on `B` resamples drawn with replacement, and the interval is formed by
//! the `α/2` and `1 − α/2` empirical quantiles of those `B` values,
//! divided by the reported value (a constant). Defaults: `B = 2000`,
//! 95% confidence, a fixed seed that the verdict records, so the same data
//! always give the same interval.
//!
//! What is resampled depends on what varies:
//! - **latency percentiles** (median and p99 TTFT, median TPOT, median ITL,
//!   median E2EL) resample the *requests* of all new runs pooled; a
//!   resampled request brings all its values, so the many inter-token gaps
//!   of one request (which are correlated) move together — a cluster
//!   bootstrap for ITL (Efron & Tibshirani §8.5 resample the independent
//!   units). The statistic is the nearest-rank percentile (the value at
//!   rank `ceil(q·n)`), the convention of the summary's HDR histograms
//!   without their ≤ 0.1% quantisation.
//! - **throughputs** are one number per run, so they resample the *repeats*
//!   and the statistic is their mean. With one repeat there is nothing to
//!   resample: the interval degenerates to the point estimate, and the
//!   output says so.
//!
//! Verdict per metric against a closed band `[1 − b, 1 + b]`: REPRODUCED
//! when the interval lies inside it, NOT REPRODUCED when it lies entirely
//! outside, INCONCLUSIVE when it straddles an edge. Overall: any NOT
//! REPRODUCED wins, then any INCONCLUSIVE, else REPRODUCED.

use serde::{Deserialize, Serialize};

use crate::metrics::RequestSample;
use crate::spec::{Verify, VerifyMetric};
use crate::workload::rng::Rng;

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 2000;
/// Two-sided confidence level of the intervals.
pub const CONFIDENCE: f64 = 0.95;
/// The fixed seed of every verification's bootstrap (recorded in the verdict).
pub const SEED: u64 = 0x1f3e_2a5d_0b7c_9e41;

/// The metrics compared, in table order.
pub const METRICS: [VerifyMetric; 7] = [
    VerifyMetric::OutputThroughput,
    VerifyMetric::RequestThroughput,
    VerifyMetric::MedianTtft,
    VerifyMetric::P99Ttft,
    VerifyMetric::MedianTpot,
    VerifyMetric::MedianItl,
    VerifyMetric::MedianE2el,
];

/// How the bootstrap is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bootstrap {
    /// Always `"percentile"`.
    pub method: &'static str,
    pub resamples: usize,
    pub confidence: f64,
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            method: "percentile",
            resamples: RESAMPLES,
            confidence: CONFIDENCE,
            seed: SEED,
        }
    }
}

/// A closed interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    fn scaled(self, by: f64) -> Interval {
        Interval {
            lo: self.lo * by,
            hi: self.hi * by,
        }
    }
}

/// The judgement on one metric or on the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "REPRODUCED")]
    Reproduced,
    #[serde(rename = "NOT REPRODUCED")]
    NotReproduced,
    #[serde(rename = "INCONCLUSIVE")]
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Reproduced => "REPRODUCED",
            Verdict::NotReproduced => "NOT REPRODUCED",
            Verdict::Inconclusive => "INCONCLUSIVE",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The relative tolerance of `metric`: the point's `[verify] tolerance`,
/// else 5% for throughputs and 10% for latencies.
pub fn band(verify: &Verify, metric: VerifyMetric) -> f64 {
    verify
        .tolerance
        .get(metric.as_str())
        .copied()
        .unwrap_or_else(|| metric.default_tolerance())
}

/// The verdict of a ratio interval against the closed band `[1 − b, 1 + b]`.
pub fn judge(ratio: Interval, band: f64) -> Verdict {
    let (lo_edge, hi_edge) = (1.0 - band, 1.0 + band);
    if ratio.lo >= lo_edge && ratio.hi <= hi_edge {
        Verdict::Reproduced
    } else if ratio.hi < lo_edge || ratio.lo > hi_edge {
        Verdict::NotReproduced
    } else {
        Verdict::Inconclusive
    }
}

/// Any NOT REPRODUCED, else any INCONCLUSIVE, else REPRODUCED. No
/// verdicts at all is INCONCLUSIVE: nothing was shown.
pub fn overall(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let mut any = false;
    let mut inconclusive = false;
    for v in verdicts {
        any = true;
        match v {
            Verdict::NotReproduced => return Verdict::NotReproduced,
            Verdict::Inconclusive => inconclusive = true,
            Verdict::Reproduced => {}
        }
    }
    if inconclusive || !any {
        Verdict::Inconclusive
    } else {
        Verdict::Reproduced
    }
}

/// Whether a metric is a throughput (resampled over repeats) or a latency
/// percentile (resampled over requests).
pub fn is_throughput(metric: VerifyMetric) -> bool {
    matches!(
        metric,
        VerifyMetric::OutputThroughput | VerifyMetric::RequestThroughput
    )
}

/// The latency values one request contributes to `metric`, and the
/// percentile taken over them.
/// Appends the values one request contributes to a metric.
type ValuesOf = fn(&RequestSample, &mut Vec<f64>);

fn latency_of(metric: VerifyMetric) -> Option<(ValuesOf, f64)> {
    fn ttft(r: &RequestSample, out: &mut Vec<f64>) {
        out.extend(r.ttft_ms);
    }
    fn tpot(r: &RequestSample, out: &mut Vec<f64>) {
        out.extend(r.tpot_ms);
    }
    fn itl(r: &RequestSample, out: &mut Vec<f64>) {
        out.extend_from_slice(&r.itl_ms);
    }
    fn e2el(r: &RequestSample, out: &mut Vec<f64>) {
        out.push(r.e2el_ms);
    }
    Some(match metric {
        VerifyMetric::MedianTtft => (ttft as ValuesOf, 0.5),
        VerifyMetric::P99Ttft => (ttft, 0.99),
        VerifyMetric::MedianTpot => (tpot, 0.5),
        VerifyMetric::MedianItl => (itl, 0.5),
        VerifyMetric::MedianE2el => (e2el, 0.5),
        VerifyMetric::OutputThroughput | VerifyMetric::RequestThroughput => return None,
    })
}

/// The nearest-rank `q` quantile: the value at rank `ceil(q·n)` (1-based)
/// of the sorted values; `None` for no values. Reorders `values`.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    let (_, v, _) = values.select_nth_unstable_by(rank - 1, f64::total_cmp);
    Some(*v)
}

/// The point estimate and percentile-bootstrap interval of a latency
/// percentile over the pooled requests; `None` when no request has a value.
pub fn latency_interval(
    metric: VerifyMetric,
    requests: &[RequestSample],
    b: &Bootstrap,
) -> Option<(f64, Interval)> {
    let (values_of, q) = latency_of(metric)?;
    let mut values = Vec::new();
    for r in requests {
        values_of(r, &mut values);
    }
    let estimate = quantile(&mut values, q)?;
    let n = requests.len();
    let mut rng = Rng::new(b.seed, stream(metric));
    let mut stats = Vec::with_capacity(b.resamples);
    for _ in 0..b.resamples {
        values.clear();
        for _ in 0..n {
            let i = rng.range_inclusive(0, n as u64 - 1) as usize;
            values_of(&requests[i], &mut values);
        }
        // A resample of requests none of which has this value (possible
        // only when few do) says nothing about it: skipped.
        if let Some(v) = quantile(&mut values, q) {
            stats.push(v);
        }
    }
    Some((estimate, percentile_interval(&mut stats, b.confidence)?))
}

/// The mean and percentile-bootstrap interval of one value per repeat;
/// with one repeat the interval is the value itself. `None` for no values.
pub fn repeats_interval(
    metric: VerifyMetric,
    values: &[f64],
    b: &Bootstrap,
) -> Option<(f64, Interval)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    let mean = |xs: &mut dyn Iterator<Item = f64>| xs.sum::<f64>() / n as f64;
    let estimate = mean(&mut values.iter().copied());
    if n == 1 {
        return Some((
            estimate,
            Interval {
                lo: estimate,
                hi: estimate,
            },
        ));
    }
    let mut rng = Rng::new(b.seed, stream(metric));
    let mut stats: Vec<f64> = (0..b.resamples)
        .map(|_| mean(&mut (0..n).map(|_| values[rng.range_inclusive(0, n as u64 - 1) as usize])))
        .collect();
    Some((estimate, percentile_interval(&mut stats, b.confidence)?))
}

/// The `α/2` and `1 − α/2` order statistics of the bootstrap values
/// (index `⌊B·α/2⌋` and its mirror `B − 1 − ⌊B·α/2⌋`).
fn percentile_interval(stats: &mut [f64], confidence: f64) -> Option<Interval> {
    if stats.is_empty() {
        return None;
    }
    stats.sort_unstable_by(f64::total_cmp);
    let b = stats.len();
    let k = ((b as f64 * (1.0 - confidence) / 2.0).floor() as usize).min(b - 1);
    Some(Interval {
        lo: stats[k],
        hi: stats[b - 1 - k],
    })
}

/// Each metric draws from its own stream of the seed, so one metric's
/// interval never depends on how many draws another took.
fn stream(metric: VerifyMetric) -> u64 {
    METRICS.iter().position(|m| *m == metric).unwrap_or(0) as u64 + 1
}

/// One metric compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricResult {
    /// The `[verify] tolerance` key, e.g. `median-ttft`.
    pub metric: String,
    /// `tok/s`, `req/s` or `ms`.
    pub unit: String,
    pub reported: Option<f64>,
    pub remeasured: Option<f64>,
    /// `remeasured / reported`.
    pub ratio: Option<f64>,
    /// Bootstrap interval of the ratio.
    pub interval: Option<Interval>,
    pub band: f64,
    /// `requests` or `repeats`.
    pub resampled: String,
    /// How many units were resampled (requests or repeats).
    pub n: usize,
    /// `None` when neither side has the metric (e.g. TPOT of one-token
    /// answers): not applicable, not counted in the overall verdict.
    pub verdict: Option<Verdict>,
    /// Why the verdict is what it is when the numbers alone do not say.
    pub note: Option<String>,
}

/// Compares one metric: `reported` from the reported summary; the new
/// runs' per-run values (throughputs) and pooled requests (latencies).
pub fn compare(
    metric: VerifyMetric,
    reported: Option<f64>,
    per_run: &[f64],
    requests: &[RequestSample],
    band: f64,
    b: &Bootstrap,
) -> MetricResult {
    let throughput = is_throughput(metric);
    let (estimated, n) = if throughput {
        (repeats_interval(metric, per_run, b), per_run.len())
    } else {
        (latency_interval(metric, requests, b), requests.len())
    };
    let unit = match metric {
        VerifyMetric::OutputThroughput => "tok/s",
        VerifyMetric::RequestThroughput => "req/s",
        _ => "ms",
    };
    let mut result = MetricResult {
        metric: metric.as_str().to_string(),
        unit: unit.to_string(),
        reported,
        remeasured: estimated.map(|(e, _)| e),
        ratio: None,
        interval: None,
        band,
        resampled: if throughput { "repeats" } else { "requests" }.to_string(),
        n,
        verdict: None,
        note: None,
    };
    match (reported, estimated) {
        (None, None) => {
            result.note = Some("neither run has this metric".to_string());
        }
        (Some(r), Some((e, interval))) if r > 0.0 && r.is_finite() => {
            let ratio_interval = interval.scaled(1.0 / r);
            result.ratio = Some(e / r);
            result.interval = Some(ratio_interval);
            result.verdict = Some(judge(ratio_interval, band));
            if throughput && n == 1 {
                result.note = Some(
                    "one repeat: the interval is a single value, not a confidence interval"
                        .to_string(),
                );
            }
        }
        (Some(_), Some(_)) => {
            result.verdict = Some(Verdict::Inconclusive);
            result.note = Some("the reported value is zero: no ratio".to_string());
        }
        (Some(_), None) => {
            result.verdict = Some(Verdict::Inconclusive);
            result.note = Some("the re-runs have no value for this metric".to_string());
        }
        (None, Some(_)) => {
            result.verdict = Some(Verdict::Inconclusive);
            result.note = Some("the reported run has no value for this metric".to_string());
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sample(ttft: f64, itl: &[f64]) -> RequestSample {
        RequestSample {
            ttft_ms: Some(ttft),
            tpot_ms: Some(itl.iter().sum::<f64>() / itl.len().max(1) as f64),
            itl_ms: itl.to_vec(),
            e2el_ms: ttft + itl.iter().sum::<f64>(),
        }
    }

    /// A spread of requests around 50 ms TTFT / 10 ms ITL, from a seeded
    /// generator (deterministic).
    fn requests(n: usize, scale: f64) -> Vec<RequestSample> {
        let mut rng = Rng::new(7, 0);
        (0..n)
            .map(|_| {
                let ttft = (50.0 + 2.0 * rng.next_normal()) * scale;
                let itl: Vec<f64> = (0..8)
                    .map(|_| (10.0 + 0.5 * rng.next_normal()) * scale)
                    .collect();
                sample(ttft, &itl)
            })
            .collect()
    }

    #[test]
    fn same_seed_same_interval_and_the_seed_matters() {
        let rs = requests(40, 1.0);
        let b = Bootstrap::default();
        let a = latency_interval(VerifyMetric::MedianTtft, &rs, &b);
        let again = latency_interval(VerifyMetric::MedianTtft, &rs, &b);
        assert_eq!(a, again);
        // A median's bootstrap values are sample values, so two seeds may
        // agree on the interval; a mean of 12 repeats rarely does.
        let t: Vec<f64> = (0..12).map(|i| 100.0 + f64::from(i * i % 7)).collect();
        let other = Bootstrap { seed: 1, ..b };
        assert_ne!(
            repeats_interval(VerifyMetric::OutputThroughput, &t, &b),
            repeats_interval(VerifyMetric::OutputThroughput, &t, &other)
        );
        let t = [100.0, 104.0, 97.0];
        assert_eq!(
            repeats_interval(VerifyMetric::OutputThroughput, &t, &b),
            repeats_interval(VerifyMetric::OutputThroughput, &t, &b)
        );
    }

    #[test]
    fn interval_contains_the_estimate_and_narrows_with_more_requests() {
        let b = Bootstrap::default();
        let (e, small) =
            latency_interval(VerifyMetric::MedianTtft, &requests(10, 1.0), &b).unwrap();
        assert!(small.lo <= e && e <= small.hi, "{small:?} {e}");
        let (_, large) =
            latency_interval(VerifyMetric::MedianTtft, &requests(400, 1.0), &b).unwrap();
        assert!(large.hi - large.lo < small.hi - small.lo);
    }

    #[test]
    fn nearest_rank_quantile() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&mut v, 0.5), Some(2.0));
        assert_eq!(quantile(&mut v, 0.99), Some(4.0));
        assert_eq!(quantile(&mut v, 0.0), Some(1.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn one_repeat_degenerates_to_a_point() {
        let (e, i) = repeats_interval(
            VerifyMetric::OutputThroughput,
            &[250.0],
            &Bootstrap::default(),
        )
        .unwrap();
        assert_eq!((e, i.lo, i.hi), (250.0, 250.0, 250.0));
        let r = compare(
            VerifyMetric::OutputThroughput,
            Some(250.0),
            &[250.0],
            &[],
            0.05,
            &Bootstrap::default(),
        );
        assert_eq!(r.verdict, Some(Verdict::Reproduced));
        assert!(r.note.unwrap().contains("one repeat"));
    }

    #[test]
    fn the_three_verdicts_on_synthetic_data() {
        let b = Bootstrap::default();
        let reported = latency_interval(VerifyMetric::MedianTtft, &requests(200, 1.0), &b)
            .unwrap()
            .0;
        let judge_at = |scale: f64, band: f64| {
            compare(
                VerifyMetric::MedianTtft,
                Some(reported),
                &[],
                &requests(200, scale),
                band,
                &b,
            )
        };
        // Same distribution: inside a 10% band.
        let same = judge_at(1.0, 0.10);
        assert_eq!(same.verdict, Some(Verdict::Reproduced), "{same:?}");
        // 30% slower: entirely outside.
        let slow = judge_at(1.3, 0.10);
        assert_eq!(slow.verdict, Some(Verdict::NotReproduced), "{slow:?}");
        // Shifted exactly onto the band's edge: the interval straddles it.
        let edge = judge_at(1.10, 0.10);
        assert_eq!(edge.verdict, Some(Verdict::Inconclusive), "{edge:?}");
        let i = edge.interval.unwrap();
        assert!(i.lo < 1.10 && i.hi > 1.10, "{i:?}");
    }

    #[test]
    fn band_edges_are_inside() {
        let iv = |lo, hi| Interval { lo, hi };
        assert_eq!(judge(iv(0.95, 1.05), 0.05), Verdict::Reproduced);
        assert_eq!(judge(iv(0.9499, 1.0), 0.05), Verdict::Inconclusive);
        assert_eq!(judge(iv(1.05, 1.2), 0.05), Verdict::Inconclusive);
        assert_eq!(judge(iv(1.0501, 1.2), 0.05), Verdict::NotReproduced);
        assert_eq!(judge(iv(0.5, 0.9499), 0.05), Verdict::NotReproduced);
        assert_eq!(judge(iv(0.8, 1.3), 0.05), Verdict::Inconclusive);
    }

    #[test]
    fn overall_takes_the_worst() {
        use Verdict::*;
        assert_eq!(overall([Reproduced, Reproduced]), Reproduced);
        assert_eq!(overall([Reproduced, Inconclusive]), Inconclusive);
        assert_eq!(
            overall([Inconclusive, NotReproduced, Reproduced]),
            NotReproduced
        );
        assert_eq!(overall([]), Inconclusive);
    }

    #[test]
    fn bands_default_by_kind_and_follow_the_spec() {
        let mut verify = Verify {
            repeats: 3,
            tolerance: BTreeMap::new(),
        };
        assert_eq!(band(&verify, VerifyMetric::OutputThroughput), 0.05);
        assert_eq!(band(&verify, VerifyMetric::RequestThroughput), 0.05);
        assert_eq!(band(&verify, VerifyMetric::P99Ttft), 0.10);
        verify.tolerance.insert("p99-ttft".into(), 0.25);
        assert_eq!(band(&verify, VerifyMetric::P99Ttft), 0.25);
        assert_eq!(band(&verify, VerifyMetric::MedianTtft), 0.10);
    }

    #[test]
    fn a_metric_neither_side_has_is_not_applicable() {
        let r = compare(
            VerifyMetric::MedianTpot,
            None,
            &[],
            &[],
            0.1,
            &Bootstrap::default(),
        );
        assert_eq!(r.verdict, None);
        let r = compare(
            VerifyMetric::MedianTpot,
            Some(5.0),
            &[],
            &[],
            0.1,
            &Bootstrap::default(),
        );
        assert_eq!(r.verdict, Some(Verdict::Inconclusive));
    }
}
