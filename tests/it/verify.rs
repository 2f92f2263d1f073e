//! `infermark verify` end to end: against the built-in sim server (whose
//! timing is known, so a shifted run is shifted by construction, and whose
//! run-to-run drift can be set from a seed). (Against the real llama.cpp
//! engine: the engine tier, `tests/engine/verify.rs`.)
//!
//! Bands are chosen for a shared two-core machine: the sim's medians are
//! timer-driven and hold within a few percent, so 15% on latency medians
//! and throughputs leaves room for other tests' load without hiding a
//! wrong formula. p99 TTFT of a few dozen requests per run is not judged
//! (a p99 needs 368 values per run), and the verdict says so.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use infermark::metrics;
use infermark::probe::{self, Environment};
use infermark::provenance::RunPredicate;
use infermark::spec::{Point, VerifyMetric};
use infermark::store::Store;
use infermark::verify::reproduce::LoadedRun;
use infermark::verify::stats::{self, Method, MetricInput, Repeats, RunValue, Verdict};

use crate::support::verdicts::{
    alone_in_a_tree, assert_statement, inflate, reruns_of, runs_of, verdicts,
};
use crate::support::{infermark, json, serve_sim, stderr, stdout};

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
        SimWorld::with_sim(bands, &[])
    }

    /// The same with the sim's own arguments instead of its default timing.
    fn with_sim(bands: &str, sim_args: &[&str]) -> SimWorld {
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
        let text = if sim_args.is_empty() {
            text
        } else {
            let args: Vec<String> = sim_args.iter().map(|a| format!("\"{a}\"")).collect();
            let text = text.replace(
                r#"args = ["--ttft-ms", "50", "--itl-ms", "10"]"#,
                &format!("args = [{}]", args.join(", ")),
            );
            assert!(text.contains(&args.join(", ")), "{text}");
            text
        };
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

#[test]
fn a_sim_run_verified_on_the_same_machine_is_reproduced() {
    let w = SimWorld::new(SIM_BANDS);
    let reported = w.run();
    let o = infermark(w.root(), &["verify", reported.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("overall: REPRODUCED ("), "{out}");
    // 24 requests per run: medians are judged, the p99 is not, and the
    // verdict says which and why.
    assert!(out.contains("not judged: p99-ttft)"), "{out}");
    assert!(
        out.contains("note: p99-ttft: not judged: 24 values per run, a p99 needs at least 368"),
        "{out}"
    );
    for metric in stats::METRICS {
        assert!(out.contains(metric.as_str()), "{out}");
    }
    // Each re-run is followed by what is still undecided.
    assert!(stderr(&o).contains("after 2 re-run(s): "), "{}", stderr(&o));
    // The new runs are ordinary results of the same point, and the tree
    // (verdicts included) still audits clean.
    let vs = verdicts(&reported);
    assert_eq!(vs.len(), 1);
    let reruns = reruns_of(&vs[0]);
    assert!((2..=10).contains(&reruns), "{reruns}");
    assert_eq!(runs_of(&w.results()).len(), 1 + reruns);
    assert_statement(&vs[0], &reported, reruns, "REPRODUCED");
    let a = infermark(w.root(), &["audit", "results"]);
    assert_eq!(a.status.code(), Some(0), "{}", stdout(&a));

    // By point id prefix, with one fixed re-run: the earlier re-runs of the
    // point on this machine are compared too, and the statement names them.
    let id = reported.ancestors().nth(2).unwrap();
    let prefix = &id.file_name().unwrap().to_str().unwrap()[..10];
    let o = infermark(
        w.root(),
        &["verify", prefix, "--results", "results", "--repeats", "1"],
    );
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "(1 re-run(s) and {reruns} earlier run(s) here; repeats 1;"
        )),
        "{out}{}",
        stderr(&o)
    );
    let newest = verdicts(&reported).pop().unwrap();
    let v = json(&newest);
    assert_eq!(
        v["predicate"]["compared_runs"].as_array().unwrap().len(),
        reruns,
        "{v}"
    );
    assert_eq!(runs_of(&w.results()).len(), 2 + reruns);
}

