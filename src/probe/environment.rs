//! `environment.json`: what a run observed about where it ran.
//!
//! Written once per run beside its records, read back by `audit` and
//! `verify`. It carries a format version; a reader refuses versions it does
//! not know rather than guessing at their meaning. Keys other than the ones
//! below are allowed and ignored, so later versions can add facts.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::ProbeError;
use super::energy::Energy;
use super::fit::HardwareFit;
use super::gpu::GpuFacts;
use super::host::HostFacts;
use crate::lock::local::LocalPin;

/// The format this module writes and reads.
pub const ENVIRONMENT_FORMAT: &str = "infermark.environment.v1";

/// The harness that produced a run (also the statement's `harness`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Harness {
    pub version: String,
    /// Git commit of the source, or `unknown`. With uncommitted changes to
    /// tracked files, `<commit>-dirty.<16 hex>`: the start of the git blob
    /// id of `git diff --binary HEAD` (see build.rs), so a dirty build still
    /// names one source.
    pub commit: String,
    /// sha256 of the executable that ran, in `environment.json` only (the
    /// statement names the harness by version and commit). Two runs with
    /// the same value ran the very same harness, whatever their commit
    /// names say. Absent in environments written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable_sha256: Option<String>,
}

impl Harness {
    /// This binary, by version and commit.
    pub fn current() -> Self {
        Harness {
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: env!("INFERMARK_GIT_COMMIT").to_string(),
            executable_sha256: None,
        }
    }

    /// This binary, with the sha256 of its executable when it can be read.
    pub fn observed() -> Self {
        Harness {
            executable_sha256: executable_sha256(),
            ..Harness::current()
        }
    }
}

/// sha256 of this process's executable, hashed once per process.
pub fn executable_sha256() -> Option<String> {
    static SHA: OnceLock<Option<String>> = OnceLock::new();
    SHA.get_or_init(|| {
        let path = std::env::current_exe().ok()?;
        crate::digest::sha256_file(&path).ok().map(|(hex, _)| hex)
    })
    .clone()
}

/// One run's observed environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// Always [`ENVIRONMENT_FORMAT`] when written by this version.
    pub format: String,
    pub harness: Harness,
    pub host: HostFacts,
    pub gpus: GpuFacts,
    /// GPU energy over the measured window; `null` without NVML.
    pub energy: Option<Energy>,
    pub hardware: HardwareFit,
    /// Facts of the engine that ran (argv, executable or image digest, ...),
    /// filled by the run from what the engine module observed.
    pub engine: serde_json::Value,
    /// The last calibration's figures (the client's own error bars), when
    /// one was attached.
    #[serde(default)]
    pub calibration: Option<serde_json::Value>,
    /// The pins this run took from the machine's local lock overlay
    /// (`lockfiles/local/`, see `lock::local`), which no commit records;
    /// absent when every pin came from the tracked lockfiles or the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_pins: Vec<LocalPin>,
}

impl Environment {
    /// An environment of this harness, with no calibration attached.
    pub fn new(
        host: HostFacts,
        gpus: GpuFacts,
        energy: Option<Energy>,
        hardware: HardwareFit,
        engine: serde_json::Value,
    ) -> Self {
        Environment {
            format: ENVIRONMENT_FORMAT.to_string(),
            harness: Harness::observed(),
            host,
            gpus,
            energy,
            hardware,
            engine,
            calibration: None,
            local_pins: Vec::new(),
        }
    }

