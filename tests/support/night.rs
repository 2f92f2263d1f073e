//! A scratch repository for `infermark nightly` and `plan`:
//! `experiments/cpu/` with quick sim experiments (and, for the engine tier,
//! the real llama.cpp process experiment), empty lockfiles, a
//! content-addressed cache; and readers of what a night records.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::{GGUF_SHA256, infermark, json, llama_engine, repo, sha256_hex, stderr, stdout};

/// A scratch repository: `experiments/cpu/` with quick sim experiments,
/// empty lockfiles, a content-addressed cache.
pub struct Night {
    dir: tempfile::TempDir,
}

/// The sim calibration experiment cut to a few requests with fast timing,
/// renamed, with the engine's extra `args`.
pub fn sim_experiment(name: &str, args: &str) -> String {
    let text =
        std::fs::read_to_string(repo().join("experiments/cpu/sim-calibration.toml")).unwrap();
    let edited = text
        .replace("name = \"sim-calibration\"", &format!("name = \"{name}\""))
        .replace(
            "args = [\"--ttft-ms\", \"50\", \"--itl-ms\", \"10\"]",
            &format!("args = {args}"),
        )
        .replace("output-tokens = 64", "output-tokens = 8")
        .replace("requests-per-client = 8", "requests-per-client = 2")
        .replace("concurrency = [1, 16, 64]", "concurrency = [1, 4]");
    assert_ne!(
        edited, text,
        "the sim experiment changed shape; update this test"
    );
    assert!(edited.contains(&format!("args = {args}")));
    edited
}

pub const FAST: &str = r#"["--ttft-ms", "5", "--itl-ms", "1"]"#;

impl Night {
    pub fn new() -> Night {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["experiments/cpu", "lockfiles", "cache/files"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for l in ["images", "models", "files"] {
            std::fs::write(root.join(format!("lockfiles/{l}.lock")), "version = 1\n").unwrap();
        }
        Night { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn add(&self, file: &str, text: &str) {
        std::fs::write(self.root().join("experiments/cpu").join(file), text).unwrap();
    }

    /// The llama.cpp process experiment at concurrency 1 with a few
    /// requests, its engine and model in the cache and the engine pinned.
    pub fn add_llama(&self) {
        let (server, model) = llama_engine();
        let server_sha = sha256_hex(Path::new(&server));
        for (sha, path, name) in [
            (server_sha.as_str(), server.as_str(), "llama-server"),
            (
                GGUF_SHA256,
                model.as_str(),
                "SmolLM2-135M-Instruct.Q4_1.gguf",
            ),
        ] {
            let d = self.root().join("cache/files").join(sha);
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::symlink(path, d.join(name)).unwrap();
        }
        let text =
            std::fs::read_to_string(repo().join("experiments/cpu/llamacpp-smollm2.toml")).unwrap();
        let edited = text
            .replace("concurrency = [1, 4]", "concurrency = [1]")
            .replace("requests-per-client = 8", "requests-per-client = 2")
            .replace("output-tokens = 32", "output-tokens = 8");
        assert!(edited.contains("concurrency = [1]\n"));
        assert!(edited.contains("requests-per-client = 2\n"));
        self.add("llamacpp-smollm2.toml", &edited);
        let lock_dir = self.root().join("lockfiles");
        let o = infermark(
            self.root(),
            &[
                "lock",
                "set",
                "llama-server",
                &server_sha,
                "--lock-dir",
                lock_dir.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }

    pub fn results(&self) -> PathBuf {
        self.root().join("results")
    }

    /// `infermark nightly --hardware cpu --experiments <root>/experiments ...`
    pub fn nightly(&self, results: &Path, extra: &[&str]) -> Output {
        let exp = self.root().join("experiments");
        let cache = self.root().join("cache");
        let mut args = vec![
            "nightly",
            "--hardware",
            "cpu",
            "--experiments",
            exp.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        infermark(self.root(), &args)
    }

    pub fn plan(&self, format: &str, extra: &[&str]) -> Output {
        let exp = self.root().join("experiments");
        let mut args = vec![
            "plan",
            "--format",
            format,
            "--experiments",
            exp.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        infermark(self.root(), &args)
    }
}

/// Run directories `points/*/<kind>/*` of a results tree.
pub fn runs(results: &Path, kind: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(points) = std::fs::read_dir(results.join("points")) else {
        return out;
    };
    for p in points.flatten() {
        if let Ok(rs) = std::fs::read_dir(p.path().join(kind)) {
            out.extend(rs.flatten().map(|r| r.path()));
        }
    }
    out.sort();
    out
}

pub fn night_points(results: &Path, night: &str) -> Vec<serde_json::Value> {
    let record = json(&results.join("nights").join(night).join("night.json"));
    assert_eq!(record["format"], "infermark.night.v1");
    assert_eq!(record["night"], night);
    record["points"].as_array().unwrap().clone()
}

/// Group ids in plan order, from the GitHub matrix.
pub fn groups(n: &Night) -> Vec<String> {
    let o = n.plan("github-matrix", &["--hardware", "cpu"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    m["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["group"].as_str().unwrap().to_string())
        .collect()
}
