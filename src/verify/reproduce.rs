//! `verify` proper: re-measure a reported run's point on this machine and
//! judge, with the statistics of [`super::stats`], whether its numbers hold.
//!
//! The steps, each refusing early rather than measuring something that
//! cannot be compared: find the reported run ([`locate`]); the caller
//! audits it; read it ([`Reported::load`]); check this machine fits the
//! point's hardware class and that every pin is available here, then run
//! the identical point `repeats` times through the normal pipeline
//! ([`reproduce`]), so the new runs are ordinary, audited-as-usual results;
//! judge after each look ([`judge_look`], [`super::stats`]); list what differs between the reported and
//! the new environments ([`drift`]) — drift is shown, never hidden; and
//! store the verdict as an in-toto statement ([`VerdictStatement`],
//! [`write_verdict`]).
//!
//! The verdict's predicate is modelled on SLSA's Verification Summary
//! Attestation v1 (`https://slsa.dev/verification_summary/v1`): `verifier`,
//! `time_verified`, `resource_uri`, `policy`, `input_attestations` and
//! `verification_result` play the roles of the VSA fields of the same
//! names (in this crate's snake_case); the result is a reproduction verdict
//! rather than a SLSA level, so the predicate has its own versioned type.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::stats::{
    self, METRICS, Method, MetricInput, MetricResult, Repeats, RunValue, Sequential, Verdict,
};
use crate::clock::rfc3339;
use crate::digest::sha256_file;
use crate::engine::{self, EngineError, StartOptions};
use crate::metrics::{self, MetricsError, RequestSample, Summary};
use crate::probe::{self, Harness};
use crate::provenance::{DigestSet, STATEMENT_TYPE, Subject};
use crate::run::RunError;
use crate::run::pipeline::{self, Observer, PlannedPoint, PointOutcome, RunOptions};
use crate::spec::{Point, VerifyMetric};
use crate::store::layout::{
    ENVIRONMENT_FILE, POINT_FILE, POINTS_DIR, REQUESTS_FILE, RUNS_DIR, STATEMENT_FILE,
    SUMMARY_FILE, TMP_DIR, VERDICT_FILE, VERDICTS_DIR,
};
use crate::store::{self, RunStatus, StoreError, StoredRun, atomic};

/// The predicate type of a verdict statement.
/// v2: run-level statistics (`policy.method`, per-metric `judged`,
/// `decided_after`, `runs_to_decide`, `compared_runs`); v1 was the
/// request-pooled bootstrap.
pub const VERDICT_PREDICATE_TYPE: &str = "https://infermark.dev/verification/v2";
/// Who verified, in the VSA's `verifier.id` sense.
pub const VERIFIER_ID: &str = "https://infermark.dev/verify";

#[derive(Debug, thiserror::Error)]
pub enum ReproduceError {
    #[error("{0}")]
    NotFound(String),
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("{}: {error}", path.display())]
    BadPoint {
        path: PathBuf,
        error: crate::spec::StoredPointError,
    },
    #[error("this machine does not fit the point's hardware class: {0}")]
    Hardware(probe::ProbeError),
    #[error("pin not available here: {0}")]
    PinUnavailable(#[source] EngineError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Finds the reported run: `target` is a run directory, a point directory
/// (its newest completed run) or a point id prefix looked up in `results`.
pub fn locate(target: &str, results: &Path) -> Result<StoredRun, ReproduceError> {
    let path = Path::new(target);
    if path.is_dir() {
        if path.join(STATEMENT_FILE).is_file() {
            let kind = path.parent().filter(|k| store::file_name(k) == RUNS_DIR);
            if let Some(point_dir) = kind.and_then(Path::parent) {
                return Ok(StoredRun {
                    point_dir: point_dir.to_path_buf(),
                    dir: path.to_path_buf(),
                    run_id: store::file_name(path),
                    status: RunStatus::Completed,
                });
            }
        }
        if path.join(POINT_FILE).is_file() {
            return newest_completed(path);
        }
        return Err(ReproduceError::NotFound(format!(
            "{}: not a completed run directory (points/<id>/runs/<run-id> with a \
             {STATEMENT_FILE}) nor a point directory (with a {POINT_FILE})",
            path.display()
        )));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReproduceError::NotFound(format!(
            "`{target}`: no such directory, and not a point id (hex digits)"
        )));
    }
    let points = results.join(POINTS_DIR);
    let prefix = target.to_ascii_lowercase();
    let matching: Vec<PathBuf> = if points.is_dir() {
        store::read_dir_sorted(&points)?
            .into_iter()
            .filter(|p| p.is_dir() && store::file_name(p).starts_with(&prefix))
            .collect()
    } else {
        Vec::new()
    };
    match matching.as_slice() {
        [one] => newest_completed(one),
        [] => Err(ReproduceError::NotFound(format!(
            "no point id starts with `{target}` in {}; pass a run directory or `--results DIR`",
            results.display()
        ))),
        many => Err(ReproduceError::NotFound(format!(
            "`{target}` is ambiguous in {}: {} points start with it; give more digits",
            results.display(),
            many.len()
        ))),
    }
}

