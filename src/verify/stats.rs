//! The statistics of `verify`: is the reported run's number one this
//! machine produces, within the point's tolerance band?
//!
//! **The run is the unit of replication.** Requests of one run share the
//! engine's state, and run-to-run drift is the largest variance on real
//! machines, so every metric is one value per run (the run's summary
//! value), and the interval comes from those values.
//!
//! **Method: a run-level t interval for the log ratio, in prediction
//! form**, judged against the band as an equivalence test (TOST: D. J.
//! Schuirmann, *J. Pharmacokinet. Biopharm.* 15(6), 1987, 657–680; the
//! prediction interval for one further observation: G. J. Hahn and
//! W. Q. Meeker, *Statistical Intervals*, Wiley, 1991, §4.7). On the log
//! scale let `y_1..y_n` be this machine's runs (the re-runs and any other
//! completed runs of the point on this machine) and `r` the reported run:
//!
//! - `θ̂ = mean(y) − ln r` estimates the log ratio *this machine /
//!   reported*;
//! - its variance has two parts: this machine's mean, `v/n`, and the
//!   reported run itself, `v_r`. The reported run is one run, a draw with
//!   the same run-to-run variance `v` as any other (assumption: machines of
//!   one hardware class vary alike from run to run), and never less than
//!   its own sampling error from its requests: `v = max(s², w̄)`,
//!   `v_r = max(v − w̄ + w_r, w_r)`, with `s²` the sample variance of `y`,
//!   `w̄` the mean within-run sampling variance of this machine's runs and
//!   `w_r` the reported run's (a cluster bootstrap of each run's requests,
//!   [`within_variance`]; zero for throughputs, which have one value per
//!   run);
//! - `θ̂ ± t(1 − α'/2, n − 1)·√(v/n + v_r)`, exponentiated, is the interval
//!   of the ratio. Under normal log values with no floor active this is
//!   exactly Student-t (the classic prediction interval); `n − 1` degrees
//!   of freedom account for the few runs.
//!
//! **Verdict per metric** against the closed band `[1 − b, 1 + b]`:
//! REPRODUCED when the interval at the per-look confidence lies inside it
//! (both one-sided tests of TOST reject non-equivalence); NOT REPRODUCED
//! when the wider *accusation* interval lies wholly outside it; otherwise
//! INCONCLUSIVE. The overall verdict is REPRODUCED only when every judged
//! metric is: an intersection-union test (R. L. Berger, *Technometrics*
//! 24(4), 1982, 295–300), which needs no correction over metrics. It is NOT
//! REPRODUCED when any one metric is: a union, so the accusation interval
//! is corrected over the seven metrics (Bonferroni).
//!
//! **Not judged.** A percentile is judged only where every run has enough
//! values to bound it: a distribution-free two-sided `1 − α` interval for
//! the `q` quantile from order statistics exists only when
//! `max(q, 1 − q)^n ≤ α/2` ([`min_values`]: 6 values for a median, 368 for
//! a p99 at α = 0.05; H. A. David and H. N. Nagaraja, *Order Statistics*,
//! 3rd ed., Wiley, 2003, §7.1). A throughput needs two runs here.
//!
//! **Sequential re-runs (`--repeats auto`, the default).** Re-runs are made
//! one at a time on one engine start; the verdict is judged at a few looks
//! ([`Repeats::looks`]: after the point's `[verify] repeats` re-runs, then
//! at twice that, up to `[verify] max-repeats`: 3, 6, 10 by default). A
//! metric's verdict is fixed at the first look that decides it, and the
//! re-runs stop when every judged metric is decided. The stopping rule
//! keeps the error rates by a **Bonferroni correction over the looks**
//! (conservative: looks on cumulative data are correlated): with `L` looks,
//! each look's interval has confidence `1 − α/L`, the accusation interval
//! `1 − α/(7L)`. A fixed `--repeats N` has one look.
//!
//! **Error rates it is built for** (α = 0.05, under the assumptions above):
//! - an honest run (every true ratio 1) is NOT REPRODUCED in at most
//!   α/2 = 2.5% of verifications, whatever the noise (Bonferroni bound);
//! - a run whose true ratio lies outside the band on some judged metric is
//!   REPRODUCED in at most α/2 = 2.5% of verifications.
//!
//! The tests in `stats/tests.rs` measure these rates on 10,000 simulated
//! verifications per case with fixed seeds, and the power: a claim 30% off
//! is NOT REPRODUCED in at least 95% of verifications when runs vary by up
//! to 5% (1 sd); an honest run on a machine whose runs vary by 1% is
//! REPRODUCED at the default bands in most verifications. A REPRODUCED is
//! out of reach whenever one run's spread is a large share of the band:
//! the reported run is one run, and no number of re-runs removes its own
//! variance. The verdict then says so.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::metrics::RequestSample;
use crate::rng::Rng;
use crate::spec::{Verify, VerifyMetric};

