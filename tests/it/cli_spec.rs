//! `infermark spec ...`, `lock set` and `--version` from a user's seat.

use std::fs;

use crate::support::{infermark, repo, stderr, stdout};

#[test]
fn the_committed_experiments_check_clean() {
    let out = infermark(&repo(), &["spec", "check", "experiments"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("point(s)"));
}

const EXPERIMENT: &str = r#"
schema = 1
name = "gpt-oss on h100"
[hardware]
class = "nvidia-h100-sxm"
gpus = 1
[engine]
kind = "vllm"
runtime = "docker"
image = "vllm/vllm-openai:v0.25.1"
[model]
repo = "openai/gpt-oss-120b"
revision = "main"
[workload]
input-tokens = 1024
output-tokens = 1024
[load]
concurrency = [4, 8, 16]
"#;

const SAME_EXPERIMENT_REWRITTEN: &str = r#"
# The same experiment: dotted keys, inline tables, reordered, defaults spelled out.
schema = 1
load.concurrency = [4, 8, 16]
load.mode = "concurrency"
model = { revision = "main", repo = "openai/gpt-oss-120b" }
name = "a different label"

[workload]
output-tokens = 1_024   # 1k out
input-tokens = 1024
seed = 0
range-ratio = 1.0
ignore-eos = true

[engine]
runtime = "docker"
kind = "vllm"
image = "docker.io/vllm/vllm-openai:v0.25.1"
port = 8000

[hardware]
gpus = 1
class = "nvidia-h100-sxm"
"#;

#[test]
fn one_experiment_written_two_ways_has_one_set_of_ids() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.toml"), EXPERIMENT).unwrap();
    fs::write(dir.path().join("b.toml"), SAME_EXPERIMENT_REWRITTEN).unwrap();
    fs::write(
        dir.path().join("c.toml"),
        EXPERIMENT.replace("input-tokens = 1024", "input-tokens = 2048"),
    )
    .unwrap();
    let id = |f: &str| {
        let out = infermark(dir.path(), &["spec", "id", f]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let (a, b, c) = (id("a.toml"), id("b.toml"), id("c.toml"));
    assert_eq!(a.lines().count(), 3);
    assert_eq!(a, b);
    for (x, y) in a.lines().zip(c.lines()) {
        assert_ne!(x, y, "changing the input length must change every id");
    }
}

#[test]
fn a_misspelt_key_and_an_out_of_range_value_exit_2_naming_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("typo.toml"),
        EXPERIMENT.replace("output-tokens", "output-token"),
    )
    .unwrap();
    fs::write(
        dir.path().join("range.toml"),
        EXPERIMENT.replace("[4, 8, 16]", "[4, -8]"),
    )
    .unwrap();
    fs::write(dir.path().join("ok.toml"), EXPERIMENT).unwrap();
    let out = infermark(dir.path(), &["spec", "check", "."]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(
            "./typo.toml: `workload.output-token`: unknown key; did you mean `output-tokens`?"
        ),
        "{err}"
    );
    assert!(err.contains("./range.toml: `load.concurrency[1]`: -8 is out of range; expected an integer from 1 to 100000"), "{err}");
    assert!(err.contains("error(s) in 3 file(s) checked"), "{err}");
    // `spec id` on a bad file exits 2 too.
    let out = infermark(dir.path(), &["spec", "id", "typo.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn lock_set_pins_the_points() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("lockfiles")).unwrap();
    fs::create_dir(dir.path().join("experiments")).unwrap();
    fs::write(dir.path().join("experiments/a.toml"), EXPERIMENT).unwrap();
    let points = |args: &[&str]| stdout(&infermark(dir.path(), args));
    let before = points(&["spec", "points", "experiments/a.toml"]);
    assert!(
        before.contains("unpinned: engine.image, model.revision"),
        "{before}"
    );
    let digest = format!("sha256:{}", "ab".repeat(32));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    for (r, v) in [
        ("vllm/vllm-openai:v0.25.1", digest.as_str()),
        ("openai/gpt-oss-120b@main", commit),
    ] {
        let out = infermark(dir.path(), &["lock", "set", r, v]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let after = points(&["spec", "points", "experiments/a.toml"]);
    assert_eq!(after.matches("  pinned").count(), 3, "{after}");
    let json = points(&["spec", "points", "--json", "experiments/a.toml"]);
    assert!(
        json.contains(&format!(
            "\"image\":\"docker.io/vllm/vllm-openai@{digest}\""
        )),
        "{json}"
    );
    assert!(
        json.contains(&format!("\"revision\":\"{commit}\"")),
        "{json}"
    );
    let images_lock = fs::read_to_string(dir.path().join("lockfiles/images.lock")).unwrap();
    assert!(
        images_lock.contains("reference = \"docker.io/vllm/vllm-openai:v0.25.1\""),
        "{images_lock}"
    );
    // A value that pins nothing is refused with exit 2.
    let out = infermark(
        dir.path(),
        &["lock", "set", "vllm/vllm-openai:v0.25.1", "latest"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_names_the_commit() {
    let out = infermark(&repo(), &["--version"]);
    let v = stdout(&out);
    assert!(
        v.starts_with(&format!("infermark {} (", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(
        !v.contains("(unknown)"),
        "built from a git checkout, the commit is known: {v}"
    );
}

/// The README's `## Exit codes` table, as written. Read at run time, not
/// included, so the Nix builds (whose source leaves the README out) compile.
fn readme_exit_table() -> String {
    let readme = fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Exit codes\n")
        .nth(1)
        .expect("README.md has a `## Exit codes` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn the_readme_exit_code_table_is_the_table() {
    assert_eq!(readme_exit_table(), infermark::cli::exit::markdown());
}
