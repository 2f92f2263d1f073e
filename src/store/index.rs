//! The results index: `<root>/index.sqlite`, a SQLite table of points and
//! runs with each run's headline figures, for `results list` and `show`.
//!
//! It is derived: every row comes from the files of a run directory alone
//! (`point.json`, `provenance.json` or `failure.json`, `summary.json`), by
//! the one function `read_run_row`, whether the run is recorded as it is
//! committed or the whole index is rebuilt. So deleting the index and
//! rebuilding it gives the same answers, and a merged results tree (a union
//! of directories) needs only a rebuild. An index of another schema version
//! is rebuilt, never trusted; opening also adds runs the index does not know
//! yet and drops rows whose directory is gone.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::layout::{INDEX_FILE, POINT_FILE, STATEMENT_FILE, SUMMARY_FILE};
use super::{FAILURE_FILE, Failure, RunStatus, StoredRun, stored_runs};
use crate::metrics::Summary;
use crate::provenance::Statement;
use crate::spec::{Model, Point};

/// The schema this build writes; any other is rebuilt.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE points (
    id             TEXT PRIMARY KEY,
    hardware_class TEXT NOT NULL,
    gpus           INTEGER NOT NULL,
    engine_kind    TEXT NOT NULL,
    runtime        TEXT NOT NULL,
    model          TEXT NOT NULL,
    load           TEXT NOT NULL
);
CREATE TABLE runs (
    run_id             TEXT PRIMARY KEY,
    point_id           TEXT NOT NULL REFERENCES points(id),
    status             TEXT NOT NULL CHECK (status IN ('completed', 'failed')),
    started_at         TEXT NOT NULL,
    finished_at        TEXT NOT NULL,
    reason             TEXT,
    path               TEXT NOT NULL,
    completed          INTEGER,
    failed_requests    INTEGER,
    request_throughput REAL,
    output_throughput  REAL,
    median_ttft_ms     REAL,
    p99_ttft_ms        REAL,
    median_tpot_ms     REAL,
    median_itl_ms      REAL,
    median_e2el_ms     REAL
);
CREATE INDEX runs_by_point ON runs (point_id, run_id);
";

const RUN_COLUMNS: &str = "run_id, point_id, status, started_at, finished_at, reason, path, \
     completed, failed_requests, request_throughput, output_throughput, median_ttft_ms, \
     p99_ttft_ms, median_tpot_ms, median_itl_ms, median_e2el_ms";

const POINT_COLUMNS: &str = "id, hardware_class, gpus, engine_kind, runtime, model, load";

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Walk(Box<super::StoreError>),
    #[error("{}: cannot index this run: {message}", path.display())]
    Run { path: PathBuf, message: String },
    #[error("{}: cannot index this run: {error}", path.display())]
    Row { path: PathBuf, error: Box<RowError> },
    #[error("no run or point in {} matches `{key}`; `infermark results list` shows them", root.display())]
    NotFound { key: String, root: PathBuf },
    #[error("`{key}` matches {} {what}s ({}); give more of the id", matches.len(), matches.join(", "))]
    Ambiguous {
        key: String,
        what: &'static str,
        matches: Vec<String>,
    },
}

