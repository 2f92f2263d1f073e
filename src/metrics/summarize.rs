//! The computation of a [`Summary`] from records (definitions in the parent
//! module's docs and on the summary's fields).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::loadgen::record::{ErrorKind, RequestRecord};

use super::stats::{Distribution, finite};
use super::summary::{
    Counts, FailedByKind, Interactivity, Latencies, SloMs, Summary, SummaryFormat, Throughput,
    Totals, Window,
};
use super::{Slo, SummaryContext};

const NS_PER_S: u64 = 1_000_000_000;

/// Summarizes one run's records. Never fails: any set of records, including
/// none, gives a summary; figures that are undefined are `None`.
///
/// Records may come in any order; they are visited by `index`. Times that
/// run backwards (a corrupted record) count as zero-length spans rather than
/// wrapping around.
pub fn summarize(records: &[RequestRecord], ctx: &SummaryContext) -> Summary {
    let warmup_excluded = records.iter().filter(|r| r.warmup).count() as u64;
    let mut measured: Vec<&RequestRecord> = records.iter().filter(|r| !r.warmup).collect();
    // Stable: records sharing an index keep their given order.
    measured.sort_by_key(|r| r.index);

    let window = measurement_window(&measured);
    let duration_s = window.map(|(start, end)| (end - start) as f64 / NS_PER_S as f64);

    let mut counts = Counts {
        measured: measured.len() as u64,
        completed: 0,
        failed: 0,
        failed_by_kind: FailedByKind::default(),
        warmup_excluded,
        token_disagreements: 0,
        token_disagreement_abs: 0,
        slo_met: ctx.slo.is_set().then_some(0),
    };
    let mut totals = Totals {
        input_tokens: 0,
        output_tokens: 0,
    };
    let mut ttft = Distribution::new();
    let mut tpot = Distribution::new();
    let mut itl = Distribution::new();
    let mut itl_per_token = Distribution::new();
    let mut e2el = Distribution::new();
    let mut queue_delay = Distribution::new();

    for record in &measured {
        if let Some(error) = &record.error {
            counts.failed += 1;
            count_failure(&mut counts.failed_by_kind, error.kind);
            continue;
        }
        counts.completed += 1;

        let chunk_tokens = record.chunk_output_tokens();
        if let Some(usage) = record.usage_output_tokens {
            let usage = u64::from(usage);
            if usage != chunk_tokens {
                counts.token_disagreements += 1;
                counts.token_disagreement_abs += usage.abs_diff(chunk_tokens);
            }
        }
        totals.input_tokens += record.input_tokens_used();
        totals.output_tokens += record.output_tokens();

        let lat = RequestLatency::of(record);
        if let Some(t) = lat.ttft_ns {
            ttft.add_ns(t);
        }
        if let Some((span, steps)) = lat.tpot {
            tpot.add_ratio(span, steps, 1);
        }
        e2el.add_ns(lat.e2el_ns);
        queue_delay.add_ns(record.sent_ns.saturating_sub(record.scheduled_ns));
        for (gap, tokens) in token_gaps(record) {
            itl.add_ns(gap);
            itl_per_token.add_ratio(gap, u64::from(tokens), u64::from(tokens));
        }
        if let Some(met) = counts.slo_met.as_mut()
            && lat.meets(&ctx.slo)
        {
            *met += 1;
        }
    }

    let latency = Latencies {
        ttft: ttft.stats(),
        tpot: tpot.stats(),
        itl: itl.stats(),
        itl_per_token: itl_per_token.stats(),
        e2el: e2el.stats(),
        queue_delay: queue_delay.stats(),
    };
    let interactivity = Interactivity {
        median_tok_s_per_user: latency.tpot.p50_ms.and_then(per_user_rate),
        mean_tok_s_per_user: latency.tpot.mean_ms.and_then(per_user_rate),
    };

    let rate = |n: u64| duration_s.and_then(|d| finite(n as f64 / d));
    let per_gpu = |x: Option<f64>| match ctx.gpus {
        0 => None,
        g => x.and_then(|x| finite(x / f64::from(g))),
    };
    let requests_per_s = rate(counts.completed);
    let output_tokens_per_s = rate(totals.output_tokens);
    let total_tokens_per_s = rate(totals.input_tokens + totals.output_tokens);
    let throughput = Throughput {
        requests_per_s,
        output_tokens_per_s,
        total_tokens_per_s,
        requests_per_s_per_gpu: per_gpu(requests_per_s),
        output_tokens_per_s_per_gpu: per_gpu(output_tokens_per_s),
        total_tokens_per_s_per_gpu: per_gpu(total_tokens_per_s),
        goodput_requests_per_s: counts.slo_met.and_then(rate),
        max_output_tokens_per_s: window
            .map(|(start, _)| max_tokens_per_second(&measured, start))
            .unwrap_or(0),
        max_concurrent_requests: max_concurrency(&measured),
    };

    Summary {
        format: SummaryFormat,
        point_id: ctx.point_id.clone(),
        gpus: ctx.gpus,
        slo: SloMs {
            ttft_ms: ctx.slo.ttft.map(duration_ms),
            tpot_ms: ctx.slo.tpot.map(duration_ms),
            e2el_ms: ctx.slo.e2el.map(duration_ms),
        },
        window: Window {
            start_ns: window.map(|(start, _)| start),
            end_ns: window.map(|(_, end)| end),
            duration_s,
        },
        counts,
        totals,
        throughput,
        latency,
        interactivity,
    }
}

