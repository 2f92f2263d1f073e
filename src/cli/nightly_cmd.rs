//! `infermark nightly`, `plan` and `collect`: a night of points on one
//! runner, its split into scheduler jobs, and the merge of what the runners
//! wrote.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::run_cmd::{self, Printer};
use super::{CollectArgs, InvalidInput, NightlyArgs, PlanArgs, PlanFormat, exit};
use crate::loadgen::Progress;
use crate::report::night::{self, NightPoint, NightRecord, NightStatus};
use crate::report::plan::{self as plan_fmt, PlanGroup};
use crate::run::nightly::{self, Night};
use crate::run::pipeline::{Observer, PlannedPoint, PointOutcome, RunOptions};
use crate::spec::Point;
use crate::store::{self, Index};

pub fn nightly(a: NightlyArgs) -> anyhow::Result<u8> {
    let night_id = a
        .night
        .clone()
        .unwrap_or_else(|| night::today(std::time::SystemTime::now()));
    night::check_night_id(&night_id).map_err(|e| InvalidInput(e.to_string()))?;
    let class = nightly::hardware_class(a.hardware.as_deref())?;
    let opts = RunOptions {
        results: a.results.results.clone(),
        lock_dir: a.lock.lock_dir.clone(),
        only_point: None,
        allow_hardware_mismatch: a.allow_hardware_mismatch,
        cache_dir: a.files.cache_dir(),
        model_dirs: a.files.model_dir.clone(),
        model_cache: a.files.model_cache.clone(),
        registry_insecure_loopback: true,
        infermark_exe: std::env::current_exe().context("cannot find the infermark executable")?,
        sign_key: super::run_cmd::checked_sign_key(a.sign_key.as_deref())?,
    };
    if a.update_locks {
        // Every moving reference of this class's experiments is resolved
        // again into the lock before the plan reads it.
        let selection = nightly::select(&a.experiments, &class, &opts)?;
        let dir = selection
            .lock_dir
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("lockfiles"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the async runtime")?;
        let report = rt
            .block_on(crate::lock::resolve::update(&dir, &selection.files, true))
            .map_err(super::lock_cmd::cli_error)?;
        for c in &report.changed {
            eprintln!(
                "lock: {}/{}  {}  {} → {}",
                dir.display(),
                c.lockfile,
                c.reference,
                c.old.as_deref().unwrap_or("(none)"),
                c.new
            );
        }
        eprintln!(
            "lock: {} changed, {} unchanged",
            report.changed.len(),
            report.unchanged.len()
        );
    }
    let mut plan = nightly::plan(&a.experiments, &class, &opts)?;
    plan.only(&a.only)?;
    let opts = RunOptions {
        lock_dir: plan.lock_dir.clone(),
        ..opts
    };

    let record_path = night::night_path(&opts.results, &night_id);
    let mut record =
        NightRecord::load(&record_path)?.unwrap_or_else(|| NightRecord::new(&night_id));
    let locks = plan.lock_digests()?;
    if !record.locks.is_empty() && record.locks != locks {
        eprintln!(
            "note: the lockfiles changed since night {night_id} started; points whose pins \
             changed have new ids and run again"
        );
    }
    record.locks = locks;
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
            meta.insert(id.clone(), (g.id.clone(), nightly::experiment_name(p)));
            let done = record.completed_run(&id).filter(|run| {
                let points = opts.results.join(store::POINTS_DIR);
                points.join(&id).join(store::RUNS_DIR).join(run).is_dir()
            });
            match done {
                Some(run) => {
                    println!(
                        "skip point {} ({}): completed earlier in night {night_id} as run {run}",
                        p.point.short_id(),
                        p.point.spec.load.label()
                    );
                    skipped += 1;
                }
                None => to_run.push(p.clone()),
            }
        }
    }
    eprintln!(
        "night {night_id}: hardware {class}, {} group(s), {} point(s): {skipped} already \
         completed, {} to run",
        plan.groups.len(),
        plan.point_count(),
        to_run.len()
    );
    record.save(&record_path)?;

    let mut failed = 0;
    if !to_run.is_empty() {
        let observer = NightObserver {
            printer: Printer::new(),
            record: Mutex::new(record),
            path: record_path.clone(),
            meta,
        };
        let outcomes = match run_cmd::execute(to_run, &opts, &observer)? {
            Ok(o) => o,
            Err(code) => return Ok(code),
        };
        failed = outcomes
            .iter()
            .filter(|o| matches!(o, PointOutcome::Failed { .. }))
            .count();
        record = observer
            .record
            .into_inner()
            .map_err(|_| anyhow::anyhow!("the night record was poisoned by a panic"))?;
    }
    record.save(&record_path)?;
    print!("{}", record.render_table());
    println!(
        "night {night_id}: {} ran, {skipped} skipped (completed earlier), {failed} failed; \
         record {}",
        plan.point_count() - skipped,
        record_path.display()
    );
    Ok(if failed > 0 { exit::FAILURE } else { exit::OK })
}

/// Prints like `run` and records each point in the night record as it
/// finishes, so a night cut short resumes from what it finished.
struct NightObserver {
    printer: Printer,
    record: Mutex<NightRecord>,
    path: std::path::PathBuf,
    /// Point id → (group, experiment name).
    meta: HashMap<String, (String, String)>,
}

