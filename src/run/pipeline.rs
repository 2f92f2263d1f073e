//! The run pipeline: experiments → points → engine up → measure each point →
//! environment facts → statement → an atomic move into the results tree.
//!
//! One engine start serves every point that shares engine, model and
//! hardware (a sweep over load levels). A point that fails is recorded as a
//! failed run with its reason and the pipeline carries on; an interruption
//! (SIGTERM, Ctrl-C) records the point in flight as failed, stops the engine
//! and returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::engine::{self, EngineFacts, RunningEngine, StartOptions};
use crate::loadgen::Progress;
use crate::lock::Lockfiles;
use crate::lock::local::LocalPin;
use crate::metrics::{self, Summary};
use crate::probe::{self, Environment, GpuFacts, HardwareFit, HostFacts};
use crate::provenance::RunPredicate;
use crate::provenance::sign::Signer;
use crate::spec::{self, Point};
use crate::store::layout::{
    ENGINE_LOG_FILE, ENVIRONMENT_FILE, REQUESTS_FILE, SUMMARY_FILE, TMP_DIR,
};
use crate::store::{RunWriter, Store};

use super::{RunError, measure};

/// How `infermark run` (and the nightly) runs points.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub results: PathBuf,
    /// Lockfile directory; default: the nearest `lockfiles/` above each experiment.
    pub lock_dir: Option<PathBuf>,
    /// Only points whose id starts with this.
    pub only_point: Option<String>,
    /// Run on a machine that is not the point's hardware class; recorded.
    pub allow_hardware_mismatch: bool,
    pub cache_dir: PathBuf,
    pub model_dirs: Vec<PathBuf>,
    pub model_cache: Option<PathBuf>,
    /// Pull over plain HTTP from registries on the loopback interface
    /// (podman's `--tls-verify=false`; Docker already treats 127.0.0.0/8 so).
    pub registry_insecure_loopback: bool,
    pub infermark_exe: PathBuf,
    /// Sign each run's statement with this Ed25519 private key (PKCS#8 PEM):
    /// `provenance.dsse.json` is written beside `provenance.json`.
    pub sign_key: Option<PathBuf>,
}

impl RunOptions {
    /// Options that only [`plan`] points, with the lock of `lock_dir`:
    /// nothing is run, written or pulled with them (`infermark plan`).
    pub fn planning(lock_dir: Option<PathBuf>) -> RunOptions {
        RunOptions {
            results: PathBuf::new(),
            lock_dir,
            only_point: None,
            allow_hardware_mismatch: false,
            cache_dir: PathBuf::new(),
            model_dirs: Vec::new(),
            model_cache: None,
            registry_insecure_loopback: true,
            infermark_exe: PathBuf::new(),
            sign_key: None,
        }
    }
}

/// What became of one point.
#[derive(Debug)]
pub enum PointOutcome {
    Completed {
        point: Point,
        path: PathBuf,
        summary: Box<Summary>,
    },
    Failed {
        point: Point,
        path: Option<PathBuf>,
        reason: String,
    },
}

impl PointOutcome {
    pub fn point(&self) -> &Point {
        match self {
            PointOutcome::Completed { point, .. } | PointOutcome::Failed { point, .. } => point,
        }
    }
}

/// Reports the pipeline's progress to whoever drives it (the CLI prints).
pub trait Observer: Send + Sync {
    fn engine_starting(&self, _facts_hint: &str) {}
    fn point_starting(&self, _point: &Point, _requests: usize) -> Option<Arc<dyn Progress>> {
        None
    }
    fn point_done(&self, _outcome: &PointOutcome) {}
}

/// Why the run stopped early.
pub const INTERRUPTED: &str = "interrupted";

/// A point with the experiment file it came from.
#[derive(Debug, Clone)]
pub struct PlannedPoint {
    pub point: Point,
    pub experiment: PathBuf,
}

