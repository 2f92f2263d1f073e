//! `infermark audit`: checks stored runs from their files alone.
//!
//! For each completed run: the provenance statement parses and is of a known
//! type; every file the statement lists hashes to its recorded digest and
//! every file a run holds is listed (and nothing else is there); the point id
//! recomputes from `point.json` and matches the directory and the statement;
//! the statement's pins are the point's; `environment.json` shows the pinned
//! executable, model file and image actually ran, on the point's hardware
//! class (or on purpose elsewhere); and `summary.json` recomputes, byte for
//! byte, from `requests.jsonl`. Failed runs are counted, not audited as
//! results, but their `failure.json` must parse.
//!
//! Every finding is a [`Problem`] naming the file it is in; the audit goes
//! on after one, so a single pass reports everything. A pin a run took from
//! its machine's local lock overlay is not a problem, but no commit records
//! it: each is listed as a note, one line per pin.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::problem::Problem;
use super::signatures::{self, SignatureCounts};
use crate::digest::sha256_file;
use crate::lock::local::LocalPin;
use crate::metrics::{self, MetricsError, Summary, SummaryContext};
use crate::probe::{ENVIRONMENT_FORMAT, Environment, ProbeError};
use crate::provenance::sign::{SignatureStatus, TrustedKey};
use crate::provenance::{Pins, Statement};
use crate::spec::reference::Sha256;
use crate::spec::{EngineKind, Model, Point, Runtime};
use crate::store::layout::{
    ENVIRONMENT_FILE, FAILED_DIR, FAILURE_FILE, INDEX_FILE, NIGHTS_DIR, POINT_FILE, POINTS_DIR,
    REQUESTS_FILE, RUN_DIR_FILES, RUN_ENVELOPE_FILE, RUN_FILES, RUNS_DIR, STATEMENT_FILE,
    SUMMARY_FILE, TMP_DIR, VERDICTS_DIR,
};
use crate::store::{self, Failure, RunStatus, StoreError, StoredRun};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{}: no such directory", path.display())]
    NotFound { path: PathBuf },
    #[error(
        "{}: not a results directory, a point directory or a run directory \
         (expected `points/` inside, a `point.json`, or a `provenance.json` or `failure.json` \
         in points/<point-id>/runs/<run-id> or points/<point-id>/failed/<run-id>)",
        path.display()
    )]
    NotResults { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an audit looked at and found.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditReport {
    /// Completed runs audited.
    pub runs: usize,
    /// Failed runs found (not results; only their `failure.json` is read).
    pub failed_runs: usize,
    /// Bytes of the files hashed.
    pub bytes: u64,
    pub elapsed: Duration,
    pub problems: Vec<Problem>,
    /// Not problems: one line per pin a run took from its machine's local
    /// lock overlay (`environment.json`'s `local_pins`).
    pub notes: Vec<Problem>,
    /// The runs' signature statuses (see `audit_with_trust`).
    pub signatures: SignatureCounts,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line per problem, `<file>: <message>`, one per note,
    /// `<file>: note: <message>`, then the summary line
    /// `audited N runs (M failed runs skipped), X MB in Y s (Z MB/s): clean`
    /// (or `: K problems`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            let _ = writeln!(out, "{}: {}", p.file.display(), p.message);
        }
        for n in &self.notes {
            let _ = writeln!(out, "{}: note: {}", n.file.display(), n.message);
        }
        let mb = self.bytes as f64 / 1e6;
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 { mb / secs } else { 0.0 };
        let verdict = match self.problems.len() {
            0 => "clean".to_string(),
            1 => "1 problem".to_string(),
            k => format!("{k} problems"),
        };
        if let Some(line) = self.signatures.render() {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "audited {} ({} skipped), {mb:.1} MB in {secs:.2} s ({rate:.1} MB/s): {verdict}",
            plural(self.runs, "run"),
            plural(self.failed_runs, "failed run"),
        );
        out
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Audits `path`: a results root (with `points/`), a point directory (with
/// `point.json`) or a single run directory, whichever it is.
pub fn audit(path: &Path) -> Result<AuditReport, AuditError> {
    audit_with_trust(path, None)
}

/// [`audit`], and with `trust` every completed run must be signed by one of
/// those keys; without, only a signature envelope that is present is
/// checked (see [`signatures`]).
pub fn audit_with_trust(
    path: &Path,
    trust: Option<&[TrustedKey]>,
) -> Result<AuditReport, AuditError> {
    let started = Instant::now();
    if !path.is_dir() {
        return Err(AuditError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let mut problems = Vec::new();
    let mut points: Vec<(PathBuf, Option<Point>)> = Vec::new();
    let mut runs: Vec<StoredRun> = Vec::new();
    if let Some(run) = as_run_dir(path) {
        let (point, mut found) = check_point(&run.point_dir, false);
        problems.append(&mut found);
        points.push((run.point_dir.clone(), point));
        runs.push(run);
    } else if path.join(POINT_FILE).exists() {
        let (point, mut found) = check_point(path, true);
        problems.append(&mut found);
        points.push((path.to_path_buf(), point));
        runs = store::runs_of_point(path)?;
    } else if path.join(POINTS_DIR).is_dir() {
        for entry in store::read_dir_sorted(&path.join(POINTS_DIR))? {
            if !entry.is_dir() {
                problems.push(Problem {
                    file: entry,
                    message: "not a point directory: `points/` holds only directories named \
                              by point id"
                        .to_string(),
                });
                continue;
            }
            let (point, mut found) = check_point(&entry, true);
            problems.append(&mut found);
            runs.extend(store::runs_of_point(&entry)?);
            points.push((entry, point));
        }
    } else if path.join(INDEX_FILE).is_file()
        || path.join(TMP_DIR).is_dir()
        || path.join(NIGHTS_DIR).is_dir()
    {
        // A results tree no run has finished in yet (night records, if any, are not runs).
    } else {
        return Err(AuditError::NotResults {
            path: path.to_path_buf(),
        });
    }

    let outcomes = audit_runs(&runs, &points, trust);
    let mut report = AuditReport {
        runs: 0,
        failed_runs: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        problems,
        notes: Vec::new(),
        signatures: SignatureCounts {
            checked: trust.is_some(),
            ..SignatureCounts::default()
        },
    };
    for (run, outcome) in runs.iter().zip(outcomes) {
        match run.status {
            RunStatus::Completed => report.runs += 1,
            RunStatus::Failed => report.failed_runs += 1,
        }
        report.bytes += outcome.bytes;
        report.problems.extend(outcome.problems);
        report.notes.extend(outcome.notes);
        if let Some(status) = &outcome.signature {
            report.signatures.add(status);
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The run a directory is, when it has a run's shape:
/// `.../<point-id>/{runs,failed}/<run-id>/`.
fn as_run_dir(path: &Path) -> Option<StoredRun> {
    let looks_like_run = path.join(STATEMENT_FILE).exists() || path.join(FAILURE_FILE).exists();
    let kind = path.parent()?;
    let status = match kind.file_name()?.to_str()? {
        RUNS_DIR => RunStatus::Completed,
        FAILED_DIR => RunStatus::Failed,
        _ => return None,
    };
    if !looks_like_run && !kind.parent()?.join(POINT_FILE).exists() {
        return None;
    }
    Some(StoredRun {
        point_dir: kind.parent()?.to_path_buf(),
        dir: path.to_path_buf(),
        run_id: store::file_name(path),
        status,
    })
}

/// Checks a point directory's `point.json` (and, when `whole`, that the
/// directory holds nothing else). Returns the point when it parses and its
/// id is the directory's name: only then are runs checked against it.
fn check_point(point_dir: &Path, whole: bool) -> (Option<Point>, Vec<Problem>) {
    let mut problems = Vec::new();
    let path = point_dir.join(POINT_FILE);
    if whole && let Ok(entries) = store::read_dir_sorted(point_dir) {
        for entry in entries {
            let name = store::file_name(&entry);
            let expected = name == POINT_FILE
                || ((name == RUNS_DIR || name == FAILED_DIR || name == VERDICTS_DIR)
                    && entry.is_dir());
            if !expected {
                problems.push(Problem {
                    file: entry,
                    message: format!(
                        "not part of a point directory (only {POINT_FILE}, {RUNS_DIR}/, \
                         {FAILED_DIR}/ and {VERDICTS_DIR}/)"
                    ),
                });
            }
        }
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            problems.push(Problem {
                file: path,
                message: format!("cannot read: {e}"),
            });
            return (None, problems);
        }
    };
    let point = match Point::from_canonical(&bytes) {
        Ok(p) => p,
        Err(e) => {
            problems.push(Problem {
                file: path,
                message: format!("{e}; the point's id cannot be recomputed"),
            });
            return (None, problems);
        }
    };
    let name = store::file_name(point_dir);
    if point.id() != name {
        problems.push(Problem {
            file: path,
            message: format!(
                "the point's id recomputes to {}, but its directory is named {name}: \
                 point.json was changed or moved",
                point.id()
            ),
        });
        return (None, problems);
    }
    (Some(point), problems)
}

/// What auditing one run found.
#[derive(Debug, Default)]
struct RunOutcome {
    bytes: u64,
    notes: Vec<Problem>,
    problems: Vec<Problem>,
    /// Completed runs only.
    signature: Option<SignatureStatus>,
}

/// Audits `runs` on every core, returning outcomes in `runs`' order so the
/// report does not depend on scheduling.
fn audit_runs(
    runs: &[StoredRun],
    points: &[(PathBuf, Option<Point>)],
    trust: Option<&[TrustedKey]>,
) -> Vec<RunOutcome> {
    let point_of = |run: &StoredRun| {
        points
            .iter()
            .find(|(dir, _)| *dir == run.point_dir)
            .and_then(|(_, p)| p.as_ref())
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(runs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, RunOutcome)>> = Mutex::new(Vec::with_capacity(runs.len()));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(run) = runs.get(i) else { break };
                    let outcome = match run.status {
                        RunStatus::Completed => audit_run(run, point_of(run), trust),
                        RunStatus::Failed => audit_failed_run(run),
                    };
                    mine.push((i, outcome));
                }
                // A poisoned lock means another worker panicked; its panic
                // is re-raised by the scope, so these results do not matter.
                if let Ok(mut all) = results.lock() {
                    all.extend(mine);
                }
            });
        }
    });
    let mut all = results.into_inner().unwrap_or_default();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, o)| o).collect()
}