/// Runs of the sim drift from one to the next by a seeded log-normal speed
/// factor (sd 3%) and each request by its own (sd 5%): the spread of a real
/// machine, known by construction. Five honest reported runs and five
/// edited to claim 30% more throughput, each verified with the default
/// policy and bands (±5% throughputs, ±10% latencies) in a tree of its own.
/// At this spread the statistics tests measure 0% honest runs NOT
/// REPRODUCED and 100% of 30% claims NOT REPRODUCED (`verify::stats`), so
/// every case must come out so; an honest run may be INCONCLUSIVE (a ±5%
/// band is narrower than what one run at 3% spread can show).
#[test]
fn with_seeded_run_drift_honest_runs_are_never_refuted_and_30_percent_claims_always_are() {
    // 28 requests a run: (1 warm-up + 6) per client at concurrency 4.
    let drift = [
        "--ttft-ms",
        "20",
        "--itl-ms",
        "4",
        "--run-drift",
        "0.03",
        "--run-requests",
        "28",
        "--request-jitter",
        "0.05",
        "--drift-seed",
        "3",
    ];
    let w = SimWorld::with_sim("", &drift);
    let first = w.run();
    // Nine runs of the point, each of its own drift draw.
    let o = infermark(
        w.root(),
        &["verify", first.to_str().unwrap(), "--repeats", "8"],
    );
    assert!(matches!(o.status.code(), Some(0 | 5 | 6)), "{}", stderr(&o));
    let runs = runs_of(&w.results());
    assert_eq!(runs.len(), 9, "{runs:?}");
    // The ten verifications at once, each in a tree of its own with its
    // own sim: the sim's timing is timer-driven, so they mostly wait, and
    // one after another they would take minutes.
    let cases: Vec<(usize, &PathBuf, f64)> = runs
        .iter()
        .skip(4)
        .enumerate()
        .flat_map(|(case, run)| [(case, run, 1.0), (case, run, 1.3)])
        .collect();
    let verdicts: Vec<(f64, Option<i32>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|&(case, run, claim)| {
                let root = w.root();
                s.spawn(move || {
                    let (_tree, reported) = alone_in_a_tree(run);
                    if claim > 1.0 {
                        inflate(&reported, claim);
                    }
                    let o = infermark(root, &["verify", reported.to_str().unwrap()]);
                    let shown =
                        format!("case {case}, claim ×{claim}:\n{}{}", stdout(&o), stderr(&o));
                    (claim, o.status.code(), shown)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (inflated, honest): (Vec<_>, Vec<_>) = verdicts
        .into_iter()
        .map(|(claim, code, shown)| (claim, (code, shown)))
        .partition(|(claim, _)| *claim > 1.0);
    let honest: Vec<_> = honest.into_iter().map(|(_, v)| v).collect();
    let inflated: Vec<_> = inflated.into_iter().map(|(_, v)| v).collect();
    for (code, shown) in &honest {
        assert!(
            matches!(code, Some(0 | 6)),
            "an honest run was refuted: {shown}"
        );
    }
    for (code, shown) in &inflated {
        assert_eq!(*code, Some(5), "a 30% claim was not refuted: {shown}");
    }
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
    assert_statement(&vs[0], &shifted, reruns_of(&vs[0]), "NOT REPRODUCED");
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
    // mercy of the machine's noise; here the edge is placed on a real
    // recorded run's figures (its values and its requests' own sampling
    // variance) instead, so the case is deterministic.
    let w = SimWorld::new(SIM_BANDS);
    let reported = w.run();
    let run = LoadedRun::load(&reported).unwrap();
    let method = Method::new(Repeats::Fixed { n: 3 });
    for (i, metric) in stats::METRICS.iter().enumerate() {
        if !matches!(metric, VerifyMetric::MedianE2el | VerifyMetric::MedianTtft) {
            continue;
        }
        let figure = run.figures[i];
        let value = figure.value.unwrap();
        assert!(value.within_var > 0.0, "{metric}: {value:?}");
        // Three runs here 5% above the reported figure, 1% apart: the
        // interval is centred on the edge of a 5% band.
        let here = |centre: f64| MetricInput {
            reported: Some(value),
            reported_values: figure.count,
            here: [0.99, 1.0, 1.01]
                .iter()
                .map(|f| RunValue {
                    value: value.value * centre * f,
                    within_var: value.within_var,
                })
                .collect(),
            here_values: figure.count,
        };
        let r = stats::compare(*metric, &here(1.05), 0.05, &method, 3);
        assert_eq!(r.verdict, Some(Verdict::Inconclusive), "{r:?}");
        let i = r.interval.unwrap();
        assert!(i.lo < 1.05 && 1.05 < i.hi, "{r:?}");
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
