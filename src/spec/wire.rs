//! Wire types: serde structs that mirror the experiment TOML exactly.
//!
//! Unknown keys are rejected (a typo must not silently change an experiment).
//! Every value is optional here; defaults, ranges and combinations are the
//! job of the conversion into domain types (`convert`), which can then report
//! every problem at once with its key path.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExperimentWire {
    pub schema: Option<i64>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub hardware: Option<HardwareWire>,
    pub engine: Option<EngineWire>,
    pub model: Option<ModelWire>,
    pub workload: Option<WorkloadWire>,
    pub load: Option<LoadWire>,
    pub slo: Option<SloWire>,
    pub verify: Option<VerifyWire>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HardwareWire {
    pub class: Option<String>,
    pub gpus: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EngineWire {
    pub kind: Option<String>,
    pub runtime: Option<String>,
    pub image: Option<String>,
    pub command: Option<String>,
    pub command_sha256: Option<String>,
    pub args: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub port: Option<i64>,
    pub tensor_parallel: Option<i64>,
    pub readiness_path: Option<String>,
    pub readiness_timeout_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelWire {
    pub repo: Option<String>,
    pub revision: Option<String>,
    pub file: Option<String>,
    pub sha256: Option<String>,
    pub served_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkloadWire {
    pub api: Option<String>,
    pub dataset: Option<String>,
    pub dataset_file: Option<String>,
    pub dataset_sha256: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub range_ratio: Option<f64>,
    pub ignore_eos: Option<bool>,
    pub seed: Option<i64>,
    pub requests_per_client: Option<i64>,
    pub warmup_per_client: Option<i64>,
    pub token_id_min: Option<i64>,
    pub token_id_max: Option<i64>,
    pub request_timeout_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoadWire {
    pub mode: Option<String>,
    pub concurrency: Option<Vec<i64>>,
    pub rate: Option<Vec<f64>>,
    pub burstiness: Option<f64>,
    pub max_concurrency: Option<i64>,
    pub requests: Option<i64>,
    pub warmup_requests: Option<i64>,
    pub duration_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SloWire {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VerifyWire {
    pub repeats: Option<i64>,
    pub max_repeats: Option<i64>,
    pub tolerance: Option<BTreeMap<String, f64>>,
}
