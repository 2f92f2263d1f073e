//! Lockfiles: what moving references resolved to, with when and from where.
//!
//! `lockfiles/images.lock` maps image tags to digests, `lockfiles/models.lock`
//! model branches to commits (with optional per-file sha256), and
//! `lockfiles/files.lock` process engines' executables to their sha256. Like
//! Cargo.lock: committed, read during resolution, edited by `infermark lock`.
//! Resolving tags and branches over the network lives in `resolve` (with the
//! registry client in `oci` and the hub client in `hf`).
//!
//! A pin only one machine can have (an image it built itself, an executable
//! it compiled differently) goes in the **local overlay**: `<lock dir>/local/`
//! holds lockfiles of the same format, ignored by git, and is read on top of
//! the tracked ones — for the same reference the overlay's entry wins. The
//! tracked files stay as committed, so such a machine's harness is not
//! built from a dirty tree; the overlay pins a run used are recorded in its
//! `environment.json` (see [`local`]).

pub mod apply;
mod error;
pub mod hf;
pub mod local;
mod net;
pub mod oci;
pub mod resolve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::Pins;
use crate::spec::reference::{ImageRef, ReferenceError, Sha256, is_commit};

/// Format version of every lockfile.
pub const LOCK_VERSION: u32 = 1;

pub const IMAGES_LOCK: &str = "images.lock";
pub const MODELS_LOCK: &str = "models.lock";
pub const FILES_LOCK: &str = "files.lock";
/// The local overlay's directory inside a lock directory.
pub const LOCAL_DIR: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
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
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: lockfile version {found} is newer than this infermark understands (expected {LOCK_VERSION}); upgrade infermark", path.display())]
    FutureVersion { path: PathBuf, found: u32 },
    #[error("`{reference}`: {message}")]
    BadEntry { reference: String, message: String },
    /// `lock set` given a digest or image reference that does not parse.
    #[error("`{reference}`: {error}")]
    BadReference {
        reference: String,
        error: ReferenceError,
    },
}

/// `images.lock`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImagesLock {
    pub version: u32,
    #[serde(default, rename = "image", skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageEntry {
    /// `registry/repository:tag`, normal spelling.
    pub reference: String,
    /// `sha256:<hex>` the tag pointed at (the index digest for multi-platform images).
    pub digest: String,
    /// Per-platform manifest digests, when the tag is an index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub platforms: BTreeMap<String, String>,
    /// RFC 3339 time of resolution.
    pub resolved_at: String,
    /// Where it was resolved: a registry URL, or `manual` for `lock set`.
    pub resolved_from: String,
}

/// `models.lock`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelsLock {
    pub version: u32,
    #[serde(default, rename = "model", skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelEntry {
    pub repo: String,
    /// The branch or tag as written in experiments.
    pub revision: String,
    /// The 40-hex commit it resolved to.
    pub commit: String,
    /// sha256 per file in the repository at that commit, when known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    pub resolved_at: String,
    pub resolved_from: String,
}

/// `files.lock`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FilesLock {
    pub version: u32,
    #[serde(default, rename = "file", skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileEntry {
    /// The command as written in `engine.command`.
    pub command: String,
    pub sha256: String,
    pub resolved_at: String,
    pub resolved_from: String,
}

/// All lockfiles of one directory, and its local overlay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockfiles {
    pub dir: PathBuf,
    pub images: ImagesLock,
    pub models: ModelsLock,
    pub files: FilesLock,
    /// This machine's pins from `<dir>/local/*.lock`, when that directory
    /// exists. Looked up before the entries above (the overlay wins for the
    /// same reference) but kept apart from them, so [`Lockfiles::save`] never
    /// writes a machine's pin into the tracked files.
    pub local: Option<Box<Lockfiles>>,
}

impl Lockfiles {
    /// Reads the lockfiles in `dir` and its local overlay `dir/local/`; a
    /// missing file is an empty lock, a malformed one (tracked or local) an
    /// error naming it.
    pub fn load(dir: &Path) -> Result<Self, LockError> {
        let mut lock = Self::load_one(dir)?;
        let local = dir.join(LOCAL_DIR);
        if local.is_dir() {
            lock.local = Some(Box::new(Self::load_one(&local)?));
        }
        Ok(lock)
    }

