//! A finding of `audit`: what is wrong, and in which file.
//!
//! Its own file because both the file and number checks (`audit`) and the
//! signature checks (`signatures`) report them, and `audit` calls
//! `signatures`: with the type in `audit`, each imported the other.

use std::path::PathBuf;

/// One finding, in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub message: String,
}
