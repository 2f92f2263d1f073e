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
        // Percentile keys as vLLM spells them: `p99.9_ttft_ms`.
        for (p, value) in [
            ("p90", stats.p90_ms),
            ("p95", stats.p95_ms),
            ("p99", stats.p99_ms),
            ("p99.9", stats.p99_9_ms),
        ] {
            put(&format!("{p}_{name}_ms"), json!(value));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Slo, SummaryContext, fixtures, summarize};
    use std::time::Duration;

    /// The keys vLLM's serving benchmark writes (besides per-request arrays).
    const VLLM_KEYS: [&str; 19] = [
        "date",
        "backend",
        "model_id",
        "tokenizer_id",
        "num_prompts",
        "request_rate",
        "burstiness",
        "max_concurrency",
        "duration",
        "completed",
        "failed",
        "total_input_tokens",
        "total_output_tokens",
        "request_throughput",
        "request_goodput",
        "output_throughput",
        "total_token_throughput",
        "max_output_tokens_per_s",
        "max_concurrent_requests",
    ];

    fn meta(request_rate: Option<f64>) -> VllmMeta {
        VllmMeta {
            date: "20260101-000000".into(),
            backend: "vllm".into(),
            model_id: "org/model".into(),
            tokenizer_id: "org/model".into(),
            request_rate,
            burstiness: 1.0,
            max_concurrency: Some(4),
        }
    }

    fn export(slo: Slo, request_rate: Option<f64>) -> Map<String, Value> {
        let ctx = SummaryContext {
            point_id: "p".into(),
            gpus: 1,
            slo,
        };
        match to_vllm_json(&summarize(&fixtures::records(), &ctx), &meta(request_rate)) {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn every_vllm_key_is_present() {
        let out = export(Slo::default(), None);
        let mut expected: Vec<String> = VLLM_KEYS.iter().map(|k| k.to_string()).collect();
        for metric in ["ttft", "tpot", "itl", "e2el"] {
            for stat in ["mean", "median", "std", "p90", "p99", "p99.9"] {
                expected.push(format!("{stat}_{metric}_ms"));
            }
        }
        let missing: Vec<_> = expected.iter().filter(|k| !out.contains_key(*k)).collect();
        assert!(missing.is_empty(), "missing {missing:?}");
    }

    #[test]
    fn values_come_from_the_summary_and_meta() {
        let out = export(Slo::default(), None);
        assert_eq!(out["request_rate"], json!("inf"));
        assert_eq!(out["max_concurrency"], json!(4));
        assert_eq!(out["num_prompts"], json!(5));
        assert_eq!(out["completed"], json!(3));
        assert_eq!(out["failed"], json!(2));
        assert_eq!(out["duration"], json!(2.0));
        assert_eq!(out["output_throughput"], json!(7.0));
        assert_eq!(out["request_goodput"], Value::Null);
        assert_eq!(out["max_output_tokens_per_s"], json!(13.0));
        assert_eq!(out["max_concurrent_requests"], json!(4));
        assert_eq!(out["mean_ttft_ms"], json!(0.8));
        assert_eq!(out["median_e2el_ms"], json!(1.8));
        assert_eq!(out["p99.9_itl_ms"], json!(0.6));
        // vLLM's ITL is per chunk.
        assert_eq!(out["mean_itl_ms"], json!(0.2625));
    }

    #[test]
    fn a_finite_rate_and_goodput_are_numbers() {
        let slo = Slo {
            e2el: Some(Duration::from_secs(1)),
            ..Slo::default()
        };
        let out = export(slo, Some(2.5));
        assert_eq!(out["request_rate"], json!(2.5));
        // Requests 1 and 2 take 1.8 and 1.9 ms: both inside 1 s, as is 3.
        assert_eq!(out["request_goodput"], json!(1.5));
    }
}
