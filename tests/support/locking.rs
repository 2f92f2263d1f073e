//! Driving `infermark lock` in a scratch project and reading back what it
//! pinned: shared by the fixture-registry tests (fast tier) and the real
//! registry tests (engine tier).

use std::path::Path;
use std::process::{Command, Output};

use infermark::lock::Lockfiles;
use sha2::{Digest, Sha256};

/// Every variable `lock` reads credentials or the hub from.
pub const ENV: [&str; 5] = [
    "HF_TOKEN",
    "HF_ENDPOINT",
    "INFERMARK_REGISTRY_TOKEN",
    "INFERMARK_REGISTRY_USER",
    "INFERMARK_REGISTRY_PASSWORD",
];

/// Runs `infermark lock ARGS` in `dir` with exactly the `env` given of the
/// variables above.
pub fn lock(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_infermark"));
    c.arg("lock")
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG");
    for k in ENV {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the infermark binary runs")
}

/// A project directory: `experiments/` and `lockfiles/`.
pub fn project() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("experiments")).unwrap();
    std::fs::create_dir_all(d.path().join("lockfiles")).unwrap();
    d
}

/// Writes an experiment `name.toml` under `dir` with `image` and either a
/// hub model `repo@revision` or a model file inside the image.
pub fn experiment(dir: &Path, name: &str, image: &str, hub: Option<(&str, &str)>) {
    let model = match hub {
        Some((repo, revision)) => format!("repo = \"{repo}\"\nrevision = \"{revision}\""),
        None => format!(
            "file = \"/models/m.gguf\"\nsha256 = \"{}\"\nserved-name = \"m\"",
            "0".repeat(64)
        ),
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!(
            "schema = 1\n[hardware]\nclass = \"cpu\"\n[engine]\nkind = \"llamacpp\"\nruntime = \"podman\"\n\
             image = \"{image}\"\n[model]\n{model}\n[workload]\napi = \"completions\"\n\
             input-tokens = 16\noutput-tokens = 4\n[load]\nconcurrency = [1]\n"
        ),
    )
    .unwrap();
}

pub fn images(project: &Path) -> Vec<infermark::lock::ImageEntry> {
    Lockfiles::load_checked(&project.join("lockfiles"))
        .unwrap()
        .images
        .images
}

pub fn models(project: &Path) -> Vec<infermark::lock::ModelEntry> {
    Lockfiles::load_checked(&project.join("lockfiles"))
        .unwrap()
        .models
        .models
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}
