//! One verification from start to verdict: locate the reported run, audit
//! it (nothing is re-run unless it audits clean), re-run its point here,
//! judge the re-runs against it, write the verdict statement and sign it.
//! `infermark verify` is one call of [`verify`]; the CLI only prints what
//! the [`VerifyObserver`] is told and maps the outcome to an exit code.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::provenance::sign::{self, SignError, TrustedKey};
use crate::run::pipeline::{Observer, RunOptions};

use super::audit::{AuditError, AuditReport, audit_with_trust};
use super::reproduce::{self, Reported, ReproduceError, VerdictStatement};
use super::stats::{Repeats, Sequential, Verdict};

/// What `infermark verify` asks for.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// A run directory, a point directory or a point id prefix.
    pub target: String,
    /// Exactly this many re-runs, judged once; `None`: the point's own
    /// `[verify]` policy (re-run one at a time until decided).
    pub repeats: Option<u32>,
    /// Where a point id is looked up and the new runs go; `None`: the
    /// reported run's own tree (or `results` for an id).
    pub results: Option<PathBuf>,
    /// Require the reported run signed by one of these keys.
    pub trust: Option<Vec<TrustedKey>>,
    /// Relative paths of the point resolve against this directory.
    pub spec_dir: PathBuf,
    /// How the re-runs run: its `results` is replaced by where the new runs
    /// go, its `sign_key` signs the new runs and the verdict.
    pub run: RunOptions,
}

/// How a verification ended.
#[derive(Debug)]
pub enum VerifyOutcome {
    /// The reported run does not audit clean; nothing was re-run.
    AuditFailed(AuditReport),
    /// The re-runs were judged and the verdict statement written.
    Judged {
        statement: Box<VerdictStatement>,
        /// `verdict.json`.
        path: PathBuf,
        /// Its DSSE envelope, when a key signed it.
        envelope: Option<PathBuf>,
    },
}

impl VerifyOutcome {
    /// The verdict, when there is one.
    pub fn verdict(&self) -> Option<Verdict> {
        match self {
            VerifyOutcome::AuditFailed(_) => None,
            VerifyOutcome::Judged { statement, .. } => Some(statement.verdict()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Reproduce(#[from] ReproduceError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(
        "none of the {made} re-run(s) completed; nothing to compare (see the failed runs above)"
    )]
    NoneCompleted { made: usize },
}

impl VerifyError {
    /// `true` when the target names no run (a wrong argument).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, VerifyError::Reproduce(ReproduceError::NotFound(_)))
    }
}

/// Told what a verification does as it goes (the CLI prints it); the
/// re-runs' own progress comes through [`Observer`].
pub trait VerifyObserver: Observer {
    /// The reported run was found here.
    fn verifying(&self, _run: &Path) {}
    /// An earlier run of the point here is not compared, and why.
    fn earlier_left_out(&self, _why: &str) {}
    /// `n` earlier runs of the point here are compared as well.
    fn comparing_earlier(&self, _n: usize) {}
    /// The `n`-th re-run completed (`seq`: the judgement, when it was a look).
    fn rerun_done(&self, _n: u32, _repeats: Repeats, _seq: Option<&Sequential>) {}
    /// `failed` of `made` re-runs failed; the others are judged.
    fn reruns_failed(&self, _failed: usize, _made: usize) {}
    /// The verdict statement was written to `path` (signing, if asked,
    /// comes next).
    fn verdict_written(&self, _statement: &VerdictStatement, _path: &Path) {}
}

/// Verifies the reported run `request.target` names: audit, re-run,
/// compare, write and sign the verdict. A signal on `shutdown` stops the
/// re-runs (`RunError::Interrupted` inside the error).
pub async fn verify(
    request: &VerifyRequest,
    observer: &dyn VerifyObserver,
    shutdown: watch::Receiver<Option<String>>,
) -> Result<VerifyOutcome, VerifyError> {
    let default_results = PathBuf::from("results");
    let lookup = request.results.clone().unwrap_or(default_results.clone());
    let run = reproduce::locate(&request.target, &lookup)?;
    observer.verifying(&run.dir);

    // 1. The reported run must audit clean before anything is re-run.
    let report = audit_with_trust(&run.dir, request.trust.as_deref())?;
    if !report.is_clean() {
        return Ok(VerifyOutcome::AuditFailed(report));
    }
    let reported = Reported::load(&run)?;
    let repeats = match request.repeats {
        None => reported.default_repeats(),
        Some(n) => Repeats::Fixed { n },
    };
    let (earlier, left_out) = reported.runs_here(&crate::probe::host())?;
    for why in &left_out {
        observer.earlier_left_out(why);
    }
    if !earlier.is_empty() {
        observer.comparing_earlier(earlier.len());
    }

    // 2. New runs go where the reported run lives, unless told otherwise.
    let results = match &request.results {
        Some(r) => r.clone(),
        None => reproduce::results_root(&run).unwrap_or(default_results),
    };
    let opts = RunOptions {
        results,
        ..request.run.clone()
    };

    // 3. Re-run the identical point.
    let on_rerun = |n: u32, seq: Option<&Sequential>| observer.rerun_done(n, repeats, seq);
    let judgement = reproduce::reproduce(
        &reported,
        repeats,
        earlier,
        &opts,
        &request.spec_dir,
        observer,
        &on_rerun,
        shutdown,
    )
    .await?;
    let made = judgement.outcomes.len();
    let completed = judgement.reruns.len();
    if completed == 0 {
        return Err(VerifyError::NoneCompleted { made });
    }
    if completed < made {
        observer.reruns_failed(made - completed, made);
    }

    // 4. Drift, the verdict statement, its signature.
    let envs: Vec<(&str, &serde_json::Value)> = judgement
        .reruns
        .iter()
        .map(|r| (r.run_id.as_str(), &r.environment))
        .collect();
    let drift = reproduce::drift(&reported.run.environment, &envs);
    let now = SystemTime::now();
    let statement = VerdictStatement::new(&reported, &judgement, drift, now);
    let path = reproduce::write_verdict(&reported.point_dir, &statement, now)?;
    observer.verdict_written(&statement, &path);
    let envelope = match &opts.sign_key {
        Some(key) => {
            let signer = sign::Signer::load(key)?;
            Some(sign::sign_statement_file(&path, &signer)?)
        }
        None => None,
    };
    Ok(VerifyOutcome::Judged {
        statement: Box::new(statement),
        path,
        envelope,
    })
}
