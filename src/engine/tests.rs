//! Unit tests of the engine module: command lines for every kind, runtime
//! and vendor (snapshotted), pins refused before anything starts, the file
//! store's lookup order, and the digest check on what a runtime reports.
//! Real processes and containers are started by the integration tests.

use std::path::{Path, PathBuf};

use super::command::{self, shell_words};
use super::container::{self, verify_digest};
use super::files;
use super::*;
use crate::spec::reference::{ImageRef, Sha256};
use crate::spec::{self, NoPins};

const D: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const COMMIT: &str = "4236a6af538feda4548eca9ab308586007567f52";
/// Stands in for the free port the engine would get.
const HOST_PORT: u16 = 40001;

/// The first point of an experiment written as TOML.
fn point(toml: &str) -> PointSpec {
    let e = spec::parse(Path::new("test.toml"), toml).unwrap_or_else(|e| panic!("{e}"));
    e.points(&NoPins).unwrap()[0].spec.clone()
}

const WORKLOAD: &str = r#"
[workload]
api = "completions"
input-tokens = 8
output-tokens = 4
[load]
concurrency = [1]
"#;

fn gpu_point(class: &str, gpus: u32, kind: &str, runtime: &str, extra_engine: &str) -> PointSpec {
    let source = if runtime == "process" {
        format!("command = \"{kind}\"\ncommand-sha256 = \"{D}\"")
    } else {
        format!("image = \"docker.io/vllm/vllm-openai:v0.25.1@sha256:{D}\"")
    };
    point(&format!(
        r#"schema = 1
[hardware]
class = "{class}"
gpus = {gpus}
[engine]
kind = "{kind}"
runtime = "{runtime}"
{source}
env = {{ VLLM_USE_V1 = "1", NCCL_DEBUG = "WARN" }}
{extra_engine}
[model]
repo = "deepseek-ai/DeepSeek-R1-0528"
revision = "{COMMIT}"
{WORKLOAD}"#
    ))
}

fn cpu_file_point(kind: &str, runtime: &str, engine_lines: &str) -> PointSpec {
    point(&format!(
        r#"schema = 1
[hardware]
class = "cpu"
[engine]
kind = "{kind}"
runtime = "{runtime}"
{engine_lines}
[model]
file = "models/smollm2.gguf"
sha256 = "{D}"
served-name = "smollm2"
{WORKLOAD}"#
    ))
}

fn sim_point() -> PointSpec {
    point(&format!(
        "schema = 1\n[hardware]\nclass = \"cpu\"\n[engine]\nkind = \"sim\"\nargs = [\"--itl-ms\", \"5\"]\n{WORKLOAD}"
    ))
}

/// The sim under a container runtime (the spec allows it only as a
/// process; the engine module runs whatever point it is given).
fn sim_in(runtime: Runtime) -> PointSpec {
    let mut p = sim_point();
    p.engine.runtime = runtime;
    p.engine.image =
        Some(ImageRef::parse(&format!("127.0.0.1:5000/infermark-sim@sha256:{D}")).unwrap());
    p
}

fn vendor(p: &PointSpec) -> hardware::Vendor {
    hardware::class(&p.hardware.class).unwrap().vendor
}

/// The container command line `start` would run, as a shell would read it.
fn container_line(p: &PointSpec, model_cache: Option<&Path>) -> Result<String, EngineError> {
    let image = p.engine.image.as_ref().unwrap();
    let pinned = image.pinned(image.digest.as_ref().unwrap());
    command::container_plan(
        p,
        &pinned.to_string(),
        "infermark-label",
        HOST_PORT,
        model_cache,
        vendor(p),
        "4242:987654:boot-id",
    )
    .map(|argv| shell_words(&argv))
}