    /// An empty lock of `dir`, of the current version.
    fn empty(dir: &Path) -> Self {
        Lockfiles {
            dir: dir.to_path_buf(),
            images: ImagesLock {
                version: LOCK_VERSION,
                images: vec![],
            },
            models: ModelsLock {
                version: LOCK_VERSION,
                models: vec![],
            },
            files: FilesLock {
                version: LOCK_VERSION,
                files: vec![],
            },
            local: None,
        }
    }

    /// The local overlay, created empty (in memory) when there is none;
    /// `save` on it writes `<dir>/local/*.lock`.
    pub fn local_mut(&mut self) -> &mut Lockfiles {
        let dir = self.dir.join(LOCAL_DIR);
        self.local
            .get_or_insert_with(|| Box::new(Lockfiles::empty(&dir)))
    }

    /// The lockfiles of `dir` alone, without looking for an overlay.
    fn load_one(dir: &Path) -> Result<Self, LockError> {
        Ok(Lockfiles {
            local: None,
            dir: dir.to_path_buf(),
            images: read(&dir.join(IMAGES_LOCK), |l: &ImagesLock| l.version)?.unwrap_or(
                ImagesLock {
                    version: LOCK_VERSION,
                    images: vec![],
                },
            ),
            models: read(&dir.join(MODELS_LOCK), |l: &ModelsLock| l.version)?.unwrap_or(
                ModelsLock {
                    version: LOCK_VERSION,
                    models: vec![],
                },
            ),
            files: read(&dir.join(FILES_LOCK), |l: &FilesLock| l.version)?.unwrap_or(FilesLock {
                version: LOCK_VERSION,
                files: vec![],
            }),
        })
    }

    /// Finds the lock directory for an experiment: `lockfiles/` in the
    /// experiment's directory or the nearest ancestor that has one. Its
    /// local overlay, if any, is `local/` inside it.
    pub fn find_dir(experiment: &Path) -> Option<PathBuf> {
        let start = std::path::absolute(experiment).ok()?;
        start
            .ancestors()
            .skip(1)
            .map(|d| d.join("lockfiles"))
            .find(|d| d.is_dir())
    }