/// A failed run is not a result: only its `failure.json` must parse and
/// name this run.
fn audit_failed_run(run: &StoredRun) -> RunOutcome {
    let mut out = RunOutcome::default();
    let path = run.dir.join(FAILURE_FILE);
    match Failure::read(&path) {
        Ok(f) => {
            let point_id = store::file_name(&run.point_dir);
            if f.point_id != point_id {
                out.problem(
                    &path,
                    format!(
                        "`point_id` is {}, but the run is under point {point_id}",
                        f.point_id
                    ),
                );
            }
            if f.run_id != run.run_id {
                out.problem(
                    &path,
                    format!(
                        "`run_id` is {}, but the run directory is {}",
                        f.run_id, run.run_id
                    ),
                );
            }
        }
        Err(e) => out.problem(&path, store_error_detail(&e)),
    }
    out
}

impl RunOutcome {
    fn problem(&mut self, file: &Path, message: String) {
        self.problems.push(Problem {
            file: file.to_path_buf(),
            message,
        });
    }
}

/// A store error's message without the path the report already names.
fn store_error_detail(e: &StoreError) -> String {
    match e {
        StoreError::Read { source, .. } => format!("cannot read: {source}"),
        StoreError::UnknownFailureFormat { found, .. } => format!(
            "unknown failure record format `{found}`: this infermark reads `{}`",
            store::FAILURE_FORMAT
        ),
        StoreError::FailureJson { key, source, .. } => {
            if key.is_empty() || key == "." {
                format!("not a failure record: {source}")
            } else {
                format!("not a failure record: `{key}`: {source}")
            }
        }
        other => other.to_string(),
    }
}