fn process_line(p: &PointSpec, exe: &str, model_file: Option<&str>) -> String {
    let command::ProcessPlan { argv, env } = command::process_plan(
        p,
        Path::new(exe),
        model_file.map(Path::new),
        HOST_PORT,
        Some(Path::new("/models/hf")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{} {}", env.join(" "), shell_words(&argv))
        .trim()
        .to_string()
}

const CACHE: &str = "/models/hf";

#[test]
fn vllm_docker_on_8x_h200_runs_by_digest_with_all_gpus_and_tp_8() {
    let p = gpu_point("nvidia-h200-sxm", 8, "vllm", "docker", "");
    let line = container_line(&p, Some(Path::new(CACHE))).unwrap();
    assert!(line.contains(" --gpus all "), "{line}");
    assert!(line.contains(" --ipc host "), "{line}");
    assert!(
        line.contains(&format!(
            " --entrypoint vllm docker.io/vllm/vllm-openai@sha256:{D} serve deepseek-ai/DeepSeek-R1-0528 --revision {COMMIT} --tokenizer-revision {COMMIT} "
        )),
        "{line}"
    );
    assert!(line.contains(" --tensor-parallel-size 8 "), "{line}");
    assert!(
        line.contains(&format!(" -p 127.0.0.1:{HOST_PORT}:8000 ")),
        "{line}"
    );
    assert!(
        line.contains(
            " -v /models/hf:/root/.cache/huggingface -e HF_HOME=/root/.cache/huggingface "
        ),
        "{line}"
    );
    assert!(!line.contains("--runtime runc"), "podman-only: {line}");
    insta::assert_snapshot!(line);
}

#[test]
fn podman_gets_runc_explicit_ulimits_init_and_the_cdi_gpu_device() {
    let p = gpu_point("nvidia-h200-sxm", 8, "vllm", "podman", "");
    let line = container_line(&p, None).unwrap();
    for flag in [
        " --runtime runc ",
        " --ulimit nofile=16384:16384 ",
        " --ulimit nproc=4096:4096 ",
        " --init ",
        " --pull never ",
        " --device nvidia.com/gpu=all ",
    ] {
        assert!(line.contains(flag), "{flag} missing: {line}");
    }
    assert!(!line.contains("--gpus"), "{line}");
    assert!(!line.contains("HF_HOME"), "no cache given: {line}");
    insta::assert_snapshot!(line);
}

#[test]
fn amd_classes_get_kfd_dri_video_and_no_nvidia_flags() {
    for runtime in ["docker", "podman"] {
        let p = gpu_point("amd-mi300x", 1, "vllm", runtime, "");
        let line = container_line(&p, None).unwrap();
        assert!(
            line.contains(" --device /dev/kfd --device /dev/dri --group-add video --security-opt seccomp=unconfined "),
            "{line}"
        );
        assert!(
            !line.contains("nvidia") && !line.contains("--gpus"),
            "{line}"
        );
        assert!(line.contains(" --tensor-parallel-size 1 "), "{line}");
    }
    let p = gpu_point("amd-mi355x", 8, "vllm", "docker", "");
    insta::assert_snapshot!(container_line(&p, None).unwrap());
}

#[test]
fn sglang_and_trtllm_command_lines() {
    let p = gpu_point(
        "nvidia-b200",
        8,
        "sglang",
        "docker",
        "args = [\"--mem-fraction-static\", \"0.88\"]",
    );
    let sglang = container_line(&p, None).unwrap();
    assert!(
        sglang.contains(&format!(" --entrypoint python3 docker.io/vllm/vllm-openai@sha256:{D} -m sglang.launch_server --model-path deepseek-ai/DeepSeek-R1-0528 --revision {COMMIT} --host 0.0.0.0 --port 8000 --tp 8 --served-model-name deepseek-ai/DeepSeek-R1-0528 --mem-fraction-static 0.88")),
        "derived arguments first, then engine.args: {sglang}"
    );
    let p = gpu_point("nvidia-b200", 4, "trtllm", "docker", "");
    let trtllm = container_line(&p, Some(Path::new(CACHE))).unwrap();
    assert!(trtllm.contains(" --entrypoint trtllm-serve "), "{trtllm}");
    assert!(
        trtllm.contains(&format!(
            " /root/.cache/huggingface/hub/models--deepseek-ai--DeepSeek-R1-0528/snapshots/{COMMIT} --host 0.0.0.0 --port 8000 --tp_size 4 "
        )),
        "the pinned snapshot inside the mounted cache: {trtllm}"
    );
    let no_cache = container_line(&p, None).unwrap_err().to_string();
    assert!(
        no_cache.contains("needs a model cache") && no_cache.contains(COMMIT),
        "{no_cache}"
    );
    insta::assert_snapshot!(format!("{sglang}\n{trtllm}"));
}

#[test]
fn llamacpp_runs_the_image_entrypoint_and_refuses_a_hub_model() {
    let mut p = cpu_file_point(
        "llamacpp",
        "docker",
        &format!("image = \"127.0.0.1:5000/llama@sha256:{D}\"\nargs = [\"-c\", \"4096\"]"),
    );
    let line = container_line(&p, None).unwrap();
    assert!(!line.contains("--entrypoint"), "{line}");
    assert!(line.contains(" --shm-size 2g "), "{line}");
    assert!(
        !line.contains("--gpus") && !line.contains("--ipc"),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(
            "127.0.0.1:5000/llama@sha256:{D} -m models/smollm2.gguf --host 0.0.0.0 --port 8000 -a smollm2 -c 4096"
        )),
        "{line}"
    );
    insta::assert_snapshot!(line);
    p.model = Model::Hub {
        repo: "org/model".into(),
        revision: COMMIT.into(),
        served_name: "m".into(),
    };
    let err = container_line(&p, None).unwrap_err().to_string();
    assert!(
        err.contains("kind `llamacpp` loads one weights file") && err.contains("org/model"),
        "{err}"
    );
    assert!(matches!(
        command::process_plan(&p, Path::new("/x/llama-server"), None, 1, None),
        Err(EngineError::Unsupported(_))
    ));
}

#[test]
fn process_command_lines() {
    let llama = cpu_file_point(
        "llamacpp",
        "process",
        &format!(
            "command = \"llama-server\"\ncommand-sha256 = \"{D}\"\nargs = [\"-np\", \"4\"]\nenv = {{ LLAMA_ARG_THREADS = \"2\" }}"
        ),
    );
    let line = process_line(&llama, "/opt/bin/llama-server", Some("/data/smollm2.gguf"));
    assert_eq!(
        line,
        format!(
            "LLAMA_ARG_THREADS=2 /opt/bin/llama-server -m /data/smollm2.gguf --host 127.0.0.1 --port {HOST_PORT} -a smollm2 -np 4"
        )
    );
    let sim = process_line(&sim_point(), "/bin/infermark", None);
    assert_eq!(
        sim,
        format!(
            "/bin/infermark serve-sim --host 127.0.0.1 --port {HOST_PORT} --model-name sim --itl-ms 5"
        )
    );
    let vllm = gpu_point("nvidia-h100-sxm", 2, "vllm", "process", "");
    let vllm = process_line(&vllm, "/venv/bin/vllm", None);
    assert!(
        vllm.starts_with(&format!(
            "HF_HOME=/models/hf NCCL_DEBUG=WARN VLLM_USE_V1=1 /venv/bin/vllm serve deepseek-ai/DeepSeek-R1-0528 --revision {COMMIT}"
        )),
        "{vllm}"
    );
    assert!(vllm.contains(" --host 127.0.0.1 "), "{vllm}");
    let trt = gpu_point("nvidia-h100-sxm", 2, "trtllm", "process", "");
    let trt = process_line(&trt, "/venv/bin/trtllm-serve", None);
    assert!(
        trt.contains(&format!(
            "/venv/bin/trtllm-serve /models/hf/hub/models--deepseek-ai--DeepSeek-R1-0528/snapshots/{COMMIT} --host 127.0.0.1"
        )),
        "{trt}"
    );
    insta::assert_snapshot!(format!("{line}\n{sim}\n{vllm}\n{trt}"));
}

#[test]
fn openai_substitutes_placeholders_and_adds_nothing() {
    let p = cpu_file_point(
        "openai",
        "process",
        &format!(
            "command = \"my-server\"\ncommand-sha256 = \"{D}\"\nargs = [\"--listen={{host}}:{{port}}\", \"--weights\", \"{{model}}\", \"--name\", \"{{served_name}}\", \"--literal\", \"{{other}}\"]"
        ),
    );
    let line = process_line(&p, "/opt/my-server", Some("/data/smollm2.gguf"));
    assert_eq!(
        line,
        format!(
            "/opt/my-server --listen=127.0.0.1:{HOST_PORT} --weights /data/smollm2.gguf --name smollm2 --literal '{{other}}'"
        )
    );
    let mut c = p.clone();
    c.engine.runtime = Runtime::Podman;
    c.engine.command = None;
    c.engine.command_sha256 = None;
    c.engine.image = Some(ImageRef::parse(&format!("ghcr.io/o/srv@sha256:{D}")).unwrap());
    let line = container_line(&c, None).unwrap();
    assert!(!line.contains("--entrypoint"), "{line}");
    assert!(
        line.ends_with(&format!(
            "ghcr.io/o/srv@sha256:{D} --listen=0.0.0.0:8000 --weights models/smollm2.gguf --name smollm2 --literal '{{other}}'"
        )),
        "{line}"
    );
}

#[test]
fn sim_in_containers_names_its_program() {
    let docker = container_line(&sim_in(Runtime::Docker), None).unwrap();
    assert!(
        docker.ends_with(&format!(
            "--entrypoint infermark 127.0.0.1:5000/infermark-sim@sha256:{D} serve-sim --host 0.0.0.0 --port 8000 --model-name sim --itl-ms 5"
        )),
        "{docker}"
    );
    let podman = container_line(&sim_in(Runtime::Podman), None).unwrap();
    insta::assert_snapshot!(format!("{docker}\n{podman}"));
}

#[test]
fn apptainer_command_lines() {
    let nv = gpu_point("nvidia-h200-sxm", 8, "vllm", "apptainer", "");
    let nv = container_line(&nv, Some(Path::new(CACHE))).unwrap();
    assert!(
        nv.starts_with("apptainer exec --cleanenv --nv --bind /models/hf:/root/.cache/huggingface --env HF_HOME=/root/.cache/huggingface"),
        "{nv}"
    );
    assert!(
        nv.contains(&format!(
            " docker://docker.io/vllm/vllm-openai@sha256:{D} vllm serve deepseek-ai/DeepSeek-R1-0528 "
        )),
        "{nv}"
    );
    assert!(
        nv.contains(&format!(" --host 127.0.0.1 --port {HOST_PORT} ")),
        "host network: the engine binds the free port itself: {nv}"
    );
    let amd = gpu_point("amd-mi325x", 8, "sglang", "apptainer", "");
    let amd = container_line(&amd, None).unwrap();
    assert!(
        amd.starts_with("apptainer exec --cleanenv --rocm "),
        "{amd}"
    );
    let llama = cpu_file_point(
        "llamacpp",
        "apptainer",
        &format!("image = \"127.0.0.1:5000/llama@sha256:{D}\""),
    );
    let llama = container_line(&llama, None).unwrap();
    assert!(
        llama.starts_with(&format!(
            "apptainer run --cleanenv docker://127.0.0.1:5000/llama@sha256:{D} -m models/smollm2.gguf"
        )),
        "the image's entrypoint: {llama}"
    );
    insta::assert_snapshot!(format!("{nv}\n{amd}\n{llama}"));
}

fn options(dir: &Path) -> StartOptions {
    StartOptions {
        label: "unit".into(),
        spec_dir: dir.to_path_buf(),
        cache_dir: dir.join("cache"),
        model_dirs: Vec::new(),
        model_cache: None,
        log_path: dir.join("engine.log"),
        infermark_exe: PathBuf::from("/nonexistent/infermark"),
        registry_insecure_loopback: false,
    }
}

#[tokio::test]
async fn a_tag_only_image_is_refused_before_the_runtime_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = gpu_point("nvidia-h200-sxm", 8, "vllm", "docker", "");
    p.engine.image = Some(ImageRef::parse("vllm/vllm-openai:v0.25.1").unwrap());
    let err = start(&p, &options(dir.path())).await.unwrap_err();
    assert!(matches!(err, EngineError::Unpinned { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("docker.io/vllm/vllm-openai:v0.25.1")
            && msg.contains("by digest only")
            && msg.contains("infermark lock set"),
        "{msg}"
    );
    assert!(!dir.path().join("engine.log").exists(), "nothing started");
}

#[tokio::test]
async fn an_unpinned_process_command_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = cpu_file_point("llamacpp", "process", "command = \"sh\"");
    p.engine.command_sha256 = None;
    let err = start(&p, &options(dir.path())).await.unwrap_err();
    assert!(matches!(err, EngineError::Unpinned { .. }), "{err:?}");
    assert!(err.to_string().contains("engine.command-sha256"), "{err}");
}

#[tokio::test]
async fn apptainer_missing_fails_cleanly() {
    if which("apptainer").is_some() {
        eprintln!("SKIPPED apptainer_missing_fails_cleanly: apptainer is installed here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = gpu_point("nvidia-h200-sxm", 8, "vllm", "apptainer", "");
    let err = start(&p, &options(dir.path())).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "`apptainer` not found; install it or choose another `engine.runtime`"
    );
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn sha(hex_seed: &str) -> Sha256 {
    Sha256::parse(&hex_seed.repeat(64 / hex_seed.len())).unwrap()
}

#[test]
fn executables_are_found_in_the_store_first_then_as_written() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let pin = sha("ab");
    let exe = |p: &Path| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let path_env = std::ffi::OsString::from(format!("/nonexistent:{}", bin.display()));
    let find = |cmd: &str| files::find_executable(cmd, &pin, &cache, dir.path(), Some(&path_env));
    let err = find("srv").unwrap_err().to_string();
    assert!(
        err.contains(&format!("files/{}/srv", pin.hex())) && err.contains("/nonexistent/srv"),
        "{err}"
    );
    exe(&bin.join("srv"));
    assert_eq!(find("srv").unwrap(), bin.join("srv"));
    let stored = files::store_path(&cache, &pin, "srv");
    exe(&stored);
    assert_eq!(find("srv").unwrap(), stored, "the store wins over PATH");
    assert_eq!(
        find("/elsewhere/srv").unwrap(),
        stored,
        "found by the base name of the command"
    );
    std::fs::remove_file(&stored).unwrap();
    exe(&dir.path().join("tools/srv"));
    assert_eq!(find("tools/srv").unwrap(), dir.path().join("tools/srv"));
    // Not executable: not a candidate.
    std::fs::write(dir.path().join("plain"), "x").unwrap();
    assert!(find("./plain").is_err());
}

#[test]
fn model_files_are_found_in_the_store_then_model_dirs_then_the_spec_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, models, spec_dir) = (
        dir.path().join("cache"),
        dir.path().join("models"),
        dir.path().join("exp"),
    );
    let pin = sha("cd");
    let put = |p: &Path| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "weights").unwrap();
    };
    let find = || {
        files::find_model_file(
            "w/m.gguf",
            &pin,
            &cache,
            std::slice::from_ref(&models),
            &spec_dir,
        )
    };
    assert!(find().is_err());
    put(&spec_dir.join("w/m.gguf"));
    assert_eq!(find().unwrap(), spec_dir.join("w/m.gguf"));
    put(&models.join("m.gguf"));
    assert_eq!(find().unwrap(), models.join("m.gguf"));
    put(&models.join("w/m.gguf"));
    assert_eq!(find().unwrap(), models.join("w/m.gguf"));
    put(&files::store_path(&cache, &pin, "m.gguf"));
    assert_eq!(
        find().unwrap(),
        cache.join("files").join(pin.hex()).join("m.gguf")
    );
}

