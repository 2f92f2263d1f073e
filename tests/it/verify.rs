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
/// band between the reported run and its re-runs, or whose requests spread
/// widely within a run, makes verify say so (rightly: the numbers did not
/// reproduce there and then, or could not be told apart from the band's
/// edge). Each llama.cpp scenario is therefore tried up to this many times,
/// from a fresh reported run. An outcome other than the one expected is
/// excused only when every metric's verdict follows an interval the test
/// works out itself from the re-runs' raw records (`own_interval`), apart
/// from verify's bootstrap: a metric whose own interval lies well inside its
/// band must be REPRODUCED, one well outside must be NOT REPRODUCED, so a
/// verify that judged wrongly fails at once on a steady machine. Here
/// about one attempt in three moves or spreads that far; on a host whose
/// hypervisor takes a varying share of the CPUs every attempt can (seen:
/// re-runs 13-26% slower in five of five; a median E2EL whose interval
/// spanned 0.83-1.03 of the reported figure with the machine steady).
const LLAMA_ATTEMPTS: usize = 5;

/// Room for the difference between the test's distribution-free intervals
/// and verify's bootstrap: an own interval within this share of the band
/// must be REPRODUCED; one wholly beyond `2 - MARGIN` of it must not be.
const MARGIN: f64 = 0.8;

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

/// The run directories of the re-runs a verdict names.
fn rerun_dirs(verdict: &Path, run: &Path) -> Vec<PathBuf> {
    let results = run.ancestors().nth(4).unwrap();
    json(verdict)["predicate"]["reproductions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let statement = results.join(r["uri"].as_str().unwrap());
            statement.parent().unwrap().to_path_buf()
        })
        .collect()
}

/// The 1-based ranks `(l, u)` of the order statistics that bracket the `q`
/// quantile of `n` values with at least 95% coverage whatever their
/// distribution: `X(l) ≤ ξq ≤ X(u)` whenever `l ≤ B < u` for
/// `B ~ Binomial(n, q)`, with `l` the largest rank where `P(B < l) ≤ 2.5%`
/// and `u` the smallest where `P(B < u) ≥ 97.5%` (or `n`).
fn quantile_ranks(n: usize, q: f64) -> (usize, usize) {
    let (ln_q, ln_p) = (q.ln(), (1.0 - q).ln());
    let (mut l, mut u) = (1, None);
    let (mut ln_choose, mut below) = (0.0, 0.0);
    for k in 0..=n {
        // Here `below` is P(B < k).
        if below <= 0.025 {
            l = k.max(1);
        }
        if u.is_none() && below >= 0.975 {
            u = Some(k);
        }
        if k > 0 {
            ln_choose += ((n - k + 1) as f64).ln() - (k as f64).ln();
        }
        below += (ln_choose + k as f64 * ln_q + (n - k) as f64 * ln_p).exp();
    }
    (l, u.unwrap_or(n).max(l))
}

#[test]
fn quantile_ranks_are_the_tabled_distribution_free_bounds() {
    // The median of 32: X(10)..X(23), coverage 98.0%; of 20: X(6)..X(15).
    assert_eq!(quantile_ranks(32, 0.5), (10, 23));
    assert_eq!(quantile_ranks(20, 0.5), (6, 15));
    // p99 of 32 values: only the top ones can bound it.
    assert_eq!(quantile_ranks(32, 0.99), (30, 32));
    assert_eq!(quantile_ranks(1, 0.5), (1, 1));
}

/// A 95% interval of `metric`'s re-measured figure as a ratio to `claimed`,
/// worked out apart from verify's bootstrap: for a latency, the order
/// statistics of the re-runs' pooled per-request values (from their
/// `requests.jsonl`) that bracket its percentile (`quantile_ranks`); for a
/// throughput, the range of the re-runs' own figures, which is what an
/// interval of their mean over two repeats spans.
fn own_interval(metric: &str, claimed: f64, reruns: &[PathBuf]) -> (f64, f64) {
    if metric.ends_with("-throughput") {
        let ratios = reruns.iter().map(|d| {
            let s = metrics::read_summary(&d.join("summary.json")).unwrap();
            figure(&s, metric).unwrap() / claimed
        });
        return ratios.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r), hi.max(r))
        });
    }
    let mut values: Vec<f64> = Vec::new();
    for dir in reruns {
        let records = metrics::read_records(&dir.join("requests.jsonl")).unwrap();
        for s in metrics::request_samples(&records) {
            match metric {
                "median-ttft" | "p99-ttft" => values.extend(s.ttft_ms),
                "median-tpot" => values.extend(s.tpot_ms),
                "median-itl" => values.extend(s.itl_ms),
                "median-e2el" => values.push(s.e2el_ms),
                other => panic!("no values for {other}"),
            }
        }
    }
    assert!(!values.is_empty(), "no {metric} values in {reruns:?}");
    values.sort_by(f64::total_cmp);
    let q = if metric == "p99-ttft" { 0.99 } else { 0.5 };
    let (l, u) = quantile_ranks(values.len(), q);
    (values[l - 1] / claimed, values[u - 1] / claimed)
}