fn audit_run(run: &StoredRun, point: Option<&Point>, trust: Option<&[TrustedKey]>) -> RunOutcome {
    let mut out = RunOutcome::default();
    let dir = &run.dir;
    if !store::is_run_id(&run.run_id) {
        out.problem(
            dir,
            "the directory's name is not a run id (YYYYMMDDTHHMMSSZ-<8 hex>)".to_string(),
        );
    }
    for name in RUN_DIR_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            out.problem(
                &path,
                format!("missing: a run holds {}", RUN_DIR_FILES.join(", ")),
            );
        }
    }
    match store::read_dir_sorted(dir) {
        Ok(entries) => {
            for entry in entries {
                let name = store::file_name(&entry);
                // The envelope vouches for the statement, not the reverse.
                if !RUN_DIR_FILES.contains(&name.as_str()) && name != RUN_ENVELOPE_FILE {
                    out.problem(
                        &entry,
                        format!(
                            "not listed in {STATEMENT_FILE}: a run directory holds only {}, \
                             and nothing the statement does not vouch for",
                            RUN_DIR_FILES.join(", ")
                        ),
                    );
                }
            }
        }
        Err(e) => out.problem(dir, e.to_string()),
    }

    let statement_path = dir.join(STATEMENT_FILE);
    let statement = if statement_path.is_file() {
        match Statement::read(&statement_path) {
            Ok(s) => Some(s),
            Err(e) => {
                out.problem(&statement_path, e.detail());
                None
            }
        }
    } else {
        None
    };
    if let Some(s) = &statement {
        check_subjects(run, s, &statement_path, &mut out);
        if let Some(point) = point {
            check_predicate(run, point, s, &statement_path, &mut out);
        }
    }
    let (status, problem) = signatures::check_run(dir, trust);
    out.problems.extend(problem);
    out.signature = Some(status);
    if let Some(point) = point {
        check_environment(run, point, statement.as_ref(), &statement_path, &mut out);
        check_summary(run, point, &mut out);
    }
    out
}