#[tokio::test]
async fn a_file_with_other_content_than_its_pin_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.gguf");
    std::fs::write(&f, "abc").unwrap();
    // sha256("abc")
    let real = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    files::check_pin(
        &f,
        &Sha256::parse(real).unwrap(),
        "`model.file`",
        dir.path(),
    )
    .await
    .unwrap();
    let pin = sha("ef");
    let err = files::check_pin(&f, &pin, "`model.file` `m.gguf`", dir.path())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("pin mismatch: `model.file` `m.gguf` found at "),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("expected sha256 {}", pin.hex())),
        "{msg}"
    );
    assert!(msg.contains(&format!("observed sha256 {real}")), "{msg}");
    assert!(
        msg.contains(&format!("files/{}/m.gguf", pin.hex())),
        "{msg}"
    );
}

#[test]
fn the_digest_check_accepts_the_pin_only() {
    let pinned = ImageRef::parse(&format!("vllm/vllm-openai@sha256:{D}")).unwrap();
    let pin = format!("sha256:{D}");
    let other = format!("sha256:{}", "f".repeat(64));
    // Podman: the container's own digest.
    assert_eq!(verify_digest(&pinned, "c", Some(&pin), &[]).unwrap(), pin);
    // Docker: the image's repository digests, in Docker's short spelling.
    let repo = vec![
        format!("other/repo@{pin}"),
        format!("vllm/vllm-openai@{pin}"),
    ];
    assert_eq!(verify_digest(&pinned, "c", None, &repo).unwrap(), pin);
    // Podman, pulled by an index digest: the container names the platform
    // manifest, the image lists the index digest too.
    assert_eq!(
        verify_digest(
            &pinned,
            "c",
            Some(&other),
            &[format!("docker.io/vllm/vllm-openai@{pin}")]
        )
        .unwrap(),
        pin
    );
    // The pinned digest under another repository does not count.
    let err = verify_digest(
        &pinned,
        "infermark-x",
        Some(&other),
        &[format!("other/repo@{pin}")],
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::PinMismatch { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("image of container `infermark-x`")
            && msg.contains(&format!("expected {pin}"))
            && msg.contains(&format!("observed {other}")),
        "{msg}"
    );
    let none = verify_digest(&pinned, "c", None, &[])
        .unwrap_err()
        .to_string();
    assert!(
        none.contains("no digest for `docker.io/vllm/vllm-openai`"),
        "{none}"
    );
}

#[test]
fn loopback_registries_and_container_names() {
    for r in [
        "127.0.0.1:5000",
        "localhost:5000",
        "localhost",
        "[::1]:5000",
        "127.0.0.2",
    ] {
        assert!(container::is_loopback_registry(r), "{r}");
    }
    for r in [
        "docker.io",
        "10.0.0.1:5000",
        "ghcr.io",
        "[2001:db8::1]:5000",
    ] {
        assert!(!container::is_loopback_registry(r), "{r}");
    }
    assert_eq!(container::name("run 1/a"), "infermark-run-1-a");
}

#[test]
fn cache_dir_rules() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| std::ffi::OsString::from(v))
        }
    };
    assert_eq!(
        cache_dir_from(env(&[
            ("INFERMARK_CACHE", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h")
        ])),
        PathBuf::from("/c")
    );
    assert_eq!(
        cache_dir_from(env(&[
            ("INFERMARK_CACHE", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h")
        ])),
        PathBuf::from("/x/infermark")
    );
    assert_eq!(
        cache_dir_from(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])),
        PathBuf::from("/h/.cache/infermark"),
        "a relative XDG_CACHE_HOME is ignored"
    );
}

