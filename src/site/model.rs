//! The results tree as the site sees it: every point with its runs,
//! verdicts and nights, read once into typed values.
//!
//! Each file is read with [`store::bounded`] (no symlink followed, a cap per
//! file) and parsed by the reader its format's owner provides, so the site
//! never has a parser of its own for a stored format. The verdict statement
//! has a writer only (`verify::reproduce`), so its fields are taken from
//! the JSON by name here, read-only.
//!
//! What is costly to derive from a run (its latency CDFs from
//! `requests.jsonl`, its audit) comes through [`super::cache`], keyed by
//! the run's files, so a rebuild derives only new or changed runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SiteError;
use super::cache::{Cache, Derived};
use super::html::safe_component;
use crate::metrics::Summary;
use crate::night::ledger::{NightRecord, NightStatus};
use crate::probe::Environment;
use crate::provenance::Statement;
use crate::spec::{LoadLevel, Model, Point};
use crate::store::bounded;
use crate::store::layout::{
    ENVIRONMENT_FILE, FAILURE_FILE, NIGHT_FILE, NIGHTS_DIR, POINT_FILE, POINTS_DIR, STATEMENT_FILE,
    SUMMARY_FILE, VERDICT_FILE, VERDICTS_DIR,
};
use crate::store::{Failure, RunStatus, StoredRun};

/// The most read from one small JSON file of the tree.
pub const JSON_CAP: u64 = 16 << 20;

/// A whole results tree.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// By point id.
    pub points: Vec<PointEntry>,
    /// By night id.
    pub nights: Vec<NightEntry>,
}

/// One point and everything stored about it.
#[derive(Debug, Clone)]
pub struct PointEntry {
    pub id: String,
    pub hardware: String,
    pub gpus: u32,
    pub engine: String,
    pub runtime: String,
    /// `repo`, a weights file name, or `none`.
    pub model: String,
    /// The model's commit, or the weights file's sha256.
    pub model_pin: Option<String>,
    /// The image reference with its digest (container runtimes).
    pub image: Option<String>,
    /// The executable's sha256 (process runtimes).
    pub command_sha256: Option<String>,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// `c=8` or `r=2.5/s`.
    pub load: String,
    /// The load level's number, for ordering.
    pub load_value: f64,
    /// Engine × hardware × configuration, without pins or load: one line
    /// of a Pareto chart.
    pub config: String,
    /// A short readable name of `config`.
    pub config_label: String,
    /// `config` and the load level: one series across nights.
    pub series: String,
    /// The canonical bytes, as text.
    pub canonical: String,
    /// Completed runs then failed runs, each by run id.
    pub runs: Vec<RunEntry>,
    pub verdicts: Vec<VerdictEntry>,
}

impl PointEntry {
    /// Model × workload: one Pareto page.
    pub fn workload_key(&self) -> String {
        format!(
            "{} in={} out={}",
            self.model, self.input_tokens, self.output_tokens
        )
    }

    /// The latest completed run.
    pub fn latest(&self) -> Option<&RunEntry> {
        self.runs
            .iter()
            .filter(|r| r.status == RunStatus::Completed)
            .max_by(|a, b| a.run_id.cmp(&b.run_id))
    }
}

/// One run, completed or failed.
#[derive(Debug, Clone)]
pub struct RunEntry {
    pub run_id: String,
    pub point_id: String,
    pub status: RunStatus,
    /// `points/<id>/runs/<run-id>` (or `failed/`), relative to the root.
    pub rel_dir: String,
    pub started_at: String,
    pub finished_at: String,
    pub reason: Option<String>,
    pub summary: Option<Summary>,
    pub environment: Option<Environment>,
    pub statement: Option<Statement>,
    /// The files of the run directory, by name.
    pub files: Vec<String>,
    /// The night that recorded this run, if any.
    pub night: Option<String>,
    pub derived: Derived,
}

/// The figures of a run the charts and tables use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Output tokens/s per GPU; per machine for a CPU point (0 GPUs).
    pub output_tok_s_per_gpu: f64,
    pub tok_s_per_user: f64,
    pub median_e2el_ms: f64,
}

