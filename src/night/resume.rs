//! One night on one runner, resumable: the class's experiments selected
//! and (optionally) locked again, planned into groups, the points this night
//! already completed skipped, the rest run through the pipeline, and every
//! point's fate written to the night record as it finishes, so a night cut
//! short resumes from what it finished. `infermark nightly` is one call of
//! [`run_night`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::loadgen::Progress;
use crate::lock::resolve;
use crate::run::RunError;
use crate::run::pipeline::{self, Observer, PlannedPoint, PointOutcome, RunOptions};
use crate::spec::Point;
use crate::store;

use super::NightError;
use super::ledger::{self, NightPoint, NightRecord, NightStatus};
use super::select;

/// What `infermark nightly` asks for.
#[derive(Debug, Clone)]
pub struct NightRequest {
    /// Night id: re-running a night skips its completed points; `None`:
    /// today's UTC date.
    pub night: Option<String>,
    /// Hardware class to run; `None`: detected on this machine.
    pub hardware: Option<String>,
    /// Experiments root; the night runs `<experiments>/<class>/`.
    pub experiments: PathBuf,
    /// Run only these groups (all when empty).
    pub only: Vec<String>,
    /// Resolve moving references into the lock before planning.
    pub update_locks: bool,
    /// How points run; its `lock_dir` is replaced by the night's lock.
    pub run: RunOptions,
}

/// The night as planned, before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightStart {
    pub night: String,
    pub hardware: String,
    pub groups: usize,
    pub points: usize,
    /// Completed earlier in this night, not run again.
    pub skipped: usize,
    pub to_run: usize,
}

/// What a night did.
#[derive(Debug)]
pub struct NightOutcome {
    pub start: NightStart,
    pub record: NightRecord,
    /// Where the record was written.
    pub record_path: PathBuf,
    /// Points run that failed.
    pub failed: usize,
}

/// Told what the night does as it goes (the CLI prints it); the points'
/// own progress comes through [`Observer`].
pub trait NightObserver: Observer {
    /// `--update-locks` resolved the lock in `dir`.
    fn locks_updated(&self, _dir: &Path, _report: &resolve::Report) {}
    /// The lockfiles differ from those the night started with.
    fn locks_changed(&self, _night: &str) {}
    /// `point` completed earlier in the night as `run`; it is not run again.
    fn point_skipped(&self, _point: &Point, _night: &str, _run: &str) {}
    /// The plan, before the first point runs.
    fn night_starting(&self, _start: &NightStart) {}
    /// The night record could not be written after a point; the night goes
    /// on and writes it again after the next.
    fn record_not_saved(&self, _error: &NightError) {}
}

