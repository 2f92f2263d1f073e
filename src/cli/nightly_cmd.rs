//! `infermark nightly`, `plan` and `collect`: one call each into `night`
//! (a night of points on one runner, its split into scheduler jobs, the
//! merge of what the runners wrote); this prints what it is told and maps
//! the outcome to an exit code.

use std::path::Path;

use super::run_cmd::{Printer, Runner, run_options};
use super::{CollectArgs, NightlyArgs, PlanArgs, PlanFormat, exit, signals};
use crate::lock::resolve;
use crate::night::NightError;
use crate::night::collect::collect as collect_trees;
use crate::night::plan::{JobFormat, PlanRequest, jobs};
use crate::night::resume::{NightObserver, NightRequest, NightStart, run_night};
use crate::spec::Point;

pub fn nightly(a: NightlyArgs) -> anyhow::Result<u8> {
    let request = NightRequest {
        night: a.night.clone(),
        hardware: a.hardware.clone(),
        experiments: a.experiments.clone(),
        only: a.only.clone(),
        update_locks: a.update_locks,
        run: run_options(Runner {
            results: a.results.results.clone(),
            lock_dir: a.lock.lock_dir.clone(),
            only_point: None,
            allow_hardware_mismatch: a.allow_hardware_mismatch,
            files: &a.files,
            sign_key: a.sign_key.as_deref(),
        })?,
    };
    let printer = Printer::new();
    let outcome = signals::interruptible(|shutdown| run_night(&request, &printer, shutdown))?;
    let outcome = match outcome.map_err(anyhow::Error::from) {
        Ok(o) => o,
        Err(e) => return signals::interrupted(&e).ok_or(e),
    };
    let start = &outcome.start;
    print!("{}", outcome.record.render_table());
    println!(
        "night {}: {} ran, {} skipped (completed earlier), {} failed; record {}",
        start.night,
        start.points - start.skipped,
        start.skipped,
        outcome.failed,
        outcome.record_path.display()
    );
    Ok(if outcome.failed > 0 {
        exit::FAILURE
    } else {
        exit::OK
    })
}

impl NightObserver for Printer {
    fn locks_updated(&self, dir: &Path, report: &resolve::Report) {
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

    fn locks_changed(&self, night: &str) {
        eprintln!(
            "note: the lockfiles changed since night {night} started; points whose pins \
             changed have new ids and run again"
        );
    }

    fn point_skipped(&self, point: &Point, night: &str, run: &str) {
        println!(
            "skip point {} ({}): completed earlier in night {night} as run {run}",
            point.short_id(),
            point.spec.load.label()
        );
    }

    fn night_starting(&self, s: &NightStart) {
        eprintln!(
            "night {}: hardware {}, {} group(s), {} point(s): {} already completed, {} to run",
            s.night, s.hardware, s.groups, s.points, s.skipped, s.to_run
        );
    }

    fn record_not_saved(&self, e: &NightError) {
        eprintln!("warning: {e}");
    }
}

pub fn plan(a: PlanArgs) -> anyhow::Result<u8> {
    let format = match a.format {
        PlanFormat::GithubMatrix => JobFormat::GithubMatrix,
        PlanFormat::Slurm => JobFormat::Slurm,
        PlanFormat::K8s => JobFormat::K8s {
            image: &a.image,
            workdir: &a.workdir,
        },
    };
    let text = jobs(&PlanRequest {
        experiments: &a.experiments,
        hardware: &a.hardware,
        lock_dir: a.lock.lock_dir.clone(),
        format,
    })?;
    print!("{text}");
    Ok(exit::OK)
}

pub fn collect(a: CollectArgs) -> anyhow::Result<u8> {
    let c = collect_trees(&a.into, &a.sources)?;
    for conflict in &c.points.conflicts {
        eprintln!(
            "conflict: {}: {} (from {})",
            conflict.target.display(),
            conflict.message,
            conflict.source.display()
        );
    }
    for (file, message) in &c.nights.conflicts {
        eprintln!("conflict: {}: {message}", file.display());
    }
    let conflicts = c.conflicts();
    println!(
        "collected {} source(s) into {}: {} run(s) copied, {} already present; {} file(s) \
         copied, {} identical; {} night record(s) merged; {conflicts} conflict(s)",
        a.sources.len(),
        a.into.display(),
        c.points.runs_copied,
        c.points.runs_identical,
        c.points.files_copied,
        c.points.files_identical,
        c.nights.nights
    );
    print!("{}", c.index.render(&a.into));
    Ok(if conflicts > 0 {
        exit::FAILURE
    } else {
        exit::OK
    })
}
