//! Engines for the tests: `engine::start` on a point written as TOML,
//! bounded and checked to leave nothing running; and a scratch world for
//! the real CPU engine (an experiment copied in, lockfiles of its own, the
//! llama.cpp server and SmolLM2 model in a content-addressed cache).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use infermark::engine::{self, EngineError, RunningEngine, StartOptions};
use infermark::spec::{self, NoPins, PointSpec};

use super::{GGUF_SHA256, infermark, llama_engine, repo, sha256_hex, stderr};

/// A scratch world for one run: the experiment copied in (with `edit`
/// applied), its own lockfiles, and a content-addressed cache holding the
/// engine and the model by sha256.
pub struct World {
    dir: tempfile::TempDir,
    pub experiment: PathBuf,
}

impl World {
    pub fn new(experiment: &str, edit: impl Fn(String) -> String) -> World {
        let (server, model) = llama_engine();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["experiments", "lockfiles", "cache/files"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let text =
            std::fs::read_to_string(repo().join("experiments/cpu").join(experiment)).unwrap();
        let exp = root.join("experiments").join(experiment);
        std::fs::write(&exp, edit(text)).unwrap();
        for l in ["images", "models", "files"] {
            std::fs::write(root.join(format!("lockfiles/{l}.lock")), "version = 1\n").unwrap();
        }
        let server_sha = sha256_hex(Path::new(&server));
        for (sha, path, name) in [
            (server_sha.as_str(), server.as_str(), "llama-server"),
            (
                GGUF_SHA256,
                model.as_str(),
                "SmolLM2-135M-Instruct.Q4_1.gguf",
            ),
        ] {
            let d = root.join("cache/files").join(sha);
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::symlink(path, d.join(name)).unwrap();
        }
        let w = World {
            dir,
            experiment: exp,
        };
        let o = w.infermark(&["lock", "set", "llama-server", &server_sha]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        w
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn results(&self) -> PathBuf {
        self.root().join("results")
    }

    pub fn infermark(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let lock_dir = self.root().join("lockfiles");
        if matches!(args.first(), Some(&"run") | Some(&"lock")) {
            all.push("--lock-dir".into());
            all.push(lock_dir.display().to_string());
        }
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        infermark(self.root(), &refs)
    }

    pub fn run_command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_infermark"));
        c.arg("run")
            .arg(&self.experiment)
            .arg("--results")
            .arg(self.results())
            .arg("--cache-dir")
            .arg(self.root().join("cache"))
            .arg("--lock-dir")
            .arg(self.root().join("lockfiles"))
            .args(extra)
            .current_dir(self.root())
            .env_remove("RUST_LOG");
        c
    }

    pub fn run(&self, extra: &[&str]) -> std::process::Output {
        self.run_command(extra).output().unwrap()
    }

    /// Directories `points/*/<kind>/*` of the results tree.
    pub fn runs(&self, kind: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(points) = std::fs::read_dir(self.results().join("points")) else {
            return out;
        };
        for p in points.flatten() {
            if let Ok(runs) = std::fs::read_dir(p.path().join(kind)) {
                out.extend(runs.flatten().map(|r| r.path()));
            }
        }
        out.sort();
        out
    }
}

/// Every test's bound: generous for a loaded two-core machine, finite.
pub const LIMIT: Duration = Duration::from_secs(120);

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_infermark"))
}

/// The first point of an experiment written as TOML (workload and load
/// added).
pub fn point(head: &str) -> PointSpec {
    let text = format!(
        "schema = 1\n{head}\n[workload]\napi = \"completions\"\ninput-tokens = 8\noutput-tokens = 4\n[load]\nconcurrency = [1]\n"
    );
    let e = spec::parse(Path::new("engine-test.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    e.points(&NoPins).unwrap()[0].spec.clone()
}

pub fn sim(args: &[&str], readiness_timeout_s: u64) -> PointSpec {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    point(&format!(
        "[hardware]\nclass = \"cpu\"\n[engine]\nkind = \"sim\"\nargs = [{}]\nreadiness-timeout-s = {readiness_timeout_s}\n[model]\nserved-name = \"it-sim\"",
        args.join(", ")
    ))
}

pub fn options(dir: &Path) -> StartOptions {
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

pub async fn start(p: &PointSpec, opts: &StartOptions) -> Result<RunningEngine, EngineError> {
    tokio::time::timeout(LIMIT, engine::start(p, opts))
        .await
        .expect("engine::start returns in time")
}

/// `true` while `pid` is a live process (a zombie is dead, just not reaped).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !(state.starts_with('Z') || state.starts_with('X'))
        }
        Err(_) => false,
    }
}

/// Waits (bounded) until `pid` is dead.
pub async fn assert_dies(pid: u32, what: &str) {
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: pid {pid} still alive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}
