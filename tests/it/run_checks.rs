//! `infermark run` refusals and a quick full run against the built-in sim
//! (the harness itself as the engine): what must be refused before anything
//! starts, and that an open-loop sweep lands as audited results.

use std::path::Path;

use crate::support::{infermark, repo, stderr, stdout};

/// An experiment file in a fresh directory with an empty lock beside it.
fn scratch(name: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lockfiles")).unwrap();
    for l in ["images", "models", "files"] {
        std::fs::write(
            dir.path().join(format!("lockfiles/{l}.lock")),
            "version = 1\n",
        )
        .unwrap();
    }
    std::fs::write(dir.path().join(name), text).unwrap();
    dir
}

fn sim_experiment(hardware: &str) -> String {
    let text = std::fs::read_to_string(repo().join("experiments/cpu/sim-open-loop.toml")).unwrap();
    text.replace("[hardware]\nclass = \"cpu\"", hardware)
        .replace("requests = 100", "requests = 20")
        .replace("rate = [5.0, 20.0]", "rate = [40.0, 80.0]")
}

fn no_runs(results: &Path) -> bool {
    !results.join("points").exists() || walk_count(&results.join("points"), "runs") == 0
}

fn walk_count(points: &Path, kind: &str) -> usize {
    std::fs::read_dir(points)
        .map(|d| {
            d.flatten()
                .map(|p| {
                    std::fs::read_dir(p.path().join(kind))
                        .map(|r| r.count())
                        .unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_point_for_other_hardware_is_refused_before_anything_starts() {
    let dir = scratch(
        "h100.toml",
        &sim_experiment("[hardware]\nclass = \"nvidia-h100-sxm\"\ngpus = 1"),
    );
    let results = dir.path().join("results");
    let o = infermark(
        dir.path(),
        &["run", "h100.toml", "--results", results.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("nvidia-h100-sxm"), "{err}");
    assert!(err.contains("cpu"), "{err}");
    assert!(err.contains("--allow-hardware-mismatch"), "{err}");
    assert!(no_runs(&results));
    // The override cannot conjure GPUs: a GPU point still needs its devices.
    let o = infermark(
        dir.path(),
        &[
            "run",
            "h100.toml",
            "--allow-hardware-mismatch",
            "--results",
            results.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).to_lowercase().contains("gpu"), "{}", stderr(&o));
    assert!(no_runs(&results));
}

#[test]
fn an_unpinned_executable_is_refused_with_exit_3_and_the_fix() {
    let text =
        std::fs::read_to_string(repo().join("experiments/cpu/llamacpp-smollm2.toml")).unwrap();
    let dir = scratch("llama.toml", &text);
    let results = dir.path().join("results");
    let o = infermark(
        dir.path(),
        &["run", "llama.toml", "--results", results.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("engine.command"), "{err}");
    assert!(err.contains("infermark lock set llama-server"), "{err}");
    assert!(
        !results.exists(),
        "nothing may be written for an unpinned point"
    );
}

#[test]
fn an_open_loop_sim_sweep_runs_into_audited_results_with_one_engine_start() {
    let dir = scratch("open.toml", &sim_experiment("[hardware]\nclass = \"cpu\""));
    let results = dir.path().join("results");
    let o = infermark(
        dir.path(),
        &["run", "open.toml", "--results", results.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("2 point(s): 2 completed, 0 failed"),
        "{}",
        stdout(&o)
    );
    // One engine start serves both rates of the sweep.
    assert_eq!(
        stderr(&o).matches("starting sim").count(),
        1,
        "{}",
        stderr(&o)
    );
    assert_eq!(walk_count(&results.join("points"), "runs"), 2);
    let audit = infermark(dir.path(), &["audit", results.to_str().unwrap()]);
    assert_eq!(audit.status.code(), Some(0), "{}", stdout(&audit));
    // A summary number edited by hand is caught.
    let run = std::fs::read_dir(results.join("points"))
        .unwrap()
        .flatten()
        .find_map(|p| {
            std::fs::read_dir(p.path().join("runs"))
                .ok()?
                .flatten()
                .next()
        })
        .unwrap()
        .path();
    let summary = std::fs::read_to_string(run.join("summary.json")).unwrap();
    let edited = summary.replacen("\"completed\": 20", "\"completed\": 21", 1);
    assert_ne!(summary, edited, "the summary has the expected count");
    std::fs::write(run.join("summary.json"), edited).unwrap();
    let audit = infermark(dir.path(), &["audit", results.to_str().unwrap()]);
    assert_eq!(audit.status.code(), Some(4), "{}", stdout(&audit));
    assert!(
        stdout(&audit).contains("summary.json"),
        "{}",
        stdout(&audit)
    );
}

/// The host's last calibration rides along in every run's environment:
/// `calibrate` saves it under the cache directory, `run` attaches it, and
/// one measured on another host, or a damaged file, is not attached (the
/// latter named in a warning), the run going on either way.
#[test]
fn runs_carry_this_hosts_last_calibration_in_their_environment() {
    let dir = scratch("open.toml", &sim_experiment("[hardware]\nclass = \"cpu\""));
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let calibrate = |streams: &str, extra: &[&str]| {
        let mut args = vec!["calibrate", "--streams", streams, "--cache-dir", cache_arg];
        args.extend_from_slice(crate::support::QUICK_CALIBRATE);
        args.extend_from_slice(extra);
        infermark(dir.path(), &args)
    };
    let cal = calibrate("2", &[]);
    assert_eq!(cal.status.code(), Some(0), "{}", stderr(&cal));
    let saved_path = cache.join("calibration/last.json");
    assert!(
        stdout(&cal).contains(saved_path.to_str().unwrap()),
        "{}",
        stdout(&cal)
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved_path).unwrap()).unwrap();
    assert_eq!(saved["report"]["levels"][0]["streams"], 2);
    // --no-save leaves it alone.
    let again = calibrate("3", &["--no-save"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let unchanged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved_path).unwrap()).unwrap();
    assert_eq!(unchanged, saved);

    let run = |name: &str| {
        let results = dir.path().join(name);
        let o = infermark(
            dir.path(),
            &[
                "run",
                "open.toml",
                "--results",
                results.to_str().unwrap(),
                "--cache-dir",
                cache_arg,
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        let envs: Vec<serde_json::Value> = std::fs::read_dir(results.join("points"))
            .unwrap()
            .flatten()
            .flat_map(|p| std::fs::read_dir(p.path().join("runs")).unwrap().flatten())
            .map(|r| {
                serde_json::from_slice(&std::fs::read(r.path().join("environment.json")).unwrap())
                    .unwrap()
            })
            .collect();
        assert_eq!(envs.len(), 2);
        let audit = infermark(dir.path(), &["audit", results.to_str().unwrap()]);
        assert_eq!(audit.status.code(), Some(0), "{}", stdout(&audit));
        (o, envs)
    };
    let (_, envs) = run("attached");
    for env in &envs {
        assert_eq!(env["calibration"], saved, "{}", env["calibration"]);
    }
    // Measured on another host: not this one's error bars.
    let mut elsewhere = saved.clone();
    elsewhere["hostname"] = "some-other-host".into();
    std::fs::write(&saved_path, elsewhere.to_string()).unwrap();
    let (_, envs) = run("elsewhere");
    assert!(envs.iter().all(|e| e["calibration"].is_null()));
    // The same host name on another machine (its own /etc/machine-id).
    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    if id.trim().len() == 32 {
        assert_eq!(saved["machine_id"], id.trim(), "{saved}");
        let mut twin = saved.clone();
        twin["machine_id"] = "0123456789abcdef0123456789abcdef".into();
        std::fs::write(&saved_path, twin.to_string()).unwrap();
        let (_, envs) = run("twin");
        assert!(envs.iter().all(|e| e["calibration"].is_null()));
    }
    // Damaged: the run goes on, the warning names the file and the fix.
    std::fs::write(&saved_path, "{ truncated").unwrap();
    let (o, envs) = run("damaged");
    assert!(envs.iter().all(|e| e["calibration"].is_null()));
    let err = stderr(&o);
    assert!(err.contains(saved_path.to_str().unwrap()), "{err}");
    assert!(err.contains("run `infermark calibrate` again"), "{err}");
}
