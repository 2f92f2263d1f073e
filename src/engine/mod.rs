//! Engines: start the inference server a point names, prove it is the pinned
//! one, wait until it answers, and stop it whatever happens.
//!
//! A point names an engine kind (vLLM, SGLang, TensorRT-LLM, llama.cpp, the
//! built-in sim, any OpenAI-compatible server) and a runtime (a local
//! process, or a container by image digest under Docker, Podman or
//! Apptainer). This module turns that into one command line (`command`),
//! checks the pins before anything loads (a process engine's executable and
//! model file by sha256 through the content-addressed file store, `files`;
//! a container's image by the digest its runtime reports, `container`),
//! polls readiness (`ready`) and owns teardown.
//!
//! Teardown is the part a nightly job cannot get wrong: a GPU left busy by a
//! forgotten server spoils every later measurement on that machine. So every
//! engine this process starts is listed in a process-wide registry
//! (`live`) until it is stopped: [`RunningEngine::stop`] stops it
//! gracefully, dropping a [`RunningEngine`] kills it, and
//! [`kill_all_started`] kills every one still listed (the signal path of the
//! run command). Process engines run in their own process group and die with
//! the harness even when it is SIGKILLed (`process`).

mod command;
mod container;
mod files;
mod live;
mod process;
mod ready;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Child;

use crate::spec::hardware::{self, Vendor};
use crate::spec::{EngineKind, Model, PointSpec, Runtime};

pub use live::kill_all_started;

/// How long a stopping engine gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Everything `start` needs besides the point.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Unique per engine start; the container is named `infermark-<label>`.
    pub label: String,
    /// The experiment file's directory: relative paths are relative to it.
    pub spec_dir: PathBuf,
    /// The cache directory; executables and model files are looked up in
    /// `<cache>/files/<sha256>/<name>` first.
    pub cache_dir: PathBuf,
    /// Extra places to look for a process engine's `Model::File` weights.
    pub model_dirs: Vec<PathBuf>,
    /// A Hugging Face cache directory (`HF_HOME`): mounted into containers
    /// for hub models, and `HF_HOME` of process engines.
    pub model_cache: Option<PathBuf>,
    /// Engine stdout and stderr go here (created or truncated).
    pub log_path: PathBuf,
    /// The infermark binary, for kind `sim` under the process runtime.
    pub infermark_exe: PathBuf,
    /// Pull over plain HTTP from registries on the loopback interface
    /// (podman's `--tls-verify=false`; Docker already treats 127.0.0.0/8 so).
    pub registry_insecure_loopback: bool,
}

/// A file infermark ran or loaded, with the sha256 of what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFact {
    pub path: PathBuf,
    /// 64 lowercase hex digits.
    pub sha256: String,
}

/// The image a container engine ran, as its runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFact {
    /// The pinned reference infermark asked for: `registry/repo@sha256:<hex>`.
    pub reference: String,
    /// `sha256:<hex>`: the digest the runtime says the container runs
    /// (Apptainer has no inspect; there it is the digest it pulled by).
    pub digest: String,
    pub image_id: Option<String>,
    pub container_id: Option<String>,
    /// e.g. `podman version 4.3.1`.
    pub runtime_version: String,
}

/// What was started: environment.json's `engine` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineFacts {
    pub kind: EngineKind,
    pub runtime: Runtime,
    /// The command line infermark executed (for containers, the runtime's
    /// `run` command).
    pub argv: Vec<String>,
    pub base_url: String,
    /// The executable of a process engine.
    pub executable: Option<FileFact>,
    /// The weights file a process engine loaded (`Model::File` only).
    pub model_file: Option<FileFact>,
    /// The image of a container engine.
    pub image: Option<ImageFact>,
}