/// Runs the night `request` asks for until it is done or `shutdown` fires
/// (then `NightError::Run(RunError::Interrupted)`, with the point in
/// flight recorded as failed).
pub async fn run_night(
    request: &NightRequest,
    observer: &dyn NightObserver,
    mut shutdown: watch::Receiver<Option<String>>,
) -> Result<NightOutcome, NightError> {
    let night_id = request
        .night
        .clone()
        .unwrap_or_else(|| ledger::today(std::time::SystemTime::now()));
    ledger::check_night_id(&night_id)?;
    let class = select::hardware_class(request.hardware.as_deref())?;
    let opts = &request.run;
    if request.update_locks {
        // Every moving reference of this class's experiments is resolved
        // again into the lock before the plan reads it.
        let selection = select::select(&request.experiments, &class, opts)?;
        let dir = selection
            .lock_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("lockfiles"));
        let report = tokio::select! {
            r = resolve::update(&dir, &selection.files, true) => r?,
            _ = shutdown.changed() => {
                let why = shutdown.borrow().clone().unwrap_or_default();
                return Err(RunError::Interrupted(why).into());
            }
        };
        observer.locks_updated(&dir, &report);
    }
    let mut plan = select::plan(&request.experiments, &class, opts)?;
    plan.only(&request.only)?;
    let opts = RunOptions {
        lock_dir: plan.lock_dir.clone(),
        ..opts.clone()
    };

    let record_path = ledger::night_path(&opts.results, &night_id);
    let mut record =
        NightRecord::load(&record_path)?.unwrap_or_else(|| NightRecord::new(&night_id));
    let locks = plan.lock_digests()?;
    let local = plan.local_lock_digests()?;
    let had_local = record.local_locks.get(&class).cloned().unwrap_or_default();
    if !record.locks.is_empty() && (record.locks != locks || had_local != local) {
        observer.locks_changed(&night_id);
    }
    record.locks = locks;
    if local.is_empty() {
        record.local_locks.remove(&class);
    } else {
        record.local_locks.insert(class.clone(), local);
    }
    if !record.hardware_classes.contains(&class) {
        record.hardware_classes.push(class.clone());
    }

    // Resume: a point this night completed, whose run is still stored, is
    // done. Its id hashes every pin, so the same id is the same lock.
    let mut to_run: Vec<PlannedPoint> = Vec::new();
    let mut skipped = 0usize;
    let mut meta: HashMap<String, (String, String)> = HashMap::new();
    for g in &plan.groups {
        for p in &g.points {
            let id = p.point.id().to_string();
            meta.insert(id.clone(), (g.id.clone(), select::experiment_name(p)));
            let done = record.completed_run(&id).filter(|run| {
                let points = opts.results.join(store::POINTS_DIR);
                points.join(&id).join(store::RUNS_DIR).join(run).is_dir()
            });
            match done {
                Some(run) => {
                    observer.point_skipped(&p.point, &night_id, run);
                    skipped += 1;
                }
                None => to_run.push(p.clone()),
            }
        }
    }
    let start = NightStart {
        night: night_id.clone(),
        hardware: class.clone(),
        groups: plan.groups.len(),
        points: plan.point_count(),
        skipped,
        to_run: to_run.len(),
    };
    observer.night_starting(&start);
    record.save(&record_path)?;

    let mut failed = 0;
    if !to_run.is_empty() {
        let recorder = Recorder {
            inner: observer,
            record: Mutex::new(record),
            path: record_path.clone(),
            meta,
        };
        let outcomes = pipeline::run_points(to_run, &opts, &recorder, shutdown).await?;
        failed = outcomes
            .iter()
            .filter(|o| matches!(o, PointOutcome::Failed { .. }))
            .count();
        record = recorder
            .record
            .into_inner()
            .map_err(|_| NightError::Poisoned)?;
    }
    record.save(&record_path)?;
    Ok(NightOutcome {
        start,
        record,
        record_path,
        failed,
    })
}

/// Passes the pipeline's progress on and records each point in the night
/// record as it finishes.
struct Recorder<'a> {
    inner: &'a dyn NightObserver,
    record: Mutex<NightRecord>,
    path: PathBuf,
    /// Point id → (group, experiment name).
    meta: HashMap<String, (String, String)>,
}

impl Observer for Recorder<'_> {
    fn engine_starting(&self, what: &str) {
        self.inner.engine_starting(what);
    }

    fn point_starting(&self, point: &Point, requests: usize) -> Option<Arc<dyn Progress>> {
        self.inner.point_starting(point, requests)
    }

    fn point_done(&self, outcome: &PointOutcome) {
        self.inner.point_done(outcome);
        let point = outcome.point();
        let (group, experiment) = self.meta.get(point.id()).cloned().unwrap_or_default();
        let run_id = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let (status, run, reason) = match outcome {
            PointOutcome::Completed { path, .. } => (NightStatus::Completed, run_id(path), None),
            PointOutcome::Failed { path, reason, .. } => (
                NightStatus::Failed,
                path.as_deref().and_then(run_id),
                Some(reason.clone()),
            ),
        };
        let entry = NightPoint {
            id: point.id().to_string(),
            group,
            hardware: point.spec.hardware.class.clone(),
            experiment,
            load: point.spec.load.label(),
            status,
            run_id: run,
            reason,
        };
        if let Ok(mut r) = self.record.lock() {
            r.record(entry);
            if let Err(e) = r.save(&self.path) {
                self.inner.record_not_saved(&e);
            }
        }
    }
}