    /// Pretty JSON with a trailing newline, the bytes written to disk.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .expect("an environment serialises: string keys and no fallible fields");
        text.push('\n');
        text
    }

    /// Reads `environment.json` text. An unknown `format` is refused by
    /// name; a malformed document names the key that is wrong.
    pub fn from_json(text: &str) -> Result<Self, ProbeError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(ProbeError::EnvironmentJson)?;
        match value.get("format") {
            Some(serde_json::Value::String(f)) if f == ENVIRONMENT_FORMAT => {}
            Some(serde_json::Value::String(f)) => {
                return Err(ProbeError::UnknownFormat { found: f.clone() });
            }
            _ => return Err(ProbeError::MissingFormat),
        }
        serde_path_to_error::deserialize(value).map_err(|e| ProbeError::Environment {
            message: format!("`{}`: {}", e.path(), e.inner()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::gpu::tests::nvidia;
    use super::super::{check_fit, detect_class, gpus, host};
    use super::*;

    /// A fixed environment of a two-GPU H200 node.
    fn fabricated() -> Environment {
        let gpus = nvidia(&["NVIDIA H200"; 2]);
        let hardware =
            check_fit("nvidia-h200-sxm", 2, detect_class(&gpus), 2, false).expect("fits");
        Environment {
            format: ENVIRONMENT_FORMAT.into(),
            harness: Harness {
                version: "0.1.0".into(),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
                executable_sha256: None,
            },
            host: HostFacts {
                hostname: "gpu-node-07".into(),
                os: "Ubuntu 24.04.2 LTS".into(),
                kernel: "6.8.0-57-generic".into(),
                arch: "x86_64".into(),
                cpu_model: "Intel(R) Xeon(R) Platinum 8480+".into(),
                cpu_count: 224,
                memory_bytes: 2_163_972_255_744,
            },
            gpus,
            energy: Some(Energy {
                start_mj: vec![1_000_000, 2_000_000],
                end_mj: vec![Some(1_500_000), Some(2_600_000)],
                joules: Some(1100.0),
            }),
            hardware,
            engine: serde_json::json!({
                "kind": "sglang",
                "runtime": "docker",
                "argv": ["python3", "-m", "sglang.launch_server", "--tp", "2"],
                "base_url": "http://127.0.0.1:30000",
                "executable": null,
                "model_file": null,
                "image": {
                    "reference": "docker.io/lmsysorg/sglang@sha256:".to_string() + &"ab".repeat(32),
                    "digest": "sha256:".to_string() + &"ab".repeat(32),
                    "image_id": "cd".repeat(32),
                    "container_id": "ef".repeat(32),
                    "runtime_version": "Docker version 28.1.1"
                }
            }),
            calibration: None,
            local_pins: Vec::new(),
        }
    }

    #[test]
    fn round_trips_through_json() {
        let env = fabricated();
        let text = env.to_json();
        assert!(text.ends_with("}\n"));
        assert_eq!(Environment::from_json(&text).expect("read back"), env);
        let mut with_cal = env;
        with_cal.calibration = Some(serde_json::json!({"p99_delivery_error_us": 212}));
        assert_eq!(
            Environment::from_json(&with_cal.to_json()).expect("read back"),
            with_cal
        );
    }

    #[test]
    fn the_fabricated_environment_reads_as_documented() {
        insta::assert_snapshot!(fabricated().to_json());
    }

    #[test]
    fn this_machine_serialises_with_the_documented_keys() {
        let gpus = gpus();
        let count = gpus.accelerator_count();
        let detected = detect_class(&gpus);
        let hardware = check_fit(detected.unwrap_or("cpu"), 0, detected, count, true).expect("fit");
        let env = Environment::new(
            host(),
            gpus,
            None,
            hardware,
            serde_json::json!({"kind": "sim"}),
        );
        assert_eq!(env.harness.version, env!("CARGO_PKG_VERSION"));
        assert!(!env.harness.commit.is_empty());
        let mut value: serde_json::Value =
            serde_json::from_str(&env.to_json()).expect("valid JSON");
        // Host-specific values are replaced; the shape is what is asserted.
        for key in [
            "hostname",
            "os",
            "kernel",
            "arch",
            "cpu_model",
            "cpu_count",
            "memory_bytes",
        ] {
            assert!(!value["host"][key].is_null(), "host.{key}");
            value["host"][key] = "[host]".into();
        }
        assert_eq!(
            value["harness"]["executable_sha256"].as_str().map(str::len),
            Some(64),
            "this test binary's sha256"
        );
        for key in ["version", "commit", "executable_sha256"] {
            value["harness"][key] = "[harness]".into();
        }
        value["gpus"] = "[gpus]".into();
        value["hardware"]["point_class"] = "[class]".into();
        value["hardware"]["detected_class"] = "[class]".into();
        value["hardware"]["override"] = "[override]".into();
        insta::assert_json_snapshot!(value, @r#"
        {
          "calibration": null,
          "energy": null,
          "engine": {
            "kind": "sim"
          },
          "format": "infermark.environment.v1",
          "gpus": "[gpus]",
          "hardware": {
            "detected_class": "[class]",
            "override": "[override]",
            "point_class": "[class]"
          },
          "harness": {
            "commit": "[harness]",
            "executable_sha256": "[harness]",
            "version": "[harness]"
          },
          "host": {
            "arch": "[host]",
            "cpu_count": "[host]",
            "cpu_model": "[host]",
            "hostname": "[host]",
            "kernel": "[host]",
            "memory_bytes": "[host]",
            "os": "[host]"
          }
        }
        "#);
    }

    /// `<40 hex>`, `<40 hex>-dirty.<16 hex>` or `unknown`: never a bare
    /// `-dirty`, which would name no source in particular.
    #[test]
    fn the_embedded_commit_names_one_source() {
        let commit = Harness::current().commit;
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let ok = commit == "unknown"
            || match commit.split_once("-dirty.") {
                Some((head, diff)) => hex(head, 40) && hex(diff, 16),
                None => hex(&commit, 40),
            };
        assert!(ok, "harness commit `{commit}`");
    }

    #[test]
    fn an_unknown_format_is_refused_by_name() {
        let text = fabricated()
            .to_json()
            .replace(ENVIRONMENT_FORMAT, "infermark.environment.v2");
        let e = Environment::from_json(&text).expect_err("v2");
        insta::assert_snapshot!(e.to_string(), @"environment.json: format `infermark.environment.v2` is not supported; this infermark reads `infermark.environment.v1` (a newer infermark may read it)");
    }

    #[test]
    fn a_malformed_environment_names_the_key() {
        let text = fabricated()
            .to_json()
            .replace("\"cpu_count\": 224", "\"cpu_count\": \"many\"");
        let e = Environment::from_json(&text).expect_err("bad cpu_count");
        assert!(e.to_string().contains("`host.cpu_count`"), "{e}");
        let e = Environment::from_json("{\"engine\": {}}").expect_err("no format");
        assert!(e.to_string().contains("`format`: missing"), "{e}");
        let e = Environment::from_json("{").expect_err("not JSON");
        assert!(e.to_string().contains("not valid JSON"), "{e}");
    }

    #[test]
    fn local_pins_and_the_executable_round_trip_and_older_environments_still_load() {
        let mut env = fabricated();
        env.harness.executable_sha256 = Some("e".repeat(64));
        env.local_pins = vec![LocalPin {
            lockfile: "local/images.lock".into(),
            reference: "127.0.0.1:5055/infermark/llama-server-smollm2:11434.0.0".into(),
            pin: format!("sha256:{}", "b".repeat(64)),
            resolved_at: "2026-11-24T19:01:17Z".into(),
            resolved_from: "manual".into(),
        }];
        assert_eq!(
            Environment::from_json(&env.to_json()).expect("read back"),
            env
        );
        // Written before either was recorded: no key at all.
        let older = fabricated().to_json();
        assert!(!older.contains("executable_sha256") && !older.contains("local_pins"));
        assert_eq!(Environment::from_json(&older).expect("older"), fabricated());
    }

    #[test]
    fn extra_keys_are_ignored() {
        let mut value: serde_json::Value =
            serde_json::from_str(&fabricated().to_json()).expect("json");
        value["host"]["numa_nodes"] = 2.into();
        value["later_fact"] = "x".into();
        let env = Environment::from_json(&value.to_string()).expect("extra keys");
        assert_eq!(env, fabricated());
    }
}
