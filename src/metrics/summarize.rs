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
