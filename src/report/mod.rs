//! What people and tools read about a night: the night record and its
//! table, and the night's split into scheduler jobs. Downstream of `run`
//! and `store`; it reads their outcomes and never reaches back.

pub mod night;
pub mod plan;

use std::path::PathBuf;

pub use night::{NIGHT_FORMAT, NightPoint, NightRecord, NightStatus};
pub use plan::PlanGroup;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
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
    #[error("no groups to plan")]
    NoGroups,
    #[error(
        "a Slurm array job asks for one kind of node, but the groups are of several hardware \
         classes ({0}); plan one `--hardware` class per script"
    )]
    MixedClasses(String),
}
