//! `infermark nightly`, `plan` and `collect` as a CI runner uses them: a
//! night with a point whose engine dies at start, resumed; the plan parsed back in each scheduler's format; result trees of
//! two runners merged; and the GitHub workflow that strings them together.
//! (The night with the real llama.cpp server is in the engine tier,
//! `tests/engine/nightly.rs`.)

use std::path::PathBuf;
use std::process::Command;

use crate::support::night::{FAST, Night, groups, night_points, runs, sim_experiment};
use crate::support::{infermark, json, repo, sha256_hex, stderr, stdout};

#[test]
fn a_point_whose_engine_dies_fails_the_night_and_is_retried_on_resume() {
    let n = Night::new();
    n.add("sim-a.toml", &sim_experiment("sim-a", FAST));
    // serve-sim refuses an unknown flag: the engine exits while starting.
    n.add(
        "sim-broken.toml",
        &sim_experiment("sim-broken", r#"["--no-such-flag"]"#),
    );
    let results = n.results();
    let o = n.nightly(&results, &["--night", "broken"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let points = night_points(&results, "broken");
    assert_eq!(points.len(), 4);
    let (bad, good): (Vec<_>, Vec<_>) =
        points.iter().partition(|p| p["experiment"] == "sim-broken");
    assert!(good.iter().all(|p| p["status"] == "completed"), "{good:#?}");
    for p in &bad {
        assert_eq!(p["status"], "failed");
        let reason = p["reason"].as_str().unwrap();
        assert!(reason.contains("engine failed to start"), "{reason}");
    }
    assert_eq!(runs(&results, "runs").len(), 2);
    assert_eq!(runs(&results, "failed").len(), 2);
    assert!(
        stdout(&o).contains("4 point(s): 2 completed, 2 failed"),
        "{}",
        stdout(&o)
    );

    // Resumed: the completed points are skipped, the failed ones retried.
    let again = n.nightly(&results, &["--night", "broken"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(stdout(&again).matches("skip point").count(), 2);
    assert_eq!(runs(&results, "runs").len(), 2);
    assert_eq!(
        runs(&results, "failed").len(),
        4,
        "retried, and failed again"
    );
}

#[test]
fn a_night_records_the_local_lock_overlays_digests_apart_and_notes_a_change() {
    let n = Night::new();
    n.add("sim-a.toml", &sim_experiment("sim-a", FAST));
    let local = n.root().join("lockfiles/local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("images.lock"), "version = 1\n").unwrap();
    let results = n.results();
    let o = n.nightly(&results, &["--night", "overlay"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let record_path = results.join("nights/overlay/night.json");
    let record = json(&record_path);
    let first = sha256_hex(&local.join("images.lock"));
    assert_eq!(record["local_locks"]["cpu"]["images.lock"], first.as_str());
    assert_eq!(record["local_locks"]["cpu"].as_object().unwrap().len(), 1);
    assert_eq!(
        record["locks"]["images.lock"],
        sha256_hex(&n.root().join("lockfiles/images.lock")).as_str(),
        "the tracked file's digest stays under `locks`"
    );

    std::fs::write(local.join("images.lock"), "version = 1\n\n").unwrap();
    let again = n.nightly(&results, &["--night", "overlay"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("the lockfiles changed since night overlay started"),
        "{}",
        stderr(&again)
    );
    let second = sha256_hex(&local.join("images.lock"));
    assert_ne!(first, second);
    assert_eq!(
        json(&record_path)["local_locks"]["cpu"]["images.lock"],
        second.as_str()
    );
}

#[test]
fn update_locks_and_unknown_groups_are_refused_clearly() {
    let n = Night::new();
    n.add("sim-a.toml", &sim_experiment("sim-a", FAST));
    let results = n.results();
    let o = n.nightly(&results, &["--only", "0123456789ab"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such group"), "{}", stderr(&o));
    let o = n.nightly(&results, &["--night", "../x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!results.join("points").exists(), "nothing ran");
    // A point with a moving reference refuses the night.
    n.add(
        "moving.toml",
        &std::fs::read_to_string(repo().join("experiments/cpu/llamacpp-smollm2-podman.toml"))
            .unwrap(),
    );
    let o = n.nightly(&results, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // `--update-locks` asks the registry for the moving tag first: with no
    // registry listening there it fails naming the host, and nothing runs.
    let port = crate::support::free_port();
    n.add(
        "moving.toml",
        &std::fs::read_to_string(repo().join("experiments/cpu/llamacpp-smollm2-podman.toml"))
            .unwrap()
            .replace("127.0.0.1:5055", &format!("127.0.0.1:{port}")),
    );
    let o = n.nightly(&results, &["--update-locks"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("127.0.0.1:{port}")),
        "{}",
        stderr(&o)
    );
    assert!(!results.join("points").exists(), "nothing ran");
}

/// Parses YAML documents into JSON with PyYAML; fails, saying how to
/// install it, when python3 or PyYAML is missing.
fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    let probe = Command::new("python3").args(["-c", "import yaml"]).output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "python3 with PyYAML is not installed: apt-get install python3-yaml (.ci/setup installs it)"
    );
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not YAML: {}\n{text}", stderr(&out));
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

#[test]
fn plan_writes_a_matrix_a_slurm_array_and_k8s_jobs_one_per_group() {
    let n = Night::new();
    n.add("sim-a.toml", &sim_experiment("sim-a", FAST));
    n.add(
        "sim-b.toml",
        &sim_experiment("sim-b", r#"["--ttft-ms", "3"]"#),
    );
    // A GPU class with pinned references: one group of five load levels.
    let gpu = n.root().join("experiments/nvidia-h100-sxm");
    std::fs::create_dir_all(&gpu).unwrap();
    std::fs::copy(
        repo().join("experiments/nvidia-h100-sxm/gpt-oss-120b-vllm-1k1k.toml"),
        gpu.join("gpt-oss-120b-vllm-1k1k.toml"),
    )
    .unwrap();
    let lock_dir = n.root().join("lockfiles");
    for (r, v) in [
        (
            "vllm/vllm-openai:v0.25.1",
            format!("sha256:{}", "ab".repeat(32)),
        ),
        ("openai/gpt-oss-120b@main", "cd".repeat(20)),
    ] {
        let o = infermark(
            n.root(),
            &[
                "lock",
                "set",
                r,
                &v,
                "--lock-dir",
                lock_dir.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }

    // GitHub matrix: both classes by default, one entry per group.
    let o = n.plan("github-matrix", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let include = m["include"].as_array().unwrap();
    assert_eq!(include.len(), 3, "{m:#}");
    let cpu: Vec<_> = include.iter().filter(|e| e["hardware"] == "cpu").collect();
    assert_eq!(cpu.len(), 2);
    for e in &cpu {
        assert_eq!(e["runs-on"], serde_json::json!(["self-hosted", "cpu"]));
        assert_eq!(e["points"], 2);
        assert_eq!(e["group"].as_str().unwrap().len(), 12);
    }
    let h100 = include
        .iter()
        .find(|e| e["hardware"] == "nvidia-h100-sxm")
        .unwrap();
    assert_eq!(h100["points"], 5);
    assert_eq!(
        h100["runs-on"],
        serde_json::json!(["self-hosted", "nvidia-h100-sxm"])
    );
    // Group ids are stable: the same plan twice, the same ids.
    assert_eq!(stdout(&n.plan("github-matrix", &[])), stdout(&o));

    // Slurm: a valid bash script whose task i runs group i.
    let o = n.plan("slurm", &["--hardware", "cpu"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let script = n.root().join("night.sbatch");
    std::fs::write(&script, stdout(&o)).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{}", stderr(&syntax));
    assert!(
        stdout(&o).contains("#SBATCH --array=0-1\n"),
        "{}",
        stdout(&o)
    );
    let bin = n.root().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake_nix = bin.join("nix");
    std::fs::write(&fake_nix, "#!/bin/sh\necho \"nix $*\"\n").unwrap();
    std::fs::set_permissions(
        &fake_nix,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cpu_groups: Vec<&str> = cpu.iter().map(|e| e["group"].as_str().unwrap()).collect();
    for (task, group) in cpu_groups.iter().enumerate() {
        let ran = Command::new("bash")
            .arg(&script)
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        assert!(ran.status.success(), "{}", stderr(&ran));
        assert_eq!(
            stdout(&ran).trim(),
            format!("nix run .#nightly -- --only {group}")
        );
    }
    let o = n.plan("slurm", &["--hardware", "nvidia-h100-sxm"]);
    assert!(
        stdout(&o).contains("#SBATCH --gres=gpu:1\n"),
        "{}",
        stdout(&o)
    );
    // One script asks for one kind of node.
    let o = n.plan("slurm", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Kubernetes: one Job per group. A runner image by tag is planned with
    // a warning that names the fix; by digest, without one; one that is no
    // image reference is refused.
    let pinned = format!("nixos/nix@sha256:{}", "ab".repeat(32));
    let p = n.plan("k8s", &["--image", &pinned]);
    assert_eq!(p.status.code(), Some(0), "{}", stderr(&p));
    assert!(!stderr(&p).contains("WARN"), "{}", stderr(&p));
    assert!(stdout(&p).contains(&pinned), "{}", stdout(&p));
    let bad = n.plan("k8s", &["--image", "Bad Image"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("--image: `Bad Image` is not an image reference"),
        "{}",
        stderr(&bad)
    );
    let o = n.plan("k8s", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--image `nixos/nix` names the runner image by tag")
            && stderr(&o).contains("--image docker.io/nixos/nix@sha256:<digest>"),
        "{}",
        stderr(&o)
    );
    let docs = yaml_documents(&stdout(&o));
    assert_eq!(docs.len(), 3);
    for d in &docs {
        assert_eq!(d["apiVersion"], "batch/v1");
        assert_eq!(d["kind"], "Job");
        let group = d["metadata"]["labels"]["infermark.dev/group"]
            .as_str()
            .unwrap();
        let pod = &d["spec"]["template"]["spec"];
        let class = pod["nodeSelector"]["infermark.dev/hardware-class"]
            .as_str()
            .unwrap();
        let c = &pod["containers"][0];
        assert_eq!(
            c["command"],
            serde_json::json!(["nix", "run", ".#nightly", "--", "--only", group])
        );
        if class == "nvidia-h100-sxm" {
            assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], 1);
        } else {
            assert_eq!(class, "cpu");
            assert!(c.get("resources").is_none());
        }
    }
}

#[test]
fn collect_merges_two_runners_trees_as_a_union_and_reports_a_conflict() {
    let n = Night::new();
    n.add("sim-a.toml", &sim_experiment("sim-a", FAST));
    n.add(
        "sim-b.toml",
        &sim_experiment("sim-b", r#"["--ttft-ms", "2", "--itl-ms", "1"]"#),
    );
    let g = groups(&n);
    let (a, b) = (n.root().join("runner-a"), n.root().join("runner-b"));
    for (tree, group) in [(&a, &g[0]), (&b, &g[1])] {
        let o = n.nightly(tree, &["--night", "n", "--only", group]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    // Runner b also holds a copy of one of a's points (an identical overlap)...
    let a_points: Vec<PathBuf> = std::fs::read_dir(a.join("points"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(a_points.len(), 2);
    let shared = &a_points[0];
    let copy = b.join("points").join(shared.file_name().unwrap());
    let o = Command::new("cp")
        .arg("-a")
        .arg(shared)
        .arg(&copy)
        .output()
        .unwrap();
    assert!(o.status.success());
    // ...and a run log that differs from a's in one byte: a conflict.
    let other = &a_points[1];
    let run = runs(&a, "runs")
        .into_iter()
        .find(|r| r.starts_with(other))
        .unwrap();
    let rel = run.strip_prefix(&a).unwrap().to_path_buf();
    let o = Command::new("cp")
        .arg("-a")
        .arg(other)
        .arg(b.join("points").join(other.file_name().unwrap()))
        .output()
        .unwrap();
    assert!(o.status.success());
    let log = b.join(&rel).join("engine.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.push(b'!');
    std::fs::write(&log, bytes).unwrap();

    let merged = n.root().join("merged");
    let o = infermark(
        n.root(),
        &[
            "collect",
            "--into",
            merged.to_str().unwrap(),
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("conflict: ").count(), 1, "{err}");
    assert!(
        err.contains(&rel.join("engine.log").display().to_string()),
        "{err}"
    );
    // a's 2 runs copied, then b's 2 new ones; the 2 copies of a's runs in b
    // are one identical run and one conflicting (kept as a had it).
    assert!(
        stdout(&o).contains("4 run(s) copied, 1 already present"),
        "{}",
        stdout(&o)
    );
    assert_eq!(runs(&merged, "runs").len(), 4);
    assert_eq!(
        std::fs::read(merged.join(&rel).join("engine.log")).unwrap(),
        std::fs::read(a.join(&rel).join("engine.log")).unwrap(),
        "the conflicting file is not overwritten"
    );
    // The night records merged: both groups' points.
    let points = night_points(&merged, "n");
    assert_eq!(points.len(), 4);
    assert!(points.iter().all(|p| p["status"] == "completed"));
    // The index was rebuilt from the merged files and lists every run.
    let list = infermark(
        n.root(),
        &["results", "list", "--results", merged.to_str().unwrap()],
    );
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    for r in runs(&merged, "runs") {
        let id = r.file_name().unwrap().to_str().unwrap();
        assert!(
            stdout(&list).contains(id),
            "{id} not listed:\n{}",
            stdout(&list)
        );
    }
    let audit = infermark(n.root(), &["audit", merged.to_str().unwrap()]);
    assert_eq!(audit.status.code(), Some(0), "{}", stdout(&audit));
}

#[test]
fn the_nightly_workflow_plans_runs_by_matrix_and_collects() {
    let wf = repo().join(".github/workflows/nightly.yml");
    let text = std::fs::read_to_string(&wf).unwrap();
    // actionlint is installed by .ci/setup (tests/setup/actionlint.txt);
    // without it this test fails rather than passing unchecked.
    let lint = |path: &std::path::Path| {
        Command::new("actionlint")
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("actionlint: {e}; .ci/setup installs it"))
    };
    let o = lint(&wf);
    assert!(
        o.status.success(),
        "actionlint: {}{}",
        stdout(&o),
        stderr(&o)
    );
    // The lint is real: the same workflow with one job's `runs-on` misspelt
    // is refused, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("nightly.yml");
    assert!(
        text.contains("    runs-on:"),
        "the workflow has runs-on keys"
    );
    std::fs::write(&broken, text.replacen("    runs-on:", "    runs-onn:", 1)).unwrap();
    let o = lint(&broken);
    assert!(!o.status.success(), "actionlint accepted a misspelt key");
    assert!(stdout(&o).contains("runs-onn"), "{}", stdout(&o));
    let docs = yaml_documents(&text);
    let w = &docs[0];
    let jobs = &w["jobs"];
    for j in ["plan", "nightly", "collect"] {
        assert!(jobs.get(j).is_some(), "job {j} missing");
    }
    assert_eq!(jobs["nightly"]["needs"], "plan");
    assert!(
        jobs["nightly"]["strategy"]["matrix"]
            .as_str()
            .unwrap()
            .contains("fromJSON(needs.plan.outputs.matrix)")
    );
    assert_eq!(
        jobs["nightly"]["runs-on"], "${{ matrix.runs-on }}",
        "self-hosted runners labelled by hardware class"
    );
    let steps = |job: &str| -> String { jobs[job]["steps"].to_string() };
    assert!(steps("plan").contains("plan --format github-matrix"));
    assert!(steps("nightly").contains("nix run .#nightly -- --only ${{ matrix.group }}"));
    assert!(steps("collect").contains("collect --into"));
    assert!(steps("collect").contains("audit"));
    // Every action is pinned by a full commit sha.
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("- uses:") || l.trim_start().starts_with("uses:"))
    {
        let r = line.split("uses:").nth(1).unwrap().trim();
        let sha = r
            .split('@')
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        assert!(
            sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "not pinned by commit: {line}"
        );
    }
}