#[test]
fn log_tail_keeps_the_last_30_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("engine.log");
    let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&log, text).unwrap();
    let tail = ready::log_tail(&log);
    assert!(
        tail.starts_with("line 70\n") && tail.ends_with("line 99"),
        "{tail}"
    );
    std::fs::write(&log, "").unwrap();
    assert_eq!(ready::log_tail(&log), "(the log is empty)");
}

#[test]
fn facts_serialise_as_environment_json_expects() {
    let facts = EngineFacts {
        kind: EngineKind::Llamacpp,
        runtime: Runtime::Process,
        argv: vec!["/abs/llama-server".into(), "-m".into()],
        base_url: "http://127.0.0.1:41234".into(),
        executable: Some(FileFact {
            path: "/abs/llama-server".into(),
            sha256: D.into(),
        }),
        model_file: None,
        image: None,
    };
    insta::assert_json_snapshot!(facts);
    let image = ImageFact {
        reference: format!("127.0.0.1:5000/x@sha256:{D}"),
        digest: format!("sha256:{D}"),
        image_id: Some("abc".into()),
        container_id: Some("def".into()),
        runtime_version: "podman version 4.3.1".into(),
    };
    let v = serde_json::to_value(&image).unwrap();
    assert_eq!(v["digest"], format!("sha256:{D}"));
    assert_eq!(v["runtime_version"], "podman version 4.3.1");
}

#[test]
fn a_container_owner_is_alive_only_while_that_very_process_runs() {
    let me = container::this_owner();
    let parts: Vec<&str> = me.split(':').collect();
    assert_eq!(parts.len(), 3, "{me}");
    assert_eq!(parts[0], std::process::id().to_string());
    assert!(parts[1].parse::<u64>().unwrap() > 0, "{me}");
    assert!(container::owner_alive(&me));
    // A process that has ended.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let boot = parts[2];
    assert!(!container::owner_alive(&format!("{pid}:1:{boot}")));
    // This pid, but a process that started at another time (a reused pid).
    let other_start = parts[1].parse::<u64>().unwrap() + 1;
    assert!(!container::owner_alive(&format!(
        "{}:{other_start}:{boot}",
        parts[0]
    )));
    // This process's pid and start, but of another boot.
    assert!(!container::owner_alive(&format!(
        "{}:{}:another-boot",
        parts[0], parts[1]
    )));
    // A label this version cannot read is left alone.
    assert!(container::owner_alive("v2;something-else"));
    assert!(container::owner_alive("x:y:z"));
}