impl Observer for NightObserver {
    fn engine_starting(&self, what: &str) {
        self.printer.engine_starting(what);
    }

    fn point_starting(&self, point: &Point, requests: usize) -> Option<Arc<dyn Progress>> {
        self.printer.point_starting(point, requests)
    }

    fn point_done(&self, outcome: &PointOutcome) {
        self.printer.point_done(outcome);
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
                eprintln!("warning: {e}");
            }
        }
    }
}

pub fn plan(a: PlanArgs) -> anyhow::Result<u8> {
    let classes = if a.hardware.is_empty() {
        class_dirs(&a.experiments)?
    } else {
        a.hardware.clone()
    };
    let opts = RunOptions {
        results: std::path::PathBuf::new(),
        lock_dir: a.lock.lock_dir.clone(),
        only_point: None,
        allow_hardware_mismatch: false,
        cache_dir: std::path::PathBuf::new(),
        model_dirs: Vec::new(),
        model_cache: None,
        registry_insecure_loopback: true,
        infermark_exe: std::path::PathBuf::new(),
        sign_key: None,
    };
    let mut groups = Vec::new();
    for class in &classes {
        let class = nightly::hardware_class(Some(class))?;
        let night: Night = nightly::plan(&a.experiments, &class, &opts)?;
        for g in &night.groups {
            let first = &g.points[0].point.spec;
            groups.push(PlanGroup {
                id: g.id.clone(),
                hardware: class.clone(),
                gpus: first.hardware.gpus,
                engine: format!("{} ({})", first.engine.kind, first.engine.runtime),
                model: first.model.served_name().to_string(),
                points: g.points.len(),
            });
        }
    }
    let text = match a.format {
        PlanFormat::GithubMatrix => plan_fmt::github_matrix(&groups),
        PlanFormat::Slurm => plan_fmt::slurm(&groups).map_err(|e| InvalidInput(e.to_string()))?,
        PlanFormat::K8s => {
            let image = crate::spec::reference::ImageRef::parse(&a.image)
                .map_err(|e| InvalidInput(format!("--image: {e}")))?;
            if image.digest.is_none() {
                // The Jobs still run what the lock pins; a moved tag changes
                // the Nix that builds the harness, which the flake pins in
                // turn, but not which runner a night says it ran on.
                tracing::warn!(
                    "--image `{}` names the runner image by tag, which can be moved to other \
                     content between nights; pin it by digest, `--image {}@sha256:<digest>` \
                     (`docker inspect --format '{{{{index .RepoDigests 0}}}}' {}` prints it)",
                    a.image,
                    image.name(),
                    a.image
                );
            }
            plan_fmt::k8s(&groups, &a.image, &a.workdir)
        }
    };
    print!("{text}");
    Ok(exit::OK)
}

/// The hardware-class directories under the experiments root, sorted.
fn class_dirs(experiments: &Path) -> anyhow::Result<Vec<String>> {
    let entries = std::fs::read_dir(experiments)
        .with_context(|| format!("failed to read {}", experiments.display()))?;
    let mut out: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| crate::spec::hardware::CLASSES.iter().any(|c| c.id == n))
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(InvalidInput(format!(
            "{}: no hardware-class directories (e.g. `cpu/`) to plan",
            experiments.display()
        ))
        .into());
    }
    Ok(out)
}

pub fn collect(a: CollectArgs) -> anyhow::Result<u8> {
    store::Store::open(&a.into)?;
    let mut total = store::collect::CollectReport::default();
    let mut night_conflicts = Vec::new();
    let mut nights = 0;
    for src in &a.sources {
        let is_tree = src.join(store::POINTS_DIR).is_dir() || src.join(store::NIGHTS_DIR).is_dir();
        if !is_tree {
            return Err(InvalidInput(format!(
                "{}: not a results tree (expected `points/` or `nights/` inside)",
                src.display()
            ))
            .into());
        }
        total.add(store::collect::collect_points(&a.into, src)?);
        let merged = night::collect_nights(&a.into, src)?;
        nights += merged.nights;
        night_conflicts.extend(merged.conflicts);
    }
    for c in &total.conflicts {
        eprintln!(
            "conflict: {}: {} (from {})",
            c.target.display(),
            c.message,
            c.source.display()
        );
    }
    for (file, message) in &night_conflicts {
        eprintln!("conflict: {}: {message}", file.display());
    }
    let (_, rebuilt) = Index::rebuild(&a.into)?;
    let conflicts = total.conflicts.len() + night_conflicts.len();
    println!(
        "collected {} source(s) into {}: {} run(s) copied, {} already present; {} file(s) \
         copied, {} identical; {nights} night record(s) merged; {conflicts} conflict(s)",
        a.sources.len(),
        a.into.display(),
        total.runs_copied,
        total.runs_identical,
        total.files_copied,
        total.files_identical
    );
    print!("{}", rebuilt.render(&a.into));
    Ok(if conflicts > 0 {
        exit::FAILURE
    } else {
        exit::OK
    })
}
