//! `engine::start` for real: the built-in sim under the process runtime
//! (the real binary), engines that die or never become ready, pins refused
//! before anything runs, and the sim in Docker and Podman by digest from a
//! loopback registry. Every test checks that nothing is left running.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use infermark::engine::{self, EngineError, RunningEngine, StartOptions};
use infermark::spec::reference::ImageRef;
use infermark::spec::{self, NoPins, PointSpec, Runtime};
use sha2::Digest;

use crate::containers::{self, Registry, Rootfs};

/// Every test's bound: generous for a loaded two-core machine, finite.
const LIMIT: Duration = Duration::from_secs(120);

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_infermark"))
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first point of an experiment written as TOML (workload and load
/// added).
fn point(head: &str) -> PointSpec {
    let text = format!(
        "schema = 1\n{head}\n[workload]\napi = \"completions\"\ninput-tokens = 8\noutput-tokens = 4\n[load]\nconcurrency = [1]\n"
    );
    let e = spec::parse(Path::new("engine-test.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    e.points(&NoPins).unwrap()[0].spec.clone()
}

fn sim(args: &[&str], readiness_timeout_s: u64) -> PointSpec {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    point(&format!(
        "[hardware]\nclass = \"cpu\"\n[engine]\nkind = \"sim\"\nargs = [{}]\nreadiness-timeout-s = {readiness_timeout_s}\n[model]\nserved-name = \"it-sim\"",
        args.join(", ")
    ))
}

fn options(dir: &Path) -> StartOptions {
    static N: AtomicU32 = AtomicU32::new(0);
    StartOptions {
        label: format!(
            "it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ),
        spec_dir: dir.to_path_buf(),
        cache_dir: dir.join("cache"),
        model_dirs: Vec::new(),
        model_cache: None,
        log_path: dir.join("logs").join("engine.log"),
        infermark_exe: exe(),
        registry_insecure_loopback: true,
    }
}

async fn start(p: &PointSpec, opts: &StartOptions) -> Result<RunningEngine, EngineError> {
    tokio::time::timeout(LIMIT, engine::start(p, opts))
        .await
        .expect("engine::start returns in time")
}

/// `true` while `pid` is a live process (a zombie is dead, just not reaped).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !(state.starts_with('Z') || state.starts_with('X'))
        }
        Err(_) => false,
    }
}

/// Waits (bounded) until `pid` is dead.
async fn assert_dies(pid: u32, what: &str) {
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: pid {pid} still alive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

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

// --- containers -----------------------------------------------------------

/// An image holding the infermark binary (and the libraries it links) at
/// /usr/local/bin/infermark, pushed to `registry` with `runtime`.
fn sim_image(runtime: &str, registry: &Registry) -> String {
    let rootfs = Rootfs::new();
    rootfs.add_binary(&exe(), "/usr/local/bin/infermark");
    registry.push(
        runtime,
        &rootfs,
        "infermark-sim",
        "it",
        &["ENV PATH=/usr/local/bin:/usr/bin:/bin"],
    )
}

/// Fails unless container runtime `rt` and a registry are installed,
/// saying how to install them.
fn require_runtime(rt: &str) {
    let install = match rt {
        "docker" => "apt-get install docker.io, and start dockerd",
        _ => "apt-get install podman (.ci/setup installs it)",
    };
    crate::support::require(rt, install);
    crate::support::require(
        "docker-registry",
        "apt-get install docker-registry (.ci/setup installs it)",
    );
}

fn sim_in(runtime: Runtime, reference: &str) -> PointSpec {
    let mut p = sim(&[], 60);
    p.engine.runtime = runtime;
    p.engine.image = Some(ImageRef::parse(reference).unwrap());
    p
}

async fn sim_in_a_container_by_digest(runtime: Runtime) {
    let rt = runtime.as_str();
    require_runtime(rt);
    let registry = Registry::start();
    let reference = sim_image(rt, &registry);
    let pin = reference.split('@').nth(1).unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let name = format!("infermark-{}", opts.label);
    let p = sim_in(runtime, &reference);

    let e = start(&p, &opts).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = get(&format!("{}/v1/models", e.base_url())).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"it-sim\""), "{body}");
    let facts = e.facts();
    let image = facts.image.as_ref().unwrap();
    assert_eq!(image.digest, pin, "inspect reports the pinned digest");
    assert_eq!(image.reference, reference);
    assert!(image.container_id.as_ref().is_some_and(|c| c.len() >= 12));
    assert!(image.image_id.as_ref().is_some_and(|i| !i.is_empty()));
    assert!(
        image.runtime_version.to_lowercase().contains(rt),
        "{}",
        image.runtime_version
    );
    assert!(facts.executable.is_none());
    assert_eq!(facts.argv[0], rt);
    assert!(facts.argv.contains(&reference));
    assert_eq!(containers::containers_named(rt, &name), vec![name.clone()]);
    let log = std::fs::read_to_string(e.log_path()).unwrap();
    assert!(log.contains("listening on http://0.0.0.0:8000"), "{log}");
    tokio::time::timeout(LIMIT, e.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(
        containers::containers_named(rt, &name).is_empty(),
        "stop leaves no container"
    );

    // Dropped without stop: removed all the same (the image is local now).
    let opts = options(dir.path());
    let name = format!("infermark-{}", opts.label);
    let e = start(&p, &opts).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(containers::containers_named(rt, &name), vec![name.clone()]);
    drop(e);
    assert!(
        containers::containers_named(rt, &name).is_empty(),
        "drop leaves no container"
    );
    containers::remove_image(rt, &reference);
}

async fn a_digest_the_registry_lacks_fails_with_no_container(runtime: Runtime) {
    let rt = runtime.as_str();
    require_runtime(rt);
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let reference = format!("{}/infermark-sim@sha256:{}", registry.addr, "e".repeat(64));
    let err = start(&sim_in(runtime, &reference), &opts)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EngineError::Pull { .. }), "{err:?}");
    assert!(
        msg.starts_with(&format!("cannot pull `{reference}`: `{rt} pull"))
            && msg.contains("manifest unknown"),
        "{msg}"
    );
    let name = format!("infermark-{}", opts.label);
    assert!(containers::containers_named(rt, &name).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_in_docker_by_digest_reports_the_pin_and_leaves_no_container() {
    sim_in_a_container_by_digest(Runtime::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_in_podman_by_digest_reports_the_pin_and_leaves_no_container() {
    sim_in_a_container_by_digest(Runtime::Podman).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_refuses_a_digest_the_registry_lacks() {
    a_digest_the_registry_lacks_fails_with_no_container(Runtime::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_refuses_a_digest_the_registry_lacks() {
    a_digest_the_registry_lacks_fails_with_no_container(Runtime::Podman).await;
}

/// `<pid>:<start ticks>:<boot id>` of a process, as infermark labels the
/// containers it starts.
fn owner_label(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    format!("{pid}:{start}:{}", boot.trim())
}

/// Starts, detached, the container of an engine's command line `argv`
/// (infermark's own, so with every flag the runtime needs here) under
/// `name`, with `owner` as its owner label (none if `None`) and no port
/// published (several run at once).
fn detached_like(argv: &[String], name: &str, owner: Option<&str>) {
    let mut args: Vec<String> = Vec::new();
    let mut rest = argv[1..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "run" => args.extend(["run".to_string(), "-d".to_string()]),
            "--name" => {
                rest.next();
                args.extend(["--name".to_string(), name.to_string()]);
            }
            "--label" => {
                rest.next();
                if let Some(o) = owner {
                    args.extend(["--label".to_string(), format!("infermark.owner={o}")]);
                }
            }
            "-p" => {
                rest.next();
            }
            _ => args.push(a.clone()),
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    containers::run(&argv[0], &args);
}

/// A harness killed by SIGKILL cannot remove its container; the next start
/// on the host does, and only that one: a container of a harness still
/// running, and one infermark did not label, stay.
async fn a_container_left_by_a_killed_harness_is_removed_at_the_next_start(runtime: Runtime) {
    let rt = runtime.as_str();
    require_runtime(rt);
    let registry = Registry::start();
    let reference = sim_image(rt, &registry);
    let dir = tempfile::tempdir().unwrap();
    let p = sim_in(runtime, &reference);
    // The first start pulls the image; its container carries its owner.
    let e = start(&p, &options(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let argv = e.facts().argv.clone();
    assert!(
        argv.join(" ").contains(&format!(
            "--label infermark.owner={}",
            owner_label(std::process::id())
        )),
        "{argv:?}"
    );
    tokio::time::timeout(LIMIT, e.stop())
        .await
        .unwrap()
        .unwrap();

    let tag = std::process::id();
    let (stale, live, unlabelled) = (
        format!("infermark-stale-{tag}"),
        format!("infermark-live-{tag}"),
        format!("infermark-unlabelled-{tag}"),
    );
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let dead_owner = owner_label(std::process::id()).replacen(
        &format!("{}:", std::process::id()),
        &format!("{dead}:"),
        1,
    );
    detached_like(&argv, &stale, Some(&dead_owner));
    detached_like(&argv, &live, Some(&owner_label(std::process::id())));
    detached_like(&argv, &unlabelled, None);

    let opts = options(dir.path());
    let e = start(&p, &opts).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        containers::containers_named(rt, &stale).is_empty(),
        "the stale one is removed"
    );
    assert_eq!(containers::containers_named(rt, &live), vec![live.clone()]);
    assert_eq!(
        containers::containers_named(rt, &unlabelled),
        vec![unlabelled.clone()]
    );
    let log = std::fs::read_to_string(e.log_path()).unwrap();
    assert!(
        log.contains(&format!("infermark: removed container {stale}: the infermark that started it is no longer running")),
        "{log}"
    );
    tokio::time::timeout(LIMIT, e.stop())
        .await
        .unwrap()
        .unwrap();
    for name in [&live, &unlabelled] {
        containers::run(rt, &["rm", "-f", name]);
    }
    containers::remove_image(rt, &reference);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_removes_a_container_left_by_a_killed_harness() {
    a_container_left_by_a_killed_harness_is_removed_at_the_next_start(Runtime::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_removes_a_container_left_by_a_killed_harness() {
    a_container_left_by_a_killed_harness_is_removed_at_the_next_start(Runtime::Podman).await;
}
