//! `audit` over real runs: a point measured against the in-process sim
//! server, stored through `Store::begin_run` and `commit`, then audited clean
//! and altered in every way an auditor must catch. Also the index, which
//! must answer the same after being deleted and rebuilt from the files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use infermark::digest::sha256_file;
use infermark::metrics;
use infermark::provenance::{RunPredicate, Statement};
use infermark::sim::{SimConfig, Timing};
use infermark::spec::{self, NoPins, Point};
use infermark::store::{self, INDEX_FILE, Index, ListFilter, RunStatus, Store, StoreError};
use infermark::verify::{AuditReport, audit};

/// The files a stored run consists of, as the auditor sees them.
const STORED_FILES: [&str; 6] = [
    "point.json",
    "requests.jsonl",
    "summary.json",
    "environment.json",
    "engine.log",
    "provenance.json",
];

/// A process engine whose executable and model file are pinned by sha256:
/// the sim stands in for the server, which is what lets the whole pipeline
/// run here; the pins are checked against what `environment.json` records.
struct Setup {
    _dir: tempfile::TempDir,
    executable: PathBuf,
    model: PathBuf,
    point: Point,
}

fn setup(concurrency: u32, requests_per_client: u32, output_tokens: u32) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let executable = dir.path().join("llama-server");
    std::fs::write(&executable, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    let model = dir.path().join("model.gguf");
    std::fs::write(&model, b"GGUF not really weights").unwrap();
    let (exe_sha, _) = sha256_file(&executable).unwrap();
    let (model_sha, _) = sha256_file(&model).unwrap();
    let text = format!(
        r#"
schema = 1
[hardware]
class = "cpu"
[engine]
kind = "llamacpp"
runtime = "process"
command = "llama-server"
command-sha256 = "{exe_sha}"
[model]
file = "model.gguf"
sha256 = "{model_sha}"
served-name = "m"
[workload]
input-tokens = 16
output-tokens = {output_tokens}
seed = 1
requests-per-client = {requests_per_client}
warmup-per-client = 1
[load]
concurrency = [{concurrency}]
"#
    );
    let point = spec::parse(Path::new("audit.toml"), &text)
        .unwrap()
        .points(&NoPins)
        .unwrap()
        .remove(0);
    Setup {
        _dir: dir,
        executable,
        model,
        point,
    }
}

/// `environment.json` as the run pipeline writes it for this engine.
fn environment(s: &Setup, base_url: &str) -> String {
    let (exe_sha, _) = sha256_file(&s.executable).unwrap();
    let (model_sha, _) = sha256_file(&s.model).unwrap();
    let env = serde_json::json!({
        "format": "infermark.environment.v1",
        "harness": { "version": env!("CARGO_PKG_VERSION"), "commit": "unknown" },
        "host": { "hostname": "test-host", "os": "test", "kernel": "test",
                  "arch": std::env::consts::ARCH, "cpu_model": "test", "cpu_count": 2,
                  "memory_bytes": 1 },
        "gpus": { "status": "absent", "reason": "not probed in this test",
                  "driver_version": null, "cuda_driver_version": null, "devices": [] },
        "energy": null,
        "hardware": { "point_class": "cpu", "detected_class": "cpu", "override": false },
        "engine": {
            "kind": "llamacpp", "runtime": "process",
            "argv": [s.executable, "-m", s.model, "--port", "0"],
            "base_url": base_url,
            "executable": { "path": s.executable, "sha256": exe_sha },
            "model_file": { "path": s.model, "sha256": model_sha },
            "image": null
        }
    });
    serde_json::to_string_pretty(&env).unwrap() + "\n"
}