fn newest_completed(point_dir: &Path) -> Result<StoredRun, ReproduceError> {
    store::runs_of_point(point_dir)?
        .into_iter()
        .filter(|r| r.status == RunStatus::Completed)
        .max_by(|a, b| a.run_id.cmp(&b.run_id))
        .ok_or_else(|| {
            ReproduceError::NotFound(format!(
                "{}: the point has no completed run to verify",
                point_dir.display()
            ))
        })
}

/// The results tree a run belongs to (`<root>/points/<id>/runs/<run>`).
pub fn results_root(run: &StoredRun) -> Option<PathBuf> {
    Some(run.point_dir.parent()?.parent()?.to_path_buf())
}

/// A stored run, as the comparison needs it.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    pub run_id: String,
    pub dir: PathBuf,
    /// sha256 of its `provenance.json`.
    pub statement_sha256: String,
    pub summary: Summary,
    pub requests: Vec<RequestSample>,
    pub environment: Value,
    /// Each metric of [`METRICS`] as this run gives it (value, sampling
    /// variance, count of values), computed once at load.
    pub figures: Vec<Figure>,
}

/// One metric of one run, as the statistics need it.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    pub value: Option<RunValue>,
    /// Values the run contributes to a latency metric; `None` for throughputs.
    pub count: Option<usize>,
}

fn figures(summary: &Summary, requests: &[RequestSample]) -> Vec<Figure> {
    METRICS
        .iter()
        .map(|&metric| {
            let value = summary_value(summary, metric).map(|value| RunValue {
                value,
                within_var: stats::within_variance(metric, requests, stats::SEED),
            });
            let count =
                (!stats::is_throughput(metric)).then(|| stats::count_values(metric, requests));
            Figure { value, count }
        })
        .collect()
}

impl LoadedRun {
    pub fn load(dir: &Path) -> Result<LoadedRun, ReproduceError> {
        let statement = dir.join(STATEMENT_FILE);
        let (statement_sha256, _) =
            sha256_file(&statement).map_err(|source| ReproduceError::Read {
                path: statement.clone(),
                source,
            })?;
        let summary = metrics::read_summary(&dir.join(SUMMARY_FILE))?;
        let records = metrics::read_records(&dir.join(REQUESTS_FILE))?;
        let env_path = dir.join(ENVIRONMENT_FILE);
        let text = std::fs::read_to_string(&env_path).map_err(|source| ReproduceError::Read {
            path: env_path.clone(),
            source,
        })?;
        // The one reader of environment.json; drift then compares its facts
        // by JSON pointer.
        let environment = crate::probe::Environment::from_json(&text)
            .map(|env| serde_json::to_value(&env).expect("an environment serialises: string keys"))
            .map_err(|e| ReproduceError::Invalid {
                path: env_path.clone(),
                message: e.to_string(),
            })?;
        let requests = metrics::request_samples(&records);
        Ok(LoadedRun {
            run_id: store::file_name(dir),
            dir: dir.to_path_buf(),
            statement_sha256,
            figures: figures(&summary, &requests),
            summary,
            requests,
            environment,
        })
    }
}

/// The run being verified and its point.
#[derive(Debug, Clone)]
pub struct Reported {
    pub point: Point,
    pub run: LoadedRun,
    pub point_dir: PathBuf,
}

impl Reported {
    /// Reads an (audited) run and its point from `point.json`.
    pub fn load(run: &StoredRun) -> Result<Reported, ReproduceError> {
        let path = run.point_dir.join(POINT_FILE);
        let bytes = std::fs::read(&path).map_err(|source| ReproduceError::Read {
            path: path.clone(),
            source,
        })?;
        let point = Point::from_canonical(&bytes)
            .map_err(|error| ReproduceError::BadPoint { path, error })?;
        Ok(Reported {
            point,
            run: LoadedRun::load(&run.dir)?,
            point_dir: run.point_dir.clone(),
        })
    }

    /// The default policy: `--repeats auto` from the point's `[verify]`.
    pub fn default_repeats(&self) -> Repeats {
        Repeats::auto(&self.point.spec.verify)
    }