/// One completed measured request's latencies in ms, by the definitions
/// [`summarize`] uses: what a resampling of requests (`verify`) draws from.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSample {
    /// `None` when no token arrived.
    pub ttft_ms: Option<f64>,
    /// `None` unless `N_out > 1`.
    pub tpot_ms: Option<f64>,
    /// Each gap between successive token-bearing chunks (per-chunk ITL).
    pub itl_ms: Vec<f64>,
    pub e2el_ms: f64,
}

/// The per-request latencies of the completed measured requests, in
/// request index order.
pub fn request_samples(records: &[RequestRecord]) -> Vec<RequestSample> {
    let mut measured: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| !r.warmup && r.error.is_none())
        .collect();
    measured.sort_by_key(|r| r.index);
    let ms = |ns: u64| ns as f64 / 1e6;
    measured
        .into_iter()
        .map(|record| {
            let lat = RequestLatency::of(record);
            RequestSample {
                ttft_ms: lat.ttft_ns.map(ms),
                tpot_ms: lat
                    .tpot
                    .map(|(span, steps)| span as f64 / steps as f64 / 1e6),
                itl_ms: token_gaps(record).map(|(gap, _)| ms(gap)).collect(),
                e2el_ms: ms(lat.e2el_ns),
            }
        })
        .collect()
}

/// First `sent_ns` → last `end_ns` over the measured requests.
fn measurement_window(measured: &[&RequestRecord]) -> Option<(u64, u64)> {
    let start = measured.iter().map(|r| r.sent_ns).min()?;
    let end = measured.iter().map(|r| r.end_ns).max()?;
    Some((start, end.max(start)))
}

fn count_failure(by_kind: &mut FailedByKind, kind: ErrorKind) {
    // Exhaustive on purpose: a new error kind must get its own count.
    let slot = match kind {
        ErrorKind::Connect => &mut by_kind.connect,
        ErrorKind::Http => &mut by_kind.http,
        ErrorKind::Timeout => &mut by_kind.timeout,
        ErrorKind::Stream => &mut by_kind.stream,
        ErrorKind::Disconnected => &mut by_kind.disconnected,
    };
    *slot += 1;
}

/// One completed request's latencies in ns.
struct RequestLatency {
    /// `None` when no token arrived.
    ttft_ns: Option<u64>,
    e2el_ns: u64,
    /// `(E2EL − TTFT, N_out − 1)` when `N_out > 1`: TPOT is their ratio,
    /// kept as a fraction so SLO checks compare exactly.
    tpot: Option<(u64, u64)>,
}