/// Why a run directory cannot be indexed. Its text is what a rebuild
/// reports the run skipped for, so each cause is part of the message.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("{}: {error}", path.display())]
    ReadPoint {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    BadPoint {
        path: PathBuf,
        error: crate::spec::StoredPointError,
    },
    #[error("{}: the point's id is {id}, not the directory's name", path.display())]
    PointId { path: PathBuf, id: String },
    /// Boxed: a store error can hold an index error, which holds this.
    #[error(transparent)]
    Failure(Box<super::StoreError>),
    #[error(transparent)]
    Statement(#[from] crate::provenance::ProvenanceError),
    #[error(transparent)]
    Summary(#[from] crate::metrics::MetricsError),
    #[error("{}: names point {found}, but the run is under point {expected}", file.display())]
    OtherPoint {
        file: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{}: names run {found}, but the directory is {expected}", file.display())]
    OtherRun {
        file: PathBuf,
        found: String,
        expected: String,
    },
}

/// A point as the index lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointRow {
    pub id: String,
    pub hardware_class: String,
    pub gpus: u32,
    pub engine_kind: String,
    pub runtime: String,
    /// `repo@commit`, `file@sha256:<hex>` or `none`.
    pub model: String,
    /// `c=8` or `r=2.5/s`.
    pub load: String,
}

/// A run as the index lists it; the figures are `None` for a failed run
/// (and where the summary has none).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub point_id: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: String,
    /// Why a failed run failed.
    pub reason: Option<String>,
    /// The run directory relative to the results root, `/`-separated.
    pub path: String,
    /// Completed measured requests.
    pub completed: Option<u64>,
    /// Failed measured requests.
    pub failed_requests: Option<u64>,
    pub request_throughput: Option<f64>,
    pub output_throughput: Option<f64>,
    pub median_ttft_ms: Option<f64>,
    pub p99_ttft_ms: Option<f64>,
    pub median_tpot_ms: Option<f64>,
    pub median_itl_ms: Option<f64>,
    pub median_e2el_ms: Option<f64>,
}

/// Which runs [`Index::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only runs of points whose id starts with this.
    pub point_prefix: Option<String>,
    pub status: Option<RunStatus>,
}

/// One listed run with its point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    pub point: PointRow,
    pub run: RunRow,
}

/// What [`Index::show`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Shown {
    Run { point: PointRow, run: Box<RunRow> },
    Point { point: PointRow, runs: Vec<RunRow> },
}

/// What a rebuild indexed, and the runs it could not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RebuildReport {
    pub points: usize,
    pub runs: usize,
    pub failed_runs: usize,
    /// Run directories left out, with why (audit them).
    pub skipped: Vec<(PathBuf, String)>,
}

impl RebuildReport {
    /// `indexed 3 runs (1 failed) of 2 points into results/index.sqlite`,
    /// after one line per skipped run.
    pub fn render(&self, root: &Path) -> String {
        let mut out = String::new();
        for (path, why) in &self.skipped {
            let _ = writeln!(out, "{}: skipped: {why}", path.display());
        }
        let _ = writeln!(
            out,
            "indexed {} runs ({} failed) of {} points into {}{}",
            self.runs,
            self.failed_runs,
            self.points,
            root.join(INDEX_FILE).display(),
            if self.skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} run directories skipped (run `infermark audit`)",
                    self.skipped.len()
                )
            }
        );
        out
    }
}

/// The open index of a results tree.
#[derive(Debug)]
pub struct Index {
    conn: Connection,
    root: PathBuf,
    path: PathBuf,
}

impl Index {
    /// Opens `<root>/index.sqlite`: rebuilt from the files when absent,
    /// unreadable or of another schema version; otherwise brought up to date
    /// with the run directories (new ones added, vanished ones dropped).
    pub fn open(root: &Path) -> Result<Index, IndexError> {
        let path = root.join(INDEX_FILE);
        if path.exists()
            && let Some(mut index) = Self::open_trusted(root, &path)
        {
            index.refresh()?;
            return Ok(index);
        }
        Ok(Self::rebuild(root)?.0)
    }

    /// The existing index, if it is a SQLite file of this schema version.
    fn open_trusted(root: &Path, path: &Path) -> Option<Index> {
        let conn = Connection::open(path).ok()?;
        let version: i64 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .ok()?;
        if version != SCHEMA_VERSION {
            return None;
        }
        conn.busy_timeout(Duration::from_secs(10)).ok()?;
        Some(Index {
            conn,
            root: root.to_path_buf(),
            path: path.to_path_buf(),
        })
    }

