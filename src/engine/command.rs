//! Command lines: what each engine kind is told, and how each runtime wraps
//! it. Pure functions of the point and a few decided values (ports, paths),
//! so every combination can be snapshotted without starting anything.
//!
//! Infermark's derived arguments come first, `engine.args` after them
//! verbatim, so an experiment can add flags (and, for servers whose last
//! occurrence wins, override ours) without infermark knowing them.
//!
//! In a container infermark names the server program itself
//! (`--entrypoint`) for vLLM, SGLang, TensorRT-LLM and the sim, because
//! images disagree about their entrypoint: `vllm/vllm-openai` runs
//! `vllm serve`, ROCm's vLLM images and `lmsysorg/sglang` a shell, NVIDIA's
//! a banner script. A point then means one command line whatever the image.
//! llama.cpp's server images and an `openai` engine's image are run through
//! their own entrypoint (the server is the image's reason to exist, and its
//! path differs between images); infermark passes arguments only.

use std::path::Path;

use crate::spec::hardware::Vendor;
use crate::spec::{EngineKind, Model, PointSpec, Runtime};

use super::EngineError;

/// Where the Hugging Face cache (`HF_HOME`) is mounted inside containers.
pub(super) const CONTAINER_HF_HOME: &str = "/root/.cache/huggingface";

/// The address the server binds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Listen<'a> {
    pub host: &'a str,
    pub port: u16,
}

/// Where the server runs: decides the program name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// A local process: the program is the resolved executable, added by
    /// the caller.
    Process,
    /// Inside an image: the program is looked up on the image's `PATH`.
    Container,
}

/// The model as the server is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ModelArg {
    /// A Hugging Face repository at a commit, downloaded by the engine.
    Hub { repo: String, revision: String },
    /// A path: a weights file, or a hub snapshot directory.
    Path(String),
    /// No weights (the sim).
    None,
}

impl ModelArg {
    /// For a local process: the verified weights file, or the hub repo.
    /// TensorRT-LLM is given the snapshot directory of the pinned commit in
    /// the Hugging Face cache, because `trtllm-serve` has no revision option.
    pub(super) fn for_process(
        point: &PointSpec,
        model_file: Option<&Path>,
        model_cache: Option<&Path>,
    ) -> Result<Self, EngineError> {
        match (&point.model, model_file) {
            (Model::File { .. }, Some(path)) => Ok(ModelArg::Path(path.display().to_string())),
            (Model::Hub { repo, revision, .. }, _) if point.engine.kind == EngineKind::Trtllm => {
                let home = match model_cache {
                    Some(dir) => dir.to_path_buf(),
                    None => host_hf_home().ok_or_else(|| {
                        EngineError::Unsupported(
                            "kind `trtllm` with a hub model needs the Hugging Face cache holding the pinned snapshot; pass a model cache or set `HF_HOME`".to_string(),
                        )
                    })?,
                };
                Ok(ModelArg::Path(snapshot_dir(
                    &home.display().to_string(),
                    repo,
                    revision,
                )))
            }
            (Model::Hub { repo, revision, .. }, _) => Ok(ModelArg::Hub {
                repo: repo.clone(),
                revision: revision.clone(),
            }),
            _ => Ok(ModelArg::None),
        }
    }

    /// For a container: a `Model::File` is a path inside the image (pinned by
    /// the image digest); hub snapshots live under the mounted cache.
    pub(super) fn for_container(
        point: &PointSpec,
        hf_home: &str,
        has_model_cache: bool,
    ) -> Result<Self, EngineError> {
        match &point.model {
            Model::File { file, .. } => Ok(ModelArg::Path(file.clone())),
            Model::Hub { repo, revision, .. } if point.engine.kind == EngineKind::Trtllm => {
                if !has_model_cache {
                    return Err(EngineError::Unsupported(format!(
                        "kind `trtllm` with hub model `{repo}` needs a model cache holding the snapshot of commit {revision}: `trtllm-serve` cannot pin a revision itself"
                    )));
                }
                Ok(ModelArg::Path(snapshot_dir(hf_home, repo, revision)))
            }
            Model::Hub { repo, revision, .. } => Ok(ModelArg::Hub {
                repo: repo.clone(),
                revision: revision.clone(),
            }),
            Model::None { .. } => Ok(ModelArg::None),
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            ModelArg::Hub { repo, .. } => Some(repo),
            ModelArg::Path(p) => Some(p),
            ModelArg::None => None,
        }
    }
}

