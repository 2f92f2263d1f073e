//! Reading what `verify` stores: the runs of a results tree, the verdict
//! statements of a run's point and their shape, and a run copied into a
//! tree of its own.

use std::path::{Path, PathBuf};

use infermark::metrics;
use infermark::spec::Point;
use infermark::verify::stats;

use super::{json, sha256_hex};

/// Every completed run directory of a results tree, sorted.
pub fn runs_of(results: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in std::fs::read_dir(results.join("points")).unwrap().flatten() {
        if let Ok(runs) = std::fs::read_dir(p.path().join("runs")) {
            out.extend(runs.flatten().map(|r| r.path()));
        }
    }
    out.sort();
    out
}

/// The verdict statements stored for a run's point.
pub fn verdicts(run: &Path) -> Vec<PathBuf> {
    let dir = run.parent().unwrap().parent().unwrap().join("verdicts");
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(d) => d.flatten().map(|e| e.path().join("verdict.json")).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Asserts the statement's shape: subject and input attestation are the
/// reported run's statement by digest, one reproduction per new run with
/// its statement's digest, every metric listed, the method recorded.
pub fn assert_statement(verdict: &Path, reported: &Path, reruns: usize, overall: &str) {
    let v = json(verdict);
    assert_eq!(v["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(v["predicateType"], "https://infermark.dev/verification/v2");
    let digest = sha256_hex(&reported.join("provenance.json"));
    assert_eq!(v["subject"][0]["digest"]["sha256"], digest.as_str(), "{v}");
    let p = &v["predicate"];
    assert_eq!(
        p["input_attestations"][0]["digest"]["sha256"],
        digest.as_str()
    );
    assert_eq!(p["verification_result"], overall, "{v}");
    assert_eq!(p["policy"]["method"]["name"], stats::METHOD);
    assert_eq!(p["policy"]["method"]["alpha"], stats::ALPHA);
    assert_eq!(p["policy"]["reruns"], reruns);
    let results = reported.ancestors().nth(4).unwrap();
    let reproductions = p["reproductions"].as_array().unwrap();
    assert_eq!(reproductions.len(), reruns, "{v}");
    for r in reproductions {
        let path = results.join(r["uri"].as_str().unwrap());
        assert_eq!(r["digest"]["sha256"], sha256_hex(&path).as_str());
    }
    assert_eq!(p["metrics"].as_array().unwrap().len(), 7);
    let judged = p["policy"]["judged"].as_array().unwrap().len();
    let not_judged = p["policy"]["not_judged"].as_array().unwrap().len();
    assert_eq!(judged + not_judged, 7, "{v}");
    assert!(p["drift"].is_array());
}

pub fn reruns_of(verdict: &Path) -> usize {
    json(verdict)["predicate"]["reproductions"]
        .as_array()
        .unwrap()
        .len()
}

/// A copy of `run` in a results tree of its own (its point's `point.json`
/// and the run), so verifying it compares no earlier runs of the point.
pub fn alone_in_a_tree(run: &Path) -> (tempfile::TempDir, PathBuf) {
    let tree = tempfile::tempdir().unwrap();
    let point_dir = run.parent().unwrap().parent().unwrap();
    let to = tree
        .path()
        .join("points")
        .join(point_dir.file_name().unwrap());
    std::fs::create_dir_all(to.join("runs")).unwrap();
    std::fs::copy(point_dir.join("point.json"), to.join("point.json")).unwrap();
    let copy = to.join("runs").join(run.file_name().unwrap());
    std::fs::create_dir(&copy).unwrap();
    for f in std::fs::read_dir(run).unwrap().flatten() {
        std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
    }
    (tree, copy)
}

/// Rewrites a run to claim `factor` times its throughput: every time moves
/// towards the run's origin by `1/factor`, the summary is recomputed from
/// the edited records and the statement re-hashed, so the audit passes.
pub fn inflate(run: &Path, factor: f64) {
    let point_dir = run.parent().unwrap().parent().unwrap();
    let point =
        Point::from_canonical(&std::fs::read(point_dir.join("point.json")).unwrap()).unwrap();
    let mut records = metrics::read_records(&run.join("requests.jsonl")).unwrap();
    let scale = |t: u64| (t as f64 / factor).round() as u64;
    for r in &mut records {
        r.scheduled_ns = scale(r.scheduled_ns);
        r.sent_ns = scale(r.sent_ns);
        r.first_token_ns = r.first_token_ns.map(scale);
        r.end_ns = scale(r.end_ns);
        for c in &mut r.chunks {
            c.t_ns = scale(c.t_ns);
        }
    }
    metrics::write_records(&run.join("requests.jsonl"), &records).unwrap();
    let old = metrics::read_summary(&run.join("summary.json")).unwrap();
    let ctx = metrics::SummaryContext {
        point_id: point.id().to_string(),
        gpus: old.gpus,
        slo: infermark::run::slo(&point.spec),
    };
    let summary = metrics::summarize(&records, &ctx);
    let claimed = summary.throughput.output_tokens_per_s.unwrap();
    let measured = old.throughput.output_tokens_per_s.unwrap();
    assert!(
        (claimed / measured - factor).abs() < 0.02,
        "{claimed} {measured}"
    );
    metrics::write_summary(&run.join("summary.json"), &summary).unwrap();
    let statement_path = run.join("provenance.json");
    let statement = infermark::provenance::Statement::read(&statement_path).unwrap();
    let rehashed =
        infermark::provenance::Statement::for_run(run, point_dir, statement.predicate).unwrap();
    std::fs::write(&statement_path, rehashed.to_json().unwrap()).unwrap();
}
