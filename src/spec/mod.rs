//! Experiment specs: wire types, validation, defaults, the canonical form of
//! a point, its id, and the expansion of a sweep into points.
//!
//! An experiment (TOML written by a person) with its lock applied expands
//! into points: one per load level, each fully pinned, each with a canonical
//! JSON form whose hash is the point id.

mod canonical;
mod convert;
mod diag;
mod domain;
pub mod hardware;
pub mod reference;
mod wire;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use canonical::{
    CanonicalError, MAX_SAFE_INTEGER, POINT_DOMAIN, canonical_json, hex, point_id,
};
pub use diag::{Diagnostic, SpecError};
pub use domain::*;
use reference::Sha256;

/// An experiment as written, every default filled, labels kept aside.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// Label: never part of a point id.
    pub name: Option<String>,
    /// Label: never part of a point id.
    pub description: Option<String>,
    pub hardware: Hardware,
    pub engine: Engine,
    pub model: Model,
    pub workload: Workload,
    pub sweep: Sweep,
    pub slo: Slo,
    pub verify: Verify,
}

/// Where moving references resolve: implemented by the lockfiles.
pub trait Pins {
    /// Digest for an image reference by tag (`registry/repo:tag`).
    fn image_digest(&self, tagged: &str) -> Option<Sha256>;
    /// Commit for a model repository at a branch or tag.
    fn model_commit(&self, repo: &str, revision: &str) -> Option<String>;
    /// sha256 of a process engine's executable, by the command as written.
    fn file_sha256(&self, command: &str) -> Option<Sha256>;
}

/// No lock at all: only what the spec pins itself.
pub struct NoPins;

impl Pins for NoPins {
    fn image_digest(&self, _: &str) -> Option<Sha256> {
        None
    }
    fn model_commit(&self, _: &str, _: &str) -> Option<String> {
        None
    }
    fn file_sha256(&self, _: &str) -> Option<Sha256> {
        None
    }
}

/// A fully described measurement: the canonical content of one point.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PointSpec {
    pub schema: u32,
    pub hardware: Hardware,
    pub engine: Engine,
    pub model: Model,
    pub workload: Workload,
    pub load: LoadLevel,
    pub slo: Slo,
    pub verify: Verify,
}

/// A point: its spec, canonical bytes and id.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub spec: PointSpec,
    canonical: Vec<u8>,
    id: String,
}

/// A reference still moving after the lock was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpinned {
    /// The spec key, e.g. `engine.image`.
    pub key: &'static str,
    /// The reference as resolved so far.
    pub reference: String,
    /// What to run to pin it.
    pub fix: String,
}

impl std::fmt::Display for Unpinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: `{}` is not pinned; {}",
            self.key, self.reference, self.fix
        )
    }
}

/// Why stored bytes are not a point (`point.json`).
#[derive(Debug, thiserror::Error)]
pub enum StoredPointError {
    #[error("not a point: {0}")]
    Json(serde_json::Error),
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    #[error("not in canonical form (RFC 8785): the bytes differ from the point they describe")]
    NotCanonical,
}

impl Point {
    /// Builds a point from its spec: canonical bytes and id.
    pub fn new(spec: PointSpec) -> Result<Self, CanonicalError> {
        let value = serde_json::to_value(&spec)
            .map_err(|_| CanonicalError::NotFinite("point".to_string()))?;
        let canonical = canonical_json(&value)?;
        let id = point_id(&canonical);
        Ok(Point {
            spec,
            canonical,
            id,
        })
    }

    /// Reads a point back from its stored canonical bytes (`point.json`),
    /// checking that they are canonical.
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, StoredPointError> {
        let spec: PointSpec = serde_json::from_slice(bytes).map_err(StoredPointError::Json)?;
        let point = Point::new(spec)?;
        if point.canonical != bytes {
            return Err(StoredPointError::NotCanonical);
        }
        Ok(point)
    }