/// Every subject is a file a run holds, listed once, in name order, and
/// hashes to its digest; every such file is a subject.
fn check_subjects(run: &StoredRun, s: &Statement, statement_path: &Path, out: &mut RunOutcome) {
    let expected: BTreeSet<&str> = RUN_FILES.iter().copied().chain([POINT_FILE]).collect();
    let mut seen = BTreeSet::new();
    for subject in &s.subject {
        if !expected.contains(subject.name.as_str()) {
            out.problem(
                statement_path,
                format!(
                    "`subject` lists `{}`, which is not a file a run's statement covers",
                    subject.name
                ),
            );
        } else if !seen.insert(subject.name.as_str()) {
            out.problem(
                statement_path,
                format!("`subject` lists `{}` twice", subject.name),
            );
        }
    }
    for name in &expected {
        if !seen.contains(name) {
            out.problem(
                statement_path,
                format!("`subject` does not list `{name}`: the file is not vouched for"),
            );
        }
    }
    if !s.subject.is_sorted_by(|a, b| a.name <= b.name) {
        out.problem(
            statement_path,
            "`subject` is not sorted by name".to_string(),
        );
    }
    for name in &seen {
        let Some(recorded) = s.digest_of(name) else {
            continue;
        };
        let path = if *name == POINT_FILE {
            run.point_dir.join(POINT_FILE)
        } else {
            run.dir.join(name)
        };
        match sha256_file(&path) {
            Ok((actual, len)) => {
                out.bytes += len;
                if !actual.eq_ignore_ascii_case(recorded) {
                    out.problem(
                        &path,
                        format!(
                            "sha256 is {actual}, but the run's {STATEMENT_FILE} records \
                             {recorded}: the file (or the statement) was changed after the run"
                        ),
                    );
                }
            }
            // A missing run file was reported already; a missing point.json
            // by the point check.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => out.problem(&path, format!("cannot read: {e}")),
        }
    }
    if let Ok(meta) = std::fs::metadata(statement_path) {
        out.bytes += meta.len();
    }
}

