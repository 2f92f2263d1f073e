//! The results tree: where runs are written, how they become results, and
//! the index over them.
//!
//! Every name in the tree is in [`layout`], with a map of the tree; this
//! module owns where runs go and how they get there.
//!
//! A run is written into `.tmp/<run-id>/` and moved into `runs/` by one
//! rename only once every file and its provenance statement are on disk, so a
//! crash leaves either a complete result or none (DESIGN "Results and
//! provenance"). The files are the truth; the index is a cache of them.

pub mod atomic;
pub mod bounded;
pub mod collect;
pub mod index;
pub mod layout;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock;
use crate::provenance::sign::{self, SignError, Signer};
use crate::provenance::{ProvenanceError, RunPredicate, Statement};
use crate::spec::Point;

pub use index::{Index, IndexError, ListFilter, Listed, PointRow, RebuildReport, RunRow, Shown};
pub use layout::{
    ENGINE_LOG_FILE, ENVIRONMENT_FILE, FAILED_DIR, FAILURE_FILE, INDEX_FILE, NIGHT_FILE,
    NIGHTS_DIR, POINT_FILE, POINTS_DIR, REQUESTS_FILE, RUN_DIR_FILES, RUN_ENVELOPE_FILE, RUN_FILES,
    RUNS_DIR, STATEMENT_FILE, SUMMARY_FILE, TMP_DIR, VERDICT_FILE, VERDICTS_DIR,
};

/// The value of `failure.json`'s `format` field.
pub const FAILURE_FORMAT: &str = "infermark.failure.v1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("failed to read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("failed to write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("failed to move {} to {}: {source}", from.display(), to.display())]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error(
        "{}: does not hold the canonical bytes of point {id}, which the directory is named for; \
         the file was changed: restore it (or remove the point directory if it holds no runs)",
        path.display()
    )]
    PointMismatch { path: PathBuf, id: String },
    #[error(
        "{}: missing; a run writes {} before it is committed",
        path.display(),
        RUN_FILES.join(", ")
    )]
    MissingFile { path: PathBuf },
    #[error(
        "{}: not a file a run holds (only {} and {STATEMENT_FILE}); remove it before committing",
        path.display(),
        RUN_FILES.join(", ")
    )]
    UnexpectedFile { path: PathBuf },
    #[error("the predicate's `{key}` is `{found}`, but this run's is `{expected}`")]
    PredicateMismatch {
        key: &'static str,
        expected: String,
        found: String,
    },
    #[error("{}: a run with this id already exists", path.display())]
    RunExists { path: PathBuf },
    #[error(transparent)]
    Provenance(#[from] ProvenanceError),
    #[error("cannot sign the statement: {0}")]
    Sign(#[from] SignError),
    #[error("{source}; the run was recorded as failed in {}", path.display())]
    CommitRefused {
        path: PathBuf,
        source: Box<StoreError>,
    },
    #[error(
        "{}: unknown failure record format `{found}`: this infermark reads `{FAILURE_FORMAT}`",
        path.display()
    )]
    UnknownFailureFormat { path: PathBuf, found: String },
    #[error("{}: not a failure record: {}{source}", path.display(), key_prefix(key))]
    FailureJson {
        path: PathBuf,
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "the run is stored at {} but the index was not updated ({source}); \
         run `infermark index rebuild --results <dir>`",
        path.display()
    )]
    IndexAfterStore { path: PathBuf, source: IndexError },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() || key == "." {
        String::new()
    } else {
        format!("`{key}`: ")
    }
}

