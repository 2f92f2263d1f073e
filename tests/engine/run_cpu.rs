//! `infermark run` end to end on real parts: llama.cpp's `llama-server` as a
//! process engine and inside a podman image pinned by digest (pushed to a
//! docker-registry on loopback), then `audit`, the index, SIGTERM mid-run and
//! an engine that dies while starting.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::engines::World;
use crate::support::{
    GGUF_SHA256, free_port, heavy, infermark, json, llama_engine, repo, sha256_hex, stderr, stdout,
};

/// Pids of live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            // Zombies have an empty cmdline, so this is a live process.
            out.push(pid);
        }
    }
    out
}

/// Asserts a finished run of the llama.cpp points: both load levels
/// completed, every request exactly `max_tokens` long, and a clean audit.
fn assert_completed_and_audited(w: &World, o: &std::process::Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    let out = stdout(o);
    assert!(out.contains("2 point(s): 2 completed, 0 failed"), "{out}");
    let runs = w.runs("runs");
    assert_eq!(runs.len(), 2, "{runs:?}");
    for run in &runs {
        for f in [
            "requests.jsonl",
            "summary.json",
            "environment.json",
            "engine.log",
            "provenance.json",
        ] {
            assert!(run.join(f).is_file(), "{} lacks {f}", run.display());
        }
        let summary = json(&run.join("summary.json"));
        assert_eq!(summary["counts"]["failed"], 0, "{summary}");
        let records = std::fs::read_to_string(run.join("requests.jsonl")).unwrap();
        for line in records.lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(r["usage_output_tokens"], 32, "{line}");
        }
        let env = json(&run.join("environment.json"));
        assert_eq!(env["format"], "infermark.environment.v1");
        assert_eq!(env["hardware"]["point_class"], "cpu");
        assert_eq!(env["hardware"]["override"], false);
        assert_eq!(env["engine"]["kind"], "llamacpp");
        let statement = json(&run.join("provenance.json"));
        assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
        assert!(!std::fs::read(run.join("engine.log")).unwrap().is_empty());
    }
    let audit = infermark(w.root(), &["audit", w.results().to_str().unwrap()]);
    assert_eq!(
        audit.status.code(),
        Some(0),
        "{}{}",
        stdout(&audit),
        stderr(&audit)
    );
    assert!(
        stdout(&audit).contains("audited 2 runs"),
        "{}",
        stdout(&audit)
    );
}