impl RunEntry {
    pub fn figures(&self) -> Option<Figures> {
        let s = self.summary.as_ref()?;
        // A CPU point has no GPU: its machine is its one device.
        let per_device = match s.gpus {
            0 => s.throughput.output_tokens_per_s,
            _ => s.throughput.output_tokens_per_s_per_gpu,
        };
        Some(Figures {
            output_tok_s_per_gpu: per_device?,
            tok_s_per_user: s.interactivity.median_tok_s_per_user?,
            median_e2el_ms: s.latency.e2el.p50_ms?,
        })
    }
}

/// A verdict of `verify` about one of the point's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictEntry {
    pub verdict_id: String,
    pub rel_path: String,
    pub result: String,
    pub time_verified: String,
    /// The reported run's directory, relative to the root.
    pub resource_uri: String,
    pub reruns: u64,
    pub metrics: Vec<VerdictMetric>,
}

/// One metric of a verdict with its interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictMetric {
    pub metric: String,
    pub unit: String,
    pub reported: Option<f64>,
    pub remeasured: Option<f64>,
    pub ratio: Option<f64>,
    pub interval: Option<(f64, f64)>,
    pub band: Option<f64>,
    pub verdict: Option<String>,
}

/// A night record.
#[derive(Debug, Clone)]
pub struct NightEntry {
    pub night: String,
    pub record: NightRecord,
}

impl NightEntry {
    pub fn counts(&self) -> (usize, usize) {
        let done = self
            .record
            .points
            .iter()
            .filter(|p| p.status == NightStatus::Completed)
            .count();
        (done, self.record.points.len() - done)
    }
}

/// Loads the tree under `root`. A missing `points/` is an empty tree; a
/// missing root is an error naming it.
pub fn load(root: &Path, cache: &mut Cache) -> Result<Tree, SiteError> {
    if !bounded::is_real_dir(root) {
        return Err(SiteError::NoResults(root.to_path_buf()));
    }
    let nights = load_nights(root)?;
    let mut night_of: BTreeMap<(String, String), String> = BTreeMap::new();
    for n in &nights {
        for p in &n.record.points {
            if let Some(run) = &p.run_id {
                night_of.insert((p.id.clone(), run.clone()), n.night.clone());
            }
        }
    }
    let mut points = Vec::new();
    let points_dir = root.join(POINTS_DIR);
    if bounded::is_real_dir(&points_dir) {
        for point_dir in sorted_dirs(&points_dir)? {
            points.push(load_point(root, &point_dir, &night_of, cache)?);
        }
    }
    Ok(Tree { points, nights })
}

fn load_nights(root: &Path) -> Result<Vec<NightEntry>, SiteError> {
    let dir = root.join(NIGHTS_DIR);
    let mut out = Vec::new();
    if !bounded::is_real_dir(&dir) {
        return Ok(out);
    }
    for night_dir in sorted_dirs(&dir)? {
        let path = night_dir.join(NIGHT_FILE);
        let bytes = match bounded::read(&path, JSON_CAP) {
            Err(e) if e.is_not_found() => continue,
            other => other?,
        };
        let record = NightRecord::from_slice(&path, &bytes).map_err(SiteError::input)?;
        let name = crate::store::file_name(&night_dir);
        if record.night != name || safe_component(&name).is_none() {
            return Err(SiteError::Input(format!(
                "{}: names night `{}` but is in directory `{name}`; a night id is letters, \
                 digits, `.`, `_` and `-`, and names its directory",
                path.display(),
                record.night
            )));
        }
        out.push(NightEntry {
            night: name,
            record,
        });
    }
    Ok(out)
}

/// The real subdirectories of `dir` (no symlinks), sorted.
pub fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, SiteError> {
    Ok(crate::store::read_dir_sorted(dir)
        .map_err(SiteError::input)?
        .into_iter()
        .filter(|p| bounded::is_real_dir(p))
        .collect())
}

/// The regular files of `dir` whose names can be published as paths.
fn sorted_files(dir: &Path) -> Result<Vec<String>, SiteError> {
    Ok(crate::store::read_dir_sorted(dir)
        .map_err(SiteError::input)?
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
        .map(|p| crate::store::file_name(&p))
        .filter(|n| safe_component(n).is_some())
        .collect())
}

