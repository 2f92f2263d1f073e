//! `infermark verify`: audit the reported run, re-run its point here, print
//! the comparison and store the verdict statement; the exit code is the
//! verdict's.

use std::time::SystemTime;

use anyhow::Context;
use tokio::sync::watch;

use super::measure_cmd::runtime;
use super::{InvalidInput, RepeatsArg, VerifyArgs, exit};
use crate::run::pipeline::RunOptions;
use crate::verify::reproduce::{self, Reported, ReproduceError, VerdictStatement};
use crate::verify::stats::{Repeats, Verdict};
use crate::verify::{self};

pub fn verify(a: VerifyArgs) -> anyhow::Result<u8> {
    let default_results = std::path::PathBuf::from("results");
    let lookup = a.results.clone().unwrap_or(default_results.clone());
    let run = reproduce::locate(&a.target, &lookup).map_err(|e| match e {
        ReproduceError::NotFound(m) => anyhow::Error::new(InvalidInput(m)),
        other => other.into(),
    })?;
    eprintln!("verifying {}", run.dir.display());

    // 1. The reported run must audit clean before anything is re-run.
    let trust = super::results_cmd::trusted_keys(&a.trust)?;
    let sign_key = super::run_cmd::checked_sign_key(a.sign_key.as_deref())?;
    let report = verify::audit_with_trust(&run.dir, trust.as_deref())?;
    if !report.is_clean() {
        print!("{}", report.render());
        eprintln!("error: the reported run does not audit clean; nothing was re-run");
        return Ok(exit::AUDIT_FAILED);
    }
    let reported = Reported::load(&run)?;
    let repeats = match a.repeats {
        RepeatsArg::Auto => reported.default_repeats(),
        RepeatsArg::Fixed(n) => Repeats::Fixed { n },
    };
    let (earlier, left_out) = reported.runs_here(&crate::probe::host())?;
    for why in &left_out {
        eprintln!("warning: an earlier run of the point is not compared: {why}");
    }
    if !earlier.is_empty() {
        eprintln!(
            "comparing {} earlier run(s) of the point on this machine as well",
            earlier.len()
        );
    }

    // 2. New runs go where the reported run lives, unless told otherwise.
    let results = match &a.results {
        Some(r) => r.clone(),
        None => reproduce::results_root(&run).unwrap_or(default_results),
    };
    let opts = RunOptions {
        results,
        lock_dir: None,
        only_point: None,
        allow_hardware_mismatch: a.allow_hardware_mismatch,
        cache_dir: a.files.cache_dir(),
        model_dirs: a.files.model_dir.clone(),
        model_cache: a.files.model_cache.clone(),
        registry_insecure_loopback: true,
        infermark_exe: std::env::current_exe().context("cannot find the infermark executable")?,
        sign_key: sign_key.clone(),
    };
    let spec_dir = match &a.spec_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };

    // 3. Re-run the identical point.
    let printer = super::run_cmd::Printer::for_reruns();
    let rt = runtime()?;
    let outcomes = rt.block_on(async {
        let (tx, rx) = watch::channel(None::<String>);
        let signals = tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            let why = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            let _ = tx.send(Some(why.to_string()));
        });
        let on_rerun = |n: u32, seq: Option<&crate::verify::stats::Sequential>| {
            eprintln!("{}", reproduce::render_rerun(n, repeats, seq));
        };
        let r = reproduce::reproduce(
            &reported, repeats, earlier, &opts, &spec_dir, &printer, &on_rerun, rx,
        )
        .await;
        signals.abort();
        r
    });
    crate::engine::kill_all_started();
    let judgement = outcomes?;
    let made = judgement.outcomes.len();
    let completed = judgement.reruns.len();
    if completed == 0 {
        anyhow::bail!(
            "none of the {made} re-run(s) completed; nothing to compare (see the failed runs above)"
        );
    }
    if completed < made {
        eprintln!(
            "warning: {} of {made} re-runs failed; judging the {completed} that completed",
            made - completed
        );
    }

    // 4. Drift, the verdict statement.
    let envs: Vec<(&str, &serde_json::Value)> = judgement
        .reruns
        .iter()
        .map(|r| (r.run_id.as_str(), &r.environment))
        .collect();
    let drift = reproduce::drift(&reported.run.environment, &envs);
    let now = SystemTime::now();
    let statement = VerdictStatement::new(&reported, &judgement, drift, now);
    let path = reproduce::write_verdict(&reported.point_dir, &statement, now)?;
    print!("{}", reproduce::render(&statement));
    println!("verdict written to {}", path.display());
    if let Some(key) = &sign_key {
        let signer = crate::provenance::sign::Signer::load(key)?;
        let envelope = crate::provenance::sign::sign_statement_file(&path, &signer)?;
        println!("verdict signed: {}", envelope.display());
    }
    Ok(match statement.verdict() {
        Verdict::Reproduced => exit::OK,
        Verdict::NotReproduced => exit::NOT_REPRODUCED,
        Verdict::Inconclusive => exit::INCONCLUSIVE,
    })
}
