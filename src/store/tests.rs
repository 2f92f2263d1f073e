use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;
use crate::metrics::{Slo, SummaryContext, summarize};
use crate::spec::{self, NoPins};

pub(crate) const SPEC: &str = r#"
schema = 1
[hardware]
class = "cpu"
[engine]
kind = "sim"
[workload]
input-tokens = 8
output-tokens = 4
[load]
concurrency = [1, 2]
"#;

pub(crate) fn points() -> Vec<Point> {
    spec::parse(Path::new("t.toml"), SPEC)
        .expect("valid spec")
        .points(&NoPins)
        .expect("points")
}

pub(crate) fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// Writes the four files a run writes (an empty run: no records).
pub(crate) fn write_run_files(w: &RunWriter) {
    let dir = w.dir();
    std::fs::write(dir.join("requests.jsonl"), b"").unwrap();
    let ctx = SummaryContext {
        point_id: w.point_id().to_string(),
        gpus: 0,
        slo: Slo::default(),
    };
    std::fs::write(
        dir.join("summary.json"),
        summarize(&[], &ctx).to_json().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("environment.json"), b"{}\n").unwrap();
    std::fs::write(dir.join("engine.log"), b"log\n").unwrap();
}

pub(crate) fn commit_run(store: &Store, point: &Point, started: SystemTime) -> PathBuf {
    let w = store.begin_run(point, started).unwrap();
    write_run_files(&w);
    let predicate = RunPredicate::new(point, w.run_id(), started, started, false);
    w.commit(predicate).unwrap()
}

#[test]
fn run_ids_carry_the_utc_start_second_and_a_hex_suffix() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_790_000_000_999);
    let id = new_run_id(t);
    assert!(id.starts_with("20260921T141320Z-"), "{id}");
    assert!(is_run_id(&id), "{id}");
    assert_eq!(run_id_stamp(t), "20260921T141320Z");
}

#[test]
fn run_ids_sort_by_start_and_differ_for_the_same_start() {
    let a = new_run_id(at(1_790_000_000));
    let b = new_run_id(at(1_790_000_001));
    let c = new_run_id(at(1_790_000_001));
    assert!(a < b && a < c, "{a} {b} {c}");
    assert_ne!(b, c);
    // Before the epoch (a badly set clock) is clamped, not a panic.
    let early = new_run_id(SystemTime::UNIX_EPOCH - Duration::from_secs(5));
    assert!(early.starts_with("19700101T000000Z-"), "{early}");
}

#[test]
fn run_id_shape() {
    assert!(is_run_id("20260921T141320Z-0a1b2c3d"));
    for bad in [
        "20260921T141320Z-0A1B2C3D",
        "20260921T141320Z0a1b2c3d",
        "20260921-141320Z-0a1b2c3d",
        "20260921T141320Z-0a1b2c3",
        "",
    ] {
        assert!(!is_run_id(bad), "{bad}");
    }
}

#[test]
fn a_committed_run_is_moved_into_runs_with_its_statement() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("results")).unwrap();
    let point = &points()[0];
    let w = store.begin_run(point, at(1_790_000_000)).unwrap();
    let run_id = w.run_id().to_string();
    assert_eq!(w.dir(), store.root().join(".tmp").join(&run_id));
    assert_eq!(
        std::fs::read(store.point_dir(point.id()).join("point.json")).unwrap(),
        point.canonical_bytes()
    );
    write_run_files(&w);
    let predicate = RunPredicate::new(point, &run_id, at(1_790_000_000), at(1_790_000_002), false);
    let path = w.commit(predicate).unwrap();
    assert_eq!(path, store.point_dir(point.id()).join("runs").join(&run_id));
    let mut names: Vec<String> = read_dir_sorted(&path)
        .unwrap()
        .iter()
        .map(|p| file_name(p))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "engine.log",
            "environment.json",
            "provenance.json",
            "requests.jsonl",
            "summary.json"
        ]
    );
    let statement = Statement::read(&path.join("provenance.json")).unwrap();
    assert_eq!(statement.predicate.run_id, run_id);
    assert_eq!(statement.subject.len(), 5);
    assert!(
        read_dir_sorted(&store.root().join(".tmp"))
            .unwrap()
            .is_empty()
    );
    // The index knows it.
    let index = Index::open(store.root()).unwrap();
    let listed = index.list(&ListFilter::default()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].run.run_id, run_id);
    assert_eq!(listed[0].run.status, RunStatus::Completed);
}

