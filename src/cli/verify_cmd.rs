//! `infermark verify`: one call of `verify::session::verify` (audit the
//! reported run, re-run its point here, compare, write and sign the
//! verdict); this prints what it is told and maps the verdict to the exit
//! code.

use std::path::Path;

use anyhow::Context;

use super::run_cmd::{Printer, Runner, run_options};
use super::{RepeatsArg, VerifyArgs, exit, signals};
use crate::verify::reproduce::{self, VerdictStatement};
use crate::verify::session::{self, VerifyObserver, VerifyOutcome, VerifyRequest};
use crate::verify::stats::{Repeats, Sequential, Verdict};

pub fn verify(a: VerifyArgs) -> anyhow::Result<u8> {
    let trust = super::results_cmd::trusted_keys(&a.trust)?;
    let spec_dir = match &a.spec_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let request = VerifyRequest {
        target: a.target.clone(),
        repeats: match a.repeats {
            RepeatsArg::Auto => None,
            RepeatsArg::Fixed(n) => Some(n),
        },
        results: a.results.clone(),
        trust,
        spec_dir,
        // `results` is the verification's to choose (the reported run's tree).
        run: run_options(Runner {
            results: a.results.clone().unwrap_or_default(),
            lock_dir: None,
            only_point: None,
            allow_hardware_mismatch: a.allow_hardware_mismatch,
            files: &a.files,
            sign_key: a.sign_key.as_deref(),
        })?,
    };
    let printer = Printer::for_reruns();
    let outcome = signals::interruptible(|shutdown| session::verify(&request, &printer, shutdown))?;
    match outcome.map_err(|e| {
        if e.is_invalid_input() {
            anyhow::Error::new(super::InvalidInput(e.to_string()))
        } else {
            e.into()
        }
    })? {
        VerifyOutcome::AuditFailed(report) => {
            print!("{}", report.render());
            eprintln!("error: the reported run does not audit clean; nothing was re-run");
            Ok(exit::AUDIT_FAILED)
        }
        VerifyOutcome::Judged {
            statement,
            envelope,
            ..
        } => {
            if let Some(envelope) = envelope {
                println!("verdict signed: {}", envelope.display());
            }
            Ok(match statement.verdict() {
                Verdict::Reproduced => exit::OK,
                Verdict::NotReproduced => exit::NOT_REPRODUCED,
                Verdict::Inconclusive => exit::INCONCLUSIVE,
            })
        }
    }
}

impl VerifyObserver for Printer {
    fn verifying(&self, run: &Path) {
        eprintln!("verifying {}", run.display());
    }

    fn earlier_left_out(&self, why: &str) {
        eprintln!("warning: an earlier run of the point is not compared: {why}");
    }

    fn comparing_earlier(&self, n: usize) {
        eprintln!("comparing {n} earlier run(s) of the point on this machine as well");
    }

    fn rerun_done(&self, n: u32, repeats: Repeats, seq: Option<&Sequential>) {
        eprintln!("{}", reproduce::render_rerun(n, repeats, seq));
    }

    fn reruns_failed(&self, failed: usize, made: usize) {
        eprintln!(
            "warning: {failed} of {made} re-runs failed; judging the {} that completed",
            made - failed
        );
    }

    fn verdict_written(&self, statement: &VerdictStatement, path: &Path) {
        print!("{}", reproduce::render(statement));
        println!("verdict written to {}", path.display());
    }
}
