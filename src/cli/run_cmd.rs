//! `infermark run`: experiments to results, with the engine started and
//! stopped by infermark; SIGTERM and Ctrl-C stop the engine and record the
//! point in flight as failed (`signals`). Also the one builder of
//! `RunOptions` from the command line and the printer every engine-starting
//! command shares.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::measure_cmd::{Bar, progress_bar};
use super::{EngineFilesArg, InvalidInput, RunArgs, exit, signals};
use crate::loadgen::Progress;
use crate::metrics;
use crate::provenance::sign::Signer;
use crate::run::pipeline::{self, Observer, PointOutcome, RunOptions};
use crate::spec::Point;

/// The command-line pieces of a run's options.
pub(super) struct Runner<'a> {
    pub results: PathBuf,
    pub lock_dir: Option<PathBuf>,
    pub only_point: Option<String>,
    pub allow_hardware_mismatch: bool,
    pub files: &'a EngineFilesArg,
    pub sign_key: Option<&'a Path>,
}

/// The one place `RunOptions` are built from the command line (`run`,
/// `verify`, `nightly`): the sign key checked up front, the cache and this
/// executable found, the loopback-registry knob applied.
pub(super) fn run_options(r: Runner) -> anyhow::Result<RunOptions> {
    Ok(RunOptions {
        results: r.results,
        lock_dir: r.lock_dir,
        only_point: r.only_point,
        allow_hardware_mismatch: r.allow_hardware_mismatch,
        cache_dir: r.files.cache_dir(),
        model_dirs: r.files.model_dir.clone(),
        model_cache: r.files.model_cache.clone(),
        // Docker treats 127.0.0.0/8 registries as plain HTTP; podman is
        // told to, unless `--loopback-registry-tls`.
        registry_insecure_loopback: !r.files.loopback_registry_tls,
        infermark_exe: std::env::current_exe().context("cannot find the infermark executable")?,
        sign_key: checked_sign_key(r.sign_key)?,
    })
}

/// A `--sign-key` checked before anything runs, so a bad key is invalid
/// input (exit 2), not a failure after an hour of measuring.
fn checked_sign_key(path: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
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
    let opts = run_options(Runner {
        results: a.results.results.clone(),
        lock_dir: a.lock.lock_dir.clone(),
        only_point: a.point.clone(),
        allow_hardware_mismatch: a.allow_hardware_mismatch,
        files: &a.files,
        sign_key: a.sign_key.as_deref(),
    })?;
    let planned = pipeline::plan(&a.paths, &opts)?;
    let printer = Printer::new();
    let outcomes = signals::interruptible(|shutdown| {
        pipeline::run_points(planned, &opts, &printer, shutdown)
    })?;
    let outcomes = match outcomes.map_err(anyhow::Error::from) {
        Ok(o) => o,
        Err(e) => return signals::interrupted(&e).ok_or(e),
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn run_args(flags: &[&str]) -> RunArgs {
        let argv = ["infermark", "run", "x.toml"].iter().chain(flags);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Run(a)) => a,
            other => panic!("{flags:?} did not parse as run: {other:?}"),
        }
    }

    fn options(a: &RunArgs) -> RunOptions {
        run_options(Runner {
            results: a.results.results.clone(),
            lock_dir: None,
            only_point: None,
            allow_hardware_mismatch: false,
            files: &a.files,
            sign_key: None,
        })
        .unwrap()
    }

    #[test]
    fn a_loopback_registry_is_plain_http_unless_loopback_registry_tls() {
        assert!(options(&run_args(&[])).registry_insecure_loopback);
        assert!(!options(&run_args(&["--loopback-registry-tls"])).registry_insecure_loopback);
    }
}