/// Two-sided error rate of each verdict's interval (before the correction
/// over looks).
pub const ALPHA: f64 = 0.05;
/// Bootstrap resamples for a run's within-run sampling variance.
pub const WITHIN_RESAMPLES: usize = 400;
/// The fixed seed of the within-run bootstrap (recorded in the verdict).
pub const SEED: u64 = 0x1f3e_2a5d_0b7c_9e41;
/// The method's name, as the verdict statement records it.
pub const METHOD: &str = "run-level t interval on the log ratio, prediction form; TOST against the band, intersection-union over metrics; Bonferroni over looks (and over metrics for NOT REPRODUCED)";
/// Where the method is described.
pub const REFERENCE: &str = "Schuirmann 1987 (TOST); Berger 1982 (intersection-union); Hahn & Meeker 1991 §4.7 (prediction interval); David & Nagaraja 2003 §7.1 (order-statistic bounds)";

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

/// A closed interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
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

/// How many re-runs `verify` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum Repeats {
    /// Re-run one at a time from `first_look` until every judged metric is
    /// decided or `max` re-runs were made.
    Auto { first_look: u32, max: u32 },
    /// Exactly this many re-runs, one look.
    Fixed { n: u32 },
}

impl Repeats {
    /// The default policy of a point: auto, first look after `[verify]
    /// repeats` re-runs (at least 2), at most `[verify] max-repeats`.
    pub fn auto(verify: &Verify) -> Repeats {
        let max = verify.max_repeats.max(2);
        Repeats::Auto {
            first_look: verify.repeats.clamp(2, max),
            max,
        }
    }

    /// The most re-runs this policy may make.
    pub fn max(self) -> u32 {
        match self {
            Repeats::Auto { max, .. } => max,
            Repeats::Fixed { n } => n,
        }
    }

    /// The re-run counts after which the verdict is judged: auto looks at
    /// `first_look`, then at twice the previous count, and at `max` (3, 6,
    /// 10 by default); fixed looks once. Few looks keep the correction over
    /// them small, while a clear case still stops at the first.
    pub fn looks(self) -> Vec<u32> {
        match self {
            Repeats::Auto { first_look, max } => {
                let mut looks = vec![first_look.min(max)];
                while let Some(&last) = looks.last().filter(|&&l| l < max) {
                    looks.push((last * 2).min(max));
                }
                looks
            }
            Repeats::Fixed { n } => vec![n],
        }
    }

    /// Whether a look is taken after `reruns` re-runs.
    pub fn is_look(self, reruns: u32) -> bool {
        self.looks().contains(&reruns)
    }

    /// The next look after `reruns` re-runs, if any.
    pub fn next_look(self, reruns: u32) -> Option<u32> {
        self.looks().into_iter().find(|&l| l > reruns)
    }
}