/// `$HF_HOME`, else `~/.cache/huggingface`, of this process.
fn host_hf_home() -> Option<std::path::PathBuf> {
    if let Some(h) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return Some(h.into());
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| Path::new(&h).join(".cache").join("huggingface"))
}

/// The Hugging Face cache's directory for one commit of a repository.
fn snapshot_dir(hf_home: &str, repo: &str, commit: &str) -> String {
    format!(
        "{}/hub/models--{}/snapshots/{commit}",
        hf_home.trim_end_matches('/'),
        repo.replace('/', "--")
    )
}

/// A process engine's command line and the environment it adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcessPlan {
    /// The resolved executable first.
    pub argv: Vec<String>,
    /// `HF_HOME` for a hub model when a model cache is given, then
    /// `engine.env`.
    pub env: Vec<(String, String)>,
}

/// A process engine's plan; the engine binds 127.0.0.1:`port`.
pub(super) fn process_plan(
    point: &PointSpec,
    exe: &Path,
    model_file: Option<&Path>,
    port: u16,
    model_cache: Option<&Path>,
) -> Result<ProcessPlan, EngineError> {
    let model = ModelArg::for_process(point, model_file, model_cache)?;
    let listen = Listen {
        host: "127.0.0.1",
        port,
    };
    let server = server_command(point, &listen, &model, Placement::Process)?;
    let mut argv = vec![exe.display().to_string()];
    argv.extend(server.args);
    let mut env = Vec::new();
    if let (Some(cache), Model::Hub { .. }) = (model_cache, &point.model) {
        env.push(("HF_HOME".to_string(), cache.display().to_string()));
    }
    env.extend(point.engine.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(ProcessPlan { argv, env })
}

/// A container engine's command line: the runtime's `run` (or Apptainer's
/// `exec`/`run`) of `reference` as container `name`. The engine's port is
/// published on 127.0.0.1:`host_port` (Apptainer: the engine binds it).
pub(super) fn container_plan(
    point: &PointSpec,
    reference: &str,
    name: &str,
    host_port: u16,
    model_cache: Option<&Path>,
    vendor: Vendor,
    owner: &str,
) -> Result<Vec<String>, EngineError> {
    let runtime = point.engine.runtime;
    let listen = match runtime {
        Runtime::Apptainer => Listen {
            host: "127.0.0.1",
            port: host_port,
        },
        _ => Listen {
            host: "0.0.0.0",
            port: point.engine.port,
        },
    };
    let model = ModelArg::for_container(point, CONTAINER_HF_HOME, model_cache.is_some())?;
    let server = server_command(point, &listen, &model, Placement::Container)?;
    let ctx = ContainerCtx {
        name: name.to_string(),
        host_port,
        // Only hub models are read from the cache.
        model_cache: model_cache.filter(|_| matches!(point.model, Model::Hub { .. })),
        vendor,
        owner: owner.to_string(),
    };
    Ok(container_argv(runtime, point, reference, &server, &ctx))
}

/// The server's own command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServerCommand {
    /// The program to run in a container; `None` runs the image's entrypoint.
    /// Under the process runtime the caller puts the resolved executable
    /// first instead.
    pub program: Option<String>,
    pub args: Vec<String>,
}