/// A results tree on disk.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the results tree at `root`, creating the directory if needed.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(root).map_err(|source| StoreError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/points/<id>`.
    pub fn point_dir(&self, point_id: &str) -> PathBuf {
        self.root.join(POINTS_DIR).join(point_id)
    }

    /// Starts a run of `point`: makes sure `points/<id>/point.json` holds
    /// the point's canonical bytes (writing it when absent, refusing a file
    /// that differs) and creates the run's temporary directory.
    pub fn begin_run(&self, point: &Point, started: SystemTime) -> Result<RunWriter, StoreError> {
        let point_dir = self.point_dir(point.id());
        create_dir_all(&point_dir)?;
        ensure_point_file(&point_dir, point)?;
        let tmp = self.root.join(TMP_DIR);
        create_dir_all(&tmp)?;
        // A clash needs the same second, pid, host and sequence number, so
        // one retry is already paranoia; a few bound it.
        let mut last_error = None;
        for _ in 0..8 {
            let run_id = new_run_id(started);
            let dir = tmp.join(&run_id);
            let taken = [RUNS_DIR, FAILED_DIR]
                .iter()
                .any(|d| point_dir.join(d).join(&run_id).exists());
            if taken {
                last_error = Some(StoreError::RunExists {
                    path: point_dir.join(RUNS_DIR).join(&run_id),
                });
                continue;
            }
            match fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(RunWriter {
                        root: self.root.clone(),
                        point_id: point.id().to_string(),
                        point_dir,
                        run_id,
                        dir,
                        started,
                        done: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = Some(StoreError::RunExists { path: dir });
                }
                Err(source) => return Err(StoreError::Create { path: dir, source }),
            }
        }
        Err(last_error.unwrap_or(StoreError::RunExists { path: tmp }))
    }
}