/// The whole statistical policy of one verification, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Method {
    pub name: &'static str,
    pub reference: &'static str,
    /// Two-sided error rate of one verdict over all looks.
    pub alpha: f64,
    pub repeats: Repeats,
    /// `1 − α/looks`: the confidence of each look's interval, which must
    /// lie inside the band for REPRODUCED.
    pub per_look_confidence: f64,
    /// `1 − α/(looks · metrics)`: the confidence of the interval that must
    /// lie wholly outside the band for NOT REPRODUCED (corrected over the
    /// metrics too, since any one of them makes the overall verdict).
    pub accusation_confidence: f64,
    pub within_run_resamples: usize,
    pub seed: u64,
}

impl Method {
    pub fn new(repeats: Repeats) -> Method {
        let looks = repeats.looks().len().max(1) as f64;
        Method {
            name: METHOD,
            reference: REFERENCE,
            alpha: ALPHA,
            repeats,
            per_look_confidence: 1.0 - ALPHA / looks,
            accusation_confidence: 1.0 - ALPHA / (looks * METRICS.len() as f64),
            within_run_resamples: WITHIN_RESAMPLES,
            seed: SEED,
        }
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

/// The verdict of one metric from its two intervals: REPRODUCED when the
/// per-look interval lies inside the band, NOT REPRODUCED when the wider
/// accusation interval lies wholly outside it, else INCONCLUSIVE.
pub fn decide(interval: Interval, accusation: Interval, band: f64) -> Verdict {
    match (judge(interval, band), judge(accusation, band)) {
        (Verdict::Reproduced, _) => Verdict::Reproduced,
        (_, Verdict::NotReproduced) => Verdict::NotReproduced,
        _ => Verdict::Inconclusive,
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

/// Whether a metric is a throughput (one value per run, nothing within)
/// or a latency percentile (over a run's requests).
pub fn is_throughput(metric: VerifyMetric) -> bool {
    matches!(
        metric,
        VerifyMetric::OutputThroughput | VerifyMetric::RequestThroughput
    )
}

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

/// The quantile a latency metric takes, `None` for throughputs.
pub fn quantile_of(metric: VerifyMetric) -> Option<f64> {
    latency_of(metric).map(|(_, q)| q)
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

/// The fewest values from which a two-sided distribution-free `1 − alpha`
/// interval for the `q` quantile exists: the smallest `n` with
/// `max(q, 1 − q)^n ≤ alpha/2` (with fewer, even the sample's extremes
/// bound the quantile with less confidence than asked).
pub fn min_values(q: f64, alpha: f64) -> usize {
    let p = q.max(1.0 - q);
    ((alpha / 2.0).ln() / p.ln()).ceil() as usize
}

/// How many values one run contributes to a latency metric.
pub fn count_values(metric: VerifyMetric, requests: &[RequestSample]) -> usize {
    let Some((values_of, _)) = latency_of(metric) else {
        return 0;
    };
    let mut values = Vec::new();
    for r in requests {
        values_of(r, &mut values);
    }
    values.len()
}

/// The sampling variance of the log of a run's latency percentile, from a
/// cluster bootstrap of its requests (a resampled request brings all its
/// values, so the correlated gaps of one request move together: Efron &
/// Tibshirani 1993 §8.5). Zero for throughputs and for runs with fewer than
/// two requests carrying the metric.
pub fn within_variance(metric: VerifyMetric, requests: &[RequestSample], seed: u64) -> f64 {
    let Some((values_of, q)) = latency_of(metric) else {
        return 0.0;
    };
    let n = requests.len();
    if n < 2 {
        return 0.0;
    }
    let mut rng = Rng::new(seed, stream(metric));
    let mut values = Vec::new();
    let mut logs = Vec::with_capacity(WITHIN_RESAMPLES);
    for _ in 0..WITHIN_RESAMPLES {
        values.clear();
        for _ in 0..n {
            let i = rng.range_inclusive(0, n as u64 - 1) as usize;
            values_of(&requests[i], &mut values);
        }
        if let Some(v) = quantile(&mut values, q).filter(|v| *v > 0.0) {
            logs.push(v.ln());
        }
    }
    sample_variance(&logs).unwrap_or(0.0)
}

/// Each metric draws from its own stream of the seed.
fn stream(metric: VerifyMetric) -> u64 {
    METRICS.iter().position(|m| *m == metric).unwrap_or(0) as u64 + 1
}

fn sample_variance(xs: &[f64]) -> Option<f64> {
    let n = xs.len();
    if n < 2 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    Some(xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64)
}

/// One run's value of a metric and the sampling variance of its log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunValue {
    pub value: f64,
    pub within_var: f64,
}

/// The interval of the ratio *this machine / reported* at one look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// `exp(θ̂)`: this machine's geometric mean over the reported value.
    pub ratio: f64,
    pub interval: Interval,
    /// This machine's geometric mean.
    pub here: f64,
    log_ratio: f64,
    /// Run-to-run variance of one run's log value, `v`.
    run_var: f64,
    /// The reported run's variance, `v_r`.
    reported_var: f64,
}

/// The `p` quantile of Student's t with `df` degrees of freedom. Memoised
/// per thread: a verification asks for the same few quantiles at every look,
/// and the error-rate tests ask millions of times.
fn t_quantile(p: f64, df: f64) -> f64 {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static MEMO: RefCell<HashMap<(u64, u64), f64>> = RefCell::new(HashMap::new());
    }
    MEMO.with(|m| {
        *m.borrow_mut()
            .entry((p.to_bits(), df.to_bits()))
            .or_insert_with(|| {
                // Degrees of freedom are ≥ 1 and finite here: construction succeeds.
                StudentsT::new(0.0, 1.0, df)
                    .map(|t| t.inverse_cdf(p))
                    .unwrap_or(f64::INFINITY)
            })
    })
}

impl Estimate {
    /// The estimate from the reported run and at least two runs here, with
    /// positive finite values; `None` otherwise.
    pub fn new(reported: RunValue, here: &[RunValue], alpha: f64) -> Option<Estimate> {
        let ok = |v: &RunValue| v.value > 0.0 && v.value.is_finite() && v.within_var.is_finite();
        if here.len() < 2 || !ok(&reported) || !here.iter().all(ok) {
            return None;
        }
        let n = here.len() as f64;
        let logs: Vec<f64> = here.iter().map(|r| r.value.ln()).collect();
        let mean = logs.iter().sum::<f64>() / n;
        let s2 = sample_variance(&logs)?;
        let w_here = here.iter().map(|r| r.within_var).sum::<f64>() / n;
        let run_var = s2.max(w_here);
        let reported_var = (run_var - w_here + reported.within_var).max(reported.within_var);
        let log_ratio = mean - reported.value.ln();
        let mut e = Estimate {
            ratio: log_ratio.exp(),
            interval: Interval { lo: 0.0, hi: 0.0 },
            here: mean.exp(),
            log_ratio,
            run_var,
            reported_var,
        };
        e.interval = e.interval_with(here.len(), alpha);
        Some(e)
    }

    /// The interval with the same runs at another error rate.
    pub fn interval_at(&self, n: usize, alpha: f64) -> Interval {
        self.interval_with(n, alpha)
    }

    /// The interval this estimate's variances give with `n` runs here.
    fn interval_with(&self, n: usize, alpha: f64) -> Interval {
        let se = (self.run_var / n as f64 + self.reported_var).sqrt();
        let half = t_quantile(1.0 - alpha / 2.0, (n - 1) as f64) * se;
        Interval {
            lo: (self.log_ratio - half).exp(),
            hi: (self.log_ratio + half).exp(),
        }
    }

    /// The fewest runs here (more than `n`, up to `cap`) at which the same
    /// ratio and variances would decide the band (REPRODUCED at `alpha`,
    /// NOT REPRODUCED at `accuse`); `None` when even `cap` runs would not
    /// (the reported run's own variance is wider than the band allows).
    pub fn runs_to_decide(
        &self,
        n: usize,
        band: f64,
        alpha: f64,
        accuse: f64,
        cap: usize,
    ) -> Option<usize> {
        (n + 1..=cap).find(|&m| {
            decide(
                self.interval_with(m, alpha),
                self.interval_with(m, accuse),
                band,
            ) != Verdict::Inconclusive
        })
    }

    /// The reported run's own standard deviation, relative (`√v_r`).
    pub fn reported_sd(&self) -> f64 {
        self.reported_var.sqrt()
    }
}

/// One metric compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricResult {
    /// The `[verify] tolerance` key, e.g. `median-ttft`.
    pub metric: String,
    /// `tok/s`, `req/s` or `ms`.
    pub unit: String,
    pub reported: Option<f64>,
    /// This machine's geometric mean over its runs.
    pub remeasured: Option<f64>,
    /// `remeasured / reported`.
    pub ratio: Option<f64>,
    /// The interval of the ratio at the deciding (or last) look, at the
    /// per-look confidence: inside the band is REPRODUCED.
    pub interval: Option<Interval>,
    /// The same at the accusation confidence: wholly outside the band is
    /// NOT REPRODUCED.
    pub accusation_interval: Option<Interval>,
    pub band: f64,
    /// Runs of this machine the interval came from.
    pub runs: usize,
    /// Values each run contributes (the fewest over the runs); `None` for
    /// throughputs.
    pub values_per_run: Option<usize>,
    /// Whether the metric counts in the overall verdict.
    pub judged: bool,
    /// `None` when not judged.
    pub verdict: Option<Verdict>,
    /// The re-runs after which the verdict was decided (REPRODUCED or NOT
    /// REPRODUCED).
    pub decided_after: Option<u32>,
    /// For INCONCLUSIVE: the total runs here that would likely decide it
    /// at this variance, when some number up to 100 would.
    pub runs_to_decide: Option<usize>,
    /// Why the verdict is what it is when the numbers alone do not say.
    pub note: Option<String>,
}

/// What one metric has to be judged from.
#[derive(Debug, Clone)]
pub struct MetricInput {
    pub reported: Option<RunValue>,
    /// The reported run's count of values (latency metrics).
    pub reported_values: Option<usize>,
    pub here: Vec<RunValue>,
    /// The fewest values any run here contributes (latency metrics).
    pub here_values: Option<usize>,
}

/// Compares one metric at one look.
pub fn compare(
    metric: VerifyMetric,
    input: &MetricInput,
    band: f64,
    method: &Method,
    reruns: u32,
) -> MetricResult {
    let throughput = is_throughput(metric);
    let unit = match metric {
        VerifyMetric::OutputThroughput => "tok/s",
        VerifyMetric::RequestThroughput => "req/s",
        _ => "ms",
    };
    let values_per_run = match (input.reported_values, input.here_values) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut result = MetricResult {
        metric: metric.as_str().to_string(),
        unit: unit.to_string(),
        reported: input.reported.map(|r| r.value),
        remeasured: geometric_mean(&input.here),
        ratio: None,
        interval: None,
        accusation_interval: None,
        band,
        runs: input.here.len(),
        values_per_run: if throughput { None } else { values_per_run },
        judged: false,
        verdict: None,
        decided_after: None,
        runs_to_decide: None,
        note: None,
    };
    if input.reported.is_none() && input.here.is_empty() {
        result.note = Some("neither side has this metric".to_string());
        return result;
    }
    if let Some(q) = quantile_of(metric) {
        let need = min_values(q, method.alpha);
        let have = values_per_run.unwrap_or(0);
        if have < need {
            result.note = Some(format!(
                "not judged: {have} values per run, a p{} needs at least {need}",
                (q * 100.0).round()
            ));
            return result;
        }
    }
    let Some(reported) = input.reported else {
        result.note = Some("not judged: the reported run has no value for this metric".into());
        return result;
    };
    if input.here.len() < 2 {
        result.note = Some(format!(
            "not judged: {} run(s) here with this metric, at least 2 are needed",
            input.here.len()
        ));
        return result;
    }
    let alpha = 1.0 - method.per_look_confidence;
    let accuse = 1.0 - method.accusation_confidence;
    let Some(estimate) = Estimate::new(reported, &input.here, alpha) else {
        result.note = Some("not judged: a value is zero or not finite, no ratio".into());
        return result;
    };
    let n = input.here.len();
    let accusation = estimate.interval_at(n, accuse);
    result.judged = true;
    result.ratio = Some(estimate.ratio);
    result.interval = Some(estimate.interval);
    result.accusation_interval = Some(accusation);
    let verdict = decide(estimate.interval, accusation, band);
    result.verdict = Some(verdict);
    if verdict != Verdict::Inconclusive {
        result.decided_after = Some(reruns);
        return result;
    }
    result.runs_to_decide = estimate.runs_to_decide(n, band, alpha, accuse, 100);
    if judge(estimate.interval, band) == Verdict::NotReproduced {
        result.note = Some(format!(
            "outside the band at {}, not yet at the {} a NOT REPRODUCED needs",
            percent(method.per_look_confidence),
            percent(method.accusation_confidence)
        ));
    } else if result.runs_to_decide.is_none() {
        result.note = Some(format!(
            "more re-runs cannot decide it: one run varies by ±{:.1}% (1 sd), too much for a ±{:.0}% band",
            100.0 * estimate.reported_sd(),
            100.0 * band
        ));
    }
    result
}

/// A confidence as a percentage with no more decimals than it needs.
pub fn percent(confidence: f64) -> String {
    let s = format!("{:.3}", confidence * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

fn geometric_mean(xs: &[RunValue]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| x.value <= 0.0 || !x.value.is_finite()) {
        return None;
    }
    Some((xs.iter().map(|x| x.value.ln()).sum::<f64>() / xs.len() as f64).exp())
}

/// The running judgement of a sequential verification: each metric's
/// verdict is fixed at the first look that decides it.
#[derive(Debug, Clone)]
pub struct Sequential {
    pub method: Method,
    pub metrics: Vec<MetricResult>,
}

impl Sequential {
    pub fn new(method: Method) -> Sequential {
        Sequential {
            method,
            metrics: Vec::new(),
        }
    }

    /// Takes a look with `results` computed at it: decided metrics keep
    /// their earlier verdict.
    pub fn look(&mut self, results: Vec<MetricResult>) {
        if self.metrics.is_empty() {
            self.metrics = results;
            return;
        }
        for (old, new) in self.metrics.iter_mut().zip(results) {
            if old.decided_after.is_none() {
                *old = new;
            }
        }
    }

    /// The judged metrics not yet decided.
    pub fn undecided(&self) -> Vec<&MetricResult> {
        self.metrics
            .iter()
            .filter(|m| m.judged && m.decided_after.is_none())
            .collect()
    }

    /// Whether the verification can stop: every judged metric decided.
    pub fn done(&self) -> bool {
        !self.metrics.is_empty() && self.undecided().is_empty()
    }

    pub fn verdict(&self) -> Verdict {
        overall(
            self.metrics
                .iter()
                .filter(|m| m.judged)
                .filter_map(|m| m.verdict),
        )
    }

    /// The metrics judged (`true`) or not judged (`false`), in table order.
    pub fn names(&self, judged: bool) -> Vec<String> {
        self.metrics
            .iter()
            .filter(|m| m.judged == judged)
            .map(|m| m.metric.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
