use std::path::Path;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::*;
use crate::spec::{self, NoPins};
use crate::store::layout::RUN_FILES;

/// sha256("abc"), FIPS 180-2 appendix B.1.
const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

const PROCESS_SPEC: &str = r#"
schema = 1
[hardware]
class = "cpu"
[engine]
kind = "llamacpp"
runtime = "process"
command = "llama-server"
command-sha256 = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
[model]
file = "m.gguf"
sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
served-name = "m"
[workload]
input-tokens = 8
output-tokens = 4
[load]
concurrency = [2]
"#;

pub(crate) fn point(text: &str) -> Point {
    spec::parse(Path::new("t.toml"), text)
        .expect("valid spec")
        .points(&NoPins)
        .expect("points")
        .remove(0)
}

fn predicate(p: &Point) -> RunPredicate {
    let started = SystemTime::UNIX_EPOCH + Duration::from_millis(1_790_000_000_123);
    RunPredicate::new(
        p,
        "20260921T134320Z-0a1b2c3d",
        started,
        started + Duration::from_secs(3),
        false,
    )
}

fn run_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let point_dir = dir.join("p");
    let run_dir = point_dir.join("runs").join("r");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(point_dir.join("point.json"), b"abc").unwrap();
    for (i, name) in RUN_FILES.iter().enumerate() {
        std::fs::write(run_dir.join(name), format!("file {i}")).unwrap();
    }
    (run_dir, point_dir)
}

#[test]
fn the_statement_hashes_every_file_and_sorts_subjects_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_dir, point_dir) = run_files(tmp.path());
    let p = point(PROCESS_SPEC);
    let s = Statement::for_run(&run_dir, &point_dir, predicate(&p)).unwrap();
    let names: Vec<&str> = s.subject.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "engine.log",
            "environment.json",
            "point.json",
            "requests.jsonl",
            "summary.json"
        ]
    );
    assert_eq!(s.digest_of("point.json"), Some(ABC));
    let expected = crate::spec::hex(&Sha256::digest(b"file 1"));
    assert_eq!(s.digest_of("summary.json"), Some(expected.as_str()));
    assert_eq!(s.statement_type, STATEMENT_TYPE);
    assert_eq!(s.predicate_type, PREDICATE_TYPE);
}

#[test]
fn the_predicate_restates_the_points_pins() {
    let p = point(PROCESS_SPEC);
    let pred = predicate(&p);
    assert_eq!(pred.point_id, p.id());
    assert_eq!(pred.started_at, "2026-09-21T14:13:20.123Z");
    assert_eq!(pred.finished_at, "2026-09-21T14:13:23.123Z");
    assert_eq!(pred.pins.hardware_class, "cpu");
    assert_eq!(pred.pins.engine_kind, "llamacpp");
    assert_eq!(pred.pins.runtime, "process");
    assert_eq!(pred.pins.image, None);
    assert_eq!(
        pred.pins.command_sha256.as_deref(),
        Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
    );
    assert_eq!(
        pred.pins.model,
        ModelPin::File {
            sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into()
        }
    );
    let json = serde_json::to_value(&pred.pins).unwrap();
    assert_eq!(json["model"]["source"], "file");
    assert_eq!(json["dataset_sha256"], serde_json::Value::Null);
}

#[test]
fn hub_and_container_pins_are_spelled_out() {
    let text = r#"
schema = 1
[hardware]
class = "nvidia-h100-sxm"
gpus = 1
[engine]
kind = "vllm"
runtime = "docker"
image = "vllm/vllm-openai@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
[model]
repo = "org/m"
revision = "0123456789abcdef0123456789abcdef01234567"
[workload]
input-tokens = 8
output-tokens = 4
[load]
concurrency = [1]
"#;
    let pins = Pins::of(&point(text));
    assert_eq!(
        pins.image.as_deref(),
        Some(
            "docker.io/vllm/vllm-openai@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        )
    );
    let json = serde_json::to_value(&pins.model).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"source": "hub", "repo": "org/m", "revision": "0123456789abcdef0123456789abcdef01234567"})
    );
    let mut other = pins.clone();
    other.model = ModelPin::None;
    let (key, _, theirs) = pins.first_difference(&other).unwrap();
    assert_eq!((key, theirs.as_str()), ("model", r#"{"source":"none"}"#));
    assert_eq!(pins.first_difference(&pins), None);
}

#[test]
fn a_statement_round_trips_through_its_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_dir, point_dir) = run_files(tmp.path());
    let s = Statement::for_run(&run_dir, &point_dir, predicate(&point(PROCESS_SPEC))).unwrap();
    let text = s.to_json().unwrap();
    assert!(
        text.starts_with("{\n  \"_type\": \"https://in-toto.io/Statement/v1\",\n  \"subject\": ["),
        "{text}"
    );
    assert!(text.ends_with("}\n"));
    assert!(text.contains("\"predicateType\": \"https://infermark.dev/provenance/run/v1\""));
    let back = Statement::from_json(Path::new("provenance.json"), &text).unwrap();
    assert_eq!(back, s);
    let path = run_dir.join("provenance.json");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(Statement::read(&path).unwrap(), s);
}

#[test]
fn unknown_statement_and_predicate_types_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_dir, point_dir) = run_files(tmp.path());
    let text = Statement::for_run(&run_dir, &point_dir, predicate(&point(PROCESS_SPEC)))
        .unwrap()
        .to_json()
        .unwrap();
    let path = Path::new("runs/r/provenance.json");
    // A newer statement version may add fields: the type is still what is named.
    let v2 = text
        .replace(STATEMENT_TYPE, "https://in-toto.io/Statement/v2")
        .replacen("\"subject\"", "\"extra\": 1,\n  \"subject\"", 1);
    let err = Statement::from_json(path, &v2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "runs/r/provenance.json: unknown statement type `_type` = `https://in-toto.io/Statement/v2`: \
         this infermark reads `https://in-toto.io/Statement/v1`"
    );
    let other = text.replace(PREDICATE_TYPE, "https://slsa.dev/provenance/v1");
    let err = Statement::from_json(path, &other).unwrap_err();
    assert_eq!(
        err.to_string(),
        "runs/r/provenance.json: unknown `predicateType` = `https://slsa.dev/provenance/v1`: \
         this infermark reads `https://infermark.dev/provenance/run/v1`"
    );
}

#[test]
fn a_malformed_statement_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_dir, point_dir) = run_files(tmp.path());
    let text = Statement::for_run(&run_dir, &point_dir, predicate(&point(PROCESS_SPEC)))
        .unwrap()
        .to_json()
        .unwrap();
    let bad = text.replacen(
        "\"hardware_override\": false",
        "\"hardware_override\": 0",
        1,
    );
    let err = Statement::from_json(Path::new("provenance.json"), &bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "provenance.json: not a provenance statement: `predicate.hardware_override`: invalid type"
        ),
        "{err}"
    );
    let missing = text.replacen("\"_type\": \"https://in-toto.io/Statement/v1\",", "", 1);
    let err = Statement::from_json(Path::new("provenance.json"), &missing)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field `_type`"), "{err}");
    assert!(Statement::from_json(Path::new("p"), &(text + "{}")).is_err());
}

#[test]
fn a_missing_subject_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_dir, point_dir) = run_files(tmp.path());
    std::fs::remove_file(run_dir.join("engine.log")).unwrap();
    let err = Statement::for_run(&run_dir, &point_dir, predicate(&point(PROCESS_SPEC)))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("failed to read "), "{err}");
    assert!(err.contains("engine.log"), "{err}");
}