/// Checks each metric's verdict against the re-runs' own numbers: with the
/// own interval within `MARGIN` of the band it must be REPRODUCED, wholly
/// beyond `2 - MARGIN` of it NOT REPRODUCED; in between (the interval near
/// or across an edge) any verdict may be right, and it is not checked.
/// Panics on a verdict that contradicts the numbers; returns how many were
/// checked.
fn verdicts_follow_the_numbers(verdict: &Path, run: &Path, shown: &str) -> usize {
    let claimed = metrics::read_summary(&run.join("summary.json")).unwrap();
    let v = json(verdict);
    let reruns = rerun_dirs(verdict, run);
    assert!(!reruns.is_empty(), "no re-run:\n{shown}");
    let mut checked = 0;
    for (metric, band) in LLAMA_BANDS {
        let (lo, hi) = own_interval(metric, figure(&claimed, metric).unwrap(), &reruns);
        let judged = v["predicate"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == metric)
            .unwrap_or_else(|| panic!("no verdict for {metric}:\n{shown}"));
        let (near, far) = (band * MARGIN, band * (2.0 - MARGIN));
        let expect = if 1.0 - near <= lo && hi <= 1.0 + near {
            "REPRODUCED"
        } else if hi < 1.0 - far || lo > 1.0 + far {
            "NOT REPRODUCED"
        } else {
            continue;
        };
        assert_eq!(
            judged["verdict"], expect,
            "{metric}: the re-runs' own 95% interval is [{lo:.3}, {hi:.3}] of the claimed \
             figure against a band of ±{band}, yet {judged}:\n{shown}"
        );
        checked += 1;
    }
    checked
}

/// After an outcome other than the one expected: every verdict must follow
/// the re-runs' own numbers (`verdicts_follow_the_numbers`), and then the
/// outcome was the machine's. With an attempt left, the caller tries again
/// (`false`); after the last one, at least one metric must have been
/// checked (`true`: done).
fn excuse_machine(attempt: usize, run: &Path, o: &Output) -> bool {
    let shown = format!("{}{}", stdout(o), stderr(o));
    let verdict = verdicts(run)
        .pop()
        .unwrap_or_else(|| panic!("no verdict stored:\n{shown}"));
    let checked = verdicts_follow_the_numbers(&verdict, run, &shown);
    if attempt == LLAMA_ATTEMPTS {
        assert!(
            checked > 0,
            "in each of {LLAMA_ATTEMPTS} attempts the machine moved or spread too far for the \
             expected verdict, and in the last no metric's own interval was clear enough of \
             its band's edges to check its verdict:\n{shown}"
        );
        eprintln!(
            "in each of {LLAMA_ATTEMPTS} attempts the machine moved or spread too far for the \
             expected verdict; the last verdict follows the numbers on {checked} metric(s):\n\
             {shown}"
        );
        return true;
    }
    eprintln!(
        "attempt {attempt}: the verdicts follow the re-runs' own numbers ({checked} checked), \
         which left the expected verdict out of reach; again from a new reported run:\n{shown}"
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
        let o = verify_llama(&w, &run, &[]);
        if o.status.code() == Some(0) {
            assert!(stdout(&o).contains("overall: REPRODUCED"), "{}", stdout(&o));
            let last = verdicts(&run).pop().unwrap();
            assert_statement(&last, &run, 2, "REPRODUCED");
            verdicts_follow_the_numbers(&last, &run, &stdout(&o));
            return;
        }
        if excuse_machine(attempt, &run, &o) {
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
            if excuse_machine(attempt, &run, &o) {
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
        verdicts_follow_the_numbers(&verdict, &run, &stdout(&o));
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
