//! Signature checks of stored runs, for `audit --trust`: whether each run's
//! statement is vouched for by a trusted key (see `provenance::sign`).
//!
//! Kept apart from the file and number checks of `audit` because trust is
//! the auditor's choice, not a property of the files: the same run is clean
//! for one auditor and untrusted for another. Without `--trust` an envelope
//! that is present is still checked for form and for being the statement's
//! own (a broken one is a problem), but nobody's signature is required.

use std::fmt::Write as _;
use std::path::Path;

use super::problem::Problem;
use crate::provenance::sign::{self, SignatureStatus, TrustedKey};
use crate::store::layout::{RUN_ENVELOPE_FILE, STATEMENT_FILE};

/// How the audited runs' signatures stood.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureCounts {
    /// Whether trusted keys were given (`--trust`).
    pub checked: bool,
    pub trusted: usize,
    pub unsigned: usize,
    /// Signed, but by no trusted key (without `--trust`: signed, unchecked).
    pub untrusted: usize,
    pub invalid: usize,
}

impl SignatureCounts {
    pub fn add(&mut self, status: &SignatureStatus) {
        match status {
            SignatureStatus::Unsigned => self.unsigned += 1,
            SignatureStatus::Untrusted { .. } => self.untrusted += 1,
            SignatureStatus::Invalid { .. } => self.invalid += 1,
            SignatureStatus::Trusted { .. } => self.trusted += 1,
        }
    }

    /// The report's signature line: with `--trust`
    /// `signatures: 2 trusted, 0 unsigned, 0 untrusted, 0 invalid`; without,
    /// how many signed runs went unchecked (nothing when none is signed).
    pub fn render(&self) -> Option<String> {
        if self.checked {
            return Some(format!(
                "signatures: {} trusted, {} unsigned, {} untrusted, {} invalid",
                self.trusted, self.unsigned, self.untrusted, self.invalid
            ));
        }
        if self.untrusted + self.invalid == 0 {
            return None;
        }
        let mut line = format!(
            "signatures: {} signed {} not checked (no --trust given)",
            self.untrusted,
            if self.untrusted == 1 { "run" } else { "runs" }
        );
        if self.invalid > 0 {
            let _ = write!(line, ", {} invalid", self.invalid);
        }
        Some(line)
    }
}

/// Checks the envelope of the run in `run_dir`. `trust` is `None` without
/// `--trust`: then only a broken envelope is a problem.
pub fn check_run(
    run_dir: &Path,
    trust: Option<&[TrustedKey]>,
) -> (SignatureStatus, Option<Problem>) {
    let statement = run_dir.join(STATEMENT_FILE);
    let envelope = sign::envelope_path(&statement);
    let status = sign::check_envelope(&statement, trust.unwrap_or_default());
    let problem = match (&status, trust) {
        (SignatureStatus::Invalid { reason }, _) => Some(Problem {
            file: envelope,
            message: format!("invalid signature envelope: {reason}"),
        }),
        (SignatureStatus::Unsigned, Some(_)) => Some(Problem {
            file: statement,
            message: format!(
                "unsigned: no {} beside it, and --trust requires every run signed by a \
                 trusted key",
                RUN_ENVELOPE_FILE
            ),
        }),
        (SignatureStatus::Untrusted { keyids }, Some(_)) => Some(Problem {
            file: envelope,
            message: format!(
                "untrusted: signed only by {} not given with --trust ({})",
                if keyids.len() == 1 { "a key" } else { "keys" },
                keyids
                    .iter()
                    .map(|k| if k.is_empty() { "no keyid" } else { k.as_str() })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
        _ => None,
    };
    (status, problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_each_status_when_checked() {
        let mut c = SignatureCounts {
            checked: true,
            ..SignatureCounts::default()
        };
        c.add(&SignatureStatus::Trusted { keyid: "a".into() });
        c.add(&SignatureStatus::Trusted { keyid: "a".into() });
        c.add(&SignatureStatus::Unsigned);
        c.add(&SignatureStatus::Invalid { reason: "x".into() });
        assert_eq!(
            c.render().as_deref(),
            Some("signatures: 2 trusted, 1 unsigned, 0 untrusted, 1 invalid")
        );
    }

    #[test]
    fn unchecked_signed_runs_are_counted_and_unsigned_trees_say_nothing() {
        let mut c = SignatureCounts::default();
        c.add(&SignatureStatus::Unsigned);
        assert_eq!(c.render(), None);
        c.add(&SignatureStatus::Untrusted {
            keyids: vec!["k".into()],
        });
        assert_eq!(
            c.render().as_deref(),
            Some("signatures: 1 signed run not checked (no --trust given)")
        );
        c.add(&SignatureStatus::Invalid { reason: "x".into() });
        c.add(&SignatureStatus::Untrusted { keyids: vec![] });
        assert_eq!(
            c.render().as_deref(),
            Some("signatures: 2 signed runs not checked (no --trust given), 1 invalid")
        );
    }
}
