//! Records → summary: every number infermark publishes about a run.
//!
//! The summary is derived from the raw request records alone
//! (`requests.jsonl`), deterministically: the same records and context give
//! the same `summary.json` bytes, whatever order the records are in, so an
//! auditor can recompute it and compare byte for byte. To that end requests
//! are visited in `index` order, nothing is keyed by a hash map, and every
//! float is computed by a fixed sequence of operations.
//!
//! Glossary (DESIGN "Metric glossary"; per request, monotonic ns):
//! - TTFT = `first_token − sent`; E2EL = `end − sent`;
//!   queue delay = `sent − scheduled`;
//! - TPOT = `(E2EL − TTFT) / (N_out − 1)` for `N_out > 1`, where `N_out` is
//!   the server's `usage` output tokens when reported, else the chunk count;
//! - ITL = gap between successive token-bearing chunks (the first chunk is
//!   the first token, measured by TTFT, so a request with `c` chunks gives
//!   `c − 1` gaps); per token, a chunk carrying `k` tokens after a gap `g`
//!   contributes `g / k`, `k` times;
//! - duration = first `sent` → last `end` over measured requests;
//!   throughputs are counts over the duration; interactivity = 1000 / TPOT.
//!
//! Only completed (error-free) measured requests feed latency distributions
//! and token totals; failed ones are counted by kind; warmup requests are
//! counted as excluded and otherwise ignored. Which unit and which estimator
//! each figure uses is documented on the fields of [`Summary`] and in
//! [`stats`].
//!
//! Also here: reading and writing `requests.jsonl` ([`records_io`]), the
//! vLLM-compatible export ([`vllm`]) and the human table ([`table`]).

#[cfg(test)]
mod fixtures;
pub mod records_io;
pub mod stats;
mod summarize;
pub mod summary;
pub mod table;
pub mod vllm;

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;

pub use records_io::{read_records, read_summary, records_from_text, write_records, write_summary};
pub use stats::LatencyStats;
pub use summarize::{RequestSample, request_samples, summarize};
pub use summary::{SUMMARY_FORMAT, Summary};
pub use table::render_table;
pub use vllm::{VllmMeta, to_vllm_json};

/// What a summary needs besides the records: taken from the point, and
/// written into the summary so it is self-describing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryContext {
    pub point_id: String,
    /// GPUs serving the point; 0 for a CPU run (per-GPU figures are then
    /// absent).
    pub gpus: u32,
    pub slo: Slo,
}

/// Service-level objectives for goodput (as vLLM's `--goodput`): a completed
/// request counts as good when it meets every objective that is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slo {
    pub ttft: Option<Duration>,
    pub tpot: Option<Duration>,
    pub e2el: Option<Duration>,
}

impl Slo {
    pub fn is_set(&self) -> bool {
        self.ttft.is_some() || self.tpot.is_some() || self.e2el.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to read {}: line {line}: {}{source}", path.display(), key_prefix(key))]
    RecordLine {
        path: PathBuf,
        line: usize,
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "unsupported summary format `{found}`: this infermark reads `{}`",
        SUMMARY_FORMAT
    )]
    UnsupportedSummaryFormat { found: String },
    #[error("invalid summary: {}{source}", key_prefix(key))]
    SummaryJson {
        key: String,
        source: serde_json::Error,
    },
    #[error("failed to read {}: {source}", path.display())]
    SummaryFile {
        path: PathBuf,
        source: Box<MetricsError>,
    },
    #[error("failed to serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// "`a.b[2]`: " for a key path inside a document, nothing for its root.
fn key_prefix(key: &str) -> String {
    if key.is_empty() || key == "." {
        String::new()
    } else {
        format!("`{key}`: ")
    }
}

/// Parses one JSON document, reporting the key path of a failure.
fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T, (String, serde_json::Error)> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))?;
    de.end().map_err(|e| (String::new(), e))?;
    Ok(value)
}