    /// Writes all three files of this directory (sorted, so diffs stay
    /// small); never the local overlay, which is saved through
    /// [`Lockfiles::local_mut`].
    pub fn save(&mut self) -> Result<(), LockError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| LockError::Write {
            path: self.dir.clone(),
            source,
        })?;
        self.images
            .images
            .sort_by(|a, b| a.reference.cmp(&b.reference));
        self.models
            .models
            .sort_by(|a, b| (&a.repo, &a.revision).cmp(&(&b.repo, &b.revision)));
        self.files.files.sort_by(|a, b| a.command.cmp(&b.command));
        write(
            &self.dir.join(IMAGES_LOCK),
            "images: tag -> digest",
            &self.images,
        )?;
        write(
            &self.dir.join(MODELS_LOCK),
            "models: repo + branch -> commit",
            &self.models,
        )?;
        write(
            &self.dir.join(FILES_LOCK),
            "process engines: executable -> sha256",
            &self.files,
        )?;
        Ok(())
    }

    /// `infermark lock set REF VALUE`: what VALUE is decides what REF is —
    /// `sha256:<64 hex>` pins an image tag, a 40-hex commit pins a model
    /// `repo@revision`, 64 bare hex digits pin a process engine's executable.
    pub fn set(&mut self, reference: &str, value: &str, now: &str) -> Result<String, LockError> {
        let bad = |message: String| LockError::BadEntry {
            reference: reference.to_string(),
            message,
        };
        if let Some(hex) = value.strip_prefix("sha256:") {
            let bad_reference = |error| LockError::BadReference {
                reference: reference.to_string(),
                error,
            };
            let digest = Sha256::parse(hex).map_err(bad_reference)?;
            let image = ImageRef::parse(reference).map_err(bad_reference)?;
            if image.digest.is_some() {
                return Err(bad(
                    "already pinned by digest; give the reference by tag".to_string()
                ));
            }
            let key = image.tagged();
            self.images.images.retain(|e| e.reference != key);
            self.images.images.push(ImageEntry {
                reference: key.clone(),
                digest: format!("sha256:{digest}"),
                platforms: BTreeMap::new(),
                resolved_at: now.to_string(),
                resolved_from: "manual".to_string(),
            });
            Ok(format!("{} {key} -> sha256:{digest}", IMAGES_LOCK))
        } else if is_commit(value) {
            let Some((repo, revision)) = reference.split_once('@') else {
                return Err(bad(
                    "a commit pins a model: write the reference as `owner/name@branch`".to_string(),
                ));
            };
            if repo.split('/').count() != 2 || revision.is_empty() || is_commit(revision) {
                return Err(bad(
                    "expected `owner/name@branch` with a branch or tag name".to_string(),
                ));
            }
            self.models
                .models
                .retain(|e| !(e.repo == repo && e.revision == revision));
            let commit = value.to_ascii_lowercase();
            self.models.models.push(ModelEntry {
                repo: repo.to_string(),
                revision: revision.to_string(),
                commit: commit.clone(),
                files: BTreeMap::new(),
                resolved_at: now.to_string(),
                resolved_from: "manual".to_string(),
            });
            Ok(format!("{} {repo}@{revision} -> {commit}", MODELS_LOCK))
        } else if let Ok(sha) = Sha256::parse(value)
            && !value.starts_with("sha256:")
        {
            self.files.files.retain(|e| e.command != reference);
            self.files.files.push(FileEntry {
                command: reference.to_string(),
                sha256: sha.to_string(),
                resolved_at: now.to_string(),
                resolved_from: "manual".to_string(),
            });
            Ok(format!("{} {reference} -> {sha}", FILES_LOCK))
        } else {
            Err(bad(format!(
                "`{value}` is neither an image digest (`sha256:<64 hex>`), a model commit (40 hex) nor an executable's sha256 (64 hex)"
            )))
        }
    }

    fn validate(&self) -> Result<(), LockError> {
        let invalid = |file: &str, message: String| LockError::Invalid {
            path: self.dir.join(file),
            message,
        };
        for e in &self.images.images {
            let r =
                ImageRef::parse(&e.reference).map_err(|m| invalid(IMAGES_LOCK, m.to_string()))?;
            if r.tagged() != e.reference || r.digest.is_some() {
                return Err(invalid(
                    IMAGES_LOCK,
                    format!(
                        "`{}` is not in normal form `registry/repository:tag`; expected `{}`",
                        e.reference,
                        r.tagged()
                    ),
                ));
            }
            match e.digest.strip_prefix("sha256:").map(Sha256::parse) {
                Some(Ok(_)) => {}
                _ => {
                    return Err(invalid(
                        IMAGES_LOCK,
                        format!(
                            "`{}`: digest `{}` is not `sha256:<64 hex>`",
                            e.reference, e.digest
                        ),
                    ));
                }
            }
        }
        for e in &self.models.models {
            if !is_commit(&e.commit) {
                return Err(invalid(
                    MODELS_LOCK,
                    format!(
                        "`{}@{}`: commit `{}` is not 40 hex digits",
                        e.repo, e.revision, e.commit
                    ),
                ));
            }
        }
        for e in &self.files.files {
            Sha256::parse(&e.sha256)
                .map_err(|m| invalid(FILES_LOCK, format!("`{}`: {m}", e.command)))?;
        }
        match &self.local {
            Some(local) => local.validate(),
            None => Ok(()),
        }
    }

    /// Loads and checks every entry's form, the overlay's too.
    pub fn load_checked(dir: &Path) -> Result<Self, LockError> {
        let l = Self::load(dir)?;
        l.validate()?;
        Ok(l)
    }
}

/// The overlay's pin, else the tracked one.
impl Pins for Lockfiles {
    fn image_digest(&self, tagged: &str) -> Option<Sha256> {
        self.local
            .as_deref()
            .and_then(|l| l.image_digest(tagged))
            .or_else(|| self.own_image_digest(tagged))
    }

    fn model_commit(&self, repo: &str, revision: &str) -> Option<String> {
        self.local
            .as_deref()
            .and_then(|l| l.model_commit(repo, revision))
            .or_else(|| self.own_model_commit(repo, revision))
    }

    fn file_sha256(&self, command: &str) -> Option<Sha256> {
        self.local
            .as_deref()
            .and_then(|l| l.file_sha256(command))
            .or_else(|| self.own_file_sha256(command))
    }
}

