//! `bench`: one experiment's points measured against a server someone else
//! started, with no engine, store or statement. Which points, and what one
//! measured point leaves behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::loadgen::Progress;
use crate::lock::apply::{self, PointsError};
use crate::spec::{CanonicalError, LoadLevel, Point};

use super::{Measurement, RunError};

/// Which of an experiment's points to measure: all of them, its first at
/// another concurrency, or the one whose id starts with a prefix.
#[derive(Debug, Default, Clone)]
pub struct Choice {
    pub concurrency: Option<u32>,
    pub point: Option<String>,
}

/// Why no points were chosen. All but `Canonical` (and a non-input
/// [`PointsError`]) are wrong input.
#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    #[error(transparent)]
    Points(#[from] PointsError),
    #[error("the experiment has no points")]
    Empty,
    #[error("`--concurrency {n}`: {} is an open-loop (rate) experiment; use `--point`", spec.display())]
    OpenLoop { n: u32, spec: PathBuf },
    #[error("`--point {prefix}`: no point of {0} has an id starting so; see `infermark spec points {0}`", spec.display())]
    NoMatch { prefix: String, spec: PathBuf },
    #[error("`--point {0}`: ambiguous; give more digits")]
    Ambiguous(String),
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

impl ChoiceError {
    pub fn is_invalid_input(&self) -> bool {
        match self {
            ChoiceError::Points(e) => e.is_invalid_input(),
            ChoiceError::Canonical(_) => false,
            _ => true,
        }
    }
}

/// The points of `spec` (pinned by its lock) that `choice` names.
pub fn choose(
    spec: &Path,
    lock_dir: Option<&Path>,
    choice: &Choice,
) -> Result<Vec<Point>, ChoiceError> {
    let points = apply::points_of(spec, lock_dir)?;
    if let Some(n) = choice.concurrency {
        let mut first = points.first().ok_or(ChoiceError::Empty)?.spec.clone();
        let duration_s = match &first.load {
            LoadLevel::Rate { .. } => {
                return Err(ChoiceError::OpenLoop {
                    n,
                    spec: spec.to_path_buf(),
                });
            }
            LoadLevel::Concurrency { duration_s, .. } => *duration_s,
        };
        first.load = LoadLevel::Concurrency {
            concurrency: n,
            duration_s,
        };
        return Ok(vec![Point::new(first)?]);
    }
    let Some(prefix) = &choice.point else {
        return Ok(points);
    };
    let matching: Vec<Point> = points
        .into_iter()
        .filter(|p| p.id().starts_with(prefix.as_str()))
        .collect();
    match matching.len() {
        0 => Err(ChoiceError::NoMatch {
            prefix: prefix.clone(),
            spec: spec.to_path_buf(),
        }),
        1 => Ok(matching),
        _ => Err(ChoiceError::Ambiguous(prefix.clone())),
    }
}

/// Measures one point against `url`; with `out`, writes its files into
/// `out/<point id>` (see [`super::write_bench`]) and returns that directory.
pub async fn bench_point(
    point: &Point,
    url: &str,
    spec_dir: &Path,
    out: Option<&Path>,
    progress: Option<Arc<dyn Progress>>,
) -> Result<(Measurement, Option<PathBuf>), RunError> {
    let m = super::measure(point, url, spec_dir, progress).await?;
    let written = match out {
        Some(out) => {
            let dir = out.join(point.id());
            super::write_bench(&dir, point, &m)?;
            Some(dir)
        }
        None => None,
    };
    Ok((m, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOSED: &str = r#"
schema = 1
name = "closed"
[hardware]
class = "cpu"
[engine]
kind = "sim"
[workload]
input-tokens = 16
output-tokens = 4
[load]
concurrency = [1, 2, 4]
"#;

    fn experiment(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.toml");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    #[test]
    fn no_choice_gives_every_point() {
        let (_d, f) = experiment(CLOSED);
        assert_eq!(choose(&f, None, &Choice::default()).unwrap().len(), 3);
    }

    #[test]
    fn a_concurrency_gives_the_first_point_at_that_concurrency() {
        let (_d, f) = experiment(CLOSED);
        let choice = Choice {
            concurrency: Some(7),
            point: None,
        };
        let points = choose(&f, None, &choice).unwrap();
        assert_eq!(points.len(), 1);
        assert!(matches!(
            points[0].spec.load,
            LoadLevel::Concurrency { concurrency: 7, .. }
        ));
    }

    #[test]
    fn a_concurrency_on_an_open_loop_experiment_is_wrong_input_naming_the_flag() {
        let open = CLOSED.replace("concurrency = [1, 2, 4]", "rate = [5.0]\nrequests = 10");
        let (_d, f) = experiment(&open);
        let choice = Choice {
            concurrency: Some(2),
            point: None,
        };
        let e = choose(&f, None, &choice).unwrap_err();
        assert!(matches!(e, ChoiceError::OpenLoop { n: 2, .. }), "{e}");
        assert!(e.is_invalid_input());
        assert!(e.to_string().starts_with("`--concurrency 2`:"), "{e}");
    }

    #[test]
    fn a_point_prefix_picks_one_and_refuses_none_or_several() {
        let (_d, f) = experiment(CLOSED);
        let all = choose(&f, None, &Choice::default()).unwrap();
        let id = all[1].id().to_string();
        let pick = |p: &str| {
            choose(
                &f,
                None,
                &Choice {
                    concurrency: None,
                    point: Some(p.to_string()),
                },
            )
        };
        assert_eq!(pick(&id[..12]).unwrap()[0].id(), id);
        let none = pick("zz").unwrap_err();
        assert!(matches!(none, ChoiceError::NoMatch { .. }) && none.is_invalid_input());
        assert!(none.to_string().contains("infermark spec points"), "{none}");
        let several = pick("").unwrap_err();
        assert!(matches!(several, ChoiceError::Ambiguous(_)), "{several}");
    }

    #[test]
    fn a_spec_error_is_wrong_input_and_names_the_file() {
        let (_d, f) = experiment("schema = 1\nname = 3\n");
        let e = choose(&f, None, &Choice::default()).unwrap_err();
        assert!(e.is_invalid_input());
        assert!(e.to_string().contains("x.toml"), "{e}");
    }
}