    /// The full id: 64 lowercase hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The first 12 hex digits, for tables and paths people type.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// Every reference that is still moving; empty means runnable.
    pub fn unpinned(&self) -> Vec<Unpinned> {
        let mut out = Vec::new();
        let e = &self.spec.engine;
        if let Some(image) = &e.image
            && image.digest.is_none()
        {
            out.push(Unpinned {
                key: "engine.image",
                reference: image.to_string(),
                fix: format!(
                    "run `infermark lock set {} sha256:<digest>` (or write the digest into the spec)",
                    image.tagged()
                ),
            });
        }
        if e.runtime == Runtime::Process
            && e.kind != EngineKind::Sim
            && e.command_sha256.is_none()
            && let Some(cmd) = &e.command
        {
            out.push(Unpinned {
                key: "engine.command",
                reference: cmd.clone(),
                fix: format!("run `infermark lock set {cmd} <sha256 of the executable>` (or set `engine.command-sha256`)"),
            });
        }
        if let Model::Hub { repo, revision, .. } = &self.spec.model
            && !reference::is_commit(revision)
        {
            out.push(Unpinned {
                key: "model.revision",
                reference: format!("{repo}@{revision}"),
                fix: format!("run `infermark lock set {repo}@{revision} <40-hex commit>` (or write the commit as `revision`)"),
            });
        }
        out
    }
}

impl Experiment {
    /// Expands the sweep into points with `pins` applied.
    pub fn points(&self, pins: &dyn Pins) -> Result<Vec<Point>, CanonicalError> {
        let mut engine = self.engine.clone();
        if let Some(image) = &engine.image
            && image.digest.is_none()
            && let Some(d) = pins.image_digest(&image.tagged())
        {
            engine.image = Some(image.pinned(&d));
        }
        if engine.runtime == Runtime::Process
            && engine.command_sha256.is_none()
            && let Some(cmd) = &engine.command
        {
            engine.command_sha256 = pins.file_sha256(cmd);
        }
        let mut model = self.model.clone();
        if let Model::Hub { repo, revision, .. } = &mut model
            && !reference::is_commit(revision)
            && let Some(commit) = pins.model_commit(repo, revision)
        {
            *revision = commit.to_ascii_lowercase();
        }
        self.sweep
            .levels
            .iter()
            .map(|level| {
                Point::new(PointSpec {
                    schema: 1,
                    hardware: self.hardware.clone(),
                    engine: engine.clone(),
                    model: model.clone(),
                    workload: self.workload.clone(),
                    load: level.clone(),
                    slo: self.slo.clone(),
                    verify: self.verify.clone(),
                })
            })
            .collect()
    }
}

/// Reads and validates an experiment file.
pub fn load(path: &Path) -> Result<Experiment, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Validates experiment text; `file` names it in errors.
pub fn parse(file: &Path, text: &str) -> Result<Experiment, SpecError> {
    let invalid = |diagnostics| SpecError::Invalid {
        file: file.to_path_buf(),
        diagnostics,
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => return Err(invalid(vec![syntax_diagnostic(text, &e)])),
    };
    let mut diags = Vec::new();
    check_numbers(
        &toml::Value::Table(table.clone()),
        &mut String::new(),
        &mut diags,
    );
    // Structural errors do not stop the semantic checks: the offending keys
    // were removed, so the rest of the file is still checked; a key already
    // reported is not reported twice.
    if let Some(wire) = deserialize_all(table, &mut diags) {
        match convert::convert(wire) {
            Ok(e) if diags.is_empty() => return Ok(e),
            Ok(_) => {}
            Err(more) => {
                for d in more {
                    if !diags.iter().any(|x| x.key == d.key) {
                        diags.push(d);
                    }
                }
            }
        }
    }
    Err(invalid(diags))
}