/// Measures the point against an in-process sim and commits the run into
/// `root`; returns the run directory.
fn measure_and_store(s: &Setup, root: &Path) -> PathBuf {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = SimConfig {
            timing: Timing {
                ttft_base: Duration::from_millis(5),
                itl: Duration::from_millis(1),
                ..Timing::default()
            },
            ..SimConfig::default()
        };
        let sim = infermark::sim::spawn(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let store = Store::open(root).unwrap();
        let started = SystemTime::now();
        let writer = store.begin_run(&s.point, started).unwrap();
        let m = tokio::time::timeout(
            Duration::from_secs(60),
            infermark::run::measure(&s.point, &sim.base_url(), Path::new("."), None),
        )
        .await
        .expect("the measurement ends within a minute")
        .unwrap();
        assert_eq!(m.summary.counts.failed, 0);
        let dir = writer.dir().to_path_buf();
        metrics::write_records(&dir.join("requests.jsonl"), &m.records).unwrap();
        metrics::write_summary(&dir.join("summary.json"), &m.summary).unwrap();
        std::fs::write(
            dir.join("environment.json"),
            environment(s, &sim.base_url()),
        )
        .unwrap();
        std::fs::write(
            dir.join("engine.log"),
            "the sim stood in for llama-server\n",
        )
        .unwrap();
        let predicate =
            RunPredicate::new(&s.point, writer.run_id(), started, SystemTime::now(), false);
        let path = writer.commit(predicate).unwrap();
        sim.shutdown().await.unwrap();
        path
    })
}

/// A results tree holding one clean, measured run.
struct Clean {
    setup: Setup,
    results: tempfile::TempDir,
    run_dir: PathBuf,
}

fn clean_run() -> Clean {
    let setup = setup(2, 3, 8);
    let results = tempfile::tempdir().unwrap();
    let run_dir = measure_and_store(&setup, results.path());
    Clean {
        setup,
        results,
        run_dir,
    }
}