/// Loads experiments (files, or directories searched for `*.toml`) and
/// expands them into pinned points, in file order. A point with an unpinned
/// reference is an error here: nothing runs unpinned.
pub fn plan(paths: &[PathBuf], opts: &RunOptions) -> Result<Vec<PlannedPoint>, RunError> {
    let files = spec::collect_files(paths)?;
    let mut planned = Vec::new();
    for file in files {
        let experiment = spec::load(&file)?;
        let lock = lock_of(&file, opts)?;
        let points = experiment
            .points(&lock)
            .map_err(|source| RunError::Canonical {
                file: file.clone(),
                source,
            })?;
        for point in points {
            if let Some(prefix) = &opts.only_point
                && !point.id().starts_with(prefix.as_str())
            {
                continue;
            }
            let unpinned = point.unpinned();
            if !unpinned.is_empty() {
                let list: Vec<String> = unpinned.iter().map(|u| u.to_string()).collect();
                return Err(RunError::Unpinned(format!(
                    "{}: point {} is not pinned: {}",
                    file.display(),
                    point.short_id(),
                    list.join("; ")
                )));
            }
            planned.push(PlannedPoint {
                point,
                experiment: file.clone(),
            });
        }
    }
    if planned.is_empty() {
        return Err(RunError::NoPoints(match &opts.only_point {
            Some(p) => format!("no point id starts with `{p}`"),
            None => "no points to run".to_string(),
        }));
    }
    Ok(planned)
}

/// The lock an experiment is pinned by: `--lock-dir`, else the nearest
/// `lockfiles/` above it, else none.
fn lock_of(experiment: &Path, opts: &RunOptions) -> Result<Lockfiles, RunError> {
    Ok(crate::lock::apply::for_experiment(
        experiment,
        opts.lock_dir.as_deref(),
    )?)
}

/// The pins of a planned point that came from this machine's local lock
/// overlay, for its environment. Best effort: [`plan`] already read the
/// lock, and a point re-run by `verify` has no experiment file.
fn local_pins(p: &PlannedPoint, opts: &RunOptions) -> Vec<LocalPin> {
    match lock_of(&p.experiment, opts) {
        Ok(lock) => lock.local_pins(&p.point),
        Err(e) => {
            tracing::warn!("which pins came from the local lock overlay is not recorded: {e}");
            Vec::new()
        }
    }
}

