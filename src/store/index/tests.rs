use std::path::Path;

use super::*;
use crate::store::Store;
use crate::store::tests::{at, commit_run, points};

fn answers(root: &Path) -> (Vec<Listed>, Vec<Shown>) {
    let index = Index::open(root).unwrap();
    let listed = index.list(&ListFilter::default()).unwrap();
    let mut shown = Vec::new();
    for l in &listed {
        shown.push(index.show(&l.run.run_id).unwrap());
        shown.push(index.show(&l.point.id).unwrap());
    }
    (listed, shown)
}

fn three_runs(root: &Path) -> Store {
    let store = Store::open(root).unwrap();
    let p = points();
    commit_run(&store, &p[0], at(1_790_000_000));
    commit_run(&store, &p[1], at(1_790_000_100));
    store
        .begin_run(&p[1], at(1_790_000_200))
        .unwrap()
        .fail("readiness timeout")
        .unwrap();
    store
}

#[test]
fn an_index_of_another_schema_version_is_rebuilt_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    three_runs(tmp.path());
    let before = answers(tmp.path());
    let path = tmp.path().join(INDEX_FILE);
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE schema_version SET version = 999", [])
            .unwrap();
        conn.execute("DELETE FROM runs", []).unwrap();
    }
    assert_eq!(answers(tmp.path()), before);
    let conn = Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

#[test]
fn a_file_that_is_not_an_index_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    three_runs(tmp.path());
    let before = answers(tmp.path());
    std::fs::write(tmp.path().join(INDEX_FILE), b"not a database at all").unwrap();
    assert_eq!(answers(tmp.path()), before);
}

#[test]
fn runs_merged_in_or_removed_are_seen_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let store = three_runs(tmp.path());
    assert_eq!(answers(tmp.path()).0.len(), 3);
    // Another machine's results, merged as a union of directories.
    let other = tempfile::tempdir().unwrap();
    let theirs = commit_run(
        &Store::open(other.path()).unwrap(),
        &points()[0],
        at(1_790_000_300),
    );
    let target = store
        .point_dir(points()[0].id())
        .join("runs")
        .join(crate::store::file_name(&theirs));
    std::fs::rename(&theirs, &target).unwrap();
    let (listed, _) = answers(tmp.path());
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[3].run.path, relative(tmp.path(), &target));
    std::fs::remove_dir_all(&target).unwrap();
    assert_eq!(answers(tmp.path()).0.len(), 3);
}