impl Clean {
    /// A copy of the results tree, and where the run is in it.
    fn copy(&self) -> (tempfile::TempDir, PathBuf) {
        let to = tempfile::tempdir().unwrap();
        copy_dir(self.results.path(), to.path());
        let rel = self.run_dir.strip_prefix(self.results.path()).unwrap();
        let run_dir = to.path().join(rel);
        (to, run_dir)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Where a stored file of a run lives (`point.json` two levels up).
fn stored(run_dir: &Path, name: &str) -> PathBuf {
    if name == "point.json" {
        point_dir(run_dir).join(name)
    } else {
        run_dir.join(name)
    }
}

fn point_dir(run_dir: &Path) -> PathBuf {
    run_dir.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Rewrites the statement over the files as they are now: what someone
/// altering a result would do to pass the hash checks.
fn rehash(run_dir: &Path) {
    let path = run_dir.join("provenance.json");
    let old = Statement::read(&path).unwrap();
    let new = Statement::for_run(run_dir, &point_dir(run_dir), old.predicate).unwrap();
    std::fs::write(&path, new.to_json().unwrap()).unwrap();
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn files_named(report: &AuditReport) -> Vec<PathBuf> {
    report.problems.iter().map(|p| p.file.clone()).collect()
}

#[test]
fn a_clean_run_audits_clean_from_the_run_the_point_or_the_root() {
    let clean = clean_run();
    let point_dir = point_dir(&clean.run_dir);
    for path in [
        clean.run_dir.as_path(),
        point_dir.as_path(),
        clean.results.path(),
    ] {
        let report = audit(path).unwrap();
        assert!(report.is_clean(), "{}", report.render());
        assert_eq!((report.runs, report.failed_runs), (1, 0));
        let on_disk: u64 = STORED_FILES
            .iter()
            .map(|n| std::fs::metadata(stored(&clean.run_dir, n)).unwrap().len())
            .sum();
        assert_eq!(report.bytes, on_disk);
        let text = report.render();
        assert!(
            text.starts_with("audited 1 run (0 failed runs skipped), "),
            "{text}"
        );
        assert!(text.ends_with(": clean\n"), "{text}");
    }
}

#[test]
fn one_changed_byte_in_any_stored_file_fails_the_audit_naming_that_file() {
    let clean = clean_run();
    for name in STORED_FILES {
        let len = std::fs::metadata(stored(&clean.run_dir, name))
            .unwrap()
            .len() as usize;
        let mut positions = vec![0, len / 2, len - 1];
        if name == "provenance.json" {
            // The statement is not itself hashed (it is not signed yet):
            // what catches an edit is a field audit cross-checks. Its first
            // and last bytes break the JSON; a byte of the point id
            // contradicts point.json.
            let text = std::fs::read_to_string(clean.run_dir.join(name)).unwrap();
            let key = "\"point_id\": \"";
            positions[1] = text.find(key).unwrap() + key.len() + 10;
        }
        for at in positions {
            let (copy, run_dir) = clean.copy();
            let file = stored(&run_dir, name);
            flip_byte(&file, at);
            let report = audit(copy.path()).unwrap();
            assert!(
                files_named(&report).contains(&file),
                "{name} byte {at}: {}",
                report.render()
            );
        }
    }
}

#[test]
fn a_pin_in_the_environment_that_differs_from_the_point_is_caught() {
    let clean = clean_run();
    let env = std::fs::read_to_string(clean.run_dir.join("environment.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&env).unwrap();
    let exe_sha = value["engine"]["executable"]["sha256"].as_str().unwrap();
    let model_sha = value["engine"]["model_file"]["sha256"].as_str().unwrap();
    let other = "f".repeat(64);
    let cases = [
        (
            exe_sha.to_string(),
            other.clone(),
            "engine.executable.sha256",
        ),
        (
            model_sha.to_string(),
            other.clone(),
            "engine.model_file.sha256",
        ),
        (
            "\"detected_class\": \"cpu\"".to_string(),
            "\"detected_class\": \"nvidia-h100-sxm\"".to_string(),
            "hardware.detected_class",
        ),
        (
            "\"point_class\": \"cpu\"".to_string(),
            "\"point_class\": \"nvidia-h100-sxm\"".to_string(),
            "hardware.point_class",
        ),
    ];
    for (from, to, key) in cases {
        let (copy, run_dir) = clean.copy();
        let file = run_dir.join("environment.json");
        edit(&file, &from, &to);
        rehash(&run_dir);
        let report = audit(copy.path()).unwrap();
        // Only the pin check can see it: every hash matches.
        assert_eq!(files_named(&report), [file], "{}", report.render());
        assert!(
            report.problems[0].message.contains(&format!("`{key}`")),
            "{}",
            report.render()
        );
    }
}

#[test]
fn an_overridden_hardware_class_must_be_declared_in_the_statement_too() {
    let clean = clean_run();
    let (copy, run_dir) = clean.copy();
    let env = run_dir.join("environment.json");
    edit(
        &env,
        "\"detected_class\": \"cpu\"",
        "\"detected_class\": \"nvidia-h100-sxm\"",
    );
    edit(&env, "\"override\": false", "\"override\": true");
    rehash(&run_dir);
    let report = audit(copy.path()).unwrap();
    assert_eq!(
        files_named(&report),
        [run_dir.join("provenance.json")],
        "{}",
        report.render()
    );
    assert!(report.problems[0].message.contains("hardware_override"));
}

#[test]
fn an_edited_summary_number_is_caught_even_with_the_statement_rehashed() {
    let clean = clean_run();
    let (copy, run_dir) = clean.copy();
    let file = run_dir.join("summary.json");
    let text = std::fs::read_to_string(&file).unwrap();
    // The first `p50_ms` under `latency` is TTFT's.
    let ttft = text.find("\"ttft\"").unwrap();
    let key = "\"p50_ms\": ";
    let start = ttft + text[ttft..].find(key).unwrap() + key.len();
    let end = start + text[start..].find(',').unwrap();
    let value: f64 = text[start..end].parse().unwrap();
    let edited = format!("{}{}{}", &text[..start], value * 0.9, &text[end..]);
    std::fs::write(&file, edited).unwrap();
    rehash(&run_dir);
    let report = audit(copy.path()).unwrap();
    assert_eq!(files_named(&report), [file], "{}", report.render());
    let message = &report.problems[0].message;
    assert!(
        message.starts_with("does not recompute from requests.jsonl: `latency.ttft.p50_ms` is "),
        "{message}"
    );
}

#[test]
fn an_extra_or_missing_file_in_a_run_is_a_problem() {
    let clean = clean_run();
    let (copy, run_dir) = clean.copy();
    let extra = run_dir.join("notes.txt");
    std::fs::write(&extra, "a file nobody vouched for\n").unwrap();
    let report = audit(copy.path()).unwrap();
    assert_eq!(files_named(&report), [extra], "{}", report.render());
    assert!(
        report.problems[0]
            .message
            .starts_with("not listed in provenance.json")
    );

    let (copy, run_dir) = clean.copy();
    let log = run_dir.join("engine.log");
    std::fs::remove_file(&log).unwrap();
    let report = audit(copy.path()).unwrap();
    assert_eq!(files_named(&report), [log], "{}", report.render());
    assert!(report.problems[0].message.starts_with("missing"));
}

#[test]
fn a_statement_of_an_unknown_type_is_named() {
    let clean = clean_run();
    let (copy, run_dir) = clean.copy();
    let file = run_dir.join("provenance.json");
    edit(
        &file,
        "https://infermark.dev/provenance/run/v1",
        "https://infermark.dev/provenance/run/v2",
    );
    let report = audit(copy.path()).unwrap();
    assert_eq!(files_named(&report), [file], "{}", report.render());
    assert_eq!(
        report.problems[0].message,
        "unknown `predicateType` = `https://infermark.dev/provenance/run/v2`: \
         this infermark reads `https://infermark.dev/provenance/run/v1`"
    );
}

#[test]
fn a_failed_run_is_not_a_result() {
    let clean = clean_run();
    let store = Store::open(clean.results.path()).unwrap();
    let writer = store
        .begin_run(&clean.setup.point, SystemTime::now())
        .unwrap();
    std::fs::write(writer.dir().join("engine.log"), "error: out of memory\n").unwrap();
    let failed = writer.fail("engine exited with status 1").unwrap();
    assert_eq!(failed.parent().unwrap().file_name().unwrap(), "failed");

    let report = audit(clean.results.path()).unwrap();
    assert!(report.is_clean(), "{}", report.render());
    assert_eq!((report.runs, report.failed_runs), (1, 1));
    assert!(
        report
            .render()
            .starts_with("audited 1 run (1 failed run skipped), ")
    );
    let listed = Index::open(clean.results.path())
        .unwrap()
        .list(&ListFilter {
            point_prefix: None,
            status: Some(RunStatus::Completed),
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].run.path,
        relative(clean.results.path(), &clean.run_dir)
    );

    // Audited directly, it is still no result.
    let report = audit(&failed).unwrap();
    assert_eq!((report.runs, report.failed_runs), (0, 1));
    // Its failure record must parse.
    std::fs::write(failed.join("failure.json"), "{").unwrap();
    let report = audit(clean.results.path()).unwrap();
    assert_eq!(
        files_named(&report),
        [failed.join("failure.json")],
        "{}",
        report.render()
    );
}

fn relative(root: &Path, dir: &Path) -> String {
    dir.strip_prefix(root)
        .unwrap()
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn rebuilding_the_index_after_deleting_it_gives_the_same_answers() {
    let clean = clean_run();
    let root = clean.results.path();
    measure_and_store(&clean.setup, root);
    let store = Store::open(root).unwrap();
    store
        .begin_run(&clean.setup.point, SystemTime::now())
        .unwrap()
        .fail("readiness timeout after 120 s")
        .unwrap();

    let answers = || {
        let index = Index::open(root).unwrap();
        let all = index.list(&ListFilter::default()).unwrap();
        let failed = index
            .list(&ListFilter {
                point_prefix: Some(clean.setup.point.id()[..6].to_string()),
                status: Some(RunStatus::Failed),
            })
            .unwrap();
        let shown: Vec<_> = all
            .iter()
            .map(|l| index.show(&l.run.run_id).unwrap())
            .chain([index.show(&clean.setup.point.id()[..12]).unwrap()])
            .collect();
        let text = store::index::render_list(&all)
            + &shown
                .iter()
                .map(store::index::render_show)
                .collect::<String>();
        (all, failed, shown, text)
    };
    let before = answers();
    assert_eq!(before.0.len(), 3);
    assert_eq!(before.1.len(), 1);
    for l in &before.0 {
        match l.run.status {
            RunStatus::Completed => assert!(l.run.output_throughput.unwrap() > 0.0),
            RunStatus::Failed => assert_eq!(l.run.output_throughput, None),
        }
    }

    std::fs::remove_file(root.join(INDEX_FILE)).unwrap();
    let (_, report) = Index::rebuild(root).unwrap();
    assert_eq!((report.points, report.runs, report.failed_runs), (1, 3, 1));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(answers(), before);
}

#[test]
fn begin_run_refuses_a_point_json_that_differs() {
    let clean = clean_run();
    let file = point_dir(&clean.run_dir).join("point.json");
    edit(&file, "\"seed\":1", "\"seed\":2");
    let store = Store::open(clean.results.path()).unwrap();
    let err = store
        .begin_run(&clean.setup.point, SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::PointMismatch { path, .. } if *path == file),
        "{err}"
    );
    assert!(err.to_string().contains("point.json"), "{err}");
}

#[test]
#[ignore = "benchmark: prints MB/s; run with cargo test --release --test it audit_bench -- --ignored --nocapture"]
fn audit_bench() {
    // A run with more records than the tests use: 8 clients x 8 requests,
    // 64 tokens each.
    let setup = setup(8, 8, 64);
    let template = tempfile::tempdir().unwrap();
    let run_dir = measure_and_store(&setup, template.path());
    let results = tempfile::tempdir().unwrap();
    let runs_dir = results
        .path()
        .join(run_dir.strip_prefix(template.path()).unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::create_dir_all(&runs_dir).unwrap();
    std::fs::copy(
        point_dir(&run_dir).join("point.json"),
        runs_dir.parent().unwrap().join("point.json"),
    )
    .unwrap();
    let statement = Statement::read(&run_dir.join("provenance.json")).unwrap();
    let started = humantime::parse_rfc3339(&statement.predicate.started_at).unwrap();
    let copies = 1000;
    for _ in 0..copies {
        // The run id is in the statement's predicate only (not in a hashed
        // file), so a copy needs a new predicate, not new digests.
        let id = store::new_run_id(started);
        let dir = runs_dir.join(&id);
        copy_dir(&run_dir, &dir);
        let mut s = statement.clone();
        s.predicate.run_id = id;
        std::fs::write(dir.join("provenance.json"), s.to_json().unwrap()).unwrap();
    }
    let t = Instant::now();
    let report = audit(results.path()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(report.is_clean(), "{}", report.render());
    assert_eq!(report.runs, copies);
    println!("{}", report.render().trim_end());
    println!(
        "audit_bench: {copies} runs ({} records each) in {secs:.2} s: {:.0} runs/s, {:.1} MB/s",
        8 * 9,
        copies as f64 / secs,
        report.bytes as f64 / 1e6 / secs
    );
}

#[test]
fn a_results_tree_with_no_run_yet_audits_as_empty_and_other_directories_are_refused() {
    let results = tempfile::tempdir().unwrap();
    Index::open(results.path()).unwrap();
    let report = audit(results.path()).unwrap();
    assert_eq!((report.runs, report.failed_runs, report.bytes), (0, 0, 0));
    assert!(report.is_clean());
    let elsewhere = tempfile::tempdir().unwrap();
    let err = audit(elsewhere.path()).unwrap_err().to_string();
    assert!(err.contains("not a results directory"), "{err}");
    let err = audit(&elsewhere.path().join("absent"))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("absent: no such directory"), "{err}");
}
