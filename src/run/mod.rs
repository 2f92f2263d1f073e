//! Measuring one point against a server that is already listening: the
//! point's workload is generated, driven by the load generator, and reduced
//! to a summary — records first, every number derived from them.
//!
//! This is the core shared by `infermark bench` (a server someone else
//! started) and the full run pipeline (engines started by infermark).

pub mod bench;
pub mod pipeline;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::loadgen::record::{Origin, RequestRecord};
use crate::loadgen::{self, LoadPlan, Progress, Schedule};
use crate::metrics::{self, Slo, Summary, SummaryContext, VllmMeta};
use crate::spec::{self, LoadLevel, Point, PointSpec};
use crate::store::layout;
use crate::workload::{self, WorkloadParams};

/// Everything that can go wrong measuring a point.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot generate the workload")]
    Workload(#[from] workload::WorkloadError),
    #[error("the load run failed")]
    Load(#[from] loadgen::LoadError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("{file}: {source}")]
    Canonical {
        file: PathBuf,
        source: spec::CanonicalError,
    },
    /// A point with a moving reference: nothing runs unpinned.
    #[error("{0}")]
    Unpinned(String),
    /// No point matched `--point`, or nothing to run.
    #[error("{0}")]
    NoPoints(String),
    /// This machine's hardware class cannot be told.
    #[error("{0}")]
    Hardware(String),
    /// This machine is not the point's hardware class.
    #[error(transparent)]
    Fit(#[from] crate::probe::ProbeError),
    /// The results tree could not be written. The cause is in the message
    /// and not a `source()`: a [`StoreError`](crate::store::StoreError)
    /// already shows its own cause, which `{:#}` would print twice.
    #[error("results store: {0}")]
    Store(crate::store::StoreError),
    /// A signal stopped the run.
    #[error("interrupted by {0}")]
    Interrupted(String),
    /// The `--sign-key` could not be read.
    #[error(transparent)]
    Sign(#[from] crate::provenance::sign::SignError),
}

/// A measured point: the raw records and what follows from them.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub origin: Origin,
    pub records: Vec<RequestRecord>,
    pub summary: Summary,
}

/// How many warmup and measured requests a point sends.
pub fn request_counts(p: &PointSpec) -> (usize, usize) {
    match &p.load {
        LoadLevel::Concurrency { concurrency, .. } => (
            p.workload.warmup_per_client as usize * *concurrency as usize,
            p.workload.requests_per_client as usize * *concurrency as usize,
        ),
        LoadLevel::Rate {
            requests,
            warmup_requests,
            ..
        } => (*warmup_requests as usize, *requests as usize),
    }
}

/// The workload generator's view of a point; dataset paths are relative to
/// `spec_dir`, the directory of the experiment file.
pub fn workload_params(p: &PointSpec, spec_dir: &Path) -> WorkloadParams {
    let w = &p.workload;
    WorkloadParams {
        api: w.api,
        dataset: match &w.dataset {
            spec::Dataset::Random {
                token_id_min,
                token_id_max,
            } => workload::Dataset::Random {
                token_id_min: *token_id_min,
                token_id_max: *token_id_max,
            },
            spec::Dataset::File { path, sha256 } => workload::Dataset::File {
                path: spec_dir.join(path),
                sha256: sha256.hex().to_string(),
            },
        },
        input_tokens: w.input_tokens,
        output_tokens: w.output_tokens,
        range_ratio: w.range_ratio,
        ignore_eos: w.ignore_eos,
        seed: w.seed,
        model: p.model.served_name().to_string(),
    }
}

/// The SLOs of a point, as the metrics take them.
pub fn slo(p: &PointSpec) -> Slo {
    let ms = |v: Option<f64>| v.map(|ms| Duration::from_secs_f64(ms / 1000.0));
    Slo {
        ttft: ms(p.slo.ttft_ms),
        tpot: ms(p.slo.tpot_ms),
        e2el: ms(p.slo.e2el_ms),
    }
}

/// Generates the point's requests and drives them against `base_url`.
pub async fn measure(
    point: &Point,
    base_url: &str,
    spec_dir: &Path,
    progress: Option<Arc<dyn Progress>>,
) -> Result<Measurement, RunError> {
    let p = &point.spec;
    let (warmup, measured) = request_counts(p);
    let params = workload_params(p, spec_dir);
    let requests = tokio::task::block_in_place(|| workload::generate(&params, warmup, measured))?;
    let (schedule, duration, in_flight) = match &p.load {
        LoadLevel::Concurrency {
            concurrency,
            duration_s,
        } => (
            Schedule::Closed {
                concurrency: *concurrency,
            },
            *duration_s,
            *concurrency as usize,
        ),
        LoadLevel::Rate {
            rate,
            burstiness,
            max_concurrency,
            duration_s,
            ..
        } => (
            Schedule::Open {
                rate: *rate,
                burstiness: *burstiness,
                max_concurrency: *max_concurrency,
                seed: p.workload.seed,
            },
            *duration_s,
            max_concurrency.map_or(256, |m| m as usize),
        ),
    };
    let plan = LoadPlan {
        base_url: base_url.trim_end_matches('/').to_string(),
        api: load_api(p.workload.api),
        schedule,
        warmup: requests.warmup,
        measured: requests.measured,
        request_timeout: Duration::from_secs(p.workload.request_timeout_s),
        duration: duration.map(Duration::from_secs),
        pool_size: in_flight.max(1),
    };
    let outcome = loadgen::run(plan, progress).await?;
    let summary = metrics::summarize(
        &outcome.records,
        &SummaryContext {
            point_id: point.id().to_string(),
            gpus: p.hardware.gpus,
            slo: slo(p),
        },
    );
    Ok(Measurement {
        origin: outcome.origin,
        records: outcome.records,
        summary,
    })
}

/// The load generator's name for the endpoint.
pub fn load_api(api: spec::Api) -> loadgen::Api {
    match api {
        spec::Api::Completions => loadgen::Api::Completions,
        spec::Api::Chat => loadgen::Api::Chat,
    }
}

/// vLLM-benchmark metadata for the compatibility export.
pub fn vllm_meta(p: &PointSpec, origin: &Origin) -> VllmMeta {
    let (request_rate, burstiness, max_concurrency) = match &p.load {
        LoadLevel::Concurrency { concurrency, .. } => (None, 1.0, Some(*concurrency)),
        LoadLevel::Rate {
            rate,
            burstiness,
            max_concurrency,
            ..
        } => (Some(*rate), *burstiness, *max_concurrency),
    };
    let model = match &p.model {
        spec::Model::Hub { repo, .. } => repo.clone(),
        m => m.served_name().to_string(),
    };
    VllmMeta {
        date: vllm_date(&origin.wall_clock),
        backend: p.engine.kind.to_string(),
        model_id: model.clone(),
        tokenizer_id: model,
        request_rate,
        burstiness,
        max_concurrency,
    }
}

/// `2026-11-23T19:02:04.123Z` → `20261123-190204` (vLLM's date field).
fn vllm_date(rfc3339: &str) -> String {
    let digits: String = rfc3339
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    if digits.len() == 14 {
        format!("{}-{}", &digits[..8], &digits[8..])
    } else {
        rfc3339.to_string()
    }
}

/// Writes a bench result: `point.json`, `requests.jsonl`, `summary.json`,
/// `vllm.json` and `origin.json` into `dir`.
pub fn write_bench(dir: &Path, point: &Point, m: &Measurement) -> Result<(), RunError> {
    let w = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| RunError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| RunError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    w(layout::POINT_FILE, point.canonical_bytes())?;
    metrics::write_records(&dir.join(layout::REQUESTS_FILE), &m.records)?;
    metrics::write_summary(&dir.join(layout::SUMMARY_FILE), &m.summary)?;
    let vllm = metrics::to_vllm_json(&m.summary, &vllm_meta(&point.spec, &m.origin));
    let mut vllm_bytes = serde_json::to_vec_pretty(&vllm).unwrap_or_default();
    vllm_bytes.push(b'\n');
    w("vllm.json", &vllm_bytes)?;
    let mut origin = serde_json::to_vec_pretty(&m.origin).unwrap_or_default();
    origin.push(b'\n');
    w("origin.json", &origin)?;
    Ok(())
}