#[test]
fn a_point_file_that_differs_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let point = &points()[0];
    drop(store.begin_run(point, at(1)).unwrap());
    // The same point again: the file agrees.
    drop(store.begin_run(point, at(2)).unwrap());
    let file = store.point_dir(point.id()).join("point.json");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.push(b' ');
    std::fs::write(&file, &bytes).unwrap();
    let err = store.begin_run(point, at(3)).unwrap_err();
    assert!(matches!(&err, StoreError::PointMismatch { path, .. } if *path == file));
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", file.display())),
        "{err}"
    );
}

#[test]
fn an_abandoned_run_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let w = store.begin_run(&points()[0], at(1)).unwrap();
    write_run_files(&w);
    let dir = w.dir().to_path_buf();
    assert!(dir.is_dir());
    drop(w);
    assert!(!dir.exists());
}

#[test]
fn a_failed_run_is_recorded_in_failed_never_in_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let point = &points()[1];
    let w = store.begin_run(point, at(1_790_000_000)).unwrap();
    let run_id = w.run_id().to_string();
    std::fs::write(w.dir().join("engine.log"), b"crashed\n").unwrap();
    let path = w.fail("engine exited with status 1").unwrap();
    assert_eq!(
        path,
        store.point_dir(point.id()).join("failed").join(&run_id)
    );
    assert!(!store.point_dir(point.id()).join("runs").exists());
    assert_eq!(
        std::fs::read(path.join("engine.log")).unwrap(),
        b"crashed\n"
    );
    let f = Failure::read(&path.join("failure.json")).unwrap();
    assert_eq!(f.format, FAILURE_FORMAT);
    assert_eq!(f.point_id, point.id());
    assert_eq!(f.run_id, run_id);
    assert_eq!(f.reason, "engine exited with status 1");
    assert_eq!(f.started_at, "2026-09-21T14:13:20.000Z");
    let listed = Index::open(store.root())
        .unwrap()
        .list(&ListFilter::default())
        .unwrap();
    assert_eq!(listed[0].run.status, RunStatus::Failed);
    assert_eq!(
        listed[0].run.reason.as_deref(),
        Some("engine exited with status 1")
    );
}

#[test]
fn a_run_missing_a_file_is_not_committed_but_kept_as_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let point = &points()[0];
    let w = store.begin_run(point, at(5)).unwrap();
    write_run_files(&w);
    std::fs::remove_file(w.dir().join("environment.json")).unwrap();
    let run_id = w.run_id().to_string();
    let predicate = RunPredicate::new(point, &run_id, at(5), at(6), false);
    let err = w.commit(predicate).unwrap_err();
    let failed = store.point_dir(point.id()).join("failed").join(&run_id);
    match &err {
        StoreError::CommitRefused { path, source } => {
            assert_eq!(*path, failed);
            assert!(
                matches!(**source, StoreError::MissingFile { .. }),
                "{source}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    let reason = Failure::read(&failed.join("failure.json")).unwrap().reason;
    assert!(reason.starts_with("commit refused: "), "{reason}");
    assert!(reason.contains("environment.json: missing"), "{reason}");
    assert!(
        !store
            .point_dir(point.id())
            .join("runs")
            .join(&run_id)
            .exists()
    );
}

#[test]
fn a_predicate_for_another_run_or_an_extra_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let point = &points()[0];
    let w = store.begin_run(point, at(5)).unwrap();
    write_run_files(&w);
    let predicate = RunPredicate::new(point, "20000101T000000Z-00000000", at(5), at(6), false);
    let err = w.commit(predicate).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "the predicate's `run_id` is `20000101T000000Z-00000000`, but this run's is "
        ),
        "{err}"
    );
    let w = store.begin_run(point, at(5)).unwrap();
    write_run_files(&w);
    std::fs::write(w.dir().join("notes.txt"), b"x").unwrap();
    let predicate = RunPredicate::new(point, w.run_id(), at(5), at(6), false);
    let err = w.commit(predicate).unwrap_err().to_string();
    assert!(err.contains("notes.txt: not a file a run holds"), "{err}");
}

#[test]
fn stored_runs_lists_completed_and_failed_but_not_in_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let [a, b] = [&points()[0], &points()[1]];
    commit_run(&store, a, at(10));
    commit_run(&store, b, at(11));
    store.begin_run(a, at(12)).unwrap().fail("x").unwrap();
    let _in_progress = store.begin_run(b, at(13)).unwrap();
    let runs = stored_runs(store.root()).unwrap();
    assert_eq!(runs.len(), 3);
    let failed: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].point_dir, store.point_dir(a.id()));
}

#[test]
fn an_unknown_failure_format_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("failure.json");
    std::fs::write(&path, r#"{"format": "infermark.failure.v9", "more": 1}"#).unwrap();
    let err = Failure::read(&path).unwrap_err().to_string();
    assert!(
        err.ends_with(
            "unknown failure record format `infermark.failure.v9`: this infermark reads `infermark.failure.v1`"
        ),
        "{err}"
    );
}