impl RequestLatency {
    fn of(record: &RequestRecord) -> Self {
        let ttft_ns = record
            .first_token_ns
            .map(|first| first.saturating_sub(record.sent_ns));
        let e2el_ns = record.end_ns.saturating_sub(record.sent_ns);
        let n_out = record.output_tokens();
        let tpot = match ttft_ns {
            Some(ttft) if n_out > 1 => Some((e2el_ns.saturating_sub(ttft), n_out - 1)),
            _ => None,
        };
        Self {
            ttft_ns,
            e2el_ns,
            tpot,
        }
    }

    /// Whether every SLO that is set is met (`≤`, as vLLM's goodput). A
    /// request with no token misses a TTFT objective; one with a single
    /// output token has no TPOT and so cannot miss a TPOT objective.
    fn meets(&self, slo: &Slo) -> bool {
        let ttft_ok = slo.ttft.is_none_or(|limit| {
            self.ttft_ns
                .is_some_and(|t| u128::from(t) <= limit.as_nanos())
        });
        let tpot_ok = slo.tpot.is_none_or(|limit| {
            self.tpot.is_none_or(|(span, steps)| {
                u128::from(span) <= limit.as_nanos() * u128::from(steps)
            })
        });
        let e2el_ok = slo
            .e2el
            .is_none_or(|limit| u128::from(self.e2el_ns) <= limit.as_nanos());
        ttft_ok && tpot_ok && e2el_ok
    }
}

/// `(gap_ns, tokens)` for each token-bearing chunk after the first: the gap
/// since the previous token-bearing chunk and the tokens it carried. Chunks
/// carrying zero tokens are not token-bearing and are skipped.
fn token_gaps(record: &RequestRecord) -> impl Iterator<Item = (u64, u32)> + '_ {
    let mut bearing = record.chunks.iter().filter(|c| c.tokens > 0);
    let mut previous = bearing.next().map(|c| c.t_ns);
    bearing.map(move |chunk| {
        let gap = previous.map_or(0, |p| chunk.t_ns.saturating_sub(p));
        previous = Some(chunk.t_ns);
        (gap, chunk.tokens)
    })
}

/// Most output tokens of completed requests arriving within one 1-second
/// bucket `[start + k s, start + (k+1) s)` (vLLM's `max_output_tokens_per_s`
/// uses the same buckets from the first request's start).
fn max_tokens_per_second(measured: &[&RequestRecord], start_ns: u64) -> u64 {
    let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
    for record in measured.iter().filter(|r| r.succeeded()) {
        for chunk in &record.chunks {
            let second = chunk.t_ns.saturating_sub(start_ns) / NS_PER_S;
            *buckets.entry(second).or_default() += u64::from(chunk.tokens);
        }
    }
    buckets.values().copied().max().unwrap_or(0)
}

/// Most measured requests (failed ones too: they occupied the server) in
/// flight at once, over half-open `[sent, end)` intervals: a request ending
/// exactly when another is sent does not overlap it.
fn max_concurrency(measured: &[&RequestRecord]) -> u64 {
    // (time, +1 start / -1 end); ends sort before starts at the same time.
    let mut events: Vec<(u64, i8)> = Vec::with_capacity(measured.len() * 2);
    for record in measured {
        events.push((record.sent_ns, 1));
        events.push((record.end_ns.max(record.sent_ns), -1));
    }
    events.sort_unstable();
    let mut current: i64 = 0;
    let mut max: i64 = 0;
    for (_, delta) in events {
        current += i64::from(delta);
        max = max.max(current);
    }
    max as u64
}

/// Tokens per second for one user from a per-token time in ms.
fn per_user_rate(tpot_ms: f64) -> Option<f64> {
    if tpot_ms > 0.0 {
        finite(1000.0 / tpot_ms)
    } else {
        None
    }
}

