//! Checking results someone else produced.
//!
//! [`audit`] needs no GPU and no network: it proves from the files alone
//! that every number follows from raw data nobody altered, made by the
//! pinned software on the claimed hardware (DESIGN "Verify and audit").
//! Re-running a point to reproduce it (`verify` proper) builds on it.

pub mod audit;
pub mod signatures;

pub use audit::{AuditError, AuditReport, Problem, audit, audit_with_trust};
