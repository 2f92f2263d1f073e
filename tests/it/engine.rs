//! `engine::start` for real: the built-in sim under the process runtime
//! (the real binary), engines that die or never become ready, and pins
//! refused before anything runs. Every test checks that nothing is left
//! running. (Containers are in the engine tier: `tests/engine/containers.rs`.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use infermark::engine::{self, EngineError};
use infermark::spec::PointSpec;
use sha2::Digest;

use crate::support::engines::{LIMIT, alive, assert_dies, exe, get, options, point, sim, start};
use crate::support::sha256_hex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_process_is_ready_records_its_binary_and_stop_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let e = start(&sim(&[], 30), &opts).await.unwrap();
    let (status, body) = get(&format!("{}/v1/models", e.base_url())).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"it-sim\""), "{body}");
    let facts = e.facts();
    let executable = facts.executable.as_ref().unwrap();
    assert_eq!(executable.path, exe());
    assert_eq!(
        executable.sha256,
        sha256_hex(&exe()),
        "the real binary's sha256"
    );
    assert!(facts.image.is_none() && facts.model_file.is_none());
    assert_eq!(facts.argv[0], exe().display().to_string());
    assert_eq!(&facts.argv[1..4], ["serve-sim", "--host", "127.0.0.1"]);
    assert!(e.base_url().starts_with("http://127.0.0.1:"));
    let json = serde_json::to_value(facts).unwrap();
    assert_eq!(json["kind"], "sim");
    assert_eq!(json["runtime"], "process");
    let log = std::fs::read_to_string(e.log_path()).unwrap();
    assert!(log.contains("listening on http://127.0.0.1:"), "{log}");
    let pid = e.pid();
    assert!(alive(pid));
    let mut e = e;
    assert!(e.exited().is_none());
    tokio::time::timeout(LIMIT, e.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(!alive(pid), "stop returns once the engine is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_engine_kills_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(&sim(&[], 30), &options(dir.path())).await.unwrap();
    let pid = e.pid();
    assert!(alive(pid));
    drop(e);
    assert_dies(pid, "after drop").await;
}

/// `kill_all_started` tears down every engine of the process, including
/// other tests' running in parallel; so its test re-runs this test binary
/// for [`kill_all_started_in_its_own_process`] alone.
#[test]
fn kill_all_started_kills_a_running_engine() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "engine::kill_all_started_in_its_own_process",
            "--nocapture",
        ])
        .env(OWN_PROCESS, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("kill_all_started: checked"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const OWN_PROCESS: &str = "INFERMARK_IT_KILL_ALL_OWN_PROCESS";

/// The body of [`kill_all_started_kills_a_running_engine`]; does nothing
/// unless run by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all_started_in_its_own_process() {
    if std::env::var_os(OWN_PROCESS).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut e = start(&sim(&[], 30), &options(dir.path())).await.unwrap();
    let pid = e.pid();
    engine::kill_all_started();
    assert_dies(pid, "after kill_all_started").await;
    let start = Instant::now();
    let reason = loop {
        if let Some(r) = e.exited() {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "exited() never reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        reason.contains("SIGKILL") || reason.contains("signal: 9"),
        "{reason}"
    );
    // Already torn down: stop has nothing left to do and does not fail.
    tokio::time::timeout(LIMIT, e.stop())
        .await
        .unwrap()
        .unwrap();
    println!("kill_all_started: checked");
}

/// PR_SET_PDEATHSIG: an engine dies with a harness killed outright. The
/// harness is this test binary again, running
/// [`harness_that_gets_sigkilled`] alone; it prints its engine's pid and
/// waits to be SIGKILLed.
#[test]
fn an_engine_dies_with_a_sigkilled_harness() {
    use std::io::BufRead;
    let mut harness = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "engine::harness_that_gets_sigkilled",
            "--nocapture",
        ])
        .env(HARNESS, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = harness.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(pid) = line.strip_prefix("engine pid: ") {
                let _ = tx.send(pid.trim().parse::<u32>().unwrap());
            }
        }
    });
    let pid = rx.recv_timeout(LIMIT);
    harness.kill().unwrap();
    harness.wait().unwrap();
    let pid = pid.expect("the harness started its engine");
    let killed = Instant::now();
    while alive(pid) {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "engine {pid} outlived its SIGKILLed harness"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const HARNESS: &str = "INFERMARK_IT_SIGKILLED_HARNESS";

/// The harness of [`an_engine_dies_with_a_sigkilled_harness`]; does nothing
/// unless run by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_that_gets_sigkilled() {
    if std::env::var_os(HARNESS).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let e = start(&sim(&[], 30), &options(dir.path())).await.unwrap();
    println!("engine pid: {}", e.pid());
    tokio::time::sleep(LIMIT).await;
    drop(e);
    panic!("the harness was to be SIGKILLed before this");
}

/// A process engine running `sh` (pinned by the sha256 of the `sh` on PATH).
fn sh_point(script: &str, sha: &str, model: &str) -> PointSpec {
    point(&format!(
        "[hardware]\nclass = \"cpu\"\n[engine]\nkind = \"openai\"\nruntime = \"process\"\ncommand = \"sh\"\ncommand-sha256 = \"{sha}\"\nargs = [\"-c\", {script:?}]\nreadiness-timeout-s = 30\n{model}"
    ))
}