/// Deserialises the wire types; on a structural error (unknown key, wrong
/// type) records it, removes the offending key and tries again, so one pass
/// reports every such error rather than the first.
fn deserialize_all(
    mut table: toml::Table,
    diags: &mut Vec<Diagnostic>,
) -> Option<wire::ExperimentWire> {
    for _ in 0..64 {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, wire::ExperimentWire>(value) {
            Ok(w) => return Some(w),
            Err(e) => {
                let segments: Vec<String> = e
                    .path()
                    .iter()
                    .filter_map(|s| match s {
                        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                        serde_path_to_error::Segment::Seq { index } => Some(format!("[{index}]")),
                        _ => None,
                    })
                    .collect();
                let message = e.inner().message().to_string();
                let (key_path, message) = describe_structural(&segments, &message);
                let removed = remove_key(&mut table, &key_path);
                diags.push(Diagnostic::at(join_path(&key_path), message));
                if !removed {
                    return None;
                }
            }
        }
    }
    None
}

/// Turns serde's message into ours, and finds the key it is about.
fn describe_structural(segments: &[String], message: &str) -> (Vec<String>, String) {
    let mut path = segments.to_vec();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        // serde points at the table; the unknown key itself completes the path.
        if path.last().map(String::as_str) != Some(field) {
            path.push(field.to_string());
        }
        let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let hint = diag::did_you_mean(field, &names)
            .map(|m| format!("did you mean `{m}`? "))
            .unwrap_or_default();
        let table = if path.len() > 1 {
            format!("[{}]", path[..path.len() - 1].join("."))
        } else {
            "the top level".to_string()
        };
        return (
            path,
            format!(
                "unknown key; {hint}keys allowed in {table}: {}",
                diag::one_of(&names)
            ),
        );
    }
    let message = message
        .replace("invalid type: ", "wrong type: ")
        .replace(", expected i64", ", expected an integer")
        .replace(", expected f64", ", expected a number")
        .replace(", expected a string", ", expected a string in quotes")
        .replace(", expected a boolean", ", expected `true` or `false`");
    (path, message)
}

fn join_path(segments: &[String]) -> String {
    let mut s = String::new();
    for seg in segments {
        if !s.is_empty() && !seg.starts_with('[') {
            s.push('.');
        }
        s.push_str(seg);
    }
    s
}

fn remove_key(table: &mut toml::Table, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = table;
    for p in parents {
        match cur.get_mut(p) {
            Some(toml::Value::Table(t)) => cur = t,
            // A bad element inside an array: drop the whole array key.
            _ => return false,
        }
    }
    if last.starts_with('[') {
        return false;
    }
    cur.remove(last).is_some()
}

/// Integers beyond 2^53 and NaN/infinities have no canonical JSON form.
fn check_numbers(v: &toml::Value, path: &mut String, diags: &mut Vec<Diagnostic>) {
    match v {
        toml::Value::Integer(i) if i.unsigned_abs() > MAX_SAFE_INTEGER as u64 => diags.push(Diagnostic::at(
            path.clone(),
            format!("{i} is beyond 2^53 - 1 = {MAX_SAFE_INTEGER}, which canonical JSON cannot hold exactly; use a smaller value"),
        )),
        toml::Value::Float(f) if !f.is_finite() => diags.push(Diagnostic::at(
            path.clone(),
            format!("{f} is not a finite number; NaN and infinities are not allowed"),
        )),
        toml::Value::Table(t) => {
            for (k, v) in t {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                check_numbers(v, path, diags);
                path.truncate(len);
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_numbers(v, path, diags);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn syntax_diagnostic(text: &str, e: &toml::de::Error) -> Diagnostic {
    let location = e.span().map(|span| line_col(text, span.start));
    Diagnostic {
        key: None,
        location,
        message: format!("TOML syntax error: {}", e.message().trim_end()),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Collects the experiment files under `paths` (files as given; directories
/// searched recursively for `*.toml`), sorted.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SpecError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out).map_err(|source| SpecError::Read {
                path: p.clone(),
                source,
            })?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