    /// Deletes the index and builds it again from the run directories
    /// alone. The new index is written beside the old and renamed over it,
    /// so a reader never sees a half-built one. Runs that cannot be read are
    /// left out and reported.
    pub fn rebuild(root: &Path) -> Result<(Index, RebuildReport), IndexError> {
        let path = root.join(INDEX_FILE);
        let building = root.join(format!("{INDEX_FILE}.rebuild-{}", std::process::id()));
        remove_if_present(&building)?;
        let sqlite = |source| IndexError::Sqlite {
            path: building.clone(),
            source,
        };
        let mut conn = Connection::open(&building).map_err(sqlite)?;
        let mut report = RebuildReport::default();
        {
            let tx = conn.transaction().map_err(sqlite)?;
            tx.execute_batch(SCHEMA).map_err(sqlite)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )
            .map_err(sqlite)?;
            let mut points: BTreeMap<PathBuf, Result<PointRow, RowError>> = BTreeMap::new();
            for run in stored_runs(root).map_err(|e| IndexError::Walk(Box::new(e)))? {
                let point = match points
                    .entry(run.point_dir.clone())
                    .or_insert_with(|| read_point(&run.point_dir))
                {
                    Ok(point) => point.clone(),
                    Err(why) => {
                        report.skipped.push((run.dir.clone(), why.to_string()));
                        continue;
                    }
                };
                match read_run_row(root, &run) {
                    Ok(row) => {
                        insert(&tx, &point, &row).map_err(sqlite)?;
                        report.runs += 1;
                        if row.status == RunStatus::Failed {
                            report.failed_runs += 1;
                        }
                    }
                    Err(why) => report.skipped.push((run.dir.clone(), why.to_string())),
                }
            }
            report.points = tx
                .query_row("SELECT count(*) FROM points", [], |r| r.get::<_, i64>(0))
                .map_err(sqlite)? as usize;
            tx.commit().map_err(sqlite)?;
        }
        drop(conn);
        // A journal left by a crashed writer of the old file must not be
        // applied to the new one.
        for suffix in ["-journal", "-wal", "-shm"] {
            remove_if_present(&root.join(format!("{INDEX_FILE}{suffix}")))?;
        }
        super::atomic::persist(&building, &path).map_err(|source| IndexError::Io {
            action: "replace",
            path: path.clone(),
            source,
        })?;
        let conn = Connection::open(&path).map_err(|source| IndexError::Sqlite {
            path: path.clone(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|source| IndexError::Sqlite {
                path: path.clone(),
                source,
            })?;
        let index = Index {
            conn,
            root: root.to_path_buf(),
            path,
        };
        Ok((index, report))
    }

    /// Adds the run directories the index lacks and drops rows whose
    /// directory is gone (a merged or pruned results tree). Unreadable new
    /// runs are left out, as a rebuild would.
    fn refresh(&mut self) -> Result<(), IndexError> {
        let on_disk = stored_runs(&self.root).map_err(|e| IndexError::Walk(Box::new(e)))?;
        let known: HashSet<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT run_id, path FROM runs")
                .map_err(|e| self.sqlite(e))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect::<Result<_, _>>())
                .map_err(|e| self.sqlite(e))?
        };
        let present: HashSet<(String, String)> = on_disk
            .iter()
            .map(|run| (run.run_id.clone(), relative(&self.root, &run.dir)))
            .collect();
        let tx = self
            .conn
            .transaction()
            .map_err(|source| IndexError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        for (run_id, path) in known.difference(&present) {
            tx.execute(
                "DELETE FROM runs WHERE run_id = ?1 AND path = ?2",
                params![run_id, path],
            )
            .map_err(|source| IndexError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        }
        for run in &on_disk {
            let key = (run.run_id.clone(), relative(&self.root, &run.dir));
            if known.contains(&key) {
                continue;
            }
            if let Ok(point) = read_point(&run.point_dir)
                && let Ok(row) = read_run_row(&self.root, run)
            {
                insert(&tx, &point, &row).map_err(|source| IndexError::Sqlite {
                    path: self.path.clone(),
                    source,
                })?;
            }
        }
        tx.execute(
            "DELETE FROM points WHERE id NOT IN (SELECT point_id FROM runs)",
            [],
        )
        .map_err(|source| IndexError::Sqlite {
            path: self.path.clone(),
            source,
        })?;
        tx.commit().map_err(|source| IndexError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Records one run directory (`points/<id>/runs/<run-id>` or
    /// `points/<id>/failed/<run-id>`), replacing any row for its id.
    pub fn record_run(&mut self, run_dir: &Path) -> Result<(), IndexError> {
        let run = stored_run_at(run_dir).ok_or_else(|| IndexError::Run {
            path: run_dir.to_path_buf(),
            message: "not a run directory: expected points/<point-id>/runs/<run-id> or \
                      points/<point-id>/failed/<run-id>"
                .to_string(),
        })?;
        let run_error = |error| IndexError::Row {
            path: run_dir.to_path_buf(),
            error: Box::new(error),
        };
        let point = read_point(&run.point_dir).map_err(run_error)?;
        let row = read_run_row(&self.root, &run).map_err(run_error)?;
        let tx = self
            .conn
            .transaction()
            .map_err(|source| IndexError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        insert(&tx, &point, &row)
            .and_then(|()| tx.commit())
            .map_err(|source| IndexError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    /// Runs matching `filter`, oldest first (run ids sort by start time).
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Listed>, IndexError> {
        let sql = format!(
            "SELECT {}, {RUN_COLUMNS} FROM runs JOIN points ON points.id = runs.point_id \
             WHERE (?1 IS NULL OR substr(point_id, 1, length(?1)) = ?1) \
               AND (?2 IS NULL OR status = ?2) \
             ORDER BY run_id, point_id",
            prefixed_point_columns()
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(
                params![
                    filter.point_prefix.as_deref(),
                    filter.status.map(RunStatus::as_str)
                ],
                |r| {
                    Ok(Listed {
                        point: point_from(r, 0)?,
                        run: run_from(r, 7)?,
                    })
                },
            )
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sqlite(e))?;
        Ok(rows)
    }

    /// A run by id (or a prefix of one), else a point by a prefix of its id
    /// with all its runs.
    pub fn show(&self, key: &str) -> Result<Shown, IndexError> {
        let not_found = || IndexError::NotFound {
            key: key.to_string(),
            root: self.root.clone(),
        };
        if key.is_empty() {
            return Err(not_found());
        }
        let runs = self.query_runs(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE substr(run_id, 1, length(?1)) = ?1 \
                 ORDER BY run_id, point_id"
            ),
            key,
        )?;
        match runs.len() {
            1 => {
                let run = runs.into_iter().next().ok_or_else(not_found)?;
                let point = self.point(&run.point_id)?.ok_or_else(not_found)?;
                return Ok(Shown::Run {
                    point,
                    run: Box::new(run),
                });
            }
            0 => {}
            _ => {
                return Err(IndexError::Ambiguous {
                    key: key.to_string(),
                    what: "run",
                    matches: runs.into_iter().map(|r| r.run_id).collect(),
                });
            }
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {POINT_COLUMNS} FROM points WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id"
            ))
            .map_err(|e| self.sqlite(e))?;
        let mut points: Vec<PointRow> = stmt
            .query_map([key], |r| point_from(r, 0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sqlite(e))?;
        match points.len() {
            0 => Err(not_found()),
            1 => {
                let point = points.remove(0);
                let runs = self.query_runs(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE point_id = ?1 ORDER BY run_id"),
                    &point.id,
                )?;
                Ok(Shown::Point { point, runs })
            }
            _ => Err(IndexError::Ambiguous {
                key: key.to_string(),
                what: "point",
                matches: points.into_iter().map(|p| p.id).collect(),
            }),
        }
    }

    fn point(&self, id: &str) -> Result<Option<PointRow>, IndexError> {
        self.conn
            .query_row(
                &format!("SELECT {POINT_COLUMNS} FROM points WHERE id = ?1"),
                [id],
                |r| point_from(r, 0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    fn query_runs(&self, sql: &str, arg: &str) -> Result<Vec<RunRow>, IndexError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.sqlite(e))?;
        stmt.query_map([arg], |r| run_from(r, 0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sqlite(e))
    }

    fn sqlite(&self, source: rusqlite::Error) -> IndexError {
        IndexError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn prefixed_point_columns() -> String {
    POINT_COLUMNS
        .split(", ")
        .map(|c| format!("points.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn remove_if_present(path: &Path) -> Result<(), IndexError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(IndexError::Io {
            action: "remove",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The [`StoredRun`] a run directory path describes, from its shape.
fn stored_run_at(run_dir: &Path) -> Option<StoredRun> {
    let kind_dir = run_dir.parent()?;
    let point_dir = kind_dir.parent()?;
    let status = match kind_dir.file_name()?.to_str()? {
        super::RUNS_DIR => RunStatus::Completed,
        super::FAILED_DIR => RunStatus::Failed,
        _ => return None,
    };
    Some(StoredRun {
        point_dir: point_dir.to_path_buf(),
        dir: run_dir.to_path_buf(),
        run_id: super::file_name(run_dir),
        status,
    })
}

/// `points/<id>/runs/<run>` from an absolute or root-relative path.
fn relative(root: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The point row of a point directory, from its `point.json`.
fn read_point(point_dir: &Path) -> Result<PointRow, RowError> {
    let path = point_dir.join(POINT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) => return Err(RowError::ReadPoint { path, error }),
    };
    let point = match Point::from_canonical(&bytes) {
        Ok(point) => point,
        Err(error) => return Err(RowError::BadPoint { path, error }),
    };
    let name = super::file_name(point_dir);
    if point.id() != name {
        return Err(RowError::PointId {
            path,
            id: point.id().to_string(),
        });
    }
    Ok(point_row(&point))
}

/// How the index describes a point.
pub fn point_row(point: &Point) -> PointRow {
    let p = &point.spec;
    PointRow {
        id: point.id().to_string(),
        hardware_class: p.hardware.class.clone(),
        gpus: p.hardware.gpus,
        engine_kind: p.engine.kind.to_string(),
        runtime: p.engine.runtime.to_string(),
        model: match &p.model {
            Model::Hub { repo, revision, .. } => format!("{repo}@{revision}"),
            Model::File { file, sha256, .. } => format!("{file}@sha256:{sha256}"),
            Model::None { .. } => "none".to_string(),
        },
        load: p.load.label(),
    }
}

/// The run row of a run directory, from its files alone. Shared by
/// [`Index::record_run`], [`Index::rebuild`] and the refresh on open, which
/// is what makes a rebuilt index answer as the incremental one did.
fn read_run_row(root: &Path, run: &StoredRun) -> Result<RunRow, RowError> {
    let point_id = super::file_name(&run.point_dir);
    let path = relative(root, &run.dir);
    match run.status {
        RunStatus::Failed => {
            let failure = Failure::read(&run.dir.join(FAILURE_FILE))
                .map_err(|e| RowError::Failure(Box::new(e)))?;
            check_ids(
                &run.dir.join(FAILURE_FILE),
                &failure.point_id,
                &failure.run_id,
                run,
                &point_id,
            )?;
            Ok(RunRow {
                run_id: run.run_id.clone(),
                point_id,
                status: RunStatus::Failed,
                started_at: failure.started_at,
                finished_at: failure.failed_at,
                reason: Some(failure.reason),
                path,
                completed: None,
                failed_requests: None,
                request_throughput: None,
                output_throughput: None,
                median_ttft_ms: None,
                p99_ttft_ms: None,
                median_tpot_ms: None,
                median_itl_ms: None,
                median_e2el_ms: None,
            })
        }
        RunStatus::Completed => {
            let statement_path = run.dir.join(STATEMENT_FILE);
            let statement = Statement::read(&statement_path)?;
            let p = statement.predicate;
            check_ids(&statement_path, &p.point_id, &p.run_id, run, &point_id)?;
            let summary = crate::metrics::read_summary(&run.dir.join(SUMMARY_FILE))?;
            Ok(completed_row(
                run,
                point_id,
                path,
                p.started_at,
                p.finished_at,
                &summary,
            ))
        }
    }
}

fn check_ids(
    file: &Path,
    point_id: &str,
    run_id: &str,
    run: &StoredRun,
    dir_point_id: &str,
) -> Result<(), RowError> {
    if point_id != dir_point_id {
        return Err(RowError::OtherPoint {
            file: file.to_path_buf(),
            found: point_id.to_string(),
            expected: dir_point_id.to_string(),
        });
    }
    if run_id != run.run_id {
        return Err(RowError::OtherRun {
            file: file.to_path_buf(),
            found: run_id.to_string(),
            expected: run.run_id.clone(),
        });
    }
    Ok(())
}

fn completed_row(
    run: &StoredRun,
    point_id: String,
    path: String,
    started_at: String,
    finished_at: String,
    s: &Summary,
) -> RunRow {
    RunRow {
        run_id: run.run_id.clone(),
        point_id,
        status: RunStatus::Completed,
        started_at,
        finished_at,
        reason: None,
        path,
        completed: Some(s.counts.completed),
        failed_requests: Some(s.counts.failed),
        request_throughput: s.throughput.requests_per_s,
        output_throughput: s.throughput.output_tokens_per_s,
        median_ttft_ms: s.latency.ttft.p50_ms,
        p99_ttft_ms: s.latency.ttft.p99_ms,
        median_tpot_ms: s.latency.tpot.p50_ms,
        median_itl_ms: s.latency.itl.p50_ms,
        median_e2el_ms: s.latency.e2el.p50_ms,
    }
}

fn insert(conn: &Connection, point: &PointRow, run: &RunRow) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO points ({POINT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        params![
            point.id,
            point.hardware_class,
            point.gpus,
            point.engine_kind,
            point.runtime,
            point.model,
            point.load
        ],
    )?;
    let count = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO runs ({RUN_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
        ),
        params![
            run.run_id,
            run.point_id,
            run.status.as_str(),
            run.started_at,
            run.finished_at,
            run.reason,
            run.path,
            count(run.completed),
            count(run.failed_requests),
            run.request_throughput,
            run.output_throughput,
            run.median_ttft_ms,
            run.p99_ttft_ms,
            run.median_tpot_ms,
            run.median_itl_ms,
            run.median_e2el_ms
        ],
    )?;
    Ok(())
}

fn point_from(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<PointRow> {
    Ok(PointRow {
        id: r.get(at)?,
        hardware_class: r.get(at + 1)?,
        gpus: r.get(at + 2)?,
        engine_kind: r.get(at + 3)?,
        runtime: r.get(at + 4)?,
        model: r.get(at + 5)?,
        load: r.get(at + 6)?,
    })
}

fn run_from(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RunRow> {
    let status: String = r.get(at + 2)?;
    let status = RunStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            at + 2,
            rusqlite::types::Type::Text,
            format!("unknown run status `{status}`").into(),
        )
    })?;
    let count = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
    };
    Ok(RunRow {
        run_id: r.get(at)?,
        point_id: r.get(at + 1)?,
        status,
        started_at: r.get(at + 3)?,
        finished_at: r.get(at + 4)?,
        reason: r.get(at + 5)?,
        path: r.get(at + 6)?,
        completed: count(at + 7)?,
        failed_requests: count(at + 8)?,
        request_throughput: r.get(at + 9)?,
        output_throughput: r.get(at + 10)?,
        median_ttft_ms: r.get(at + 11)?,
        p99_ttft_ms: r.get(at + 12)?,
        median_tpot_ms: r.get(at + 13)?,
        median_itl_ms: r.get(at + 14)?,
        median_e2el_ms: r.get(at + 15)?,
    })
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// `results list`: one row per run, aligned columns, oldest first.
pub fn render_list(rows: &[Listed]) -> String {
    if rows.is_empty() {
        return "no runs\n".to_string();
    }
    let header = [
        "RUN",
        "STATUS",
        "POINT",
        "HARDWARE",
        "ENGINE",
        "LOAD",
        "REQ/S",
        "OUT TOK/S",
        "TTFT P50 MS",
        "TPOT P50 MS",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|Listed { point, run }| {
            vec![
                run.run_id.clone(),
                run.status.to_string(),
                point.id.chars().take(12).collect(),
                point.hardware_class.clone(),
                format!("{}/{}", point.engine_kind, point.runtime),
                point.load.clone(),
                num(run.request_throughput, 2),
                num(run.output_throughput, 1),
                num(run.median_ttft_ms, 2),
                num(run.median_tpot_ms, 2),
            ]
        })
        .collect();
    table(&header, &body)
}

fn table(header: &[&str], body: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in body {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `results show`: a run's or a point's details, one `key  value` per line.
pub fn render_show(shown: &Shown) -> String {
    let mut out = String::new();
    let mut kv = |k: &str, v: &str| {
        let _ = writeln!(out, "{k:<11}{v}");
    };
    match shown {
        Shown::Run { point, run } => {
            kv("run", &run.run_id);
            kv("status", run.status.as_str());
            kv("path", &run.path);
            point_lines(&mut kv, point);
            kv("started", &run.started_at);
            kv("finished", &run.finished_at);
            if let Some(reason) = &run.reason {
                kv("reason", reason);
            }
            if run.status == RunStatus::Completed {
                kv(
                    "requests",
                    &format!(
                        "{} completed, {} failed",
                        run.completed.unwrap_or(0),
                        run.failed_requests.unwrap_or(0)
                    ),
                );
                kv(
                    "throughput",
                    &format!(
                        "{} req/s, {} output tok/s",
                        num(run.request_throughput, 2),
                        num(run.output_throughput, 1)
                    ),
                );
                kv(
                    "ttft",
                    &format!(
                        "median {} ms, p99 {} ms",
                        num(run.median_ttft_ms, 2),
                        num(run.p99_ttft_ms, 2)
                    ),
                );
                kv("tpot", &format!("median {} ms", num(run.median_tpot_ms, 2)));
                kv("itl", &format!("median {} ms", num(run.median_itl_ms, 2)));
                kv("e2el", &format!("median {} ms", num(run.median_e2el_ms, 2)));
            }
        }
        Shown::Point { point, runs } => {
            point_lines(&mut kv, point);
            let completed = runs
                .iter()
                .filter(|r| r.status == RunStatus::Completed)
                .count();
            kv(
                "runs",
                &format!("{completed} completed, {} failed", runs.len() - completed),
            );
            let listed: Vec<Listed> = runs
                .iter()
                .map(|run| Listed {
                    point: point.clone(),
                    run: run.clone(),
                })
                .collect();
            if !listed.is_empty() {
                out.push('\n');
                out.push_str(&render_list(&listed));
            }
        }
    }
    out
}

fn point_lines(kv: &mut impl FnMut(&str, &str), point: &PointRow) {
    kv("point", &point.id);
    kv(
        "hardware",
        &format!("{} ({} GPUs)", point.hardware_class, point.gpus),
    );
    kv(
        "engine",
        &format!("{} ({})", point.engine_kind, point.runtime),
    );
    kv("model", &point.model);
    kv("load", &point.load);
}

#[cfg(test)]
mod tests;
