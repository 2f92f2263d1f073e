//! Applying the lock to experiment files: which lock an experiment is pinned
//! by, the points it expands into under it, and the check of many files at
//! once (`spec check`), so no command assembles these itself.

use std::path::{Path, PathBuf};

use super::{LockError, Lockfiles};
use crate::spec::{self, CanonicalError, Point, SpecError};

/// The lock an experiment is pinned by: `lock_dir` when given, else the
/// nearest `lockfiles/` above it, else none (every moving reference stays
/// unpinned).
pub fn for_experiment(experiment: &Path, lock_dir: Option<&Path>) -> Result<Lockfiles, LockError> {
    match lock_dir
        .map(Path::to_path_buf)
        .or_else(|| Lockfiles::find_dir(experiment))
    {
        Some(d) => Lockfiles::load_checked(&d),
        None => Ok(Lockfiles::default()),
    }
}

/// Why an experiment file gave no points.
#[derive(Debug, thiserror::Error)]
pub enum PointsError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{}: cannot form the canonical point: {source}", file.display())]
    Canonical {
        file: PathBuf,
        source: CanonicalError,
    },
}

impl PointsError {
    /// A wrong spec or lockfile, as opposed to a point with no canonical form.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, PointsError::Spec(_) | PointsError::Lock(_))
    }

    /// One rendered line per problem (a spec's diagnostics each get one).
    pub fn lines(&self) -> Vec<String> {
        match self {
            PointsError::Spec(e) => e.lines(),
            other => vec![other.to_string()],
        }
    }
}

/// The points of one experiment file under its lock.
pub fn points_of(experiment: &Path, lock_dir: Option<&Path>) -> Result<Vec<Point>, PointsError> {
    let e = spec::load(experiment)?;
    let lock = for_experiment(experiment, lock_dir)?;
    e.points(&lock).map_err(|source| PointsError::Canonical {
        file: experiment.to_path_buf(),
        source,
    })
}

/// What checking experiment files found.
#[derive(Debug, Default)]
pub struct Checked {
    pub files: usize,
    pub points: usize,
    /// Rendered problems, each naming its file.
    pub problems: Vec<String>,
}

/// Checks every file: its spec, its lock, and that its points form; keeps
/// going past a bad file so one run names every problem.
pub fn check_experiments(files: &[PathBuf], lock_dir: Option<&Path>) -> Checked {
    let mut checked = Checked {
        files: files.len(),
        ..Checked::default()
    };
    for file in files {
        match points_of(file, lock_dir) {
            Ok(p) => checked.points += p.len(),
            Err(PointsError::Lock(e)) => {
                checked
                    .problems
                    .push(format!("{}: {}", file.display(), super::net::chain(&e)))
            }
            Err(e) => checked.problems.extend(e.lines()),
        }
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_every_bad_file_and_counts_the_good_ones_points() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            "schema = 1\nname = \"g\"\n[hardware]\nclass = \"cpu\"\n[engine]\nkind = \"sim\"\n\
             [workload]\ninput-tokens = 8\noutput-tokens = 2\n[load]\nconcurrency = [1, 2]\n",
        )
        .unwrap();
        let bad1 = dir.path().join("bad1.toml");
        std::fs::write(&bad1, "schema = 1\nname = 3\n").unwrap();
        let bad2 = dir.path().join("bad2.toml");
        std::fs::write(&bad2, "not toml [").unwrap();
        let checked = check_experiments(&[bad1, good, bad2], Some(dir.path()));
        assert_eq!((checked.files, checked.points), (3, 2));
        assert!(
            checked.problems.iter().any(|p| p.contains("bad1.toml")),
            "{:?}",
            checked.problems
        );
        assert!(
            checked.problems.iter().any(|p| p.contains("bad2.toml")),
            "{:?}",
            checked.problems
        );
        assert!(!checked.problems.iter().any(|p| p.contains("good.toml")));
    }
}
