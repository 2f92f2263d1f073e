//! `infermark run`: experiments to results, with the engine started and
//! stopped by infermark; SIGTERM and Ctrl-C stop the engine and record the
//! point in flight as failed.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::watch;

use super::measure_cmd::{Bar, progress_bar, runtime};
use super::{InvalidInput, RunArgs, exit};
use crate::loadgen::Progress;
use crate::metrics;
use crate::provenance::sign::Signer;
use crate::run::RunError;
use crate::run::pipeline::{self, Observer, PointOutcome, RunOptions};
use crate::spec::Point;

/// Exit status after a signal, as shells report it (128 + signal number).
const EXIT_SIGINT: u8 = 130;
const EXIT_SIGTERM: u8 = 143;

pub fn options(a: &RunArgs) -> anyhow::Result<RunOptions> {
    Ok(RunOptions {
        results: a.results.results.clone(),
        lock_dir: a.lock.lock_dir.clone(),
        only_point: a.point.clone(),
        allow_hardware_mismatch: a.allow_hardware_mismatch,
        cache_dir: a.files.cache_dir(),
        model_dirs: a.files.model_dir.clone(),
        model_cache: a.files.model_cache.clone(),
        // Docker treats 127.0.0.0/8 registries as plain HTTP; podman is told to.
        registry_insecure_loopback: true,
        infermark_exe: std::env::current_exe().context("cannot find the infermark executable")?,
        sign_key: checked_sign_key(a.sign_key.as_deref())?,
    })
}

/// A `--sign-key` checked before anything runs, so a bad key is invalid
/// input (exit 2), not a failure after an hour of measuring.
pub(super) fn checked_sign_key(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    match path {
        Some(path) => {
            Signer::load(path).map_err(|e| InvalidInput(e.to_string()))?;
            Ok(Some(path.to_path_buf()))
        }
        None => Ok(None),
    }
}

/// Prints as the pipeline goes: engine starts, a progress bar per point,
/// each point's table (for `run` and `nightly`; `verify` prints its own
/// comparison instead) and where it was written.
pub(super) struct Printer {
    bar: Mutex<Option<Arc<Bar>>>,
    /// Print each completed point's summary table on stdout.
    tables: bool,
    /// How a point is announced: `point` or `re-running point`.
    verb: &'static str,
}

impl Printer {
    pub(super) fn new() -> Self {
        Printer {
            bar: Mutex::new(None),
            tables: true,
            verb: "point",
        }
    }

    /// For `verify`'s re-runs: progress on stderr, no tables.
    pub(super) fn for_reruns() -> Self {
        Printer {
            bar: Mutex::new(None),
            tables: false,
            verb: "re-running point",
        }
    }
}

impl Observer for Printer {
    fn engine_starting(&self, what: &str) {
        eprintln!("starting {what}");
    }

    fn point_starting(&self, point: &Point, requests: usize) -> Option<Arc<dyn Progress>> {
        eprintln!(
            "{} {} ({}): {requests} requests",
            self.verb,
            point.short_id(),
            point.spec.load.label()
        );
        let bar = progress_bar(point, requests);
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar.clone());
        }
        Some(bar)
    }

    fn point_done(&self, outcome: &PointOutcome) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish();
        }
        match outcome {
            PointOutcome::Completed { path, summary, .. } if self.tables => {
                println!("{}", metrics::render_table(summary));
                println!("wrote {}\n", path.display());
            }
            PointOutcome::Completed { path, .. } => eprintln!("wrote {}", path.display()),
            PointOutcome::Failed {
                point,
                path,
                reason,
            } => {
                eprintln!("point {} FAILED: {reason}", point.short_id());
                if let Some(p) = path {
                    eprintln!("recorded as failed in {}\n", p.display());
                }
            }
        }
    }
}

pub fn run(a: RunArgs) -> anyhow::Result<u8> {
    let opts = options(&a)?;
    let planned = pipeline::plan(&a.paths, &opts)?;
    let printer = Printer::new();
    let outcomes = match execute(planned, &opts, &printer)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, PointOutcome::Failed { .. }))
        .count();
    println!(
        "{} point(s): {} completed, {failed} failed; results in {}",
        outcomes.len(),
        outcomes.len() - failed,
        opts.results.display()
    );
    Ok(if failed > 0 { exit::FAILURE } else { exit::OK })
}

/// Runs planned points with SIGTERM and Ctrl-C stopping the engine: the
/// outcomes, or `Err(exit code)` after a signal (the point in flight was
/// recorded as failed).
pub(super) fn execute(
    planned: Vec<pipeline::PlannedPoint>,
    opts: &RunOptions,
    observer: &dyn Observer,
) -> anyhow::Result<Result<Vec<PointOutcome>, u8>> {
    let rt = runtime()?;
    let result = rt.block_on(async {
        let (tx, rx) = watch::channel(None::<String>);
        let signals = tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).ok();
            let mut int = signal(SignalKind::interrupt()).ok();
            let first = tokio::select! {
                _ = recv(&mut term) => "SIGTERM",
                _ = recv(&mut int) => "SIGINT",
            };
            let _ = tx.send(Some(first.to_string()));
            // A second signal does not wait for a graceful stop.
            tokio::select! {
                _ = recv(&mut term) => {}
                _ = recv(&mut int) => {}
            }
            crate::engine::kill_all_started();
            std::process::exit(i32::from(if first == "SIGINT" {
                EXIT_SIGINT
            } else {
                EXIT_SIGTERM
            }));
        });
        let r = pipeline::run_points(planned, opts, observer, rx).await;
        signals.abort();
        r
    });
    crate::engine::kill_all_started();
    match result {
        Ok(o) => Ok(Ok(o)),
        Err(RunError::Interrupted(why)) => {
            eprintln!(
                "error: {why}: the engine was stopped and the point in flight recorded as failed"
            );
            Ok(Err(if why == "SIGINT" {
                EXIT_SIGINT
            } else {
                EXIT_SIGTERM
            }))
        }
        Err(e) => Err(e.into()),
    }
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
