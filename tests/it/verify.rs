//! `infermark verify` end to end: against the built-in sim server (whose
//! timing is known, so a shifted run is shifted by construction) and
//! against the real llama.cpp engine.
//!
//! Bands are chosen for a shared two-core machine: the sim's medians are
//! timer-driven and hold within a few percent, so 15% on latency medians
//! and throughputs leaves room for other tests' load without hiding a
//! wrong formula; p99 TTFT of a few dozen requests is close to their
//! maximum, which one scheduling hiccup moves, so it gets 50%.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use infermark::metrics;
use infermark::probe::{self, Environment};
use infermark::provenance::RunPredicate;
use infermark::spec::{Point, VerifyMetric};
use infermark::store::Store;
use infermark::verify::reproduce::LoadedRun;
use infermark::verify::stats::{self, Bootstrap, Verdict};

use crate::run_cpu::World;
use crate::support::{heavy, infermark, serve_sim, stderr, stdout};

const SIM_BANDS: &str = "\n[verify]\nrepeats = 2\ntolerance = { output-throughput = 0.15, \
    request-throughput = 0.15, median-ttft = 0.15, p99-ttft = 0.5, median-tpot = 0.15, \
    median-itl = 0.15, median-e2el = 0.15 }\n";

/// A scratch directory with the sim experiment, one load level (c=4), few
/// requests, and `verify` bands appended.
struct SimWorld {
    dir: tempfile::TempDir,
}

