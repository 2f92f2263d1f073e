//! The provenance statement of a run: `provenance.json`, an in-toto
//! Statement v1 whose subjects are the sha256 digests of the run's files and
//! whose predicate names the point, its pins, the harness and the run times.
//!
//! It exists so that a result can be checked without trusting whoever holds
//! it: `audit` re-hashes every subject and cross-checks the predicate against
//! `point.json` and `environment.json`. The statement proves the files are
//! the ones it lists; who vouched for it is [`sign`]'s envelope beside it.
//!
//! Reading is strict about versions: an unknown `_type` or `predicateType`
//! is refused by name rather than half-understood.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::clock::rfc3339;
use crate::digest::sha256_file;
use crate::spec::{Model, Point};
use crate::store::layout::{POINT_FILE, RUN_FILES};
use serde::{Deserialize, Serialize};

pub mod sign;

/// The in-toto statement type this build writes and reads.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a run's statement.
pub const PREDICATE_TYPE: &str = "https://infermark.dev/provenance/run/v1";
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("failed to read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("failed to write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "{}: unknown statement type `_type` = `{found}`: this infermark reads `{STATEMENT_TYPE}`",
        path.display()
    )]
    UnknownType { path: PathBuf, found: String },
    #[error(
        "{}: unknown `predicateType` = `{found}`: this infermark reads `{PREDICATE_TYPE}`",
        path.display()
    )]
    UnknownPredicateType { path: PathBuf, found: String },
    #[error("{}: not a provenance statement: {}{source}", path.display(), key_prefix(key))]
    Json {
        path: PathBuf,
        key: String,
        source: serde_json::Error,
    },
    #[error("failed to serialize the provenance statement: {0}")]
    Serialize(serde_json::Error),
}

impl ProvenanceError {
    /// The message without the file's name, for reports that name the file
    /// already.
    pub fn detail(&self) -> String {
        match self {
            ProvenanceError::Read { source, .. } => format!("cannot read: {source}"),
            ProvenanceError::Write { source, .. } => format!("cannot write: {source}"),
            ProvenanceError::UnknownType { found, .. } => format!(
                "unknown statement type `_type` = `{found}`: this infermark reads `{STATEMENT_TYPE}`"
            ),
            ProvenanceError::UnknownPredicateType { found, .. } => format!(
                "unknown `predicateType` = `{found}`: this infermark reads `{PREDICATE_TYPE}`"
            ),
            ProvenanceError::Json { key, source, .. } => {
                format!("not a provenance statement: {}{source}", key_prefix(key))
            }
            ProvenanceError::Serialize(e) => format!("cannot serialize: {e}"),
        }
    }
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() || key == "." {
        String::new()
    } else {
        format!("`{key}`: ")
    }
}

/// An in-toto Statement v1 about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The files, sorted by name.
    pub subject: Vec<Subject>,
    /// Always [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: RunPredicate,
}

/// One file and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// `point.json` (the point directory's file) or a file of the run
    /// directory.
    pub name: String,
    pub digest: DigestSet,
}

/// in-toto's digest set; infermark writes and checks sha256 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSet {
    /// Lowercase hex.
    pub sha256: String,
}

/// What the run was: the point, its pins, the harness and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPredicate {
    pub point_id: String,
    pub run_id: String,
    pub pins: Pins,
    pub harness: Harness,
    /// The run was made on hardware other than the point's class, on
    /// purpose (`environment.json`'s `hardware.override`).
    pub hardware_override: bool,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub finished_at: String,
}

/// Everything a point pins, restated so a reader of the statement alone sees
/// what ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pins {
    pub hardware_class: String,
    pub engine_kind: String,
    pub runtime: String,
    /// The image reference with its digest (container runtimes).
    pub image: Option<String>,
    /// The executable's sha256 (process runtimes that pin one).
    pub command_sha256: Option<String>,
    pub model: ModelPin,
    /// The dataset file's sha256 (file datasets).
    pub dataset_sha256: Option<String>,
}

/// How the weights are pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub enum ModelPin {
    File { sha256: String },
    Hub { repo: String, revision: String },
    None,
}

/// The harness that made the run: the same record `environment.json` holds.
pub use crate::probe::Harness;

impl Pins {
    /// The pins of `point`, as the statement states them.
    pub fn of(point: &Point) -> Self {
        let p = &point.spec;
        Pins {
            hardware_class: p.hardware.class.clone(),
            engine_kind: p.engine.kind.to_string(),
            runtime: p.engine.runtime.to_string(),
            image: p.engine.image.as_ref().map(|i| i.to_string()),
            command_sha256: p.engine.command_sha256.as_ref().map(|s| s.to_string()),
            model: match &p.model {
                Model::File { sha256, .. } => ModelPin::File {
                    sha256: sha256.to_string(),
                },
                Model::Hub { repo, revision, .. } => ModelPin::Hub {
                    repo: repo.clone(),
                    revision: revision.clone(),
                },
                Model::None { .. } => ModelPin::None,
            },
            dataset_sha256: match &p.workload.dataset {
                crate::spec::Dataset::File { sha256, .. } => Some(sha256.to_string()),
                crate::spec::Dataset::Random { .. } => None,
            },
        }
    }

