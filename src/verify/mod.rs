//! Checking results someone else produced.
//!
//! [`audit()`] needs no GPU and no network: it proves from the files alone
//! that every number follows from raw data nobody altered, made by the
//! pinned software on the claimed hardware (DESIGN "Verify and audit").
//! [`reproduce`] re-runs a reported point on this machine and judges, with
//! the bootstrap of [`stats`], whether its numbers hold; [`session`] is
//! the whole of `infermark verify` (audit → re-run → compare → sign).

pub mod audit;
mod problem;
pub mod reproduce;
pub mod session;
pub mod signatures;
pub mod stats;

pub use audit::{AuditError, AuditReport, audit, audit_with_trust};
pub use problem::Problem;
pub use reproduce::{ReproduceError, VerdictStatement};
pub use session::{VerifyError, VerifyOutcome, VerifyRequest};
pub use stats::Verdict;