fn create_dir_all(path: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(path).map_err(|source| StoreError::Create {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `point.json` when absent (atomically: a reader never sees half of
/// it); when present, its bytes must be the point's.
fn ensure_point_file(point_dir: &Path, point: &Point) -> Result<(), StoreError> {
    let path = point_dir.join(POINT_FILE);
    let check = |bytes: Vec<u8>| {
        if bytes == point.canonical_bytes() {
            Ok(())
        } else {
            Err(StoreError::PointMismatch {
                path: path.clone(),
                id: point.id().to_string(),
            })
        }
    };
    match fs::read(&path) {
        Ok(bytes) => return check(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(StoreError::Read { path, source }),
    }
    match atomic::write_new(&path, point.canonical_bytes()) {
        Ok(()) => Ok(()),
        // Another run of the same point wrote it first: it must agree.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            check(fs::read(&path).map_err(|source| StoreError::Read {
                path: path.clone(),
                source,
            })?)
        }
        Err(source) => Err(StoreError::Write { path, source }),
    }
}

/// A run being written. Dropped without [`commit`](RunWriter::commit) or
/// [`fail`](RunWriter::fail), its temporary directory is removed: an
/// abandoned run leaves nothing behind.
#[derive(Debug)]
pub struct RunWriter {
    root: PathBuf,
    point_id: String,
    point_dir: PathBuf,
    run_id: String,
    dir: PathBuf,
    started: SystemTime,
    done: bool,
}

impl RunWriter {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn point_id(&self) -> &str {
        &self.point_id
    }

    /// The temporary directory: the caller writes `requests.jsonl`,
    /// `summary.json`, `environment.json` and `engine.log` here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// When the run started, as given to [`Store::begin_run`].
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Makes the run a result: checks that the four files exist and nothing
    /// else does, writes `provenance.json` over them and `point.json`, syncs
    /// everything to disk, moves the directory to
    /// `points/<id>/runs/<run-id>` and records it in the index. Returns the
    /// result's directory.
    ///
    /// A run that cannot be sealed (a file missing, a predicate for another
    /// run) is not thrown away: it is recorded as failed, with the reason,
    /// and the error says where it went.
    pub fn commit(self, predicate: RunPredicate) -> Result<PathBuf, StoreError> {
        self.commit_signed(predicate, None)
    }

    /// [`RunWriter::commit`], and with a `signer` the statement's DSSE
    /// envelope (`provenance.dsse.json`) is written beside it before the move.
    pub fn commit_signed(
        mut self,
        predicate: RunPredicate,
        signer: Option<&Signer>,
    ) -> Result<PathBuf, StoreError> {
        if let Err(error) = self.seal(predicate, signer) {
            let reason = format!("commit refused: {error}");
            return match self.fail_in_place(&reason) {
                // Moved to failed/ (indexed or not): say where it went.
                Ok(path) | Err(StoreError::IndexAfterStore { path, .. }) => {
                    Err(StoreError::CommitRefused {
                        path,
                        source: Box::new(error),
                    })
                }
                Err(_) => Err(error),
            };
        }
        let path = self.move_to(RUNS_DIR)?;
        self.record(&path)
    }

    /// Checks the run's files and writes its statement, all synced.
    fn seal(&self, predicate: RunPredicate, signer: Option<&Signer>) -> Result<(), StoreError> {
        for (key, expected, found) in [
            ("point_id", &self.point_id, &predicate.point_id),
            ("run_id", &self.run_id, &predicate.run_id),
        ] {
            if expected != found {
                return Err(StoreError::PredicateMismatch {
                    key,
                    expected: expected.clone(),
                    found: found.clone(),
                });
            }
        }
        for name in RUN_FILES {
            let path = self.dir.join(name);
            if !path.is_file() {
                return Err(StoreError::MissingFile { path });
            }
        }
        for entry in read_dir_sorted(&self.dir)? {
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !RUN_FILES.contains(&name) {
                return Err(StoreError::UnexpectedFile { path: entry });
            }
        }
        let statement = Statement::for_run(&self.dir, &self.point_dir, predicate)?;
        let statement_path = self.dir.join(STATEMENT_FILE);
        fs::write(&statement_path, statement.to_json()?).map_err(|source| StoreError::Write {
            path: statement_path,
            source,
        })?;
        for name in RUN_FILES.iter().chain([&STATEMENT_FILE]) {
            sync_file(&self.dir.join(name))?;
        }
        if let Some(signer) = signer {
            // Written (and synced) by the signer; the payload is the
            // statement's bytes just written.
            sign::sign_statement_file(&self.dir.join(STATEMENT_FILE), signer)?;
        }
        sync_dir(&self.dir)
    }

    /// Records the run as failed: writes `failure.json` (why, and when) and
    /// moves the directory, with whatever it holds, to
    /// `points/<id>/failed/<run-id>`. A failed run is never a result.
    pub fn fail(mut self, reason: &str) -> Result<PathBuf, StoreError> {
        self.fail_in_place(reason)
    }

    fn fail_in_place(&mut self, reason: &str) -> Result<PathBuf, StoreError> {
        let failure = Failure {
            format: FAILURE_FORMAT.to_string(),
            point_id: self.point_id.clone(),
            run_id: self.run_id.clone(),
            reason: reason.to_string(),
            started_at: clock::rfc3339(self.started),
            failed_at: clock::rfc3339(clock::now()),
        };
        let path = self.dir.join(FAILURE_FILE);
        fs::write(&path, failure.to_json()).map_err(|source| StoreError::Write {
            path: path.clone(),
            source,
        })?;
        sync_file(&path)?;
        sync_dir(&self.dir)?;
        let path = self.move_to(FAILED_DIR)?;
        self.record(&path)
    }

    /// Renames the temporary directory into `points/<id>/<kind>/<run-id>`.
    fn move_to(&mut self, kind: &str) -> Result<PathBuf, StoreError> {
        let parent = self.point_dir.join(kind);
        create_dir_all(&parent)?;
        let target = parent.join(&self.run_id);
        if target.exists() {
            return Err(StoreError::RunExists { path: target });
        }
        fs::rename(&self.dir, &target).map_err(|source| StoreError::Move {
            from: self.dir.clone(),
            to: target.clone(),
            source,
        })?;
        self.done = true;
        // The rename is durable once both directories are.
        sync_dir(&parent)?;
        sync_dir(&self.point_dir)?;
        if let Some(tmp) = self.dir.parent() {
            sync_dir(tmp)?;
        }
        Ok(target)
    }

    fn record(&self, path: &Path) -> Result<PathBuf, StoreError> {
        let indexed = Index::open(&self.root).and_then(|mut index| index.record_run(path));
        match indexed {
            Ok(()) => Ok(path.to_path_buf()),
            Err(source) => Err(StoreError::IndexAfterStore {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: an in-progress directory is never a result, and
            // `.tmp` is ignored by every reader if this fails.
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `failure.json`: why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// Always [`FAILURE_FORMAT`].
    pub format: String,
    pub point_id: String,
    pub run_id: String,
    pub reason: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub failed_at: String,
}

impl Failure {
    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        // A struct of strings always serializes.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads `failure.json`, refusing an unknown format by name.
    pub fn read(path: &Path) -> Result<Failure, StoreError> {
        let text = fs::read_to_string(path).map_err(|source| StoreError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(path, &text)
    }

    /// Parses `failure.json` text; `path` names it in errors.
    pub fn from_json(path: &Path, text: &str) -> Result<Failure, StoreError> {
        #[derive(Deserialize)]
        struct FormatProbe {
            format: Option<String>,
        }
        if let Ok(FormatProbe {
            format: Some(found),
        }) = serde_json::from_str(text)
            && found != FAILURE_FORMAT
        {
            return Err(StoreError::UnknownFailureFormat {
                path: path.to_path_buf(),
                found,
            });
        }
        let json_error = |key: String, source| StoreError::FailureJson {
            path: path.to_path_buf(),
            key,
            source,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let failure: Failure = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| json_error(e.path().to_string(), e.into_inner()))?;
        de.end().map_err(|e| json_error(String::new(), e))?;
        Ok(failure)
    }
}

/// Whether a run is a result or a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Completed,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "completed" => Some(RunStatus::Completed),
            "failed" => Some(RunStatus::Failed),
            _ => None,
        }
    }

    /// The point subdirectory runs of this status live in.
    pub fn dir_name(self) -> &'static str {
        match self {
            RunStatus::Completed => RUNS_DIR,
            RunStatus::Failed => FAILED_DIR,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run directory found in a results tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRun {
    /// The point directory (holding `point.json`).
    pub point_dir: PathBuf,
    /// The run directory.
    pub dir: PathBuf,
    /// The run directory's name.
    pub run_id: String,
    pub status: RunStatus,
}

/// Every run under `<root>/points`, completed and failed, sorted by point
/// then run id. In-progress runs (`.tmp`) are not runs.
pub fn stored_runs(root: &Path) -> Result<Vec<StoredRun>, StoreError> {
    let points = root.join(POINTS_DIR);
    if !points.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for point_dir in read_dir_sorted(&points)? {
        if point_dir.is_dir() {
            out.extend(runs_of_point(&point_dir)?);
        }
    }
    Ok(out)
}

/// The runs of one point directory, completed then failed, each by run id.
pub fn runs_of_point(point_dir: &Path) -> Result<Vec<StoredRun>, StoreError> {
    let mut out = Vec::new();
    for status in [RunStatus::Completed, RunStatus::Failed] {
        let dir = point_dir.join(status.dir_name());
        if !dir.is_dir() {
            continue;
        }
        for run_dir in read_dir_sorted(&dir)? {
            if !run_dir.is_dir() {
                continue;
            }
            let run_id = file_name(&run_dir);
            out.push(StoredRun {
                point_dir: point_dir.to_path_buf(),
                dir: run_dir,
                run_id,
                status,
            });
        }
    }
    Ok(out)
}

/// The entries of `dir`, sorted by path.
pub fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let read_error = |source| StoreError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = fs::read_dir(dir)
        .map_err(read_error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    entries.sort();
    Ok(entries)
}

/// The last component of `path`, lossily as text.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sync_file(path: &Path) -> Result<(), StoreError> {
    atomic::sync_file(path).map_err(|source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Makes a directory's entries durable (a rename into it, a new file).
fn sync_dir(path: &Path) -> Result<(), StoreError> {
    sync_file(path)
}

/// A new run id: `YYYYMMDDTHHMMSSZ-<8 hex>` — the UTC start second, then 8
/// hex digits of sha256 over the start in ns, the process id, the host name
/// and a per-process sequence number. Ids sort by start time; two runs
/// started in the same second differ in the suffix (the sequence number
/// keeps runs of one process apart even when given the same start).
pub fn new_run_id(started: SystemTime) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let started = clock::representable(started);
    let nanos = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(hostname().as_bytes());
    hasher.update(SEQUENCE.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let suffix = crate::spec::hex(&hasher.finalize()[..4]);
    format!("{}-{suffix}", run_id_stamp(started))
}

/// `20260921T141320Z` for 2026-09-21T14:13:20(.xxx)Z.
pub fn run_id_stamp(t: SystemTime) -> String {
    clock::rfc3339_seconds(t)
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

/// Whether `s` has the shape of a run id.
pub fn is_run_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 25
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid and writable for its whole length, which
    // is what is passed; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

#[cfg(test)]
mod tests;
