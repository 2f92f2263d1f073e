//! A compact human-readable view of a summary, laid out like the "Serving
//! Benchmark Result" block vLLM's benchmark prints, so readers used to that
//! block find each figure where they expect it. Rows that do not apply
//! (per-GPU on a CPU run, goodput without SLOs) are left out; an undefined
//! figure shows as `-`.

use std::fmt::Write as _;

use super::stats::LatencyStats;
use super::summary::Summary;

const WIDTH: usize = 50;

/// Renders `summary` as a table of fixed-width lines, ending in a newline.
pub fn render_table(summary: &Summary) -> String {
    let mut out = String::new();
    let c = &summary.counts;
    let t = &summary.throughput;
    heading(&mut out, " Serving Benchmark Result ", '=');
    row(&mut out, "Successful requests:", c.completed.to_string());
    row(&mut out, "Failed requests:", c.failed.to_string());
    if c.warmup_excluded > 0 {
        row(
            &mut out,
            "Warmup requests (excluded):",
            c.warmup_excluded.to_string(),
        );
    }
    if c.token_disagreements > 0 {
        let text = format!(
            "{} (|Δ| {})",
            c.token_disagreements, c.token_disagreement_abs
        );
        row(&mut out, "Token count disagreements:", text);
    }
    row(
        &mut out,
        "Benchmark duration (s):",
        float(summary.window.duration_s),
    );
    row(
        &mut out,
        "Total input tokens:",
        summary.totals.input_tokens.to_string(),
    );
    row(
        &mut out,
        "Total generated tokens:",
        summary.totals.output_tokens.to_string(),
    );
    row(
        &mut out,
        "Request throughput (req/s):",
        float(t.requests_per_s),
    );
    if let Some(goodput) = t.goodput_requests_per_s {
        row(&mut out, "Request goodput (req/s):", float(Some(goodput)));
    }
    row(
        &mut out,
        "Output token throughput (tok/s):",
        float(t.output_tokens_per_s),
    );
    row(
        &mut out,
        "Peak output token throughput (tok/s):",
        t.max_output_tokens_per_s.to_string(),
    );
    row(
        &mut out,
        "Peak concurrent requests:",
        t.max_concurrent_requests.to_string(),
    );
    row(
        &mut out,
        "Total token throughput (tok/s):",
        float(t.total_tokens_per_s),
    );
    if summary.gpus > 0 {
        row(&mut out, "GPUs:", summary.gpus.to_string());
        row(
            &mut out,
            "Output token throughput (tok/s/GPU):",
            float(t.output_tokens_per_s_per_gpu),
        );
        row(
            &mut out,
            "Total token throughput (tok/s/GPU):",
            float(t.total_tokens_per_s_per_gpu),
        );
    }
    row(
        &mut out,
        "Interactivity (tok/s/user, median):",
        float(summary.interactivity.median_tok_s_per_user),
    );
    let l = &summary.latency;
    latency(&mut out, "Time to First Token", "TTFT", &l.ttft);
    latency(
        &mut out,
        "Time per Output Token (excl. 1st token)",
        "TPOT",
        &l.tpot,
    );
    latency(&mut out, "Inter-token Latency", "ITL", &l.itl);
    latency(&mut out, "End-to-end Latency", "E2EL", &l.e2el);
    out.push_str(&"=".repeat(WIDTH));
    out.push('\n');
    out
}

fn latency(out: &mut String, title: &str, short: &str, stats: &LatencyStats) {
    heading(out, title, '-');
    row(out, &format!("Mean {short} (ms):"), float(stats.mean_ms));
    row(out, &format!("Median {short} (ms):"), float(stats.p50_ms));
    row(out, &format!("P99 {short} (ms):"), float(stats.p99_ms));
}

fn heading(out: &mut String, title: &str, fill: char) {
    let pad = WIDTH.saturating_sub(title.chars().count());
    let left = pad / 2;
    let fill = |n| fill.to_string().repeat(n);
    let _ = writeln!(out, "{}{title}{}", fill(left), fill(pad - left));
}

fn row(out: &mut String, label: &str, value: String) {
    let _ = writeln!(out, "{label:<40} {value}");
}

fn float(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Slo, SummaryContext, fixtures, summarize};
    use std::time::Duration;

    #[test]
    fn table_for_the_hand_built_run() {
        let slo = Slo {
            ttft: Some(Duration::from_micros(950)),
            ..Slo::default()
        };
        let ctx = SummaryContext {
            point_id: "p".into(),
            gpus: 2,
            slo,
        };
        insta::assert_snapshot!(render_table(&summarize(&fixtures::records(), &ctx)));
    }

    #[test]
    fn table_for_no_requests() {
        let ctx = SummaryContext {
            point_id: "p".into(),
            gpus: 0,
            slo: Slo::default(),
        };
        let table = render_table(&summarize(&[], &ctx));
        insta::assert_snapshot!(table);
        assert!(!table.contains("GPU"));
        assert!(!table.contains("goodput"));
    }
}
