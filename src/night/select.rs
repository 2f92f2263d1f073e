//! The night's selection: which hardware class this runner is, which
//! experiments are for it, which groups (engine starts) their pinned points
//! fall into, and which lock pinned them. A night ([`resume`](super::resume))
//! and its job plan ([`plan`](super::plan)) both start here; running the
//! points is the pipeline's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::lock::{FILES_LOCK, IMAGES_LOCK, Lockfiles, MODELS_LOCK};
use crate::probe;
use crate::spec::{self, hardware};

use crate::run::RunError;
use crate::run::pipeline::{self, PlannedPoint, RunOptions};

/// Points that share one engine start, with the group's stable id.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub points: Vec<PlannedPoint>,
}

/// Points of one hardware class, grouped, with the lock that pinned them.
#[derive(Debug, Clone)]
pub struct Night {
    pub hardware: String,
    pub experiments: PathBuf,
    /// The lockfile directory every point was pinned from.
    pub lock_dir: Option<PathBuf>,
    pub groups: Vec<Group>,
}

/// The class to run: `requested` when given (it must be a known class),
/// else what the probe detects on this machine.
pub fn hardware_class(requested: Option<&str>) -> Result<String, RunError> {
    match requested {
        Some(c) => {
            if hardware::CLASSES.iter().any(|k| k.id == c) {
                Ok(c.to_string())
            } else {
                let known: Vec<&str> = hardware::CLASSES.iter().map(|k| k.id).collect();
                Err(RunError::NoPoints(format!(
                    "--hardware `{c}`: not a hardware class; known: {}",
                    known.join(", ")
                )))
            }
        }
        None => probe::detect_class(&probe::gpus())
            .map(str::to_string)
            .ok_or_else(|| {
                RunError::Hardware(
                    "cannot tell this machine's hardware class (no recognised accelerator, or \
                     devices of several classes); pass --hardware CLASS"
                        .to_string(),
                )
            }),
    }
}

/// Plans the night of `class`: the experiments in `<experiments>/<class>/`,
/// expanded into pinned points (an unpinned one refuses the whole night)
/// and grouped by engine start, in file order.
pub fn plan(experiments: &Path, class: &str, opts: &RunOptions) -> Result<Night, RunError> {
    let Selection {
        dir,
        files,
        lock_dir,
    } = select(experiments, class, opts)?;
    // One lock for the whole night, so its digests describe every point.
    let opts = RunOptions {
        lock_dir: lock_dir.clone(),
        ..opts.clone()
    };
    let planned = pipeline::plan(&files, &opts)?;
    let groups = pipeline::group(planned)
        .into_iter()
        .map(|points| Group {
            id: pipeline::group_id(&points[0].point),
            points,
        })
        .collect();
    Ok(Night {
        hardware: class.to_string(),
        experiments: dir,
        lock_dir,
        groups,
    })
}

/// The experiment files of a class's night and the lock that pins them.
#[derive(Debug, Clone)]
pub struct Selection {
    /// `<experiments>/<class>/`.
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// `--lock-dir`, else the nearest `lockfiles/` above the experiments.
    pub lock_dir: Option<PathBuf>,
}

/// Finds the experiments of `class` under `experiments` and their lock
/// directory; what `--update-locks` refreshes before [`plan`] reads it.
pub fn select(experiments: &Path, class: &str, opts: &RunOptions) -> Result<Selection, RunError> {
    let dir = experiments.join(class);
    if !dir.is_dir() {
        return Err(RunError::NoPoints(format!(
            "{}: no experiments for hardware class `{class}` (expected a directory of *.toml)",
            dir.display()
        )));
    }
    let files = spec::collect_files(std::slice::from_ref(&dir))?;
    let lock_dir = opts
        .lock_dir
        .clone()
        .or_else(|| files.first().and_then(|f| Lockfiles::find_dir(f)));
    Ok(Selection {
        dir,
        files,
        lock_dir,
    })
}

impl Night {
    /// Keeps only the groups named in `only` (every name must be one of
    /// this night's groups); all of them when `only` is empty.
    pub fn only(&mut self, only: &[String]) -> Result<(), RunError> {
        if only.is_empty() {
            return Ok(());
        }
        let unknown: Vec<&str> = only
            .iter()
            .filter(|o| !self.groups.iter().any(|g| &g.id == *o))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            let known: Vec<&str> = self.groups.iter().map(|g| g.id.as_str()).collect();
            return Err(RunError::NoPoints(format!(
                "--only {}: no such group in the `{}` night (groups: {}); `infermark plan` lists them",
                unknown.join(", "),
                self.hardware,
                known.join(", ")
            )));
        }
        self.groups.retain(|g| only.contains(&g.id));
        Ok(())
    }

    pub fn point_count(&self) -> usize {
        self.groups.iter().map(|g| g.points.len()).sum()
    }

    /// sha256 of each lockfile of the night's lock directory, by file name;
    /// a lockfile that does not exist is left out.
    pub fn lock_digests(&self) -> Result<BTreeMap<String, String>, RunError> {
        match &self.lock_dir {
            Some(dir) => lockfile_digests(dir),
            None => Ok(BTreeMap::new()),
        }
    }

    /// The same for this machine's local overlay (`<lock dir>/local/`),
    /// whose pins are not in the tracked files.
    pub fn local_lock_digests(&self) -> Result<BTreeMap<String, String>, RunError> {
        match &self.lock_dir {
            Some(dir) => lockfile_digests(&dir.join(crate::lock::LOCAL_DIR)),
            None => Ok(BTreeMap::new()),
        }
    }
}

fn lockfile_digests(dir: &Path) -> Result<BTreeMap<String, String>, RunError> {
    let mut out = BTreeMap::new();
    for name in [FILES_LOCK, IMAGES_LOCK, MODELS_LOCK] {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
                out.insert(name.to_string(), spec::hex(&digest));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(crate::lock::LockError::Read { path, source }.into()),
        }
    }
    Ok(out)
}

/// The experiment's name for tables: its file stem.
pub fn experiment_name(p: &PlannedPoint) -> String {
    p.experiment
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::run::pipeline::group_id;
    use crate::spec::{self, NoPins};

    fn points(args: &str) -> Vec<spec::Point> {
        let text = format!(
            "schema = 1\nname = \"g\"\n[hardware]\nclass = \"cpu\"\n[engine]\nkind = \"sim\"\n\
             args = {args}\n[workload]\napi = \"completions\"\ninput-tokens = 8\n\
             output-tokens = 4\nseed = 0\n[load]\nconcurrency = [1, 4]\n"
        );
        spec::parse(Path::new("g.toml"), &text)
            .unwrap()
            .points(&NoPins)
            .unwrap()
    }

    #[test]
    fn a_sweep_shares_one_group_id_and_another_engine_gets_another() {
        let sweep = points(r#"["--itl-ms", "1"]"#);
        assert_eq!(sweep.len(), 2);
        assert_ne!(sweep[0].id(), sweep[1].id());
        let id = group_id(&sweep[0]);
        assert_eq!(id, group_id(&sweep[1]));
        assert_eq!(id.len(), 12);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, group_id(&points(r#"["--itl-ms", "2"]"#)[0]));
        // Scheduler jobs are named by it: it must not drift between versions.
        insta::assert_snapshot!(id);
    }
}