/// The engine kind's command line: derived arguments, then `engine.args`.
pub(super) fn server_command(
    point: &PointSpec,
    listen: &Listen<'_>,
    model: &ModelArg,
    placement: Placement,
) -> Result<ServerCommand, EngineError> {
    let e = &point.engine;
    let name = point.model.served_name().to_string();
    let host = listen.host.to_string();
    let port = listen.port.to_string();
    let tp = e.tensor_parallel.to_string();
    let needs_model = |kind: EngineKind| {
        model.text().map(str::to_string).ok_or_else(|| {
            EngineError::Unsupported(format!(
                "kind `{kind}` needs a model: add `[model]` with `repo` and `revision`, or `file` and `sha256`"
            ))
        })
    };
    let in_container =
        |program: &str| (placement == Placement::Container).then(|| program.to_string());
    let (program, mut args) = match e.kind {
        EngineKind::Vllm => {
            let mut a = vec!["serve".to_string(), needs_model(e.kind)?];
            if let ModelArg::Hub { revision, .. } = model {
                // The tokenizer otherwise follows the repository's default
                // branch, whatever the weights' revision.
                a.extend(strs(&[
                    "--revision",
                    revision,
                    "--tokenizer-revision",
                    revision,
                ]));
            }
            a.extend(strs(&[
                "--host",
                &host,
                "--port",
                &port,
                "--tensor-parallel-size",
                &tp,
                "--served-model-name",
                &name,
            ]));
            (in_container("vllm"), a)
        }
        EngineKind::Sglang => {
            let mut a = strs(&["-m", "sglang.launch_server", "--model-path"]);
            a.push(needs_model(e.kind)?);
            if let ModelArg::Hub { revision, .. } = model {
                a.extend(strs(&["--revision", revision]));
            }
            a.extend(strs(&[
                "--host",
                &host,
                "--port",
                &port,
                "--tp",
                &tp,
                "--served-model-name",
                &name,
            ]));
            (in_container("python3"), a)
        }
        EngineKind::Trtllm => {
            let mut a = vec![needs_model(e.kind)?];
            a.extend(strs(&[
                "--host",
                &host,
                "--port",
                &port,
                "--tp_size",
                &tp,
                "--served_model_name",
                &name,
            ]));
            (in_container("trtllm-serve"), a)
        }
        EngineKind::Llamacpp => {
            let file = match model {
                ModelArg::Path(p) => p.clone(),
                ModelArg::Hub { repo, .. } => {
                    return Err(EngineError::Unsupported(format!(
                        "kind `llamacpp` loads one weights file: replace `model.repo = \"{repo}\"` with `model.file` and `model.sha256` (a GGUF file)"
                    )));
                }
                ModelArg::None => return Err(EngineError::Unsupported(
                    "kind `llamacpp` needs a model: add `[model]` with `file` and `sha256` (a GGUF file)".to_string(),
                )),
            };
            let a = strs(&["-m", &file, "--host", &host, "--port", &port, "-a", &name]);
            (None, a)
        }
        EngineKind::Sim => {
            let a = strs(&[
                "serve-sim",
                "--host",
                &host,
                "--port",
                &port,
                "--model-name",
                &name,
            ]);
            (in_container("infermark"), a)
        }
        EngineKind::Openai => {
            let revision = match model {
                ModelArg::Hub { revision, .. } => revision.as_str(),
                _ => "",
            };
            let model_text = model.text().unwrap_or(&name);
            let args = e
                .args
                .iter()
                .map(|a| {
                    a.replace("{host}", &host)
                        .replace("{port}", &port)
                        .replace("{model}", model_text)
                        .replace("{revision}", revision)
                        .replace("{served_name}", &name)
                })
                .collect();
            // The command (or the image's entrypoint) with its arguments:
            // nothing derived, the placeholders say where things go.
            return Ok(ServerCommand {
                program: None,
                args,
            });
        }
    };
    args.extend(e.args.iter().cloned());
    Ok(ServerCommand { program, args })
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What a container command line needs besides the point.
#[derive(Debug, Clone)]
pub(super) struct ContainerCtx<'a> {
    /// `infermark-<label>`.
    pub name: String,
    /// The loopback port the engine's port is published on (Docker, Podman)
    /// or that the engine binds (Apptainer, host network).
    pub host_port: u16,
    /// Mounted as the container's `HF_HOME` when set.
    pub model_cache: Option<&'a Path>,
    pub vendor: Vendor,
    /// The harness process that owns the container (Docker, Podman), as
    /// the [`super::container::OWNER_LABEL`] label gives it.
    pub owner: String,
}