    /// The other completed runs of this point made on this machine (same
    /// host name, CPU model and count as `host`), each auditing clean: they
    /// add to the run-to-run spread seen here. Returns them and a line for
    /// each run left out and why.
    pub fn runs_here(
        &self,
        host: &probe::HostFacts,
    ) -> Result<(Vec<LoadedRun>, Vec<String>), ReproduceError> {
        let mut here = Vec::new();
        let mut left_out = Vec::new();
        for run in store::runs_of_point(&self.point_dir)? {
            if run.status != RunStatus::Completed || run.run_id == self.run.run_id {
                continue;
            }
            let loaded = match LoadedRun::load(&run.dir) {
                Ok(l) => l,
                Err(e) => {
                    left_out.push(format!("{}: unreadable: {e}", run.run_id));
                    continue;
                }
            };
            let same = |pointer: &str, v: Value| loaded.environment.pointer(pointer) == Some(&v);
            if !(same("/host/hostname", Value::from(host.hostname.clone()))
                && same("/host/cpu_model", Value::from(host.cpu_model.clone()))
                && same("/host/cpu_count", Value::from(host.cpu_count)))
            {
                continue;
            }
            match super::audit(&run.dir) {
                Ok(report) if report.is_clean() => here.push(loaded),
                Ok(_) => left_out.push(format!("{}: does not audit clean", run.run_id)),
                Err(e) => left_out.push(format!("{}: cannot be audited: {e}", run.run_id)),
            }
        }
        Ok((here, left_out))
    }
}

/// A verification's runs and how they were judged.
#[derive(Debug)]
pub struct Judgement {
    /// Every re-run made, completed or failed.
    pub outcomes: Vec<PointOutcome>,
    /// The completed re-runs.
    pub reruns: Vec<LoadedRun>,
    /// Earlier runs of the point on this machine that were compared too.
    pub earlier: Vec<LoadedRun>,
    pub sequential: Sequential,
}

/// Every metric judged at one look, from the reported run and this
/// machine's runs (earlier ones, then the re-runs).
pub fn judge_look(
    reported: &Reported,
    here: &[&LoadedRun],
    method: &Method,
    reruns: u32,
) -> Vec<MetricResult> {
    METRICS
        .iter()
        .enumerate()
        .map(|(i, &metric)| {
            let theirs = reported.run.figures[i];
            let input = MetricInput {
                reported: theirs.value,
                reported_values: theirs.count,
                here: here.iter().filter_map(|r| r.figures[i].value).collect(),
                here_values: here.iter().filter_map(|r| r.figures[i].count).min(),
            };
            stats::compare(
                metric,
                &input,
                stats::band(&reported.point.spec.verify, metric),
                method,
                reruns,
            )
        })
        .collect()
}