fn duration_ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::record::Chunk;
    use crate::metrics::fixtures::{self, S, us};
    use crate::metrics::stats::LatencyStats;
    use crate::rng::Rng;

    fn ctx(gpus: u32, slo: Slo) -> SummaryContext {
        SummaryContext {
            point_id: "p-1".into(),
            gpus,
            slo,
        }
    }

    fn fixture_summary() -> Summary {
        summarize(&fixtures::records(), &ctx(2, Slo::default()))
    }

    fn micros(d: u64) -> Duration {
        Duration::from_micros(d)
    }

    #[test]
    fn request_samples_agree_with_the_summary() {
        let records = fixtures::records();
        let summary = fixture_summary();
        let samples = request_samples(&records);
        assert_eq!(samples.len() as u64, summary.counts.completed);
        let mean = |xs: Vec<f64>| xs.iter().sum::<f64>() / xs.len() as f64;
        let close = |a: f64, b: Option<f64>| (a - b.unwrap()).abs() < 1e-9;
        let e2el = mean(samples.iter().map(|s| s.e2el_ms).collect());
        assert!(close(e2el, summary.latency.e2el.mean_ms));
        let ttft = mean(samples.iter().filter_map(|s| s.ttft_ms).collect());
        assert!(close(ttft, summary.latency.ttft.mean_ms));
        let tpot = mean(samples.iter().filter_map(|s| s.tpot_ms).collect());
        assert!(close(tpot, summary.latency.tpot.mean_ms));
        let itl: Vec<f64> = samples.iter().flat_map(|s| s.itl_ms.clone()).collect();
        assert_eq!(itl.len() as u64, summary.latency.itl.count);
        assert!(close(mean(itl), summary.latency.itl.mean_ms));
    }

    /// Asserts the figures a distribution must have, in ms.
    #[track_caller]
    fn assert_stats(
        s: &LatencyStats,
        count: u64,
        mean: f64,
        min: f64,
        p50: f64,
        p90: f64,
        max: f64,
    ) {
        assert_eq!(s.count, count, "count");
        assert_eq!(s.mean_ms, Some(mean), "mean");
        assert_eq!(s.min_ms, Some(min), "min");
        assert_eq!(s.p50_ms, Some(p50), "p50");
        assert_eq!(s.p90_ms, Some(p90), "p90");
        assert_eq!(s.max_ms, Some(max), "max");
    }

    #[test]
    fn counts_follow_the_records() {
        let c = fixture_summary().counts;
        assert_eq!(c.measured, 5);
        assert_eq!(c.completed, 3);
        assert_eq!(c.failed, 2);
        assert_eq!(
            c.failed_by_kind,
            FailedByKind {
                timeout: 1,
                http: 1,
                ..FailedByKind::default()
            }
        );
        assert_eq!(c.warmup_excluded, 1);
        // Request 3: usage says 4 tokens, its chunks carry 3.
        assert_eq!(c.token_disagreements, 1);
        assert_eq!(c.token_disagreement_abs, 1);
        assert_eq!(c.slo_met, None);
    }

    #[test]
    fn window_runs_from_first_send_to_last_end_including_failures() {
        let w = fixture_summary().window;
        // Request 5 is sent at S; request 4 times out at S + 2 s.
        assert_eq!(w.start_ns, Some(S));
        assert_eq!(w.end_ns, Some(S + 2 * NS_PER_S));
        assert_eq!(w.duration_s, Some(2.0));
    }

    #[test]
    fn totals_and_throughputs_over_the_window() {
        let s = fixture_summary();
        // Input: usage 100 + generated 200 + usage 300; output: usage 5+5+4.
        assert_eq!(
            s.totals,
            Totals {
                input_tokens: 600,
                output_tokens: 14
            }
        );
        let t = &s.throughput;
        assert_eq!(t.requests_per_s, Some(1.5));
        assert_eq!(t.output_tokens_per_s, Some(7.0));
        assert_eq!(t.total_tokens_per_s, Some(307.0));
        assert_eq!(t.requests_per_s_per_gpu, Some(0.75));
        assert_eq!(t.output_tokens_per_s_per_gpu, Some(3.5));
        assert_eq!(t.total_tokens_per_s_per_gpu, Some(153.5));
        assert_eq!(t.goodput_requests_per_s, None);
        // All 13 chunk tokens of the completed requests arrive in [S, S+1s).
        assert_eq!(t.max_output_tokens_per_s, 13);
        // Requests 1–4 are all in flight over [S+300µs, S+1150µs).
        assert_eq!(t.max_concurrent_requests, 4);
    }

    #[test]
    fn cpu_runs_have_no_per_gpu_figures() {
        let s = summarize(&fixtures::records(), &ctx(0, Slo::default()));
        assert_eq!(s.throughput.output_tokens_per_s, Some(7.0));
        assert_eq!(s.throughput.requests_per_s_per_gpu, None);
        assert_eq!(s.throughput.output_tokens_per_s_per_gpu, None);
        assert_eq!(s.throughput.total_tokens_per_s_per_gpu, None);
    }

    #[test]
    fn latency_distributions_match_hand_computation() {
        let l = fixture_summary().latency;
        // TTFT {1000, 900, 500} µs.
        assert_stats(&l.ttft, 3, 0.8, 0.5, 0.9, 1.0, 1.0);
        // Population std: sqrt((200² + 100² + 300²) / 3) µs.
        let std = l.ttft.std_ms.expect("ttft std");
        assert!(
            (std - (140_000.0f64 / 3.0).sqrt() / 1e3).abs() < 1e-12,
            "{std}"
        );
        // E2EL {1800, 1900, 950} µs.
        assert_stats(&l.e2el, 3, 1.55, 0.95, 1.8, 1.9, 1.9);
        // TPOT: (1800−1000)/4, (1900−900)/4, (950−500)/(4−1) — request 3
        // divides by its usage count 4, not its 3 chunks.
        assert_stats(&l.tpot, 3, 0.2, 0.15, 0.2, 0.25, 0.25);
        // Queue delay {100, 300, 200} µs.
        assert_stats(&l.queue_delay, 3, 0.2, 0.1, 0.2, 0.3, 0.3);
        // Chunk gaps {200×4, 600, 300, 200×2}: 2100 µs over 8 gaps; the
        // 90th percentile is rank ceil(7.2) = 8, the 600 µs gap.
        assert_stats(&l.itl, 8, 0.2625, 0.2, 0.2, 0.6, 0.6);
        assert_eq!(l.itl.p99_9_ms, Some(0.6));
    }

    #[test]
    fn itl_per_token_splits_a_multi_token_chunk() {
        let l = fixture_summary().latency;
        // The 600 µs gap before request 2's 3-token chunk becomes 3 × 200 µs:
        // {200×9, 300}, still 2100 µs in all, over 10 tokens.
        assert_stats(&l.itl_per_token, 10, 0.21, 0.2, 0.2, 0.2, 0.3);
        assert_eq!(l.itl_per_token.p95_ms, Some(0.3));
        // Weighted std: mean 210 µs, variance (9 · 10² + 90²) / 10 = 900 µs².
        let std = l.itl_per_token.std_ms.expect("per-token std");
        assert!((std - 0.03).abs() < 1e-15, "{std}");
        // Per chunk the same request gives one 600 µs sample.
        assert_eq!(l.itl.max_ms, Some(0.6));
    }

    #[test]
    fn interactivity_is_1000_over_tpot() {
        let i = fixture_summary().interactivity;
        assert_eq!(i.median_tok_s_per_user, Some(5000.0));
        assert_eq!(i.mean_tok_s_per_user, Some(5000.0));
    }

    #[test]
    fn warmup_requests_change_nothing_but_their_count() {
        let records = fixtures::records();
        let without_warmup: Vec<_> = records.iter().filter(|r| !r.warmup).cloned().collect();
        let mut with = summarize(&records, &ctx(2, Slo::default()));
        let without = summarize(&without_warmup, &ctx(2, Slo::default()));
        assert_eq!(with.counts.warmup_excluded, 1);
        assert_eq!(without.counts.warmup_excluded, 0);
        with.counts.warmup_excluded = 0;
        assert_eq!(with, without);
    }

    #[test]
    fn failed_requests_are_counted_but_feed_no_latency() {
        let records = fixtures::records();
        let completed: Vec<_> = records
            .iter()
            .filter(|r| r.error.is_none())
            .cloned()
            .collect();
        let all = summarize(&records, &ctx(2, Slo::default()));
        let ok_only = summarize(&completed, &ctx(2, Slo::default()));
        assert_eq!(all.latency, ok_only.latency);
        assert_eq!(all.counts.failed, 2);
        assert_eq!(ok_only.counts.failed, 0);
    }

    #[test]
    fn goodput_counts_requests_meeting_every_slo() {
        let records = fixtures::records();
        // TTFT ≤ 950 µs keeps requests 2 and 3; E2EL ≤ 1850 µs keeps 1 and 3.
        let slo = Slo {
            ttft: Some(micros(950)),
            tpot: None,
            e2el: Some(micros(1850)),
        };
        let s = summarize(&records, &ctx(2, slo));
        assert_eq!(s.counts.slo_met, Some(1));
        assert_eq!(s.throughput.goodput_requests_per_s, Some(0.5));
        assert_eq!(s.slo.ttft_ms, Some(0.95));
        assert_eq!(s.slo.tpot_ms, None);

        // TPOT ≤ 200 µs: request 1 sits exactly on the limit and counts.
        let slo = Slo {
            tpot: Some(micros(200)),
            ..Slo::default()
        };
        let s = summarize(&records, &ctx(2, slo));
        assert_eq!(s.counts.slo_met, Some(2));
        assert_eq!(s.throughput.goodput_requests_per_s, Some(1.0));
    }

    #[test]
    fn a_request_without_tokens_misses_a_ttft_slo_but_counts_in_e2el() {
        let mut records = fixtures::records();
        records.truncate(2); // warmup and request 1
        records[1].chunks.clear();
        records[1].first_token_ns = None;
        records[1].usage_output_tokens = Some(0);
        let slo = Slo {
            ttft: Some(Duration::from_secs(10)),
            ..Slo::default()
        };
        let s = summarize(&records, &ctx(1, slo));
        assert_eq!(s.counts.completed, 1);
        assert_eq!(s.counts.slo_met, Some(0));
        assert_eq!(s.latency.ttft.count, 0);
        assert_eq!(s.latency.tpot.count, 0);
        assert_eq!(s.latency.e2el.count, 1);
        assert_eq!(s.interactivity.median_tok_s_per_user, None);
    }

    #[test]
    fn empty_input_gives_counts_and_null_figures() {
        let s = summarize(
            &[],
            &ctx(
                8,
                Slo {
                    ttft: Some(micros(1)),
                    ..Slo::default()
                },
            ),
        );
        assert_eq!(s.counts.measured, 0);
        assert_eq!(
            s.window,
            Window {
                start_ns: None,
                end_ns: None,
                duration_s: None
            }
        );
        assert_eq!(s.throughput.requests_per_s, None);
        assert_eq!(s.throughput.goodput_requests_per_s, None);
        assert_eq!(s.throughput.max_concurrent_requests, 0);
        assert_eq!(s.latency.ttft.mean_ms, None);
        let json = s.to_json().expect("serialize");
        assert!(json.contains("\"mean_ms\": null"), "{json}");
        assert_eq!(Summary::from_json(&json).expect("read back"), s);
    }

    #[test]
    fn all_failed_gives_zero_rates_and_null_latencies() {
        let records: Vec<_> = fixtures::records()
            .into_iter()
            .filter(|r| r.error.is_some())
            .collect();
        let s = summarize(&records, &ctx(1, Slo::default()));
        assert_eq!(s.counts.completed, 0);
        assert_eq!(s.counts.failed, 2);
        assert_eq!(s.window.duration_s, Some(2.0));
        assert_eq!(s.throughput.requests_per_s, Some(0.0));
        assert_eq!(s.throughput.max_output_tokens_per_s, 0);
        assert_eq!(s.latency.e2el.count, 0);
        assert_eq!(s.latency.e2el.p99_ms, None);
        assert!(Summary::from_json(&s.to_json().expect("serialize")).is_ok());
    }

    #[test]
    fn a_zero_length_window_gives_no_rates_rather_than_infinity() {
        let mut records = fixtures::records();
        records.truncate(2);
        let r = &mut records[1];
        (r.first_token_ns, r.end_ns) = (Some(r.sent_ns), r.sent_ns);
        r.chunks = vec![Chunk {
            t_ns: r.sent_ns,
            tokens: 1,
            server_ns: None,
        }];
        let s = summarize(&records, &ctx(1, Slo::default()));
        assert_eq!(s.window.duration_s, Some(0.0));
        assert_eq!(s.throughput.requests_per_s, None);
        assert_eq!(s.throughput.total_tokens_per_s, None);
        assert_eq!(s.throughput.max_concurrent_requests, 0);
        assert!(Summary::from_json(&s.to_json().expect("serialize")).is_ok());
    }

    /// Many records with irregular times, so every float has a long
    /// expansion (the case where a lax JSON float parser loses a bit).
    fn random_records(seed: u64) -> Vec<RequestRecord> {
        let mut rng = Rng::new(seed, 0);
        (0..200)
            .map(|index| {
                let sent = rng.range_inclusive(0, 5_000_000_000);
                let mut t = sent + rng.range_inclusive(1, 300_000_000);
                let first = t;
                let chunks = (0..rng.range_inclusive(1, 40))
                    .map(|_| {
                        t += rng.range_inclusive(1, 50_000_000);
                        Chunk {
                            t_ns: t,
                            tokens: rng.range_inclusive(1, 3) as u32,
                            server_ns: None,
                        }
                    })
                    .collect::<Vec<_>>();
                let end = t + rng.range_inclusive(0, 1_000_000);
                let error = (rng.next_f64() < 0.05).then(|| crate::loadgen::record::RequestError {
                    kind: ErrorKind::Stream,
                    message: "bad chunk".into(),
                });
                RequestRecord {
                    index,
                    slot: (index % 16) as u32,
                    warmup: index < 10,
                    scheduled_ns: sent.saturating_sub(rng.range_inclusive(0, 2_000_000)),
                    sent_ns: sent,
                    stale_sent_ns: None,
                    first_token_ns: Some(first.min(chunks[0].t_ns)),
                    end_ns: end,
                    input_tokens: rng.range_inclusive(800, 1000) as u32,
                    max_output_tokens: 100,
                    usage_input_tokens: None,
                    usage_output_tokens: (index % 7 != 0)
                        .then(|| chunks.iter().map(|c| c.tokens).sum::<u32>()),
                    chunks,
                    http_status: Some(200),
                    error,
                }
            })
            .collect()
    }

    #[test]
    fn same_records_give_identical_bytes_in_any_order() {
        let slo = Slo {
            ttft: Some(Duration::from_millis(150)),
            ..Slo::default()
        };
        let records = random_records(7);
        let first = summarize(&records, &ctx(4, slo))
            .to_json()
            .expect("serialize");
        let again = summarize(&records, &ctx(4, slo))
            .to_json()
            .expect("serialize");
        assert_eq!(first, again);
        let mut shuffled = records.clone();
        shuffled.reverse();
        shuffled.swap(3, 150);
        let reordered = summarize(&shuffled, &ctx(4, slo))
            .to_json()
            .expect("serialize");
        assert_eq!(first, reordered);
        // The records are varied enough to exercise real floats.
        assert!(first.contains("\"std_ms\": 0."), "{first}");
    }

    #[test]
    fn summary_survives_a_json_round_trip_byte_for_byte() {
        for seed in 0..5 {
            let summary = summarize(&random_records(seed), &ctx(3, Slo::default()));
            let json = summary.to_json().expect("serialize");
            let back = Summary::from_json(&json).expect("deserialize");
            assert_eq!(back, summary);
            assert_eq!(back.to_json().expect("serialize again"), json);
        }
    }

    #[test]
    fn times_running_backwards_clamp_to_zero_instead_of_wrapping() {
        let mut records = fixtures::records();
        records.truncate(2);
        records[1].scheduled_ns = us(500); // after sent (us(100))
        let s = summarize(&records, &ctx(1, Slo::default()));
        assert_eq!(s.latency.queue_delay.max_ms, Some(0.0));
    }
}