#[test]
fn list_filters_by_point_prefix_and_status() {
    let tmp = tempfile::tempdir().unwrap();
    three_runs(tmp.path());
    let index = Index::open(tmp.path()).unwrap();
    let p1 = points()[1].id().to_string();
    let of_p1 = index
        .list(&ListFilter {
            point_prefix: Some(p1[..8].to_string()),
            status: None,
        })
        .unwrap();
    assert_eq!(of_p1.len(), 2);
    assert!(of_p1.iter().all(|l| l.point.id == p1));
    let failed = index
        .list(&ListFilter {
            point_prefix: None,
            status: Some(RunStatus::Failed),
        })
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].run.reason.as_deref(), Some("readiness timeout"));
    assert_eq!(failed[0].run.output_throughput, None);
    // Oldest first.
    let all = index.list(&ListFilter::default()).unwrap();
    assert!(all.windows(2).all(|w| w[0].run.run_id < w[1].run.run_id));
    assert_eq!(all[0].point.load, "c=1");
    assert_eq!(all[0].point.engine_kind, "sim");
    assert_eq!(all[0].point.model, "none");
    assert_eq!(all[0].run.completed, Some(0));
    // A wildcard in the prefix is text, not a pattern.
    let none = index
        .list(&ListFilter {
            point_prefix: Some("%".to_string()),
            status: None,
        })
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn show_finds_a_run_or_a_point_by_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    three_runs(tmp.path());
    let index = Index::open(tmp.path()).unwrap();
    let all = index.list(&ListFilter::default()).unwrap();
    match index.show(&all[0].run.run_id).unwrap() {
        Shown::Run { point, run } => {
            assert_eq!(run.run_id, all[0].run.run_id);
            assert_eq!(point.id, all[0].point.id);
        }
        other => panic!("{other:?}"),
    }
    let p1 = points()[1].id().to_string();
    match index.show(&p1[..10]).unwrap() {
        Shown::Point { point, runs } => {
            assert_eq!(point.id, p1);
            assert_eq!(runs.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    // "2026" begins every run id here.
    let err = index.show("2026").unwrap_err();
    assert!(
        matches!(&err, IndexError::Ambiguous { what: "run", matches, .. } if matches.len() == 3),
        "{err}"
    );
    let err = index.show("zzzz").unwrap_err().to_string();
    assert!(err.starts_with("no run or point in "), "{err}");
}

fn listed(run_id: &str, status: RunStatus, figures: bool) -> Listed {
    let f = |v: f64| figures.then_some(v);
    Listed {
        point: PointRow {
            id: "0123456789abcdef".repeat(4),
            hardware_class: "cpu".into(),
            gpus: 0,
            engine_kind: "llamacpp".into(),
            runtime: "process".into(),
            model: "m.gguf@sha256:ab".into(),
            load: "c=4".into(),
        },
        run: RunRow {
            run_id: run_id.into(),
            point_id: "0123456789abcdef".repeat(4),
            status,
            started_at: "2026-09-21T14:13:20.000Z".into(),
            finished_at: "2026-09-21T14:13:30.000Z".into(),
            reason: (!figures).then(|| "engine exited with status 1".into()),
            path: format!("points/x/runs/{run_id}"),
            completed: figures.then_some(16),
            failed_requests: figures.then_some(0),
            request_throughput: f(3.214),
            output_throughput: f(102.66),
            median_ttft_ms: f(51.234),
            p99_ttft_ms: f(60.5),
            median_tpot_ms: f(10.126),
            median_itl_ms: f(10.0),
            median_e2el_ms: f(380.25),
        },
    }
}

#[test]
fn the_list_is_an_aligned_table() {
    let rows = [
        listed("20260921T141320Z-0a1b2c3d", RunStatus::Completed, true),
        listed("20260921T141500Z-9f8e7d6c", RunStatus::Failed, false),
    ];
    assert_eq!(
        render_list(&rows),
        "\
RUN                        STATUS     POINT         HARDWARE  ENGINE            LOAD  REQ/S  OUT TOK/S  TTFT P50 MS  TPOT P50 MS
20260921T141320Z-0a1b2c3d  completed  0123456789ab  cpu       llamacpp/process  c=4   3.21   102.7      51.23        10.13
20260921T141500Z-9f8e7d6c  failed     0123456789ab  cpu       llamacpp/process  c=4   -      -          -            -
"
    );
    assert_eq!(render_list(&[]), "no runs\n");
}

#[test]
fn show_prints_one_key_and_value_per_line() {
    let l = listed("20260921T141320Z-0a1b2c3d", RunStatus::Completed, true);
    let text = render_show(&Shown::Run {
        point: l.point.clone(),
        run: Box::new(l.run.clone()),
    });
    assert_eq!(
        text,
        format!(
            "\
run        20260921T141320Z-0a1b2c3d
status     completed
path       points/x/runs/20260921T141320Z-0a1b2c3d
point      {}
hardware   cpu (0 GPUs)
engine     llamacpp (process)
model      m.gguf@sha256:ab
load       c=4
started    2026-09-21T14:13:20.000Z
finished   2026-09-21T14:13:30.000Z
requests   16 completed, 0 failed
throughput 3.21 req/s, 102.7 output tok/s
ttft       median 51.23 ms, p99 60.50 ms
tpot       median 10.13 ms
itl        median 10.00 ms
e2el       median 380.25 ms
",
            l.point.id
        )
    );
    let f = listed("20260921T141500Z-9f8e7d6c", RunStatus::Failed, false);
    let text = render_show(&Shown::Point {
        point: f.point.clone(),
        runs: vec![l.run.clone(), f.run.clone()],
    });
    assert!(
        text.contains("runs       1 completed, 1 failed\n\nRUN "),
        "{text}"
    );
    assert!(
        text.ends_with("c=4   -      -          -            -\n"),
        "{text}"
    );
}