/// A directory name of the tree that becomes part of the site's paths.
fn checked_name(dir: &Path) -> Result<String, SiteError> {
    let name = crate::store::file_name(dir);
    match safe_component(&name) {
        Some(_) => Ok(name),
        None => Err(SiteError::Input(format!(
            "{}: not a run or verdict id (letters, digits, `.`, `_` and `-` only); remove \
             or rename the directory",
            dir.display()
        ))),
    }
}

fn load_point(
    root: &Path,
    point_dir: &Path,
    night_of: &BTreeMap<(String, String), String>,
    cache: &mut Cache,
) -> Result<PointEntry, SiteError> {
    let path = point_dir.join(POINT_FILE);
    let bytes = bounded::read(&path, JSON_CAP)?;
    let point = Point::from_canonical(&bytes)
        .map_err(|e| SiteError::Input(format!("{}: {e}", path.display())))?;
    let name = crate::store::file_name(point_dir);
    if point.id() != name {
        return Err(SiteError::Input(format!(
            "{}: the point's id is {}, not the directory's name; run `infermark audit`",
            path.display(),
            point.id()
        )));
    }
    let mut entry = describe(&point);
    for run in crate::store::runs_of_point(point_dir).map_err(SiteError::input)? {
        if !bounded::is_real_dir(&run.dir) {
            continue;
        }
        checked_name(&run.dir)?;
        let night = night_of
            .get(&(entry.id.clone(), run.run_id.clone()))
            .cloned();
        entry.runs.push(load_run(root, &run, night, cache)?);
    }
    let verdicts = point_dir.join(VERDICTS_DIR);
    if bounded::is_real_dir(&verdicts) {
        for dir in sorted_dirs(&verdicts)? {
            let path = dir.join(VERDICT_FILE);
            let bytes = match bounded::read(&path, JSON_CAP) {
                Err(e) if e.is_not_found() => continue,
                other => other?,
            };
            let rel = relative(root, &path);
            let id = checked_name(&dir)?;
            entry.verdicts.push(read_verdict(&path, &bytes, id, rel)?);
        }
    }
    Ok(entry)
}

/// The point's labels, keys and pins, with no runs yet.
pub fn describe(point: &Point) -> PointEntry {
    let p = &point.spec;
    let (model, model_pin) = match &p.model {
        Model::Hub { repo, revision, .. } => (repo.clone(), Some(revision.clone())),
        Model::File { file, sha256, .. } => (
            Path::new(file)
                .file_name()
                .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned()),
            Some(format!("sha256:{sha256}")),
        ),
        Model::None { .. } => ("none".to_string(), None),
    };
    let image = p.engine.image.as_ref().map(|i| i.to_string());
    // The configuration: everything of the engine but its pins, so that a
    // nightly image (a new digest, a new point id every night) stays on
    // one line of the chart.
    let image_name = image
        .as_deref()
        .map(|i| i.split('@').next().unwrap_or(i).to_string());
    let config_json = serde_json::json!({
        "hardware": p.hardware.class,
        "gpus": p.hardware.gpus,
        "engine": p.engine.kind.to_string(),
        "runtime": p.engine.runtime.to_string(),
        "image": image_name,
        "command": p.engine.command,
        "args": p.engine.args,
        "env": p.engine.env,
        "tensor_parallel": p.engine.tensor_parallel,
        "model": model,
        "workload": p.workload,
        "slo": p.slo,
    });
    let config_hash = super::sha256_hex(config_json.to_string().as_bytes());
    let config = format!("cfg-{}", &config_hash[..12]);
    let load = p.load.label();
    let load_value = match &p.load {
        LoadLevel::Concurrency { concurrency, .. } => f64::from(*concurrency),
        LoadLevel::Rate { rate, .. } => *rate,
    };
    let series_hash = super::sha256_hex(format!("{config}\n{load}").as_bytes());
    PointEntry {
        id: point.id().to_string(),
        hardware: p.hardware.class.clone(),
        gpus: p.hardware.gpus,
        engine: p.engine.kind.to_string(),
        runtime: p.engine.runtime.to_string(),
        config_label: format!(
            "{} ({}) · {} · {}",
            p.engine.kind,
            p.engine.runtime,
            hardware_label(p.hardware.gpus, &p.hardware.class),
            &config_hash[..6]
        ),
        model,
        model_pin,
        image,
        command_sha256: p.engine.command_sha256.as_ref().map(|s| s.to_string()),
        input_tokens: p.workload.input_tokens,
        output_tokens: p.workload.output_tokens,
        load,
        load_value,
        config,
        series: format!("ser-{}", &series_hash[..12]),
        canonical: String::from_utf8_lossy(point.canonical_bytes()).into_owned(),
        runs: Vec::new(),
        verdicts: Vec::new(),
    }
}