/// Everything that can go wrong starting or stopping an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Unsupported(String),
    #[error("`{key}`: `{reference}` is not pinned; {fix}")]
    Unpinned {
        key: String,
        reference: String,
        fix: String,
    },
    #[error("{what} not found; looked at: {}; {hint}", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        what: String,
        tried: Vec<PathBuf>,
        hint: String,
    },
    #[error("pin mismatch: {what}: expected {expected}, observed {observed}; {hint}")]
    PinMismatch {
        what: String,
        expected: String,
        observed: String,
        hint: String,
    },
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to create the engine log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{program}` not found; install it or choose another `engine.runtime`")]
    RuntimeMissing { program: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("failed to start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    RuntimeCommand {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "cannot pull `{reference}`: `{command}` failed: {output}; check that the registry holds this digest (and that the registry is reachable)"
    )]
    Pull {
        reference: String,
        command: String,
        output: String,
    },
    #[error("the engine exited during start ({status}); last lines of its log:\n{log_tail}")]
    Exited { status: String, log_tail: String },
    #[error("the engine did not answer 2xx at {url} within {} (`engine.readiness-timeout-s`; raise it if the engine loads slowly); last lines of its log:\n{log_tail}", humantime::format_duration(*after))]
    NotReady {
        url: String,
        after: Duration,
        log_tail: String,
    },
}

/// A started, ready engine. Dropping it kills the engine; [`stop`] stops it
/// gracefully.
///
/// [`stop`]: RunningEngine::stop
#[derive(Debug)]
pub struct RunningEngine {
    facts: EngineFacts,
    log_path: PathBuf,
    /// The engine process (process runtime, Apptainer) or the runtime's
    /// foreground `run` client (Docker, Podman), in its own process group.
    child: Child,
    /// Its process group, equal to its pid.
    pgid: i32,
    /// The container, for Docker and Podman.
    container: Option<container::Container>,
    /// This engine's entry in the registry of live engines.
    live_id: u64,
}

impl RunningEngine {
    pub fn base_url(&self) -> &str {
        &self.facts.base_url
    }

    pub fn facts(&self) -> &EngineFacts {
        &self.facts
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The pid of the engine process (process runtime, Apptainer) or of the
    /// runtime's foreground `run` client (Docker, Podman); also its process
    /// group id.
    pub fn pid(&self) -> u32 {
        self.pgid as u32
    }

    /// `Some(reason)` if the engine has exited since it became ready.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("the engine exited ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("cannot tell whether the engine runs: {e}")),
        }
    }

    /// Stops the engine: SIGTERM, up to [`STOP_GRACE`], then SIGKILL (the
    /// runtime's `stop` does the same for a container), then removes what is
    /// left (process group members, the container).
    pub async fn stop(mut self) -> Result<(), EngineError> {
        self.shutdown().await
    }

    async fn shutdown(&mut self) -> Result<(), EngineError> {
        let result = match &self.container {
            Some(c) => c.stop(&mut self.child, self.pgid, STOP_GRACE).await,
            None => {
                process::terminate(&mut self.child, self.pgid, STOP_GRACE).await;
                Ok(())
            }
        };
        // Stopped (or, on error, removed by the last resort below): the
        // registry no longer needs to know, and Drop has nothing to do.
        if let Some(t) = live::unregister(self.live_id)
            && result.is_err()
        {
            t.kill_now();
        }
        result
    }
}

impl Drop for RunningEngine {
    fn drop(&mut self) {
        // Still registered means neither `stop` nor `kill_all_started` has
        // dealt with it: kill it now, synchronously.
        if let Some(t) = live::unregister(self.live_id) {
            t.kill_now();
        }
    }
}

/// `$INFERMARK_CACHE`, else `$XDG_CACHE_HOME/infermark`, else
/// `~/.cache/infermark`.
pub fn default_cache_dir() -> PathBuf {
    cache_dir_from(|k| std::env::var_os(k))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("INFERMARK_CACHE") {
        return dir;
    }
    // The XDG spec ignores a relative XDG_CACHE_HOME.
    if let Some(dir) = set("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return dir.join("infermark");
    }
    match set("HOME") {
        Some(home) => home.join(".cache").join("infermark"),
        None => std::env::temp_dir().join("infermark-cache"),
    }
}

/// Starts the point's engine and waits until it is ready.
///
/// Pins are checked before anything loads: a process engine's executable
/// and model file by sha256, a container's image by digest (refused without
/// one). Once the container exists, its runtime's `inspect` must report the
/// pinned digest, or the engine is stopped and the start fails.
pub async fn start(point: &PointSpec, opts: &StartOptions) -> Result<RunningEngine, EngineError> {
    let class = hardware::class(&point.hardware.class).ok_or_else(|| {
        EngineError::Unsupported(format!(
            "`hardware.class`: unknown class `{}`; expected one of {}",
            point.hardware.class,
            hardware::class_ids().join(", ")
        ))
    })?;
    let rt = match point.engine.runtime {
        Runtime::Process => return start_process(point, opts).await,
        Runtime::Docker => container::Rt::Docker,
        Runtime::Podman => container::Rt::Podman,
        Runtime::Apptainer => container::Rt::Apptainer,
    };
    start_container(point, opts, rt, class.vendor).await
}

/// Checks, before anything is measured, that every pin of `point` can be
/// honoured here: a process engine's executable and model file are found
/// (by the same lookup [`start`] uses) with the pinned sha256; a container's
/// image is pinned by digest (the runtime pulls it by that digest when it is
/// not present). Used by `verify`, which must not start a re-run it cannot
/// make identical.
pub async fn check_pins_available(
    point: &PointSpec,
    opts: &StartOptions,
) -> Result<(), EngineError> {
    match point.engine.runtime {
        Runtime::Process => process_files(point, opts).await.map(|_| ()),
        _ => {
            let image = point.engine.image.as_ref().ok_or_else(|| {
                EngineError::Unsupported(format!(
                    "`engine.image`: missing; runtime `{}` needs an image",
                    point.engine.runtime
                ))
            })?;
            match image.digest {
                Some(_) => Ok(()),
                None => Err(EngineError::Unpinned {
                    key: "engine.image".to_string(),
                    reference: image.to_string(),
                    fix: "the point must name its image by digest".to_string(),
                }),
            }
        }
    }
}

/// A process engine's executable and model file, found and checked
/// against their pins (the sim is the harness itself: hashed, recorded).
async fn process_files(
    point: &PointSpec,
    opts: &StartOptions,
) -> Result<(FileFact, Option<FileFact>), EngineError> {
    let engine = &point.engine;
    let (exe_path, exe_sha) = if engine.kind == EngineKind::Sim {
        // The harness itself: nothing to pin it against, but recorded.
        let path =
            std::path::absolute(&opts.infermark_exe).unwrap_or_else(|_| opts.infermark_exe.clone());
        let sha = files::sha256_file(&path).await?;
        (path, sha)
    } else {
        let command = engine.command.as_deref().ok_or_else(|| {
            EngineError::Unsupported(format!(
                "`engine.command`: missing; runtime `process` needs the `{}` server executable",
                engine.kind
            ))
        })?;
        let pin = engine
            .command_sha256
            .as_ref()
            .ok_or_else(|| EngineError::Unpinned {
                key: "engine.command".to_string(),
                reference: command.to_string(),
                fix: format!(
                    "set `engine.command-sha256`, or run `infermark lock set {command} <sha256 of the executable>`"
                ),
            })?;
        let path = files::find_executable(
            command,
            pin,
            &opts.cache_dir,
            &opts.spec_dir,
            std::env::var_os("PATH").as_deref(),
        )?;
        files::check_pin(
            &path,
            pin,
            &format!("`engine.command` `{command}`"),
            &opts.cache_dir,
        )
        .await?;
        (path, pin.clone())
    };
    let executable = FileFact {
        path: exe_path.clone(),
        sha256: exe_sha.hex().to_string(),
    };
    let model_file = match &point.model {
        Model::File { file, sha256, .. } if engine.kind != EngineKind::Sim => {
            let path = files::find_model_file(
                file,
                sha256,
                &opts.cache_dir,
                &opts.model_dirs,
                &opts.spec_dir,
            )?;
            files::check_pin(
                &path,
                sha256,
                &format!("`model.file` `{file}`"),
                &opts.cache_dir,
            )
            .await?;
            Some(FileFact {
                path,
                sha256: sha256.hex().to_string(),
            })
        }
        _ => None,
    };
    Ok((executable, model_file))
}

async fn start_process(
    point: &PointSpec,
    opts: &StartOptions,
) -> Result<RunningEngine, EngineError> {
    let engine = &point.engine;
    let (executable, model_file) = process_files(point, opts).await?;
    let exe_path = executable.path.clone();
    let port = free_port()?;
    let command::ProcessPlan { argv, env } = command::process_plan(
        point,
        &exe_path,
        model_file.as_ref().map(|f| f.path.as_path()),
        port,
        opts.model_cache.as_deref(),
    )?;
    let log = ready::create_log(&opts.log_path)?;
    // Relative paths in `engine.args` mean what they mean in the spec.
    let cwd = opts.spec_dir.is_dir().then_some(opts.spec_dir.as_path());
    ready::note(&log, &argv);
    let child = process::spawn(&argv, &env, cwd, &log).await?;
    let base_url = format!("http://127.0.0.1:{port}");
    let facts = EngineFacts {
        kind: engine.kind,
        runtime: engine.runtime,
        argv,
        base_url,
        executable: Some(executable),
        model_file,
        image: None,
    };
    finish_start(point, opts, facts, child, None).await
}

async fn start_container(
    point: &PointSpec,
    opts: &StartOptions,
    rt: container::Rt,
    vendor: Vendor,
) -> Result<RunningEngine, EngineError> {
    let engine = &point.engine;
    let image = engine.image.as_ref().ok_or_else(|| {
        EngineError::Unsupported(format!(
            "`engine.image`: missing; runtime `{}` needs an image",
            engine.runtime
        ))
    })?;
    let digest = image.digest.as_ref().ok_or_else(|| EngineError::Unpinned {
        key: "engine.image".to_string(),
        reference: image.to_string(),
        fix: format!(
            "containers run by digest only: run `infermark lock set {} sha256:<digest>` (or write the digest into the spec)",
            image.tagged()
        ),
    })?;
    let pinned = image.pinned(digest);
    let runtime_version = rt.version().await?;
    // Docker and Podman publish the engine's port on a free loopback port;
    // Apptainer shares the host's network, so the engine binds that port.
    let host_port = free_port()?;
    let name = container::name(&opts.label);
    let argv = command::container_plan(
        point,
        &pinned.to_string(),
        &name,
        host_port,
        opts.model_cache.as_deref(),
        vendor,
        &container::this_owner(),
    )?;
    let log = ready::create_log(&opts.log_path)?;
    if rt != container::Rt::Apptainer {
        match container::sweep_stale(rt).await {
            Ok(removed) => {
                for stale in removed {
                    let why = format!(
                        "removed container {stale}: the infermark that started it is no longer running"
                    );
                    tracing::warn!("{why}");
                    ready::note_line(&log, &why);
                }
            }
            Err(e) => tracing::warn!("could not look for stale containers: {e}"),
        }
    }
    if rt != container::Rt::Apptainer {
        rt.ensure_image(&pinned, opts.registry_insecure_loopback, &log)
            .await?;
    }
    ready::note(&log, &argv);
    let child = process::spawn(&argv, &[], None, &log).await?;
    let facts = EngineFacts {
        kind: engine.kind,
        runtime: engine.runtime,
        argv,
        base_url: format!("http://127.0.0.1:{host_port}"),
        executable: None,
        model_file: None,
        image: Some(ImageFact {
            reference: pinned.to_string(),
            digest: format!("sha256:{}", digest.hex()),
            image_id: None,
            container_id: None,
            runtime_version,
        }),
    };
    let container = (rt != container::Rt::Apptainer).then(|| container::Container {
        rt,
        name,
        pinned: pinned.clone(),
    });
    finish_start(point, opts, facts, child, container).await
}

/// Registers the spawned engine, then waits for readiness (and, for a
/// container, for its runtime's report of the digest that runs).
async fn finish_start(
    point: &PointSpec,
    opts: &StartOptions,
    facts: EngineFacts,
    child: Child,
    container: Option<container::Container>,
) -> Result<RunningEngine, EngineError> {
    let pgid = child.id().map_or(0, |pid| pid as i32);
    let teardown = match &container {
        Some(c) => live::Teardown::Container {
            program: c.rt.program(),
            name: c.name.clone(),
            pgid,
        },
        None => live::Teardown::Group { pgid },
    };
    let live_id = live::register(teardown);
    let mut engine = RunningEngine {
        facts,
        log_path: opts.log_path.clone(),
        child,
        pgid,
        container,
        live_id,
    };
    let waited = ready::wait(
        &mut engine,
        &point.engine.readiness_path,
        Duration::from_secs(point.engine.readiness_timeout_s),
    )
    .await;
    match waited {
        Ok(()) => Ok(engine),
        Err(e) => {
            // Whatever failed, nothing may stay behind.
            let _ = engine.shutdown().await;
            Err(e)
        }
    }
}

/// A free TCP port on 127.0.0.1: bound, then released for the engine.
fn free_port() -> Result<u16, EngineError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| EngineError::Io {
            what: "cannot find a free port on 127.0.0.1".to_string(),
            source,
        })
}