/// The predicate names this point and run, restates the point's pins, and
/// its start time is the one in the run id.
fn check_predicate(
    run: &StoredRun,
    point: &Point,
    s: &Statement,
    statement_path: &Path,
    out: &mut RunOutcome,
) {
    let p = &s.predicate;
    if p.point_id != point.id() {
        out.problem(
            statement_path,
            format!(
                "`predicate.point_id` is {}, but point.json's id is {}",
                p.point_id,
                point.id()
            ),
        );
    }
    if p.run_id != run.run_id {
        out.problem(
            statement_path,
            format!(
                "`predicate.run_id` is {}, but the run directory is {}",
                p.run_id, run.run_id
            ),
        );
    }
    if let Some((key, ours, theirs)) = Pins::of(point).first_difference(&p.pins) {
        out.problem(
            statement_path,
            format!("`predicate.pins.{key}` is {theirs}, but point.json pins {ours}"),
        );
    }
    let time = |key: &str, value: &str, out: &mut RunOutcome| -> Option<SystemTime> {
        match crate::clock::parse_rfc3339(value) {
            Ok(t) => Some(t),
            Err(e) => {
                out.problem(
                    statement_path,
                    format!("`predicate.{key}` `{value}` is not an RFC 3339 UTC time: {e}"),
                );
                None
            }
        }
    };
    let started = time("started_at", &p.started_at, out);
    let finished = time("finished_at", &p.finished_at, out);
    if let Some(started) = started {
        let stamp = store::run_id_stamp(started);
        if store::is_run_id(&run.run_id) && !run.run_id.starts_with(&stamp) {
            out.problem(
                statement_path,
                format!(
                    "`predicate.started_at` {} is not the start second in the run id {}",
                    p.started_at, run.run_id
                ),
            );
        }
        if let Some(finished) = finished
            && finished < started
        {
            out.problem(
                statement_path,
                format!(
                    "`predicate.finished_at` {} is before `started_at` {}",
                    p.finished_at, p.started_at
                ),
            );
        }
    }
}

