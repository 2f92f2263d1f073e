//! The summary's wire form: `summary.json`, versioned, one documented unit
//! per field (the field name's suffix says it: `_ns` integer nanoseconds
//! from the run origin, `_s` seconds, `_ms` milliseconds, `_per_s` per
//! second). Floats are always finite; an undefined figure is `null`.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::MetricsError;
use super::stats::LatencyStats;

/// The value of `summary.json`'s `format` field this build writes and reads.
pub const SUMMARY_FORMAT: &str = "infermark.summary.v1";

/// Everything derived from one run's `requests.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Always [`SUMMARY_FORMAT`].
    pub format: SummaryFormat,
    pub point_id: String,
    /// GPUs the figures are divided by; 0 for a CPU run.
    pub gpus: u32,
    /// The service-level objectives goodput was judged against.
    pub slo: SloMs,
    pub window: Window,
    pub counts: Counts,
    pub totals: Totals,
    pub throughput: Throughput,
    pub latency: Latencies,
    pub interactivity: Interactivity,
}

/// The format tag. Deserializing any other value fails with a message naming
/// it, so a summary written by a newer infermark is never misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SummaryFormat;

impl fmt::Display for SummaryFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SUMMARY_FORMAT)
    }
}

impl Serialize for SummaryFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(SUMMARY_FORMAT)
    }
}

impl<'de> Deserialize<'de> for SummaryFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let found = String::deserialize(deserializer)?;
        if found == SUMMARY_FORMAT {
            Ok(SummaryFormat)
        } else {
            Err(de::Error::custom(format!(
                "unsupported summary format `{found}`: this infermark reads `{SUMMARY_FORMAT}`"
            )))
        }
    }
}

/// The SLOs as given, in milliseconds; `None` where none was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloMs {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

/// The measurement window: first dispatch (`sent_ns`) to last completion
/// (`end_ns`) over the measured, non-warmup requests, failed ones included
/// (they held the server too). `None` when no request was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    pub duration_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Non-warmup requests: `completed + failed`.
    pub measured: u64,
    /// Measured requests without an error.
    pub completed: u64,
    /// Measured requests with an error; counted, never in a latency figure.
    pub failed: u64,
    pub failed_by_kind: FailedByKind,
    /// Warmup requests present in the records and left out of every figure.
    pub warmup_excluded: u64,
    /// Completed requests whose server-reported `usage` output tokens differ
    /// from the tokens counted in their chunks.
    pub token_disagreements: u64,
    /// Sum over those requests of |usage − chunk count|.
    pub token_disagreement_abs: u64,
    /// Completed requests meeting every SLO given; `None` when none was.
    pub slo_met: Option<u64>,
}

/// Failed measured requests per error kind (every kind listed, zeros too,
/// so the JSON's shape does not depend on the data).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedByKind {
    pub connect: u64,
    pub http: u64,
    pub timeout: u64,
    pub stream: u64,
    pub disconnected: u64,
}

/// Token totals over the completed measured requests (as vLLM's benchmark
/// counts them): output tokens per request are the server's `usage` when
/// reported, else the chunk count; input tokens likewise `usage`, else the
/// generated prompt length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Rates over the window's duration. `None` when the duration is absent or
/// zero; per-GPU figures are `None` for a CPU run (`gpus = 0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throughput {
    /// Completed requests per second.
    pub requests_per_s: Option<f64>,
    pub output_tokens_per_s: Option<f64>,
    /// Input plus output tokens per second.
    pub total_tokens_per_s: Option<f64>,
    pub requests_per_s_per_gpu: Option<f64>,
    pub output_tokens_per_s_per_gpu: Option<f64>,
    pub total_tokens_per_s_per_gpu: Option<f64>,
    /// Completed requests meeting every SLO given, per second; `None` when
    /// no SLO was given.
    pub goodput_requests_per_s: Option<f64>,
    /// Most output tokens arriving within one 1-second bucket counted from
    /// the window's start (vLLM's "peak output token throughput", but each
    /// chunk counts the tokens it carried rather than 1).
    pub max_output_tokens_per_s: u64,
    /// Most measured requests in flight at one instant, from their
    /// `[sent_ns, end_ns)` intervals (exact, where vLLM counts requests
    /// active within the same second).
    pub max_concurrent_requests: u64,
}

