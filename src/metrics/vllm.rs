//! The summary in the result-JSON keys of vLLM's serving benchmark
//! (`vllm bench serve --save-result`), so dashboards built on those files
//! read infermark's results unchanged.
//!
//! Mapping notes: `itl` is the per-chunk ITL (vLLM measures gaps between
//! streamed chunks); percentiles are infermark's HDR nearest-rank values
//! where vLLM interpolates with numpy, so small samples can differ; a figure
//! infermark leaves undefined is written `null` where vLLM would write NaN
//! or 0. The summary holds only figures derived from the records; the keys
//! describing the invocation come from [`VllmMeta`].

use serde_json::{Map, Value, json};

use super::stats::LatencyStats;
use super::summary::Summary;

/// The invocation facts vLLM's result file records besides the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct VllmMeta {
    /// vLLM writes local time as `%Y%m%d-%H%M%S`; passed through as given.
    pub date: String,
    pub backend: String,
    pub model_id: String,
    pub tokenizer_id: String,
    /// Open-loop arrival rate in requests/s; `None` for no rate limit, which
    /// vLLM writes as the string `"inf"`.
    pub request_rate: Option<f64>,
    pub burstiness: f64,
    /// Closed-loop client count; `None` (JSON `null`) when unbounded.
    pub max_concurrency: Option<u32>,
}

/// Percentile keys as vLLM spells them (`p99.9_ttft_ms`), with the field of
/// [`LatencyStats`] each one reads.
const PERCENTILES: [(&str, fn(&LatencyStats) -> Option<f64>); 4] = [
    ("p90", |s| s.p90_ms),
    ("p95", |s| s.p95_ms),
    ("p99", |s| s.p99_ms),
    ("p99.9", |s| s.p99_9_ms),
];

/// Renders `summary` as a vLLM serving-benchmark result object.
pub fn to_vllm_json(summary: &Summary, meta: &VllmMeta) -> Value {
    let request_rate = match meta.request_rate {
        Some(rate) if rate.is_finite() => json!(rate),
        _ => json!("inf"),
    };
    let t = &summary.throughput;
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_owned(), value);
    };
    put("date", json!(meta.date));
    put("backend", json!(meta.backend));
    put("model_id", json!(meta.model_id));
    put("tokenizer_id", json!(meta.tokenizer_id));
    put("num_prompts", json!(summary.counts.measured));
    put("request_rate", request_rate);
    put("burstiness", json!(meta.burstiness));
    put("max_concurrency", json!(meta.max_concurrency));
    put("duration", json!(summary.window.duration_s));
    put("completed", json!(summary.counts.completed));
    put("failed", json!(summary.counts.failed));
    put("total_input_tokens", json!(summary.totals.input_tokens));
    put("total_output_tokens", json!(summary.totals.output_tokens));
    put("request_throughput", json!(t.requests_per_s));
    put("request_goodput", json!(t.goodput_requests_per_s));
    put("output_throughput", json!(t.output_tokens_per_s));
    put("total_token_throughput", json!(t.total_tokens_per_s));
    // vLLM writes this one as a float.
    put(
        "max_output_tokens_per_s",
        json!(t.max_output_tokens_per_s as f64),
    );
    put("max_concurrent_requests", json!(t.max_concurrent_requests));
    let latency = &summary.latency;
    for (name, stats) in [
        ("ttft", &latency.ttft),
        ("tpot", &latency.tpot),
        ("itl", &latency.itl),
        ("e2el", &latency.e2el),
    ] {
        put(&format!("mean_{name}_ms"), json!(stats.mean_ms));
        put(&format!("median_{name}_ms"), json!(stats.p50_ms));
        put(&format!("std_{name}_ms"), json!(stats.std_ms));
        for (p, field) in PERCENTILES {
            put(&format!("{p}_{name}_ms"), json!(field(stats)));
        }
    }
    Value::Object(out)
}