/// The environment the run observed shows the point's pins: the hardware
/// class, the executable's and model file's sha256 and the image digest.
fn check_environment(
    run: &StoredRun,
    point: &Point,
    statement: Option<&Statement>,
    statement_path: &Path,
    out: &mut RunOutcome,
) {
    let path = run.dir.join(ENVIRONMENT_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        // Missing or unreadable: reported by the file checks.
        return;
    };
    let env = match Environment::from_json(&text) {
        Ok(env) => env,
        Err(e) => {
            out.problem(&path, environment_error_detail(&e));
            return;
        }
    };
    note_local_pins(&env.local_pins, &path, out);
    let spec = &point.spec;
    let at = |keys: &[&str]| keys.iter().try_fold(&env.engine, |v, k| v.get(k));

    // Hardware.
    let class = &spec.hardware.class;
    let fit = &env.hardware;
    if fit.point_class != *class {
        out.problem(
            &path,
            format!(
                "`hardware.point_class` is {}, but the point's class is {class}",
                fit.point_class
            ),
        );
    }
    let overridden = fit.overridden;
    match &fit.detected_class {
        Some(d) if d == class || overridden => {}
        Some(d) => out.problem(
            &path,
            format!(
                "`hardware.detected_class` is {d}, not the point's class {class}, and \
                 `hardware.override` is false: the run was made on other hardware"
            ),
        ),
        None => out.problem(&path, "`hardware.detected_class` is missing".to_string()),
    }
    if let Some(s) = statement
        && s.predicate.hardware_override != overridden
    {
        out.problem(
            statement_path,
            format!(
                "`predicate.hardware_override` is {}, but environment.json's \
                 `hardware.override` is {overridden}",
                s.predicate.hardware_override
            ),
        );
    }

    // The executable.
    if let Some(pin) = &spec.engine.command_sha256 {
        check_digest(
            out,
            &path,
            "engine.executable.sha256",
            at(&["executable"]),
            "sha256",
            pin,
            "`engine.command-sha256`",
        );
    }

    // The model file.
    let model_file = at(&["model_file"]).filter(|v| !v.is_null());
    match (&spec.model, model_file) {
        (Model::File { sha256, .. }, Some(_)) => check_digest(
            out,
            &path,
            "engine.model_file.sha256",
            model_file,
            "sha256",
            sha256,
            "`model.sha256`",
        ),
        (_, Some(_)) => out.problem(
            &path,
            "`engine.model_file` is set, but the point's model is not a file".to_string(),
        ),
        (Model::File { .. }, None)
            if spec.engine.runtime == Runtime::Process && spec.engine.kind != EngineKind::Sim =>
        {
            out.problem(
                &path,
                "`engine.model_file` is null, but the point pins a model file for a process \
                 engine: which file was loaded is not recorded"
                    .to_string(),
            )
        }
        _ => {}
    }

    // The image.
    if spec.engine.runtime.is_container()
        && let Some(digest) = spec.engine.image.as_ref().and_then(|i| i.digest.as_ref())
    {
        check_digest(
            out,
            &path,
            "engine.image.digest",
            at(&["image"]),
            "digest",
            digest,
            "`engine.image`",
        );
    }
}

/// A note per pin the run took from its machine's local lock overlay.
fn note_local_pins(pins: &[LocalPin], path: &Path, out: &mut RunOutcome) {
    for p in pins {
        out.notes.push(Problem {
            file: path.to_path_buf(),
            message: format!(
                "pinned by this machine's local lock overlay, not a committed lockfile: \
                 {} {} → {} ({})",
                p.lockfile, p.reference, p.pin, p.resolved_from,
            ),
        });
    }
}

/// An environment error's message without the file the report names; an
/// unknown or missing format is worded as the audit always worded it.
fn environment_error_detail(e: &ProbeError) -> String {
    match e {
        ProbeError::EnvironmentJson(e) => format!("not JSON: {e}"),
        ProbeError::UnknownFormat { found } => format!(
            "unknown environment format `{found}`: this infermark reads `{ENVIRONMENT_FORMAT}`"
        ),
        ProbeError::MissingFormat => {
            format!("`format` is missing: expected `{ENVIRONMENT_FORMAT}`")
        }
        ProbeError::Environment { message } => message.clone(),
        other => other.to_string(),
    }
}

/// `object[field]` must be a sha256 equal to `pin`.
fn check_digest(
    out: &mut RunOutcome,
    path: &Path,
    key: &str,
    object: Option<&Value>,
    field: &str,
    pin: &Sha256,
    pinned_as: &str,
) {
    let parent = key.rsplit_once('.').map_or(key, |(p, _)| p);
    let value = match object.filter(|v| !v.is_null()) {
        None => {
            out.problem(
                path,
                format!("`{parent}` is null, but the point pins {pinned_as} = {pin}"),
            );
            return;
        }
        Some(o) => o.get(field).and_then(Value::as_str),
    };
    match value.map(Sha256::parse) {
        Some(Ok(found)) if found == *pin => {}
        Some(Ok(found)) => out.problem(
            path,
            format!("`{key}` is {found}, but the point pins {pinned_as} = {pin}"),
        ),
        Some(Err(e)) => out.problem(path, format!("`{key}`: {e}")),
        None => out.problem(path, format!("`{key}` is missing")),
    }
}