/// Latency distributions of the completed measured requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latencies {
    /// Time to first token: `first_token_ns − sent_ns`.
    pub ttft: LatencyStats,
    /// Time per output token after the first: `(E2EL − TTFT) / (N_out − 1)`,
    /// for `N_out > 1`; one sample per request.
    pub tpot: LatencyStats,
    /// Inter-token latency per chunk: each gap between successive
    /// token-bearing chunks, one sample per gap.
    pub itl: LatencyStats,
    /// Inter-token latency per token: a chunk carrying `k` tokens after a
    /// gap `g` contributes `g / k`, `k` times. Equals `itl` when every chunk
    /// carries one token.
    pub itl_per_token: LatencyStats,
    /// End-to-end latency: `end_ns − sent_ns`.
    pub e2el: LatencyStats,
    /// Client-side queueing: `sent_ns − scheduled_ns`.
    pub queue_delay: LatencyStats,
}

/// Output speed as one user sees it (InferenceX's "interactivity").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interactivity {
    /// `1000 / median TPOT (ms)`, tokens per second per user.
    pub median_tok_s_per_user: Option<f64>,
    /// `1000 / mean TPOT (ms)`.
    pub mean_tok_s_per_user: Option<f64>,
}

impl Summary {
    /// The exact bytes of `summary.json`: pretty-printed JSON with a final
    /// newline. An auditor recomputing the summary compares these bytes.
    pub fn to_json(&self) -> Result<String, MetricsError> {
        let mut text =
            serde_json::to_string_pretty(self).map_err(|source| MetricsError::Serialize {
                what: "summary",
                source,
            })?;
        text.push('\n');
        Ok(text)
    }

    /// Parses `summary.json`. The format tag is checked first, so a newer
    /// format is reported as such rather than as an unknown field.
    pub fn from_json(text: &str) -> Result<Self, MetricsError> {
        #[derive(Deserialize)]
        struct FormatProbe {
            format: Option<String>,
        }
        if let Ok(FormatProbe {
            format: Some(found),
        }) = serde_json::from_str(text)
            && found != SUMMARY_FORMAT
        {
            return Err(MetricsError::UnsupportedSummaryFormat { found });
        }
        let summary: Summary = super::parse_json(text)
            .map_err(|(key, source)| MetricsError::SummaryJson { key, source })?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Slo, SummaryContext, fixtures, summarize};

    fn summary_json() -> String {
        let ctx = SummaryContext {
            point_id: "p-1".into(),
            gpus: 1,
            slo: Slo::default(),
        };
        summarize(&fixtures::records(), &ctx)
            .to_json()
            .expect("serialize")
    }

    #[test]
    fn the_format_tag_is_written_first() {
        let json = summary_json();
        assert!(
            json.starts_with("{\n  \"format\": \"infermark.summary.v1\",\n"),
            "{json}"
        );
        assert!(json.ends_with("}\n"));
    }

    #[test]
    fn a_future_format_is_refused_by_name() {
        // A newer format may also add fields: the version is still what the
        // message names, not the first unknown field.
        let json = summary_json()
            .replace(SUMMARY_FORMAT, "infermark.summary.v2")
            .replacen("\"point_id\"", "\"new_field\": 1,\n  \"point_id\"", 1);
        let err = Summary::from_json(&json).expect_err("v2 must be refused");
        assert!(
            matches!(&err, MetricsError::UnsupportedSummaryFormat { found } if found == "infermark.summary.v2")
        );
        assert_eq!(
            err.to_string(),
            "unsupported summary format `infermark.summary.v2`: this infermark reads `infermark.summary.v1`"
        );
        // Plain serde (no pre-check) refuses it too, naming it.
        let plain = serde_json::from_str::<Summary>(
            &summary_json().replace(SUMMARY_FORMAT, "infermark.summary.v9"),
        )
        .expect_err("v9 must be refused");
        assert!(
            plain.to_string().contains("`infermark.summary.v9`"),
            "{plain}"
        );
    }

    #[test]
    fn a_malformed_summary_names_the_key() {
        let json = summary_json().replacen("\"completed\": 3", "\"completed\": -3", 1);
        let err = Summary::from_json(&json).expect_err("negative count");
        assert!(
            err.to_string()
                .starts_with("invalid summary: `counts.completed`: "),
            "{err}"
        );
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let json = summary_json() + "{}";
        assert!(Summary::from_json(&json).is_err());
    }
}