/// Lookups in this directory's files only, overlay aside.
impl Lockfiles {
    fn own_image_digest(&self, tagged: &str) -> Option<Sha256> {
        self.images
            .images
            .iter()
            .find(|e| e.reference == tagged)
            .and_then(|e| {
                e.digest
                    .strip_prefix("sha256:")
                    .and_then(|h| Sha256::parse(h).ok())
            })
    }

    fn own_model_commit(&self, repo: &str, revision: &str) -> Option<String> {
        self.models
            .models
            .iter()
            .find(|e| e.repo == repo && e.revision == revision)
            .map(|e| e.commit.clone())
    }

    fn own_file_sha256(&self, command: &str) -> Option<Sha256> {
        self.files
            .files
            .iter()
            .find(|e| e.command == command)
            .and_then(|e| Sha256::parse(&e.sha256).ok())
    }
}

fn read<T: for<'de> Deserialize<'de>>(
    path: &Path,
    version: fn(&T) -> u32,
) -> Result<Option<T>, LockError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LockError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    // Check the version first, so a future format fails with a clear message
    // rather than an unknown-key error.
    #[derive(Deserialize)]
    struct VersionOnly {
        version: Option<u32>,
    }
    let v: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| LockError::Invalid {
            path: path.to_path_buf(),
            message: format!("TOML syntax error: {}", e.message()),
        })?;
    let found = toml::Value::Table(v)
        .try_into::<VersionOnly>()
        .ok()
        .and_then(|v| v.version);
    match found {
        None => {
            return Err(LockError::Invalid {
                path: path.to_path_buf(),
                message: format!("`version`: missing; expected `version = {LOCK_VERSION}`"),
            });
        }
        Some(f) if f > LOCK_VERSION => {
            return Err(LockError::FutureVersion {
                path: path.to_path_buf(),
                found: f,
            });
        }
        Some(_) => {}
    }
    let parsed: T = toml::from_str(&text).map_err(|e| LockError::Invalid {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    let _ = version(&parsed);
    Ok(Some(parsed))
}

fn write<T: Serialize>(path: &Path, what: &str, value: &T) -> Result<(), LockError> {
    let body = toml::to_string(value).map_err(|e| LockError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let text = format!("# infermark lockfile ({what}). Edit with `infermark lock`.\n{body}");
    crate::store::atomic::write(path, text.as_bytes()).map_err(|source| LockError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-23T00:00:00Z";

    #[test]
    fn set_then_load_round_trips_and_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Lockfiles::load(dir.path()).unwrap();
        let d = "a".repeat(64);
        l.set("vllm/vllm-openai:v0.10.2", &format!("sha256:{d}"), NOW)
            .unwrap();
        l.set("openai/gpt-oss-120b@main", &"B".repeat(40), NOW)
            .unwrap();
        l.set("llama-server", &"c".repeat(64), NOW).unwrap();
        l.save().unwrap();
        let back = Lockfiles::load_checked(dir.path()).unwrap();
        assert_eq!(back, l);
        assert_eq!(
            back.image_digest("docker.io/vllm/vllm-openai:v0.10.2")
                .unwrap()
                .hex(),
            d
        );
        assert_eq!(
            back.model_commit("openai/gpt-oss-120b", "main").unwrap(),
            "b".repeat(40)
        );
        assert!(back.file_sha256("llama-server").is_some());
        // Setting again replaces, never duplicates.
        let mut again = back.clone();
        again
            .set(
                "docker.io/vllm/vllm-openai:v0.10.2",
                &format!("sha256:{}", "e".repeat(64)),
                NOW,
            )
            .unwrap();
        assert_eq!(again.images.images.len(), 1);
    }

    #[test]
    fn rejects_values_that_pin_nothing() {
        let mut l = Lockfiles::default();
        let err = l.set("vllm/vllm-openai:v1", "latest", NOW).unwrap_err();
        assert!(err.to_string().contains("neither an image digest"), "{err}");
        let err = l
            .set("openai/gpt-oss-120b", &"b".repeat(40), NOW)
            .unwrap_err();
        assert!(err.to_string().contains("owner/name@branch"), "{err}");
    }

    #[test]
    fn future_version_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IMAGES_LOCK), "version = 9\n").unwrap();
        let err = Lockfiles::load(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("lockfile version 9 is newer"),
            "{err}"
        );
    }
}