#[test]
fn llamacpp_process_point_runs_end_to_end_and_audits_clean() {
    let _heavy = heavy();
    let w = World::new("llamacpp-smollm2.toml", |t| t);
    let o = w.run(&[]);
    assert_completed_and_audited(&w, &o);
    for run in w.runs("runs") {
        let env = json(&run.join("environment.json"));
        let exe = &env["engine"]["executable"];
        let pinned = sha256_hex(&PathBuf::from(llama_engine().0));
        assert_eq!(exe["sha256"], pinned.as_str(), "{env}");
        assert_eq!(env["engine"]["model_file"]["sha256"], GGUF_SHA256);
        assert_eq!(env["engine"]["runtime"], "process");
    }
    // The index answers, and a rebuild from the files alone answers the same.
    let list = w.infermark(&[
        "results",
        "list",
        "--results",
        w.results().to_str().unwrap(),
    ]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    assert_eq!(
        stdout(&list).matches("completed").count(),
        2,
        "{}",
        stdout(&list)
    );
    std::fs::remove_file(w.results().join("index.sqlite")).unwrap();
    let rebuilt = w.infermark(&[
        "index",
        "rebuild",
        "--results",
        w.results().to_str().unwrap(),
    ]);
    assert_eq!(rebuilt.status.code(), Some(0), "{}", stderr(&rebuilt));
    let again = w.infermark(&[
        "results",
        "list",
        "--results",
        w.results().to_str().unwrap(),
    ]);
    assert_eq!(stdout(&list), stdout(&again));
    // No engine outlives the run.
    let server = llama_engine().0;
    assert!(processes_mentioning(w.root().to_str().unwrap()).is_empty());
    let _ = server;
}

#[test]
fn an_engine_that_exits_while_starting_fails_with_its_log_tail_and_leaves_no_result() {
    let _heavy = heavy();
    let w = World::new("llamacpp-smollm2.toml", |t| {
        let args = r#"args = ["-c", "4096", "-np", "4", "-t", "1"]"#;
        assert!(t.contains(args));
        t.replace(args, r#"args = ["--no-such-flag-infermark"]"#)
    });
    let started = Instant::now();
    let o = w.run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let err = stderr(&o);
    assert!(err.contains("engine failed to start"), "{err}");
    // llama-server names the flag it rejects: the log tail is in the error.
    assert!(err.contains("no-such-flag-infermark"), "{err}");
    assert!(
        w.runs("runs").is_empty(),
        "a failed start must not look like a result"
    );
    let failed = w.runs("failed");
    assert_eq!(
        failed.len(),
        2,
        "each point of the group is recorded as failed: {failed:?}"
    );
    for f in failed {
        let failure = json(&f.join("failure.json"));
        assert!(
            failure["reason"]
                .as_str()
                .unwrap()
                .contains("engine failed to start")
        );
    }
}

/// Waits until a run is in flight (a run directory under `.tmp`), or panics.
fn wait_for_run_in_flight(w: &World, child: &mut std::process::Child) {
    let tmp = w.results().join(".tmp");
    let start = Instant::now();
    loop {
        let in_flight = std::fs::read_dir(&tmp)
            .map(|d| {
                d.flatten()
                    .any(|e| !e.file_name().to_string_lossy().starts_with("engine-"))
            })
            .unwrap_or(false);
        if in_flight {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("infermark run ended before measuring: {status}");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no run started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM mid-measurement: exit 143, engine gone, the point in flight
/// recorded as failed, nothing under `runs/`.
fn sigterm_mid_run(w: &World, engine_gone: impl Fn() -> bool) {
    let mut child = w
        .run_command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_run_in_flight(w, &mut child);
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "infermark run ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(engine_gone(), "an engine outlived SIGTERM");
    assert!(
        w.runs("runs").is_empty(),
        "no run may look complete: {:?}",
        w.runs("runs")
    );
    let failed = w.runs("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let failure = json(&failed[0].join("failure.json"));
    assert!(
        failure["reason"].as_str().unwrap().contains("SIGTERM"),
        "{failure}"
    );
    let tmp_left: Vec<_> = std::fs::read_dir(w.results().join(".tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp_left.is_empty(), "{tmp_left:?}");
}

/// More requests per client so that SIGTERM lands mid-measurement.
fn longer(t: String) -> String {
    assert!(t.contains("requests-per-client = 8\n"));
    t.replace("requests-per-client = 8", "requests-per-client = 40")
}

#[test]
fn sigterm_mid_measurement_leaves_no_engine_process_and_no_complete_result() {
    let _heavy = heavy();
    let w = World::new("llamacpp-smollm2.toml", longer);
    let needle = w.root().to_str().unwrap().to_string();
    sigterm_mid_run(&w, || processes_mentioning(&needle).is_empty());
}

// ---- podman: the same engine in an image pinned by digest ----

/// Removes a test image from podman's storage when dropped.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "--force", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Builds the llama.cpp image, pushes it to a fresh loopback registry,
/// and pins the registry's digest in the world's lock.
fn podman_world(edit: impl Fn(String) -> String) -> (World, String, Image) {
    crate::support::require("podman", "apt-get install podman (.ci/setup installs it)");
    crate::support::require(
        "docker-registry",
        "apt-get install docker-registry (.ci/setup installs it)",
    );
    let (server, model) = llama_engine();
    let port = free_port();
    let repository = format!("infermark-test/llama-{port}");
    let out = Command::new("bash")
        .arg(repo().join("tests/setup/llama-image.sh"))
        .args([&server, &model, &port.to_string(), &repository, "t1"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "tests/setup/llama-image.sh failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .to_string()
    };
    let (image, digest) = (get("IMAGE="), get("DIGEST="));
    let guard = Image(format!("127.0.0.1:{port}/{repository}@{digest}"));
    let w = World::new("llamacpp-smollm2-podman.toml", |t| {
        edit(t.replace(
            "127.0.0.1:5055/infermark/llama-server-smollm2:11434.0.0",
            &image,
        ))
    });
    let o = w.infermark(&["lock", "set", &image, &digest]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    (w, digest, guard)
}

fn containers_named_infermark() -> Vec<String> {
    let out = Command::new("podman")
        .args([
            "ps",
            "-a",
            "--filter",
            "name=infermark-",
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn llamacpp_in_podman_by_digest_runs_end_to_end_and_audits_clean() {
    let _heavy = heavy();
    let (w, digest, _image) = podman_world(|t| t);
    let before = containers_named_infermark();
    let o = w.run(&[]);
    assert_completed_and_audited(&w, &o);
    for run in w.runs("runs") {
        let env = json(&run.join("environment.json"));
        assert_eq!(env["engine"]["runtime"], "podman");
        assert_eq!(env["engine"]["image"]["digest"], digest.as_str(), "{env}");
        assert!(env["engine"]["executable"].is_null());
    }
    let after = containers_named_infermark();
    assert_eq!(before, after, "the run left a container behind");
}

#[test]
fn sigterm_mid_measurement_leaves_no_container_and_no_complete_result() {
    let _heavy = heavy();
    let (w, _, _image) = podman_world(longer);
    let before = containers_named_infermark();
    sigterm_mid_run(&w, || containers_named_infermark() == before);
}