/// The runtime's command line that runs `server` from `reference`.
///
/// Docker and Podman run in the foreground (`run` without `-d`): the `run`
/// client lives as long as the container and carries its output to the log.
pub(super) fn container_argv(
    runtime: Runtime,
    point: &PointSpec,
    reference: &str,
    server: &ServerCommand,
    ctx: &ContainerCtx<'_>,
) -> Vec<String> {
    if runtime == Runtime::Apptainer {
        return apptainer_argv(point, reference, server, ctx);
    }
    let mut a = strs(&[runtime.as_str(), "run", "--rm", "--name", &ctx.name]);
    // Who started it: a later start removes it if that harness is gone
    // (SIGKILL leaves no chance to remove it; see container::sweep_stale).
    a.extend(strs(&[
        "--label",
        &format!("{}={}", super::container::OWNER_LABEL, ctx.owner),
    ]));
    // The image was pulled by digest beforehand; never pull again here.
    a.extend(strs(&["--pull", "never"]));
    // An init as PID 1 forwards SIGTERM to the server and reaps its
    // children: engines are Python process trees, not written to be PID 1,
    // and without it `stop` waits out its grace for a PID 1 that ignores
    // SIGTERM.
    a.push("--init".to_string());
    if runtime == Runtime::Podman {
        // Podman's defaults fail on common CI hosts: crun does not support
        // cgroups v1 ("hybrid mode"), and the default RLIMIT_NOFILE
        // (1048576) exceeds the hard limit a non-systemd host gives, so
        // `setrlimit` fails at start. runc and explicit limits work on both
        // cgroup versions.
        a.extend(strs(&[
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=16384:16384",
            "--ulimit",
            "nproc=4096:4096",
        ]));
    }
    a.extend(strs(&[
        "-p",
        &format!("127.0.0.1:{}:{}", ctx.host_port, point.engine.port),
    ]));
    match ctx.vendor {
        Vendor::Nvidia => match runtime {
            Runtime::Podman => a.extend(strs(&["--device", "nvidia.com/gpu=all"])),
            _ => a.extend(strs(&["--gpus", "all"])),
        },
        Vendor::Amd => a.extend(strs(&[
            "--device",
            "/dev/kfd",
            "--device",
            "/dev/dri",
            "--group-add",
            "video",
            "--security-opt",
            "seccomp=unconfined",
        ])),
        Vendor::Cpu => {}
    }
    match ctx.vendor {
        // Tensor-parallel workers exchange CUDA/ROCm IPC handles and
        // NCCL/RCCL buffers through /dev/shm; the host IPC namespace gives
        // them the host's /dev/shm rather than a 64 MB container one.
        // Pinned host memory for collectives needs an unlimited memlock.
        Vendor::Nvidia | Vendor::Amd => {
            a.extend(strs(&["--ipc", "host", "--ulimit", "memlock=-1:-1"]))
        }
        // CPU engines share memory between worker processes too; the size is
        // a cap on a tmpfs, not a reservation.
        Vendor::Cpu => a.extend(strs(&["--shm-size", "2g"])),
    }
    if let Some(cache) = ctx.model_cache {
        a.extend(strs(&[
            "-v",
            &format!("{}:{CONTAINER_HF_HOME}", cache.display()),
            "-e",
            &format!("HF_HOME={CONTAINER_HF_HOME}"),
        ]));
    }
    for (k, v) in &point.engine.env {
        a.extend(strs(&["-e", &format!("{k}={v}")]));
    }
    if let Some(program) = &server.program {
        a.extend(strs(&["--entrypoint", program]));
    }
    a.push(reference.to_string());
    a.extend(server.args.iter().cloned());
    a
}

/// Apptainer runs the image as a process on the host's network: no port
/// mapping, no container to inspect. `exec` runs a named program, `run` the
/// image's entrypoint; `--cleanenv` keeps the host's environment out.
fn apptainer_argv(
    point: &PointSpec,
    reference: &str,
    server: &ServerCommand,
    ctx: &ContainerCtx<'_>,
) -> Vec<String> {
    let verb = if server.program.is_some() {
        "exec"
    } else {
        "run"
    };
    let mut a = strs(&["apptainer", verb, "--cleanenv"]);
    match ctx.vendor {
        Vendor::Nvidia => a.push("--nv".to_string()),
        Vendor::Amd => a.push("--rocm".to_string()),
        Vendor::Cpu => {}
    }
    if let Some(cache) = ctx.model_cache {
        a.extend(strs(&[
            "--bind",
            &format!("{}:{CONTAINER_HF_HOME}", cache.display()),
            "--env",
            &format!("HF_HOME={CONTAINER_HF_HOME}"),
        ]));
    }
    for (k, v) in &point.engine.env {
        a.extend(strs(&["--env", &format!("{k}={v}")]));
    }
    a.push(format!("docker://{reference}"));
    if let Some(program) = &server.program {
        a.push(program.clone());
    }
    a.extend(server.args.iter().cloned());
    a
}

/// A command line as a shell would read it, for messages and snapshots.
pub(super) fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