/// `8×nvidia-h200-sxm`, or the class alone when it has no GPU.
pub fn hardware_label(gpus: u32, class: &str) -> String {
    match gpus {
        0 => class.to_string(),
        n => format!("{n}×{class}"),
    }
}

fn load_run(
    root: &Path,
    run: &StoredRun,
    night: Option<String>,
    cache: &mut Cache,
) -> Result<RunEntry, SiteError> {
    let files = sorted_files(&run.dir)?;
    let rel_dir = relative(root, &run.dir);
    let point_id = crate::store::file_name(&run.point_dir);
    let derived = cache.derived(run, &files)?;
    let mut entry = RunEntry {
        run_id: run.run_id.clone(),
        point_id,
        status: run.status,
        rel_dir,
        started_at: String::new(),
        finished_at: String::new(),
        reason: None,
        summary: None,
        environment: None,
        statement: None,
        files,
        night,
        derived,
    };
    match run.status {
        RunStatus::Failed => {
            let path = run.dir.join(FAILURE_FILE);
            let text = bounded::read_text(&path, JSON_CAP)?;
            let failure = Failure::from_json(&path, &text).map_err(SiteError::input)?;
            entry.started_at = failure.started_at;
            entry.finished_at = failure.failed_at;
            entry.reason = Some(failure.reason);
        }
        RunStatus::Completed => {
            let path = run.dir.join(STATEMENT_FILE);
            let text = bounded::read_text(&path, JSON_CAP)?;
            let statement = Statement::from_json(&path, &text).map_err(SiteError::input)?;
            entry.started_at = statement.predicate.started_at.clone();
            entry.finished_at = statement.predicate.finished_at.clone();
            entry.statement = Some(statement);
            let path = run.dir.join(SUMMARY_FILE);
            let text = bounded::read_text(&path, JSON_CAP)?;
            entry.summary = Some(
                Summary::from_json(&text)
                    .map_err(|e| SiteError::Input(format!("{}: {e}", path.display())))?,
            );
            let path = run.dir.join(ENVIRONMENT_FILE);
            let text = bounded::read_text(&path, JSON_CAP)?;
            entry.environment = Some(
                Environment::from_json(&text)
                    .map_err(|e| SiteError::Input(format!("{}: {e}", path.display())))?,
            );
        }
    }
    Ok(entry)
}

fn read_verdict(
    path: &Path,
    bytes: &[u8],
    verdict_id: String,
    rel_path: String,
) -> Result<VerdictEntry, SiteError> {
    let bad = |what: &str| {
        SiteError::Input(format!(
            "{}: not a verdict statement: {what}",
            path.display()
        ))
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
    let kind = v["predicateType"].as_str().unwrap_or("");
    if kind != crate::verify::reproduce::VERDICT_PREDICATE_TYPE {
        return Err(bad(&format!(
            "`predicateType` is `{kind}`, this infermark reads `{}`",
            crate::verify::reproduce::VERDICT_PREDICATE_TYPE
        )));
    }
    let p = &v["predicate"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let metrics = p["metrics"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| VerdictMetric {
                    metric: text(&m["metric"]),
                    unit: text(&m["unit"]),
                    reported: m["reported"].as_f64(),
                    remeasured: m["remeasured"].as_f64(),
                    ratio: m["ratio"].as_f64(),
                    interval: m["interval"]["lo"]
                        .as_f64()
                        .zip(m["interval"]["hi"].as_f64()),
                    band: m["band"].as_f64(),
                    verdict: m["verdict"].as_str().map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(VerdictEntry {
        verdict_id,
        rel_path,
        result: text(&p["verification_result"]),
        time_verified: text(&p["time_verified"]),
        resource_uri: text(&p["resource_uri"]),
        reruns: p["policy"]["reruns"].as_u64().unwrap_or(0),
        metrics,
    })
}

/// `points/<id>/runs/<run>` from a path under `root`, `/`-separated.
pub fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}