/// Checks this machine fits the point and its pins are available, then
/// re-runs the identical point on one engine start into `opts.results`,
/// one at a time: after each completed re-run that is a look of `repeats`,
/// every metric is judged against the reported run (with `earlier`, the
/// other runs of the point here), `on_rerun` is told after every completed
/// re-run (with the judgement when it was a look), and the re-runs stop
/// once every judged metric is decided or `repeats.max()` were made.
/// Relative paths of the point resolve against `spec_dir`.
#[allow(clippy::too_many_arguments)]
pub async fn reproduce(
    reported: &Reported,
    repeats: Repeats,
    earlier: Vec<LoadedRun>,
    opts: &RunOptions,
    spec_dir: &Path,
    observer: &dyn Observer,
    on_rerun: &dyn Fn(u32, Option<&Sequential>),
    shutdown: watch::Receiver<Option<String>>,
) -> Result<Judgement, ReproduceError> {
    let spec = &reported.point.spec;
    probe::fit(
        &probe::gpus(),
        &spec.hardware.class,
        spec.hardware.gpus,
        opts.allow_hardware_mismatch,
    )
    .map_err(ReproduceError::Hardware)?;
    let check = StartOptions {
        label: "verify-pins".to_string(),
        spec_dir: spec_dir.to_path_buf(),
        cache_dir: opts.cache_dir.clone(),
        model_dirs: opts.model_dirs.clone(),
        model_cache: opts.model_cache.clone(),
        log_path: opts.results.join(TMP_DIR).join("verify-pins.log"),
        infermark_exe: opts.infermark_exe.clone(),
        registry_insecure_loopback: opts.registry_insecure_loopback,
    };
    engine::check_pins_available(spec, &check)
        .await
        .map_err(ReproduceError::PinUnavailable)?;
    // The pipeline takes a point's directory from its experiment file's.
    let planned = PlannedPoint {
        point: reported.point.clone(),
        experiment: spec_dir.join(POINT_FILE),
    };
    let planned = vec![planned; repeats.max().max(1) as usize];
    let method = Method::new(repeats);
    let mut sequential = Sequential::new(method);
    let mut reruns: Vec<LoadedRun> = Vec::new();
    let mut load_error = None;
    let mut stop = |o: &PointOutcome| -> bool {
        let PointOutcome::Completed { path, .. } = o else {
            return false;
        };
        match LoadedRun::load(path) {
            Ok(run) => reruns.push(run),
            Err(e) => {
                load_error = Some(e);
                return true;
            }
        }
        let n = reruns.len() as u32;
        if !repeats.is_look(n) {
            on_rerun(n, None);
            return false;
        }
        let here: Vec<&LoadedRun> = earlier.iter().chain(reruns.iter()).collect();
        sequential.look(judge_look(reported, &here, &method, n));
        on_rerun(n, Some(&sequential));
        matches!(repeats, Repeats::Auto { .. }) && sequential.done()
    };
    let outcomes = pipeline::run_points_until(planned, opts, observer, shutdown, &mut stop).await?;
    if let Some(e) = load_error {
        return Err(e);
    }
    // Fewer completed re-runs than a look needs (some failed): judge what
    // there is, so the verdict says what could and could not be shown.
    if sequential.metrics.is_empty() && !reruns.is_empty() {
        let here: Vec<&LoadedRun> = earlier.iter().chain(reruns.iter()).collect();
        sequential.look(judge_look(reported, &here, &method, reruns.len() as u32));
    }
    Ok(Judgement {
        outcomes,
        reruns,
        earlier,
        sequential,
    })
}

/// The value of `metric` in a summary, as reported.
fn summary_value(s: &Summary, metric: VerifyMetric) -> Option<f64> {
    let l = &s.latency;
    match metric {
        VerifyMetric::OutputThroughput => s.throughput.output_tokens_per_s,
        VerifyMetric::RequestThroughput => s.throughput.requests_per_s,
        VerifyMetric::MedianTtft => l.ttft.p50_ms,
        VerifyMetric::P99Ttft => l.ttft.p99_ms,
        VerifyMetric::MedianTpot => l.tpot.p50_ms,
        VerifyMetric::MedianItl => l.itl.p50_ms,
        VerifyMetric::MedianE2el => l.e2el.p50_ms,
    }
}

/// One environment fact that differs between the reported run and new ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// Dotted path in `environment.json`, e.g. `host.kernel`.
    pub field: String,
    pub reported: Value,
    pub observed: Value,
    /// The new runs that observed it.
    pub runs: Vec<String>,
}

/// The facts compared for drift (JSON pointers into `environment.json`):
/// what can change a number while the point stays the same. The harness's
/// version and commit are names of its executable: where both runs record
/// the executable's sha256, that is compared instead (see [`drift`]).
pub const DRIFT_FIELDS: [&str; 14] = [
    "/harness/executable_sha256",
    "/harness/version",
    "/harness/commit",
    "/host/os",
    "/host/kernel",
    "/host/arch",
    "/host/cpu_model",
    "/host/cpu_count",
    "/gpus/driver_version",
    "/gpus/cuda_driver_version",
    "/engine/executable/sha256",
    "/engine/model_file/sha256",
    "/engine/image/digest",
    "/engine/image/runtime_version",
];

/// Every drift field whose value in a new run differs from the reported
/// run's, once per distinct (field, observed value), naming the runs, with
/// both values.
///
/// The same binary is not drift: when both environments record the
/// harness executable's sha256, the sha256 alone decides whether the
/// harness differs (the same bytes under another commit name, say a dirty
/// or a Nix build of one source, are the same harness). When either lacks
/// it (written before it was recorded), version and commit are compared.
pub fn drift(reported: &Value, new: &[(&str, &Value)]) -> Vec<Drift> {
    const EXE: &str = "/harness/executable_sha256";
    let exe = |env: &Value| env.pointer(EXE).filter(|v| v.is_string()).cloned();
    let mut out: Vec<Drift> = Vec::new();
    for pointer in DRIFT_FIELDS {
        let was = reported.pointer(pointer).cloned().unwrap_or(Value::Null);
        for (run_id, env) in new {
            let both_exe = exe(reported).is_some() && exe(env).is_some();
            let compared = match pointer {
                EXE => both_exe,
                "/harness/version" | "/harness/commit" => !both_exe,
                _ => true,
            };
            let now = env.pointer(pointer).cloned().unwrap_or(Value::Null);
            if !compared || now == was {
                continue;
            }
            let field = pointer.trim_start_matches('/').replace('/', ".");
            match out
                .iter_mut()
                .find(|d| d.field == field && d.observed == now)
            {
                Some(d) => d.runs.push(run_id.to_string()),
                None => out.push(Drift {
                    field,
                    reported: was.clone(),
                    observed: now,
                    runs: vec![run_id.to_string()],
                }),
            }
        }
    }
    out
}