/// `summary.json` is exactly what infermark computes from `requests.jsonl`.
fn check_summary(run: &StoredRun, point: &Point, out: &mut RunOutcome) {
    let summary_path = run.dir.join(SUMMARY_FILE);
    let requests_path = run.dir.join(REQUESTS_FILE);
    let Ok(text) = std::fs::read_to_string(&summary_path) else {
        return;
    };
    if let Err(e) = Summary::from_json(&text) {
        out.problem(&summary_path, e.to_string());
        return;
    }
    if !requests_path.is_file() {
        return;
    }
    let records = match metrics::read_records(&requests_path) {
        Ok(r) => r,
        Err(e) => {
            out.problem(&requests_path, metrics_error_detail(&e));
            return;
        }
    };
    let ctx = SummaryContext {
        point_id: point.id().to_string(),
        gpus: point.spec.hardware.gpus,
        slo: crate::run::slo(&point.spec),
    };
    let recomputed = match metrics::summarize(&records, &ctx).to_json() {
        Ok(t) => t,
        Err(e) => {
            out.problem(&summary_path, format!("cannot recompute: {e}"));
            return;
        }
    };
    if recomputed == text {
        return;
    }
    let message = match (
        serde_json::from_str::<Value>(&text),
        serde_json::from_str::<Value>(&recomputed),
    ) {
        (Ok(stored), Ok(fresh)) => match first_difference(&stored, &fresh, &mut String::new()) {
            Some((key, a, b)) => format!(
                "does not recompute from requests.jsonl: `{key}` is {a} in the file, \
                 {b} recomputed"
            ),
            None => "does not recompute from requests.jsonl byte for byte: the values agree \
                     but the spelling differs (spacing, key order or number form)"
                .to_string(),
        },
        _ => "does not recompute from requests.jsonl".to_string(),
    };
    out.problem(&summary_path, message);
}

/// A metrics error's message without the path the report already names.
fn metrics_error_detail(e: &MetricsError) -> String {
    match e {
        MetricsError::Read { source, .. } => format!("cannot read: {source}"),
        MetricsError::RecordLine {
            line, key, source, ..
        } => {
            if key.is_empty() || key == "." {
                format!("line {line}: {source}")
            } else {
                format!("line {line}: `{key}`: {source}")
            }
        }
        other => other.to_string(),
    }
}