    /// The first pin that differs from `other`, as `(key, self, other)`.
    pub fn first_difference(&self, other: &Pins) -> Option<(&'static str, String, String)> {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "null".to_string());
        let model = |m: &ModelPin| serde_json::to_string(m).unwrap_or_default();
        if self.hardware_class != other.hardware_class {
            return Some((
                "hardware_class",
                self.hardware_class.clone(),
                other.hardware_class.clone(),
            ));
        }
        if self.engine_kind != other.engine_kind {
            return Some((
                "engine_kind",
                self.engine_kind.clone(),
                other.engine_kind.clone(),
            ));
        }
        if self.runtime != other.runtime {
            return Some(("runtime", self.runtime.clone(), other.runtime.clone()));
        }
        if self.image != other.image {
            return Some(("image", show(&self.image), show(&other.image)));
        }
        if self.command_sha256 != other.command_sha256 {
            return Some((
                "command_sha256",
                show(&self.command_sha256),
                show(&other.command_sha256),
            ));
        }
        if self.model != other.model {
            return Some(("model", model(&self.model), model(&other.model)));
        }
        if self.dataset_sha256 != other.dataset_sha256 {
            return Some((
                "dataset_sha256",
                show(&self.dataset_sha256),
                show(&other.dataset_sha256),
            ));
        }
        None
    }
}

impl RunPredicate {
    /// The predicate of a run of `point` made by this binary.
    pub fn new(
        point: &Point,
        run_id: &str,
        started: SystemTime,
        finished: SystemTime,
        hardware_override: bool,
    ) -> Self {
        RunPredicate {
            point_id: point.id().to_string(),
            run_id: run_id.to_string(),
            pins: Pins::of(point),
            harness: Harness::current(),
            hardware_override,
            started_at: rfc3339(started),
            finished_at: rfc3339(finished),
        }
    }
}

impl Statement {
    /// The statement over a run: hashes `point_dir/point.json` and the
    /// [`RUN_FILES`] of `run_dir`, streaming, and lists them sorted by name.
    pub fn for_run(
        run_dir: &Path,
        point_dir: &Path,
        predicate: RunPredicate,
    ) -> Result<Self, ProvenanceError> {
        let mut files: Vec<(&str, PathBuf)> = vec![(POINT_FILE, point_dir.join(POINT_FILE))];
        files.extend(RUN_FILES.iter().map(|name| (*name, run_dir.join(name))));
        let mut subject = Vec::with_capacity(files.len());
        for (name, path) in files {
            let (sha256, _) = sha256_file(&path).map_err(|source| ProvenanceError::Read {
                path: path.clone(),
                source,
            })?;
            subject.push(Subject {
                name: name.to_string(),
                digest: DigestSet { sha256 },
            });
        }
        subject.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Statement {
            statement_type: STATEMENT_TYPE.to_string(),
            subject,
            predicate_type: PREDICATE_TYPE.to_string(),
            predicate,
        })
    }

    /// The exact bytes of `provenance.json`: pretty JSON, final newline.
    pub fn to_json(&self) -> Result<String, ProvenanceError> {
        let mut text = serde_json::to_string_pretty(self).map_err(ProvenanceError::Serialize)?;
        text.push('\n');
        Ok(text)
    }

    /// Parses statement text; `path` names it in errors. The types are
    /// checked first, so a statement of another kind or a newer version is
    /// named as such rather than reported as an unknown field.
    pub fn from_json(path: &Path, text: &str) -> Result<Self, ProvenanceError> {
        #[derive(Deserialize)]
        struct TypeProbe {
            #[serde(rename = "_type")]
            statement_type: Option<String>,
            #[serde(rename = "predicateType")]
            predicate_type: Option<String>,
        }
        if let Ok(probe) = serde_json::from_str::<TypeProbe>(text) {
            if let Some(found) = probe.statement_type
                && found != STATEMENT_TYPE
            {
                return Err(ProvenanceError::UnknownType {
                    path: path.to_path_buf(),
                    found,
                });
            }
            if let Some(found) = probe.predicate_type
                && found != PREDICATE_TYPE
            {
                return Err(ProvenanceError::UnknownPredicateType {
                    path: path.to_path_buf(),
                    found,
                });
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let json_error = |key: String, source| ProvenanceError::Json {
            path: path.to_path_buf(),
            key,
            source,
        };
        let statement: Statement = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| json_error(e.path().to_string(), e.into_inner()))?;
        de.end().map_err(|e| json_error(String::new(), e))?;
        // A statement missing `_type` or `predicateType` fails above as a
        // missing field; one present with another value was refused first.
        Ok(statement)
    }

    /// Reads `provenance.json`.
    pub fn read(path: &Path) -> Result<Self, ProvenanceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProvenanceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(path, &text)
    }

    /// The digest the statement records for `name`.
    pub fn digest_of(&self, name: &str) -> Option<&str> {
        self.subject
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.digest.sha256.as_str())
    }
}

#[cfg(test)]
mod tests;