/// A statement reference: where, and the sha256 of what was there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attestation {
    /// Path relative to the results root.
    pub uri: String,
    pub digest: DigestSet,
}

/// A new run made by the verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reproduction {
    pub run_id: String,
    /// Its `provenance.json`, relative to the results root.
    pub uri: String,
    pub digest: DigestSet,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verifier {
    pub id: String,
    pub version: BTreeMap<String, String>,
    pub commit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// The re-runs made.
    pub reruns: usize,
    /// How the re-runs were judged: the method, its reference, α, the
    /// repeats rule and each look's confidence.
    pub method: Method,
    /// The judged metrics, and those not judged (the reason is in each
    /// metric's `note`).
    pub judged: Vec<String>,
    pub not_judged: Vec<String>,
    /// Relative tolerance per metric: REPRODUCED needs the ratio's interval
    /// inside `[1 − band, 1 + band]`.
    pub bands: BTreeMap<String, f64>,
}

/// The verification summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictPredicate {
    pub verifier: Verifier,
    pub time_verified: String,
    pub point_id: String,
    /// The reported run's directory, relative to the results root.
    pub resource_uri: String,
    /// The reported run's statement.
    pub input_attestations: Vec<Attestation>,
    pub reproductions: Vec<Reproduction>,
    /// Earlier runs of the point on this machine, compared with the re-runs.
    pub compared_runs: Vec<Reproduction>,
    pub policy: Policy,
    pub metrics: Vec<MetricResult>,
    pub drift: Vec<Drift>,
    pub verification_result: Verdict,
}

/// An in-toto Statement v1 whose subject is the reported run's statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictStatement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: VerdictPredicate,
}

fn relative(run_dir: &Path, point_id: &str) -> String {
    format!(
        "{POINTS_DIR}/{point_id}/{RUNS_DIR}/{}",
        store::file_name(run_dir)
    )
}

impl VerdictStatement {
    pub fn new(
        reported: &Reported,
        judgement: &Judgement,
        drift: Vec<Drift>,
        verified_at: SystemTime,
    ) -> VerdictStatement {
        let new = &judgement.reruns;
        let metrics = judgement.sequential.metrics.clone();
        let id = reported.point.id();
        let resource = relative(&reported.run.dir, id);
        let statement_uri = format!("{resource}/{STATEMENT_FILE}");
        let digest = DigestSet {
            sha256: reported.run.statement_sha256.clone(),
        };
        let harness = Harness::current();
        let overall = judgement.sequential.verdict();
        let bands = metrics.iter().map(|m| (m.metric.clone(), m.band)).collect();
        let reference = |r: &LoadedRun| Reproduction {
            run_id: r.run_id.clone(),
            uri: format!("{}/{STATEMENT_FILE}", relative(&r.dir, id)),
            digest: DigestSet {
                sha256: r.statement_sha256.clone(),
            },
        };
        VerdictStatement {
            statement_type: STATEMENT_TYPE.to_string(),
            subject: vec![Subject {
                name: statement_uri.clone(),
                digest: digest.clone(),
            }],
            predicate_type: VERDICT_PREDICATE_TYPE.to_string(),
            predicate: VerdictPredicate {
                verifier: Verifier {
                    id: VERIFIER_ID.to_string(),
                    version: BTreeMap::from([("infermark".to_string(), harness.version)]),
                    commit: harness.commit,
                },
                time_verified: rfc3339(verified_at),
                point_id: id.to_string(),
                resource_uri: resource,
                input_attestations: vec![Attestation {
                    uri: statement_uri,
                    digest,
                }],
                reproductions: new.iter().map(reference).collect(),
                compared_runs: judgement.earlier.iter().map(reference).collect(),
                policy: Policy {
                    reruns: new.len(),
                    method: judgement.sequential.method,
                    judged: judgement.sequential.names(true),
                    not_judged: judgement.sequential.names(false),
                    bands,
                },
                metrics,
                drift,
                verification_result: overall,
            },
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.predicate.verification_result
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        // Only strings, finite numbers and maps of them: cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Writes `points/<id>/verdicts/<verdict-id>/verdict.json` (temporary file
/// then rename, so a reader never sees half of it). Returns its path.
pub fn write_verdict(
    point_dir: &Path,
    statement: &VerdictStatement,
    at: SystemTime,
) -> Result<PathBuf, ReproduceError> {
    let verdicts = point_dir.join(VERDICTS_DIR);
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReproduceError::Write { path, source }
    };
    let mut dir = verdicts.join(store::new_run_id(at));
    for _ in 0..8 {
        std::fs::create_dir_all(&verdicts).map_err(write_err(&verdicts))?;
        match std::fs::create_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                dir = verdicts.join(store::new_run_id(at));
            }
            Err(source) => return Err(ReproduceError::Write { path: dir, source }),
        }
    }
    let path = dir.join(VERDICT_FILE);
    atomic::write_new(&path, statement.to_json().as_bytes()).map_err(write_err(&path))?;
    Ok(path)
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if unit == "req/s" => format!("{v:.3} {unit}"),
        Some(v) => format!("{v:.2} {unit}"),
    }
}