impl SimWorld {
    fn new(bands: &str) -> SimWorld {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(
            crate::support::repo().join("experiments/cpu/sim-calibration.toml"),
        )
        .unwrap();
        let text = text
            .replace("concurrency = [1, 16, 64]", "concurrency = [4]")
            .replace("requests-per-client = 8", "requests-per-client = 6")
            .replace("output-tokens = 64", "output-tokens = 16");
        assert!(text.contains("concurrency = [4]"), "{text}");
        std::fs::write(dir.path().join("sim.toml"), text + bands).unwrap();
        SimWorld { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn results(&self) -> PathBuf {
        self.root().join("results")
    }

    fn run(&self) -> PathBuf {
        let o = infermark(self.root(), &["run", "sim.toml", "--results", "results"]);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        let runs = runs_of(&self.results());
        assert_eq!(runs.len(), 1, "{runs:?}");
        runs[0].clone()
    }
}

/// Every completed run directory of a results tree, sorted.
fn runs_of(results: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in std::fs::read_dir(results.join("points")).unwrap().flatten() {
        if let Ok(runs) = std::fs::read_dir(p.path().join("runs")) {
            out.extend(runs.flatten().map(|r| r.path()));
        }
    }
    out.sort();
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn sha256_hex(path: &Path) -> String {
    infermark::provenance::sha256_file(path).unwrap().0
}

/// The verdict statements stored for a run's point.
fn verdicts(run: &Path) -> Vec<PathBuf> {
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
/// its statement's digest, every metric judged, the recorded seed.
fn assert_statement(verdict: &Path, reported: &Path, repeats: usize, overall: &str) {
    let v = json(verdict);
    assert_eq!(v["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(v["predicateType"], "https://infermark.dev/verification/v1");
    let digest = sha256_hex(&reported.join("provenance.json"));
    assert_eq!(v["subject"][0]["digest"]["sha256"], digest.as_str(), "{v}");
    let p = &v["predicate"];
    assert_eq!(
        p["input_attestations"][0]["digest"]["sha256"],
        digest.as_str()
    );
    assert_eq!(p["verification_result"], overall, "{v}");
    assert_eq!(p["policy"]["bootstrap"]["seed"], stats::SEED);
    assert_eq!(p["policy"]["bootstrap"]["resamples"], 2000);
    let results = reported.ancestors().nth(4).unwrap();
    let reproductions = p["reproductions"].as_array().unwrap();
    assert_eq!(reproductions.len(), repeats, "{v}");
    for r in reproductions {
        let path = results.join(r["uri"].as_str().unwrap());
        assert_eq!(r["digest"]["sha256"], sha256_hex(&path).as_str());
    }
    assert_eq!(p["metrics"].as_array().unwrap().len(), 7);
    assert!(p["drift"].is_array());
}

#[test]
fn a_sim_run_verified_on_the_same_machine_is_reproduced() {
    let w = SimWorld::new(SIM_BANDS);
    let reported = w.run();
    let o = infermark(w.root(), &["verify", reported.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("overall: REPRODUCED (2 repeat(s), 48 request(s)"),
        "{out}"
    );
    for metric in stats::METRICS {
        assert!(out.contains(metric.as_str()), "{out}");
    }
    // The new runs are ordinary results of the same point, and the tree
    // (verdicts included) still audits clean.
    assert_eq!(runs_of(&w.results()).len(), 3);
    let vs = verdicts(&reported);
    assert_eq!(vs.len(), 1);
    assert_statement(&vs[0], &reported, 2, "REPRODUCED");
    let a = infermark(w.root(), &["audit", "results"]);
    assert_eq!(a.status.code(), Some(0), "{}", stdout(&a));

    // By point id prefix, with one repeat: the throughput interval is a
    // single value, and the output says so.
    let id = reported.ancestors().nth(2).unwrap();
    let prefix = &id.file_name().unwrap().to_str().unwrap()[..10];
    let o = infermark(
        w.root(),
        &["verify", prefix, "--results", "results", "--repeats", "1"],
    );
    let out = stdout(&o);
    assert!(
        out.contains("output-throughput: one repeat: the interval is a single value"),
        "{out}{}",
        stderr(&o)
    );
    assert_eq!(runs_of(&w.results()).len(), 4);
}

#[test]
fn a_reported_run_that_fails_its_audit_is_not_rerun() {
    let w = SimWorld::new(SIM_BANDS);
    let reported = w.run();
    let summary = reported.join("summary.json");
    let mut bytes = std::fs::read(&summary).unwrap();
    let i = bytes.iter().position(|b| b.is_ascii_digit()).unwrap();
    bytes[i] = if bytes[i] == b'9' { b'8' } else { bytes[i] + 1 };
    std::fs::write(&summary, bytes).unwrap();
    let o = infermark(w.root(), &["verify", reported.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("summary.json"), "{}", stdout(&o));
    assert_eq!(runs_of(&w.results()).len(), 1, "nothing was re-run");
    assert!(verdicts(&reported).is_empty());
}

/// Measures `point` against a sim started separately (with its own
/// timing) and stores the result as a properly hashed run of the point,
/// with the environment of `like` (a real run of the same point), so it
/// audits clean while its numbers came from other timing.
fn store_run_measured_against(sim_args: &[&str], results: &Path, like: &Path) -> PathBuf {
    let sim = serve_sim(sim_args);
    let point = Point::from_canonical(
        &std::fs::read(like.parent().unwrap().parent().unwrap().join("point.json")).unwrap(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = SystemTime::now();
    let m = rt
        .block_on(infermark::run::measure(&point, &sim.url, results, None))
        .unwrap();
    drop(sim);
    let store = Store::open(results).unwrap();
    let writer = store.begin_run(&point, started).unwrap();
    let dir = writer.dir().to_path_buf();
    metrics::write_records(&dir.join("requests.jsonl"), &m.records).unwrap();
    metrics::write_summary(&dir.join("summary.json"), &m.summary).unwrap();
    // Same host, same engine facts as the real run: only the timing moved.
    let env: Environment =
        Environment::from_json(&std::fs::read_to_string(like.join("environment.json")).unwrap())
            .unwrap();
    let env = Environment::new(env.host, probe::gpus(), None, env.hardware, env.engine);
    std::fs::write(dir.join("environment.json"), env.to_json()).unwrap();
    std::fs::copy(like.join("engine.log"), dir.join("engine.log")).unwrap();
    let run_id = writer.run_id().to_string();
    let predicate = RunPredicate::new(&point, &run_id, started, SystemTime::now(), false);
    writer.commit(predicate).unwrap()
}

#[test]
fn a_run_with_timing_shifted_outside_a_tight_band_is_not_reproduced() {
    // Latency bands of 4%: the reported run is 20% slower per token and
    // 20% slower to first token, far outside; throughputs 15% as above.
    let tight = "\n[verify]\nrepeats = 2\ntolerance = { output-throughput = 0.15, \
        request-throughput = 0.15, median-ttft = 0.04, p99-ttft = 0.5, median-tpot = 0.04, \
        median-itl = 0.04, median-e2el = 0.04 }\n";
    let w = SimWorld::new(tight);
    let real = w.run();
    let shifted =
        store_run_measured_against(&["--ttft-ms", "60", "--itl-ms", "12"], &w.results(), &real);
    let a = infermark(w.root(), &["audit", shifted.to_str().unwrap()]);
    assert_eq!(a.status.code(), Some(0), "{}", stdout(&a));

    let o = infermark(w.root(), &["verify", shifted.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("overall: NOT REPRODUCED"), "{out}");
    let vs = verdicts(&shifted);
    assert_eq!(vs.len(), 1);
    assert_statement(&vs[0], &shifted, 2, "NOT REPRODUCED");
    let v = json(&vs[0]);
    let metric = |name: &str| {
        v["predicate"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == name)
            .unwrap()
            .clone()
    };
    // What the statistics justify: per-token and first-token latencies are
    // ~1/1.2 of the reported ones with intervals far from the 4% band.
    for name in ["median-ttft", "median-tpot", "median-itl", "median-e2el"] {
        let m = metric(name);
        assert_eq!(m["verdict"], "NOT REPRODUCED", "{m}");
        let hi = m["interval"]["hi"].as_f64().unwrap();
        assert!(hi < 0.93, "{m}");
    }
}

#[test]
fn inconclusive_is_reached_when_the_band_edge_falls_inside_the_interval() {
    // End to end, a shift that lands exactly on a band's edge is at the
    // mercy of the machine's noise; here the edge is placed on real
    // recorded distributions instead, so the case is deterministic.
    let w = SimWorld::new(SIM_BANDS);
    let reported = w.run();
    let run = LoadedRun::load(&reported).unwrap();
    let b = Bootstrap::default();
    for metric in [VerifyMetric::MedianE2el, VerifyMetric::MedianTtft] {
        let (estimate, interval) = stats::latency_interval(metric, &run.requests, &b).unwrap();
        assert!(interval.hi > interval.lo, "{metric}: {interval:?}");
        // A "reported" value whose band edge sits inside the interval.
        let band = 0.05;
        let mid = (interval.lo + interval.hi) / 2.0;
        let claimed = mid / (1.0 + band);
        let r = stats::compare(metric, Some(claimed), &[], &run.requests, band, &b);
        assert_eq!(r.verdict, Some(Verdict::Inconclusive), "{r:?}");
        // The same data against a value equal to its own estimate: inside.
        let same = stats::compare(metric, Some(estimate), &[], &run.requests, 0.15, &b);
        assert_eq!(same.verdict, Some(Verdict::Reproduced), "{same:?}");
    }
}

/// Bands for the real engine at concurrency 1 on a shared two-core machine,
/// where the engine's own speed moves by about 10% from one run to the next
/// (back-to-back runs here: 23 to 29 output tokens/s) with whatever else the
/// host runs. 14% on throughputs and on the TPOT, ITL and E2EL medians: the
/// 30% claim below then sits as far outside the band (1.3 / 1.14 = 1.14) as
/// a true run sits inside it, so the machine may move by up to about 10%
/// either way before either verdict turns; 35% on the TTFT median (the
/// prompt phase alone: medians 13% apart between back-to-back runs, plus
/// the bootstrap interval of 32 requests); 50% on p99 TTFT (of 32 requests:
/// nearly their maximum).
const LLAMA_BANDS: [(&str, f64); 7] = [
    ("output-throughput", 0.14),
    ("request-throughput", 0.14),
    ("median-ttft", 0.35),
    ("p99-ttft", 0.5),
    ("median-tpot", 0.14),
    ("median-itl", 0.14),
    ("median-e2el", 0.14),
];

/// The verdicts are measurements, so a machine whose speed moved by about a
/// band between the reported run and its re-runs makes verify say so
/// (rightly: the numbers did not reproduce there and then). Each llama.cpp
/// scenario is therefore tried up to this many times, from a fresh reported
/// run; a wrong verdict is excused only when the machine's own drift,
/// measured apart from the code under test, was large (see `machine_drift`).
/// Here about one attempt in three drifts that far; a broken verify fails
/// every attempt. On a host whose hypervisor takes a varying share of the
/// CPUs, every attempt can drift (seen: re-runs 13-26% slower in five of
/// five); after the last one the verdict must then follow the numbers it
/// was given (`verdicts_follow_the_numbers`), which a verify that judged
/// wrongly would not.
const LLAMA_ATTEMPTS: usize = 5;

/// A wrong verdict with the machine's drift at most this share of the
/// bands is a failure outright: the machine held still enough for the
/// verdict to be right.
const STEADY: f64 = 0.5;

fn llama_tolerance() -> String {
    let bands: Vec<String> = LLAMA_BANDS
        .iter()
        .map(|(metric, band)| format!("{metric} = {band}"))
        .collect();
    format!("tolerance = {{ {} }}\n", bands.join(", "))
}

/// The figure of a summary that a verify metric judges.
fn figure(s: &metrics::Summary, metric: &str) -> Option<f64> {
    let l = &s.latency;
    match metric {
        "output-throughput" => s.throughput.output_tokens_per_s,
        "request-throughput" => s.throughput.requests_per_s,
        "median-ttft" => l.ttft.p50_ms,
        "p99-ttft" => l.ttft.p99_ms,
        "median-tpot" => l.tpot.p50_ms,
        "median-itl" => l.itl.p50_ms,
        "median-e2el" => l.e2el.p50_ms,
        other => panic!("no figure for {other}"),
    }
}

/// Which way the machine's speed may have moved to excuse a wrong verdict.
#[derive(Clone, Copy)]
enum Drift {
    /// Either way: a true run is REPRODUCED only if nothing moved.
    Either,
    /// Re-runs faster than the reported run: only that can bring an
    /// inflated claim back inside its bands.
    Faster,
}

/// The summaries of the re-runs a verdict names, read from disk.
fn rerun_summaries(verdict: &Path, run: &Path) -> Vec<metrics::Summary> {
    let results = run.ancestors().nth(4).unwrap();
    json(verdict)["predicate"]["reproductions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let statement = results.join(r["uri"].as_str().unwrap());
            metrics::read_summary(&statement.with_file_name("summary.json")).unwrap()
        })
        .collect()
}

/// How far the machine's own speed moved over a verification: for each
/// judged metric, the speed-up of the re-runs (mean of their figures)
/// against the reported run as measured (before any edit), as a share of
/// the metric's band; the largest share in the direction asked for. Read
/// from the summaries on disk, not from the verdict, so excusing a verdict
/// does not rest on the code under test.
fn machine_drift(
    measured: &metrics::Summary,
    verdict: &Path,
    run: &Path,
    way: Drift,
) -> (f64, &'static str) {
    let reruns = rerun_summaries(verdict, run);
    if reruns.is_empty() {
        return (0.0, "no re-run");
    }
    LLAMA_BANDS
        .iter()
        .map(|(metric, band)| {
            let reported = figure(measured, metric).unwrap();
            let figures: Vec<f64> = reruns.iter().map(|s| figure(s, metric).unwrap()).collect();
            let mean = figures.iter().sum::<f64>() / figures.len() as f64;
            let speedup = if metric.ends_with("-throughput") {
                mean / reported
            } else {
                reported / mean
            };
            let share = match way {
                Drift::Either => (speedup - 1.0).abs() / band,
                Drift::Faster => (speedup - 1.0).max(0.0) / band,
            };
            (share, *metric)
        })
        .fold(
            (0.0, "none"),
            |worst, m| if m.0 > worst.0 { m } else { worst },
        )
}

/// Where the machine moved on every attempt: whether each metric's verdict
/// at least follows the numbers on disk. A metric whose re-runs' mean lies
/// within 0.4 of its band of the reported figure (as the run claims it) must
/// be REPRODUCED, one beyond 1.6 bands must not be; in between the bootstrap
/// interval decides, which is not re-derived here. Returns how many metrics
/// were so checked; panics on one that does not follow.
fn verdicts_follow_the_numbers(verdict: &Path, run: &Path, shown: &str) -> usize {
    let claimed = metrics::read_summary(&run.join("summary.json")).unwrap();
    let v = json(verdict);
    let reruns = rerun_summaries(verdict, run);
    let mut checked = 0;
    for (metric, band) in LLAMA_BANDS {
        let figures: Vec<f64> = reruns.iter().map(|s| figure(s, metric).unwrap()).collect();
        let mean = figures.iter().sum::<f64>() / figures.len().max(1) as f64;
        let share = (mean / figure(&claimed, metric).unwrap() - 1.0).abs() / band;
        let judged = v["predicate"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == metric)
            .unwrap_or_else(|| panic!("no verdict for {metric}:\n{shown}"));
        let reproduced = judged["verdict"] == "REPRODUCED";
        if share < 0.4 {
            assert!(
                reproduced,
                "{metric} {share:.2} bands off, yet {judged}:\n{shown}"
            );
            checked += 1;
        } else if share > 1.6 {
            assert!(
                !reproduced,
                "{metric} {share:.2} bands off, yet {judged}:\n{shown}"
            );
            checked += 1;
        }
    }
    checked
}

/// After a wrong verdict: fails unless the machine's drift excuses it.
/// With an attempt left, the caller tries again (`false`); after the last
/// one, the verdicts must at least follow the numbers (`true`: done).
fn excuse_drift(
    attempt: usize,
    measured: &metrics::Summary,
    run: &Path,
    way: Drift,
    o: &Output,
) -> bool {
    let shown = format!("{}{}", stdout(o), stderr(o));
    let verdict = verdicts(run)
        .pop()
        .unwrap_or_else(|| panic!("no verdict stored:\n{shown}"));
    let (drift, metric) = machine_drift(measured, &verdict, run, way);
    let pct = drift * 100.0;
    assert!(
        drift > STEADY,
        "wrong verdict although the machine held still (at most {pct:.0}% of a band, \
         {metric}):\n{shown}"
    );
    if attempt == LLAMA_ATTEMPTS {
        let checked = verdicts_follow_the_numbers(&verdict, run, &shown);
        assert!(
            checked > 0,
            "in each of {LLAMA_ATTEMPTS} attempts the machine's speed moved by more than half a \
             band between the reported run and its re-runs (last: {pct:.0}% of a band, {metric}), \
             and no metric was far enough inside or outside its band to check its verdict \
             against the numbers:\n{shown}"
        );
        eprintln!(
            "in each of {LLAMA_ATTEMPTS} attempts the machine moved by more than half a band \
             (last: {pct:.0}%, {metric}); the last verdict follows the numbers on {checked} \
             metric(s):\n{shown}"
        );
        return true;
    }
    eprintln!(
        "attempt {attempt}: the machine moved by {pct:.0}% of a band ({metric}); again from a \
         new reported run:\n{shown}"
    );
    false
}

fn llama_world() -> (World, String) {
    let w = World::new("llamacpp-smollm2.toml", |t| {
        // One thread: llama.cpp's threads wait for each other at every
        // step, so two threads on two shared cores slow down several-fold
        // whenever anything else runs; one thread degrades in proportion.
        t.replace("requests-per-client = 4", "requests-per-client = 16")
            .replace(r#""-t", "2""#, r#""-t", "1""#)
            .replace(
                "repeats = 3\n",
                &format!("repeats = 2\n{}", llama_tolerance()),
            )
    });
    let o = w.infermark(&[
        "spec",
        "points",
        w.experiment.to_str().unwrap(),
        "--lock-dir",
        w.root().join("lockfiles").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let id = text
        .lines()
        .find(|l| l.contains("c=1"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no c=1 point in {text}"))
        .to_string();
    (w, id)
}

/// Runs infermark in the world at a raised scheduling priority (`nice -n
/// -15`; the engine inherits it), so the builds and tests that share this
/// machine do not move the engine's speed between the reported run and
/// its re-runs: what an operator does on a benchmark host. Where raising
/// priority is not permitted, `nice` says so and the test fails plainly.
fn niced(w: &World, args: &[&str]) -> std::process::Output {
    Command::new("nice")
        .args(["-n", "-15", env!("CARGO_BIN_EXE_infermark")])
        .args(args)
        .current_dir(w.root())
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Runs the point, first once into a results tree of its own that nothing
/// reads: the reported run is then measured on a machine already under
/// load, as its re-runs are. On a machine that comes out of idle faster
/// (seen here: the first run after a quiet spell was 13-26% faster than the
/// two right after it, in six of six attempts), a reported run measured
/// cold is always "not reproduced" by its warm re-runs.
fn run_llama(w: &World, id: &str, extra: &[&str]) -> PathBuf {
    let (cache, lockfiles) = (w.root().join("cache"), w.root().join("lockfiles"));
    let run_into = |results: &Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            w.experiment.to_str().unwrap(),
            "--point",
            id,
            "--results",
            results.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--lock-dir",
            lockfiles.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = niced(w, &args);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    };
    run_into(&w.root().join("warmup"), &[]);
    run_into(&w.results(), extra);
    let runs = w.runs("runs");
    assert_eq!(runs.len(), 1);
    runs[0].clone()
}

fn verify_llama(w: &World, run: &Path, extra: &[&str]) -> std::process::Output {
    let cache = w.root().join("cache");
    let mut args = vec![
        "verify",
        run.to_str().unwrap(),
        "--repeats",
        "2",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    niced(w, &args)
}

#[test]
fn a_llamacpp_run_verified_on_the_same_machine_is_reproduced() {
    let _heavy = heavy();
    for attempt in 1..=LLAMA_ATTEMPTS {
        let (w, id) = llama_world();
        let run = run_llama(&w, &id, &[]);
        let measured = metrics::read_summary(&run.join("summary.json")).unwrap();
        let o = verify_llama(&w, &run, &[]);
        if o.status.code() == Some(0) {
            assert!(stdout(&o).contains("overall: REPRODUCED"), "{}", stdout(&o));
            let last = verdicts(&run).pop().unwrap();
            assert_statement(&last, &run, 2, "REPRODUCED");
            return;
        }
        if excuse_drift(attempt, &measured, &run, Drift::Either, &o) {
            return;
        }
    }
}

/// Rewrites a run to claim `factor` times its throughput: every time moves
/// towards the run's origin by `1/factor`, the summary is recomputed from
/// the edited records and the statement re-hashed, so the audit passes.
fn inflate(run: &Path, factor: f64) {
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

#[test]
fn a_llamacpp_run_edited_to_claim_30_percent_more_throughput_is_not_reproduced() {
    let _heavy = heavy();
    for attempt in 1..=LLAMA_ATTEMPTS {
        let (w, id) = llama_world();
        // Signed when run, and re-signed after the edit with the same
        // trusted key: the signature vouches for the claim, the measurement
        // refutes it.
        let key = w.root().join("key");
        let g = w.infermark(&["key", "generate", "--out", key.to_str().unwrap()]);
        assert_eq!(g.status.code(), Some(0), "{}", stderr(&g));
        let public = w.root().join("key.pub");
        let run = run_llama(&w, &id, &["--sign-key", key.to_str().unwrap()]);
        let measured = metrics::read_summary(&run.join("summary.json")).unwrap();
        inflate(&run, 1.3);
        let signer = infermark::provenance::sign::Signer::load(&key).unwrap();
        infermark::provenance::sign::sign_statement_file(&run.join("provenance.json"), &signer)
            .unwrap();
        let a = w.infermark(&[
            "audit",
            run.to_str().unwrap(),
            "--trust",
            public.to_str().unwrap(),
        ]);
        assert_eq!(a.status.code(), Some(0), "{}", stdout(&a));
        assert!(stdout(&a).contains("1 trusted"), "{}", stdout(&a));
        let o = verify_llama(
            &w,
            &run,
            &[
                "--trust",
                public.to_str().unwrap(),
                "--sign-key",
                key.to_str().unwrap(),
            ],
        );
        if o.status.code() != Some(5) {
            if excuse_drift(attempt, &measured, &run, Drift::Faster, &o) {
                return;
            }
            continue;
        }
        assert!(
            stdout(&o).contains("overall: NOT REPRODUCED"),
            "{}",
            stdout(&o)
        );
        // Refuted on the claim's side: what was measured is slower than
        // claimed, never faster.
        let verdict = verdicts(&run).pop().unwrap();
        let v = json(&verdict);
        let refuted: Vec<&serde_json::Value> = v["predicate"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["verdict"] == "NOT REPRODUCED")
            .collect();
        assert!(!refuted.is_empty(), "{v}");
        for m in refuted {
            let ratio = m["ratio"].as_f64().unwrap();
            let throughput = m["metric"].as_str().unwrap().ends_with("-throughput");
            assert!(if throughput { ratio < 1.0 } else { ratio > 1.0 }, "{m}");
        }
        // The verdict is signed too.
        let status = infermark::provenance::sign::check_envelope(
            &verdict,
            &[infermark::provenance::sign::load_public_key(&public).unwrap()],
        );
        assert!(
            matches!(
                status,
                infermark::provenance::sign::SignatureStatus::Trusted { .. }
            ),
            "{status:?}"
        );
        return;
    }
}

#[test]
fn a_pin_not_available_here_is_refused_before_measuring() {
    // A process point whose executable and model are pinned to content
    // this machine does not hold: the check names what is missing.
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "schema = 1\nname = \"x\"\n[hardware]\nclass = \"cpu\"\n[engine]\nkind = \"llamacpp\"\n\
         runtime = \"process\"\ncommand = \"llama-server-not-here\"\ncommand-sha256 = \"{}\"\n\
         [model]\nfile = \"m.gguf\"\nsha256 = \"{}\"\n[workload]\ninput-tokens = 8\n\
         output-tokens = 4\n[load]\nconcurrency = [1]\n",
        "a".repeat(64),
        "b".repeat(64)
    );
    let file = dir.path().join("x.toml");
    std::fs::write(&file, spec).unwrap();
    let point = infermark::spec::load(&file)
        .unwrap()
        .points(&infermark::spec::NoPins)
        .unwrap()
        .remove(0);
    let opts = infermark::engine::StartOptions {
        label: "t".into(),
        spec_dir: dir.path().to_path_buf(),
        cache_dir: dir.path().join("cache"),
        model_dirs: vec![],
        model_cache: None,
        log_path: dir.path().join("log"),
        infermark_exe: PathBuf::from(env!("CARGO_BIN_EXE_infermark")),
        registry_insecure_loopback: true,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(infermark::engine::check_pins_available(&point.spec, &opts))
        .unwrap_err();
    let e = infermark::verify::ReproduceError::PinUnavailable(e).to_string();
    assert!(e.starts_with("pin not available here: "), "{e}");
    assert!(e.contains("llama-server-not-here"), "{e}");
    // A file where the store files that pin, with other content: refused
    // by its sha256 rather than run.
    let exe_dir = dir.path().join("cache/files").join("a".repeat(64));
    std::fs::create_dir_all(&exe_dir).unwrap();
    let exe = exe_dir.join("llama-server-not-here");
    std::fs::write(&exe, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = rt
        .block_on(infermark::engine::check_pins_available(&point.spec, &opts))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sha256"), "{e}");
    assert!(e.contains("llama-server-not-here"), "{e}");
}