/// The first key path (keys in map order, depth first) at which two
/// JSON values differ, with both values.
fn first_difference(a: &Value, b: &Value, path: &mut String) -> Option<(String, String, String)> {
    let here = |path: &str| {
        if path.is_empty() {
            "(the whole document)".to_string()
        } else {
            path.to_string()
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let found = match y.get(k) {
                    Some(vb) => first_difference(va, vb, path),
                    None => Some((path.clone(), short(va), "absent".to_string())),
                };
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            y.iter().find(|(k, _)| !x.contains_key(*k)).map(|(k, vb)| {
                let key = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                (key, "absent".to_string(), short(vb))
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = first_difference(va, vb, path);
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            (x.len() != y.len()).then(|| {
                (
                    here(path),
                    format!("{} items", x.len()),
                    format!("{} items", y.len()),
                )
            })
        }
        _ if a == b => None,
        _ => Some((here(path), short(a), short(b))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_differing_field_is_named_by_its_path() {
        let a =
            json!({"counts": {"completed": 3, "failed": 0}, "latency": {"ttft": {"p50_ms": 1.5}}});
        let b =
            json!({"counts": {"completed": 3, "failed": 0}, "latency": {"ttft": {"p50_ms": 1.25}}});
        assert_eq!(
            first_difference(&a, &b, &mut String::new()),
            Some(("latency.ttft.p50_ms".into(), "1.5".into(), "1.25".into()))
        );
        assert_eq!(first_difference(&a, &a, &mut String::new()), None);
        let c = json!({"counts": {"completed": 3, "failed": 0}});
        assert_eq!(
            first_difference(&c, &a, &mut String::new()),
            Some(("latency".into(), "absent".into(), short(&a["latency"])))
        );
        let d = json!({"xs": [1, 2]});
        let e = json!({"xs": [1, 2, 3]});
        assert_eq!(
            first_difference(&d, &e, &mut String::new()),
            Some(("xs".into(), "2 items".into(), "3 items".into()))
        );
    }

    #[test]
    fn the_summary_line_counts_and_pluralises() {
        let mut r = AuditReport {
            runs: 1,
            failed_runs: 2,
            bytes: 2_500_000,
            elapsed: Duration::from_millis(500),
            problems: vec![],
            notes: vec![],
            signatures: SignatureCounts::default(),
        };
        assert_eq!(
            r.render(),
            "audited 1 run (2 failed runs skipped), 2.5 MB in 0.50 s (5.0 MB/s): clean\n"
        );
        r.problems.push(Problem {
            file: PathBuf::from("a/summary.json"),
            message: "bad".into(),
        });
        assert_eq!(
            r.render(),
            "a/summary.json: bad\naudited 1 run (2 failed runs skipped), 2.5 MB in 0.50 s (5.0 MB/s): 1 problem\n"
        );
        assert!(!r.is_clean());
    }

    #[test]
    fn a_local_pin_is_a_note_per_pin_not_a_problem() {
        let env = serde_json::json!({"local_pins": [
            {"lockfile": "local/images.lock", "reference": "127.0.0.1:5055/x:1",
             "pin": "sha256:bb", "resolved_at": "t", "resolved_from": "manual"},
            {"lockfile": "local/files.lock", "reference": "llama-server",
             "pin": "cc", "resolved_at": "t", "resolved_from": "manual"}
        ]});
        let mut out = RunOutcome::default();
        let pins: Vec<LocalPin> = serde_json::from_value(env["local_pins"].clone()).unwrap();
        note_local_pins(&pins, Path::new("r/environment.json"), &mut out);
        assert!(out.problems.is_empty());
        let report = AuditReport {
            runs: 1,
            failed_runs: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            problems: vec![],
            notes: out.notes,
            signatures: SignatureCounts::default(),
        };
        assert!(report.is_clean());
        insta::assert_snapshot!(report.render(), @r"
        r/environment.json: note: pinned by this machine's local lock overlay, not a committed lockfile: local/images.lock 127.0.0.1:5055/x:1 → sha256:bb (manual)
        r/environment.json: note: pinned by this machine's local lock overlay, not a committed lockfile: local/files.lock llama-server → cc (manual)
        audited 1 run (0 failed runs skipped), 0.0 MB in 0.00 s (0.0 MB/s): clean
        ");
    }

    /// Audit reads environment.json with its typed reader, so a document
    /// the reader refuses (which `verify` would then fail on) is a problem,
    /// not a clean run; the format's messages stay the audit's own.
    #[test]
    fn an_environment_its_reader_refuses_is_a_problem_named_by_key() {
        let detail = |text: &str| match Environment::from_json(text) {
            Ok(_) => panic!("{text} read"),
            Err(e) => environment_error_detail(&e),
        };
        assert!(detail("{").starts_with("not JSON: "));
        assert_eq!(
            detail(r#"{"format": "infermark.environment.v2"}"#),
            "unknown environment format `infermark.environment.v2`: \
             this infermark reads `infermark.environment.v1`"
        );
        assert_eq!(
            detail(r#"{"engine": {}}"#),
            "`format` is missing: expected `infermark.environment.v1`"
        );
        let bad_host = detail(
            r#"{"format": "infermark.environment.v1", "harness": {"version": "0", "commit": "x"},
                "host": {"hostname": "h", "os": "o", "kernel": "k", "arch": "a",
                         "cpu_model": "c", "cpu_count": "many", "memory_bytes": 1}}"#,
        );
        assert!(bad_host.starts_with("`host.cpu_count`: "), "{bad_host}");
    }
}
