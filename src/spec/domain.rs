//! Domain types: what an experiment and a point mean, every default filled.
//!
//! These types serialise (kebab-case) to a point's canonical JSON, so their
//! field names are a stored format: renaming one changes every point id.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::reference::{ImageRef, Sha256};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }

            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|v| v.as_str()).collect()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// The inference server software.
    EngineKind { Vllm = "vllm", Sglang = "sglang", Trtllm = "trtllm", Llamacpp = "llamacpp", Sim = "sim", Openai = "openai" }
}

string_enum! {
    /// How the engine is started.
    Runtime { Docker = "docker", Podman = "podman", Apptainer = "apptainer", Process = "process" }
}

string_enum! {
    /// Which OpenAI-compatible endpoint the workload uses.
    Api { Completions = "completions", Chat = "chat" }
}

impl Runtime {
    pub fn is_container(self) -> bool {
        !matches!(self, Runtime::Process)
    }
}

/// The hardware a point is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Hardware {
    /// A class id from `spec::hardware::CLASSES`.
    pub class: String,
    /// Accelerators used (0 for `cpu`).
    pub gpus: u32,
}

/// The engine and how to start it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Engine {
    pub kind: EngineKind,
    pub runtime: Runtime,
    /// Container image (container runtimes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    /// Executable (process runtime, except the built-in `sim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// sha256 of the executable, when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_sha256: Option<Sha256>,
    /// Extra server arguments, appended after the ones infermark derives.
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub port: u16,
    pub tensor_parallel: u32,
    pub readiness_path: String,
    pub readiness_timeout_s: u64,
}

/// The model weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Model {
    /// A Hugging Face repository at a revision (branch until locked, then a
    /// 40-hex commit).
    #[serde(rename_all = "kebab-case")]
    Hub {
        repo: String,
        revision: String,
        served_name: String,
    },
    /// A local weights file pinned by sha256 (process engines, or a path
    /// inside the image for container engines).
    #[serde(rename_all = "kebab-case")]
    File {
        file: String,
        sha256: Sha256,
        served_name: String,
    },
    /// No weights: the built-in `sim` server.
    #[serde(rename_all = "kebab-case")]
    None { served_name: String },
}

impl Model {
    pub fn served_name(&self) -> &str {
        match self {
            Model::Hub { served_name, .. }
            | Model::File { served_name, .. }
            | Model::None { served_name } => served_name,
        }
    }
}

/// Where prompts come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Dataset {
    /// Seeded random prompts; for the completions API, token ids drawn
    /// uniformly from `[token-id-min, token-id-max]`.
    #[serde(rename_all = "kebab-case")]
    Random {
        token_id_min: u32,
        token_id_max: u32,
    },
    /// A ShareGPT-layout JSON file pinned by sha256; `path` is relative to the
    /// experiment file.
    #[serde(rename_all = "kebab-case")]
    File { path: String, sha256: Sha256 },
}

/// What each request asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Workload {
    pub api: Api,
    pub dataset: Dataset,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Lengths are drawn uniformly from the integers in
    /// `[ceil(range_ratio * n), n]` (the InferenceX/SGLang meaning; lengths
    /// then average `(1 + ratio) / 2 * n`). 1.0 means exactly `n`.
    pub range_ratio: f64,
    pub ignore_eos: bool,
    pub seed: u64,
    pub requests_per_client: u32,
    pub warmup_per_client: u32,
    pub request_timeout_s: u64,
}

/// One load level: what a single point measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LoadLevel {
    /// Closed loop: `concurrency` clients, each sending its next request when
    /// the previous one ends; `requests-per-client` measured requests each.
    #[serde(rename_all = "kebab-case")]
    Concurrency {
        concurrency: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<u64>,
    },
    /// Open loop: arrivals at `rate` requests/s with gamma-distributed gaps
    /// of shape `burstiness` (1 = Poisson).
    #[serde(rename_all = "kebab-case")]
    Rate {
        rate: f64,
        burstiness: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_concurrency: Option<u32>,
        requests: u32,
        warmup_requests: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<u64>,
    },
}

impl LoadLevel {
    /// Short label for tables: `c=8` or `r=2.5/s`.
    pub fn label(&self) -> String {
        match self {
            LoadLevel::Concurrency { concurrency, .. } => format!("c={concurrency}"),
            LoadLevel::Rate { rate, .. } => format!("r={rate}/s"),
        }
    }
}

/// The sweep of an experiment: one point per entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub levels: Vec<LoadLevel>,
}

/// Service-level objectives for goodput; absent ones are not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Slo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2el_ms: Option<f64>,
}

string_enum! {
    /// The metrics `verify` compares, with a tolerance each.
    VerifyMetric {
        OutputThroughput = "output-throughput",
        RequestThroughput = "request-throughput",
        MedianTtft = "median-ttft",
        P99Ttft = "p99-ttft",
        MedianTpot = "median-tpot",
        MedianItl = "median-itl",
        MedianE2el = "median-e2el",
    }
}

impl VerifyMetric {
    /// 5% for throughputs, 10% for latencies.
    pub fn default_tolerance(self) -> f64 {
        match self {
            VerifyMetric::OutputThroughput | VerifyMetric::RequestThroughput => 0.05,
            _ => 0.10,
        }
    }
}

/// How `verify` judges a re-run: re-runs before the first judgement, the
/// most re-runs it may make, and a relative tolerance per metric (every
/// metric present, defaults filled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Verify {
    pub repeats: u32,
    /// Left out of the canonical form at its default, so points written
    /// before the key existed keep their ids (a missing key and its
    /// explicit default give the same id).
    #[serde(
        default = "Verify::default_max_repeats",
        skip_serializing_if = "Verify::is_default_max_repeats"
    )]
    pub max_repeats: u32,
    pub tolerance: BTreeMap<String, f64>,
}

impl Verify {
    /// `[verify] max-repeats` when absent.
    pub const DEFAULT_MAX_REPEATS: u32 = 10;

    fn default_max_repeats() -> u32 {
        Self::DEFAULT_MAX_REPEATS
    }

    fn is_default_max_repeats(n: &u32) -> bool {
        *n == Self::DEFAULT_MAX_REPEATS
    }
}

/// Serialises as the normal spelling, parses any accepted spelling.
impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ImageRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.hex())
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sha256::parse(&s).map_err(serde::de::Error::custom)
    }
}