/// Points that share one engine start: same hardware, engine and model.
pub fn group(planned: Vec<PlannedPoint>) -> Vec<Vec<PlannedPoint>> {
    let mut groups: Vec<(String, Vec<PlannedPoint>)> = Vec::new();
    for p in planned {
        let key = engine_key(&p.point);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(p),
            None => groups.push((key, vec![p])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

fn engine_key(p: &Point) -> String {
    let s = &p.spec;
    serde_json::to_string(&(&s.hardware, &s.engine, &s.model)).unwrap_or_default()
}

/// Hex digits of a group id: 48 bits, so a night's handful of groups never
/// collide, yet short enough for a job name.
pub const GROUP_ID_LEN: usize = 12;

/// The stable id of the engine start a point belongs to: a short sha256 of
/// the canonical JSON (RFC 8785) of its hardware, engine and model — the
/// same key [`group`] shares engine starts by. Pins are part of engine and
/// model, so re-pinning gives a new group; load levels are not, so every
/// point of a sweep shares one.
pub fn group_id(p: &Point) -> String {
    let s = &p.spec;
    let key = serde_json::json!([&s.hardware, &s.engine, &s.model]);
    // The spec types hold no floats, so canonical JSON cannot fail on them;
    // the plain serialisation stands in should that ever change.
    let bytes = spec::canonical_json(&key).unwrap_or_else(|_| engine_key(p).into_bytes());
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
    let mut id = spec::hex(&digest);
    id.truncate(GROUP_ID_LEN);
    id
}

/// Runs every planned point; never stops at a failed point. Returns one
/// outcome per point run, or `Interrupted` when `shutdown` fired.
pub async fn run_points(
    planned: Vec<PlannedPoint>,
    opts: &RunOptions,
    observer: &dyn Observer,
    shutdown: watch::Receiver<Option<String>>,
) -> Result<Vec<PointOutcome>, RunError> {
    run_points_until(planned, opts, observer, shutdown, &mut |_| false).await
}

/// As [`run_points`], but after each point `stop` sees its outcome and may
/// end the run there (the engine is stopped, the remaining points are not
/// run): how `verify` re-runs one at a time on one engine start until its
/// verdict is decided.
pub async fn run_points_until(
    planned: Vec<PlannedPoint>,
    opts: &RunOptions,
    observer: &dyn Observer,
    mut shutdown: watch::Receiver<Option<String>>,
    stop: &mut dyn FnMut(&PointOutcome) -> bool,
) -> Result<Vec<PointOutcome>, RunError> {
    let store = Store::open(&opts.results).map_err(RunError::Store)?;
    // Loaded before any engine starts: a bad key fails the run up front.
    let signer = opts.sign_key.as_deref().map(Signer::load).transpose()?;
    let host = probe::host();
    // The client's own error bars, as last measured on this host.
    let machine = crate::calibrate::Machine::this();
    let calibration = match crate::calibrate::load_last(&opts.cache_dir, &machine) {
        Ok(saved) => saved.map(|c| serde_json::to_value(c).expect("a calibration serializes")),
        Err(e) => {
            tracing::warn!("no calibration attached: {e}");
            None
        }
    };
    let gpus = probe::gpus();
    let mut outcomes = Vec::new();
    for (n, group) in group(planned).into_iter().enumerate() {
        let first = &group[0].point;
        // The hardware check refuses before anything starts.
        let fit = probe::fit(
            &gpus,
            &first.spec.hardware.class,
            first.spec.hardware.gpus,
            opts.allow_hardware_mismatch,
        )?;
        let spec_dir = group[0]
            .experiment
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        // Unique per engine start: it names the container and the session dir.
        let label = format!(
            "{}-{n}",
            crate::store::new_run_id(SystemTime::now()).to_ascii_lowercase()
        );
        let session = SessionDir::new(&store, &label)?;
        let start = StartOptions {
            label,
            spec_dir: spec_dir.clone(),
            cache_dir: opts.cache_dir.clone(),
            model_dirs: opts.model_dirs.clone(),
            model_cache: opts.model_cache.clone(),
            log_path: session.log.clone(),
            infermark_exe: opts.infermark_exe.clone(),
            registry_insecure_loopback: opts.registry_insecure_loopback,
        };
        observer.engine_starting(&format!(
            "{} ({}) for {} point(s)",
            first.spec.engine.kind,
            first.spec.engine.runtime,
            group.len()
        ));
        let started = tokio::select! {
            r = engine::start(&first.spec, &start) => r,
            _ = shutdown.changed() => {
                engine::kill_all_started();
                return Err(RunError::Interrupted(reason(&shutdown)));
            }
        };
        let mut running = match started {
            Ok(e) => e,
            Err(e) => {
                let why = format!("engine failed to start: {e}");
                for p in &group {
                    let o = record_failure(&store, &p.point, &session.log, &why);
                    observer.point_done(&o);
                    outcomes.push(o);
                }
                continue;
            }
        };
        let ctx = PointContext {
            host: &host,
            gpus: &gpus,
            fit: &fit,
            calibration: calibration.as_ref(),
            spec_dir: &spec_dir,
            log: &session.log,
            signer: signer.as_ref(),
        };
        for p in &group {
            if let Some(why) = running.exited() {
                let o = record_failure(
                    &store,
                    &p.point,
                    &session.log,
                    &format!("the engine exited: {why}"),
                );
                observer.point_done(&o);
                outcomes.push(o);
                continue;
            }
            let o = run_point(
                &store,
                &p.point,
                &local_pins(p, opts),
                &mut running,
                &ctx,
                observer,
                &mut shutdown,
            )
            .await;
            let interrupted = matches!(&o, Err(RunError::Interrupted(_)));
            match o {
                Ok(o) => {
                    observer.point_done(&o);
                    let enough = stop(&o);
                    outcomes.push(o);
                    if enough {
                        if let Err(e) = running.stop().await {
                            tracing::warn!("stopping the engine: {e}");
                        }
                        return Ok(outcomes);
                    }
                }
                Err(e) if interrupted => {
                    let _ = running.stop().await;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = running.stop().await {
            tracing::warn!("stopping the engine: {e}");
        }
    }
    Ok(outcomes)
}

fn reason(shutdown: &watch::Receiver<Option<String>>) -> String {
    shutdown
        .borrow()
        .clone()
        .unwrap_or_else(|| INTERRUPTED.to_string())
}

struct PointContext<'a> {
    host: &'a HostFacts,
    gpus: &'a GpuFacts,
    fit: &'a HardwareFit,
    calibration: Option<&'a serde_json::Value>,
    spec_dir: &'a Path,
    log: &'a Path,
    signer: Option<&'a Signer>,
}

/// Measures one point into a run directory; a measurement failure is a
/// failed run (an `Ok` outcome), only store trouble and interruption are errors.
async fn run_point(
    store: &Store,
    point: &Point,
    local_pins: &[LocalPin],
    engine: &mut RunningEngine,
    ctx: &PointContext<'_>,
    observer: &dyn Observer,
    shutdown: &mut watch::Receiver<Option<String>>,
) -> Result<PointOutcome, RunError> {
    let started = SystemTime::now();
    let writer = store.begin_run(point, started).map_err(RunError::Store)?;
    let (warmup, measured) = super::request_counts(&point.spec);
    let progress = observer.point_starting(point, warmup + measured);
    let meter = probe::EnergyMeter::start();
    let measured = tokio::select! {
        m = measure(point, engine.base_url(), ctx.spec_dir, progress) => m,
        _ = shutdown.changed() => {
            let why = reason(shutdown);
            let _ = copy_log(ctx.log, writer.dir());
            let _ = writer.fail(&format!("{why} during measurement"));
            return Err(RunError::Interrupted(why));
        }
    };
    let energy = meter.map(|m| m.finish());
    let m = match measured {
        Ok(m) => m,
        Err(e) => {
            return Ok(fail(
                writer,
                point,
                ctx.log,
                &format!("{:#}", anyhow::Error::new(e)),
            ));
        }
    };
    if let Some(why) = engine.exited() {
        return Ok(fail(
            writer,
            point,
            ctx.log,
            &format!("the engine exited during measurement: {why}"),
        ));
    }
    let finished = SystemTime::now();
    let written = (|| -> Result<(), RunError> {
        let dir = writer.dir();
        metrics::write_records(&dir.join(REQUESTS_FILE), &m.records)?;
        metrics::write_summary(&dir.join(SUMMARY_FILE), &m.summary)?;
        let mut env = Environment::new(
            ctx.host.clone(),
            ctx.gpus.clone(),
            energy,
            ctx.fit.clone(),
            engine_facts(engine.facts()),
        );
        env.calibration = ctx.calibration.cloned();
        env.local_pins = local_pins.to_vec();
        write(&dir.join(ENVIRONMENT_FILE), env.to_json().as_bytes())?;
        copy_log(ctx.log, dir)?;
        Ok(())
    })();
    if let Err(e) = written {
        return Ok(fail(
            writer,
            point,
            ctx.log,
            &format!("{:#}", anyhow::Error::new(e)),
        ));
    }
    let predicate = RunPredicate::new(
        point,
        writer.run_id(),
        started,
        finished,
        ctx.fit.overridden,
    );
    match writer.commit_signed(predicate, ctx.signer) {
        Ok(path) => Ok(PointOutcome::Completed {
            point: point.clone(),
            path,
            summary: Box::new(m.summary),
        }),
        Err(e) => Err(RunError::Store(e)),
    }
}

fn engine_facts(f: &EngineFacts) -> serde_json::Value {
    serde_json::to_value(f).unwrap_or(serde_json::Value::Null)
}

fn fail(writer: RunWriter, point: &Point, log: &Path, reason: &str) -> PointOutcome {
    let _ = copy_log(log, writer.dir());
    let path = writer.fail(reason).ok();
    PointOutcome::Failed {
        point: point.clone(),
        path,
        reason: reason.to_string(),
    }
}

/// A point that never got an engine: a failed run with the engine's log.
fn record_failure(store: &Store, point: &Point, log: &Path, reason: &str) -> PointOutcome {
    match store.begin_run(point, SystemTime::now()) {
        Ok(writer) => fail(writer, point, log, reason),
        Err(e) => PointOutcome::Failed {
            point: point.clone(),
            path: None,
            reason: format!("{reason} (and the failure could not be recorded: {e})"),
        },
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    std::fs::write(path, bytes).map_err(|source| RunError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn copy_log(log: &Path, dir: &Path) -> Result<(), RunError> {
    let bytes = std::fs::read(log).unwrap_or_default();
    write(&dir.join(ENGINE_LOG_FILE), &bytes)
}

/// Where one engine start keeps its log: beside the in-progress runs, never
/// in the results proper; removed when the session ends.
struct SessionDir {
    dir: PathBuf,
    log: PathBuf,
}

impl SessionDir {
    fn new(store: &Store, label: &str) -> Result<Self, RunError> {
        let dir = store.root().join(TMP_DIR).join(format!("engine-{label}"));
        std::fs::create_dir_all(&dir).map_err(|source| RunError::Write {
            path: dir.clone(),
            source,
        })?;
        let log = dir.join(ENGINE_LOG_FILE);
        Ok(SessionDir { dir, log })
    }
}

impl Drop for SessionDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