/// The verdict as a table (metric, reported, this machine, ratio,
/// interval, band, verdict, when decided), the overall line with what was
/// and was not judged, notes, what would decide an INCONCLUSIVE metric, and
/// drift.
pub fn render(statement: &VerdictStatement) -> String {
    let p = &statement.predicate;
    let conf = p.policy.method.per_look_confidence;
    let header = vec![
        "metric".to_string(),
        "reported".to_string(),
        "here".to_string(),
        "ratio".to_string(),
        format!("{} interval", stats::percent(conf)),
        "band".to_string(),
        "verdict".to_string(),
        "decided".to_string(),
    ];
    let mut rows = vec![header];
    for m in &p.metrics {
        rows.push(vec![
            m.metric.clone(),
            fmt_value(m.reported, &m.unit),
            fmt_value(m.remeasured, &m.unit),
            m.ratio.map_or("-".into(), |r| format!("{r:.3}")),
            m.interval
                .map_or("-".into(), |i| format!("[{:.3}, {:.3}]", i.lo, i.hi)),
            format!("±{}%", (m.band * 1000.0).round() / 10.0),
            match (m.judged, m.verdict) {
                (true, Some(v)) => v.to_string(),
                _ => "not judged".into(),
            },
            m.decided_after.map_or("-".into(), |n| format!("after {n}")),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let earlier = match p.compared_runs.len() {
        0 => String::new(),
        n => format!(" and {n} earlier run(s) here"),
    };
    let repeats = match p.policy.method.repeats {
        auto @ Repeats::Auto { .. } => {
            let looks: Vec<String> = auto.looks().iter().map(u32::to_string).collect();
            format!("repeats auto: looks after {} re-runs", looks.join(", "))
        }
        Repeats::Fixed { n } => format!("repeats {n}"),
    };
    let _ = writeln!(
        out,
        "overall: {} ({} re-run(s){earlier}; {repeats}; judged: {}; not judged: {})",
        p.verification_result,
        p.policy.reruns,
        list_or_none(&p.policy.judged),
        list_or_none(&p.policy.not_judged),
    );
    let _ = writeln!(
        out,
        "method: {}; α = {}; NOT REPRODUCED needs its interval at {} wholly outside the band",
        p.policy.method.name,
        p.policy.method.alpha,
        stats::percent(p.policy.method.accusation_confidence)
    );
    for m in &p.metrics {
        if let Some(note) = &m.note {
            let _ = writeln!(out, "note: {}: {note}", m.metric);
        }
        if let Some(n) = m.runs_to_decide {
            let _ = writeln!(
                out,
                "note: {}: about {n} runs here would likely decide it at this spread ({} now)",
                m.metric, m.runs
            );
        }
    }
    if p.drift.is_empty() {
        let _ = writeln!(
            out,
            "drift: none (the environments agree on every fact compared)"
        );
    } else {
        let _ = writeln!(out, "drift (reported → re-measured):");
        for d in &p.drift {
            let _ = writeln!(
                out,
                "  {}: {} → {} (in {})",
                d.field,
                d.reported,
                d.observed,
                d.runs.join(", ")
            );
        }
    }
    out
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// What is still open after a re-run, one line: the undecided metrics
/// with their intervals after a look, else when the next look comes.
pub fn render_rerun(reruns: u32, repeats: Repeats, seq: Option<&Sequential>) -> String {
    let Some(seq) = seq else {
        return match repeats.next_look(reruns) {
            Some(next) => format!("after {reruns} re-run(s): next judgement after {next}"),
            None => format!("after {reruns} re-run(s)"),
        };
    };
    let open = seq.undecided();
    if open.is_empty() {
        return format!("after {reruns} re-run(s): every judged metric is decided");
    }
    let open: Vec<String> = open
        .iter()
        .map(|m| match m.interval {
            Some(i) => format!(
                "{} [{:.3}, {:.3}] ±{}%",
                m.metric,
                i.lo,
                i.hi,
                (m.band * 1000.0).round() / 10.0
            ),
            None => m.metric.clone(),
        })
        .collect();
    let next = match repeats.next_look(reruns) {
        Some(next) => format!("; next judgement after {next}"),
        None => String::new(),
    };
    format!(
        "after {reruns} re-run(s): undecided: {}{next}",
        open.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(kernel: &str, exe: &str, driver: Option<&str>) -> Value {
        json!({
            "format": "infermark.environment.v1",
            "harness": { "version": "0.1.0", "commit": "abc" },
            "host": { "os": "Debian GNU/Linux 12 (bookworm)", "kernel": kernel,
                      "arch": "x86_64", "cpu_model": "Some CPU", "cpu_count": 2 },
            "gpus": { "status": "absent", "driver_version": driver, "cuda_driver_version": null },
            "engine": { "executable": { "path": "/x", "sha256": exe }, "model_file": null, "image": null }
        })
    }

    #[test]
    fn drift_lists_every_difference_once_with_its_runs() {
        let reported = env("6.1.0-1", "aa", None);
        let same = env("6.1.0-1", "aa", None);
        let a = env("6.1.0-2", "aa", Some("550.1"));
        let b = env("6.1.0-2", "bb", None);
        let found = drift(&reported, &[("r1", &same), ("r2", &a), ("r3", &b)]);
        let fields: Vec<(&str, String, Vec<String>)> = found
            .iter()
            .map(|d| (d.field.as_str(), d.observed.to_string(), d.runs.clone()))
            .collect();
        assert_eq!(
            fields,
            vec![
                (
                    "host.kernel",
                    "\"6.1.0-2\"".to_string(),
                    vec!["r2".into(), "r3".into()]
                ),
                (
                    "gpus.driver_version",
                    "\"550.1\"".to_string(),
                    vec!["r2".into()]
                ),
                (
                    "engine.executable.sha256",
                    "\"bb\"".to_string(),
                    vec!["r3".into()]
                ),
            ]
        );
        assert_eq!(found[0].reported, json!("6.1.0-1"));
        assert!(drift(&reported, &[("r1", &same)]).is_empty());
    }

    fn with_harness(commit: &str, exe: Option<&str>) -> Value {
        let mut e = env("6.1.0-1", "aa", None);
        e["harness"]["commit"] = commit.into();
        if let Some(sha) = exe {
            e["harness"]["executable_sha256"] = sha.into();
        }
        e
    }

    /// Regression: two runs of one binary reported `harness.commit` as drift
    /// when its commit name differed (a dirty build, a Nix build).
    #[test]
    fn the_same_harness_executable_is_not_drift_whatever_its_commit_says() {
        let reported = with_harness("abc-dirty.0123456789abcdef", Some("ee"));
        let same_binary = with_harness("abc", Some("ee"));
        assert!(drift(&reported, &[("r1", &same_binary)]).is_empty());
    }

    #[test]
    fn another_harness_executable_is_drift_with_both_values() {
        let reported = with_harness("abc", Some("ee"));
        let other = with_harness("def", Some("ff"));
        let found = drift(&reported, &[("r1", &other)]);
        let fields: Vec<(&str, &Value, &Value)> = found
            .iter()
            .map(|d| (d.field.as_str(), &d.reported, &d.observed))
            .collect();
        assert_eq!(
            fields,
            vec![("harness.executable_sha256", &json!("ee"), &json!("ff"))]
        );
    }

    /// An environment written before the sha256 was recorded: the commit
    /// decides, and the missing sha256 is not itself drift.
    #[test]
    fn without_the_executable_on_either_side_the_commit_decides() {
        let older = with_harness("abc", None);
        let newer = with_harness("def", Some("ee"));
        let found = drift(&older, &[("r1", &newer)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "harness.commit");
        assert_eq!(
            (&found[0].reported, &found[0].observed),
            (&json!("abc"), &json!("def"))
        );
        assert!(drift(&older, &[("r1", &with_harness("abc", Some("ee")))]).is_empty());
    }

    /// A verdict built from fixed numbers (no runs): the table's layout.
    fn fixed_statement() -> VerdictStatement {
        let m = |metric: &str, unit: &str, rep: f64, new: f64, lo: f64, hi: f64, band: f64| {
            let ratio = new / rep;
            let interval = stats::Interval { lo, hi };
            let verdict = stats::decide(interval, interval, band);
            MetricResult {
                metric: metric.into(),
                unit: unit.into(),
                reported: Some(rep),
                remeasured: Some(new),
                ratio: Some(ratio),
                interval: Some(interval),
                accusation_interval: Some(interval),
                band,
                runs: 4,
                values_per_run: (unit == "ms").then_some(96),
                judged: true,
                verdict: Some(verdict),
                decided_after: (verdict != Verdict::Inconclusive).then_some(3),
                runs_to_decide: None,
                note: None,
            }
        };
        let metrics = vec![
            m("output-throughput", "tok/s", 300.0, 290.0, 0.95, 0.98, 0.05),
            m("request-throughput", "req/s", 10.0, 9.7, 0.94, 1.0, 0.05),
            m("median-ttft", "ms", 50.0, 57.0, 1.12, 1.16, 0.10),
            MetricResult {
                interval: None,
                ratio: None,
                judged: false,
                verdict: None,
                decided_after: None,
                note: Some("not judged: 96 values per run, a p99 needs at least 368".into()),
                ..m("p99-ttft", "ms", 60.0, 80.0, 1.25, 1.4, 0.10)
            },
            MetricResult {
                runs_to_decide: Some(7),
                ..m("median-tpot", "ms", 10.0, 10.5, 1.0, 1.12, 0.10)
            },
            m("median-itl", "ms", 10.0, 10.0, 0.99, 1.01, 0.10),
            MetricResult {
                reported: None,
                remeasured: None,
                ratio: None,
                interval: None,
                judged: false,
                verdict: None,
                decided_after: None,
                note: Some("neither side has this metric".into()),
                ..m("median-e2el", "ms", 1.0, 1.0, 1.0, 1.0, 0.10)
            },
        ];
        let method = Method::new(Repeats::Auto {
            first_look: 3,
            max: 10,
        });
        let mut sequential = Sequential::new(method);
        sequential.look(metrics.clone());
        let overall = sequential.verdict();
        VerdictStatement {
            statement_type: STATEMENT_TYPE.into(),
            subject: vec![],
            predicate_type: VERDICT_PREDICATE_TYPE.into(),
            predicate: VerdictPredicate {
                verifier: Verifier {
                    id: VERIFIER_ID.into(),
                    version: BTreeMap::new(),
                    commit: "c".into(),
                },
                time_verified: "2026-01-01T00:00:00.000Z".into(),
                point_id: "p".into(),
                resource_uri: "points/p/runs/r".into(),
                input_attestations: vec![],
                reproductions: vec![],
                compared_runs: vec![],
                policy: Policy {
                    reruns: 4,
                    method,
                    judged: sequential.names(true),
                    not_judged: sequential.names(false),
                    bands: BTreeMap::new(),
                },
                metrics,
                drift: vec![Drift {
                    field: "host.kernel".into(),
                    reported: json!("6.1.0-1"),
                    observed: json!("6.1.0-2"),
                    runs: vec!["20260101T000000Z-00000000".into()],
                }],
                verification_result: overall,
            },
        }
    }

    #[test]
    fn after_each_rerun_the_undecided_metrics_and_the_next_judgement_are_named() {
        let auto = Repeats::Auto {
            first_look: 3,
            max: 10,
        };
        assert_eq!(
            render_rerun(1, auto, None),
            "after 1 re-run(s): next judgement after 3"
        );
        let s = fixed_statement();
        let mut seq = Sequential::new(s.predicate.policy.method);
        seq.look(s.predicate.metrics.clone());
        assert_eq!(
            render_rerun(3, auto, Some(&seq)),
            "after 3 re-run(s): undecided: request-throughput [0.940, 1.000] ±5%; \
             median-tpot [1.000, 1.120] ±10%; next judgement after 6"
        );
    }

    #[test]
    fn the_verdict_table_reads_as_documented() {
        let s = fixed_statement();
        assert_eq!(s.verdict(), Verdict::NotReproduced);
        insta::assert_snapshot!(render(&s));
    }

    #[test]
    fn a_point_id_prefix_that_is_not_hex_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = locate("zz-not-there", dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a point id"), "{e}");
        let e = locate("abc", dir.path()).unwrap_err().to_string();
        assert!(e.contains("no point id starts with `abc`"), "{e}");
    }
}