fn sh_on_path() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("sh"))
        .find(|p| p.is_file())
        .expect("sh on PATH")
}

const NO_MODEL: &str =
    "[model]\nrepo = \"org/none\"\nrevision = \"0123456789abcdef0123456789abcdef01234567\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_exits_during_start_fails_at_once_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let p = sh_point(
        "echo boom-marker >&2; sleep 300 & exit 3",
        &sha256_hex(&sh_on_path()),
        NO_MODEL,
    );
    let began = Instant::now();
    let err = start(&p, &options(dir.path())).await.unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "noticed in {:?}",
        began.elapsed()
    );
    assert!(matches!(err, EngineError::Exited { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("boom-marker"), "the log tail: {msg}");
    // The background `sleep` of the engine's process group dies too (SIGKILL
    // is delivered asynchronously: allow it a moment).
    let killed = Instant::now();
    loop {
        let survivors = running_in(dir.path());
        if survivors.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "survivors: {survivors:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Live processes whose working directory is `dir` (process engines run in
/// the experiment's directory).
fn running_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir))
        .filter(|pid| alive(*pid))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_never_ready_is_stopped_after_the_readiness_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let began = Instant::now();
    let err = start(&sim(&["--health-status", "503"], 1), &options(dir.path()))
        .await
        .unwrap_err();
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let EngineError::NotReady {
        url,
        after,
        log_tail,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*after, Duration::from_secs(1));
    assert!(url.ends_with("/health"), "{url}");
    assert!(log_tail.contains("listening on"), "{log_tail}");
    assert!(err.to_string().contains("did not answer 2xx"), "{err}");
    // The engine was stopped: its port no longer answers.
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/health")
        .to_string();
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "{addr} still answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_executable_sha256_is_refused_before_start() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = "ab".repeat(32);
    let p = sh_point("touch started", &wrong, NO_MODEL);
    let err = start(&p, &options(dir.path())).await.unwrap_err();
    let EngineError::PinMismatch {
        expected, observed, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(expected, &format!("sha256 {wrong}"));
    assert_eq!(observed, &format!("sha256 {}", sha256_hex(&sh_on_path())));
    let msg = err.to_string();
    assert!(
        msg.contains("`engine.command` `sh`") && msg.contains(&wrong),
        "{msg}"
    );
    assert!(!dir.path().join("started").exists(), "nothing ran");
    assert!(!dir.path().join("logs/engine.log").exists(), "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_model_file_sha256_is_refused_before_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("weights.gguf"), "not the pinned weights").unwrap();
    let real = sha256_hex(&dir.path().join("weights.gguf"));
    let wrong = "cd".repeat(32);
    let p = sh_point(
        "touch started",
        &sha256_hex(&sh_on_path()),
        &format!("[model]\nfile = \"weights.gguf\"\nsha256 = \"{wrong}\""),
    );
    let err = start(&p, &options(dir.path())).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EngineError::PinMismatch { .. }), "{err:?}");
    assert!(
        msg.contains("`model.file` `weights.gguf`")
            && msg.contains(&format!("expected sha256 {wrong}"))
            && msg.contains(&format!("observed sha256 {real}")),
        "{msg}"
    );
    assert!(!dir.path().join("started").exists(), "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executable_and_model_file_come_from_the_content_addressed_store() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    // A copy of infermark, known only to the store, run as an `openai`
    // engine whose arguments place the host, port and name.
    let exe_sha = sha256_hex(&exe());
    let stored_exe = opts
        .cache_dir
        .join("files")
        .join(&exe_sha)
        .join("my-openai-server");
    std::fs::create_dir_all(stored_exe.parent().unwrap()).unwrap();
    std::fs::copy(exe(), &stored_exe).unwrap();
    let weights = b"weights in the store";
    let weights_sha: String = sha2::Sha256::digest(weights)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let stored_weights = opts
        .cache_dir
        .join("files")
        .join(&weights_sha)
        .join("model.gguf");
    std::fs::create_dir_all(stored_weights.parent().unwrap()).unwrap();
    std::fs::write(&stored_weights, weights).unwrap();
    let p = point(&format!(
        "[hardware]\nclass = \"cpu\"\n[engine]\nkind = \"openai\"\nruntime = \"process\"\ncommand = \"my-openai-server\"\ncommand-sha256 = \"{exe_sha}\"\nargs = [\"serve-sim\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\", \"--model-name\", \"{{served_name}}\"]\nreadiness-timeout-s = 30\n[model]\nfile = \"model.gguf\"\nsha256 = \"{weights_sha}\"\nserved-name = \"stored\""
    ));
    let e = start(&p, &opts).await.unwrap();
    let facts = e.facts();
    assert_eq!(facts.executable.as_ref().unwrap().path, stored_exe);
    assert_eq!(facts.executable.as_ref().unwrap().sha256, exe_sha);
    let model = facts.model_file.as_ref().unwrap();
    assert_eq!(model.path, stored_weights);
    assert_eq!(model.sha256, weights_sha);
    let (status, body) = get(&format!("{}/v1/models", e.base_url())).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"stored\""), "{body}");
    let pid = e.pid();
    tokio::time::timeout(LIMIT, e.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(!alive(pid));
}
