//! The night: what one runner measures in one nightly, and what people and
//! tools read about it afterwards. The selection of a hardware class's
//! experiments and their grouping by engine start (`select`), the night
//! record that is the resume ledger (`ledger`), the resumable run of a night
//! (`resume`), its split into scheduler jobs (`plan`) and the merge of what
//! many runners wrote (`collect`).
//!
//! Downstream of `run` and `store`: it drives the run pipeline and reads
//! its outcomes, and never reaches back. It prints nothing: the CLI is told
//! through [`resume::NightObserver`] and the returned outcomes.

pub mod collect;
pub mod ledger;
pub mod plan;
pub mod resume;
pub mod select;

use std::path::PathBuf;

pub use ledger::{NIGHT_FORMAT, NightPoint, NightRecord, NightStatus};
pub use plan::PlanGroup;
pub use select::{Group, Night, Selection};

use crate::lock::resolve::ResolveError;
use crate::run::RunError;
use crate::store::StoreError;
use crate::store::index::IndexError;

#[derive(Debug, thiserror::Error)]
pub enum NightError {
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a night record: {}{source}", path.display(), if key.is_empty() || key == "." { String::new() } else { format!("`{key}`: ") })]
    Json {
        path: PathBuf,
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "{}: unknown format `{found}`: this infermark reads `{expected}`; upgrade infermark",
        path.display()
    )]
    UnknownFormat {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error(
        "night id `{0}`: expected a directory name of letters, digits, `.`, `_` and `-` \
         (e.g. 2026-11-24)"
    )]
    BadNightId(String),
    /// A night record found in a tree being collected is wrong: a broken
    /// file, not a wrong argument.
    #[error(transparent)]
    Record(Box<NightError>),
    #[error("no groups to plan")]
    NoGroups,
    #[error(
        "a Slurm array job asks for one kind of node, but the groups are of several hardware \
         classes ({0}); plan one `--hardware` class per script"
    )]
    MixedClasses(String),
    #[error("{}: no hardware-class directories (e.g. `cpu/`) to plan", .0.display())]
    NoClasses(PathBuf),
    #[error("--image: {0}")]
    BadImage(crate::spec::reference::ReferenceError),
    #[error("{}: not a results tree (expected `points/` or `nights/` inside)", .0.display())]
    NotATree(PathBuf),
    #[error("the night record was poisoned by a panic")]
    Poisoned,
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl NightError {
    /// `true` when what the user gave is wrong (a night id, a group, a
    /// format's limits, a source that is not a results tree) rather than
    /// the run, the disk or the network failing. A wrapped run or lock
    /// error answers for itself: see [`NightError::run_error`] and
    /// [`ResolveError::is_invalid_input`].
    pub fn is_invalid_input(&self) -> bool {
        match self {
            NightError::BadNightId(_)
            | NightError::NoGroups
            | NightError::MixedClasses(_)
            | NightError::NoClasses(_)
            | NightError::BadImage(_)
            | NightError::NotATree(_) => true,
            NightError::Resolve(e) => e.is_invalid_input(),
            _ => false,
        }
    }

    /// The run error this wraps, if any.
    pub fn run_error(&self) -> Option<&RunError> {
        match self {
            NightError::Run(e) => Some(e),
            _ => None,
        }
    }
}
