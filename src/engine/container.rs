//! Container runtimes: make the pinned image present, learn what a container
//! actually runs, and remove containers.
//!
//! Images are only ever named by digest. After start, the runtime's
//! `inspect` is asked which image the container runs, and the digest it
//! reports is what environment.json records: the pin says what should run,
//! `inspect` says what did.

use std::fs::File;
use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::spec::reference::ImageRef;

use super::{EngineError, process};

/// Longest wait for a runtime's short commands (inspect, stop, rm).
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rt {
    Docker,
    Podman,
    Apptainer,
}

impl Rt {
    pub(super) fn program(self) -> &'static str {
        match self {
            Rt::Docker => "docker",
            Rt::Podman => "podman",
            Rt::Apptainer => "apptainer",
        }
    }

    /// The runtime's version; fails cleanly when the runtime is missing (and,
    /// for Docker, when its daemon does not answer).
    pub(super) async fn version(self) -> Result<String, EngineError> {
        let args: &[&str] = match self {
            Rt::Docker => &["version", "--format", "{{.Server.Version}}"],
            Rt::Podman | Rt::Apptainer => &["--version"],
        };
        let out = run(self.program(), args, COMMAND_LIMIT).await?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || text.is_empty() {
            return Err(failed(self.program(), args, &out));
        }
        Ok(match self {
            Rt::Docker => format!("Docker Engine {text}"),
            _ => text,
        })
    }

    /// Pulls `pinned` (by digest) unless the runtime already has it; the
    /// pull's output goes to the engine log.
    pub(super) async fn ensure_image(
        self,
        pinned: &ImageRef,
        insecure_loopback: bool,
        log: &File,
    ) -> Result<(), EngineError> {
        let reference = pinned.to_string();
        let present = match self {
            Rt::Podman => {
                let out = run("podman", &["image", "exists", &reference], COMMAND_LIMIT).await?;
                match out.status.code() {
                    Some(0) => true,
                    Some(1) => false,
                    _ => return Err(failed("podman", &["image", "exists", &reference], &out)),
                }
            }
            _ => {
                let args = ["image", "inspect", "--format", "{{.Id}}", &reference];
                let out = run(self.program(), &args, COMMAND_LIMIT).await?;
                if out.status.success() {
                    true
                } else if is_missing(&out) {
                    false
                } else {
                    return Err(failed(self.program(), &args, &out));
                }
            }
        };
        if present {
            return Ok(());
        }
        let mut args = vec!["pull"];
        if self == Rt::Podman && insecure_loopback && is_loopback_registry(&pinned.registry) {
            args.push("--tls-verify=false");
        }
        args.push(&reference);
        let mut log = log;
        let _ = writeln!(log, "infermark: {} {}", self.program(), args.join(" "));
        // No time limit: an engine image can be tens of gigabytes.
        let out = Command::new(self.program())
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| spawn_error(self.program(), e))?;
        let _ = log.write_all(&out.stdout);
        let _ = log.write_all(&out.stderr);
        if !out.status.success() {
            return Err(match failed(self.program(), &args, &out) {
                EngineError::RuntimeCommand {
                    command, output, ..
                } => EngineError::Pull {
                    reference,
                    command,
                    output,
                },
                other => other,
            });
        }
        Ok(())
    }
}

/// `infermark-<label>`, with anything a container name cannot hold replaced.
pub(super) fn name(label: &str) -> String {
    let clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("infermark-{clean}")
}

/// `127.0.0.1`, `localhost`, `::1` (any loopback address), with or without
/// a port.
pub(super) fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if registry.matches(':').count() == 1 {
        registry.split(':').next().unwrap_or(registry)
    } else {
        registry
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A container infermark started (Docker, Podman).
#[derive(Debug, Clone)]
pub(super) struct Container {
    pub rt: Rt,
    pub name: String,
    pub pinned: ImageRef,
}

/// What `inspect` says about a running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Inspected {
    pub container_id: String,
    pub image_id: String,
    /// `sha256:<hex>`, the pinned digest once verified.
    pub digest: String,
}

impl Container {
    /// Asks the runtime what the container runs; `None` while it does not
    /// exist yet. A digest other than the pin is a [`EngineError::PinMismatch`].
    pub(super) async fn inspect(&self) -> Result<Option<Inspected>, EngineError> {
        let program = self.rt.program();
        let args = ["container", "inspect", self.name.as_str()];
        let out = run(program, &args, COMMAND_LIMIT).await?;
        if !out.status.success() {
            return if is_missing(&out) {
                Ok(None)
            } else {
                Err(failed(program, &args, &out))
            };
        }
        let container = first_object(&out.stdout).ok_or_else(|| bad_json(program, &args))?;
        let field = |k: &str| container.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(container_id), Some(image_id)) = (field("Id"), field("Image")) else {
            return Err(bad_json(program, &args));
        };
        // Podman names the manifest digest on the container; Docker only
        // lists the image's repository digests.
        let image_digest = field("ImageDigest").filter(|d| !d.is_empty());
        let expected = self.pinned.digest.as_ref().map(|d| format!("sha256:{d}"));
        let repo_digests = if image_digest.is_some() && image_digest == expected {
            Vec::new()
        } else {
            let iargs = ["image", "inspect", image_id.as_str()];
            let out = run(program, &iargs, COMMAND_LIMIT).await?;
            if !out.status.success() {
                return Err(failed(program, &iargs, &out));
            }
            let image = first_object(&out.stdout).ok_or_else(|| bad_json(program, &iargs))?;
            image
                .get("RepoDigests")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let digest = verify_digest(
            &self.pinned,
            &self.name,
            image_digest.as_deref(),
            &repo_digests,
        )?;
        Ok(Some(Inspected {
            container_id,
            image_id,
            digest,
        }))
    }

    /// `stop` (SIGTERM, `grace`, SIGKILL, done by the runtime), wait for the
    /// foreground client, then remove whatever is left.
    pub(super) async fn stop(
        &self,
        client: &mut Child,
        pgid: i32,
        grace: Duration,
    ) -> Result<(), EngineError> {
        let program = self.rt.program();
        let secs = grace.as_secs().to_string();
        let args = ["stop", "-t", secs.as_str(), self.name.as_str()];
        let stopped = run(program, &args, grace + COMMAND_LIMIT).await;
        let mut result = match stopped {
            Ok(out) if out.status.success() || is_missing(&out) => Ok(()),
            Ok(out) => Err(failed(program, &args, &out)),
            Err(e) => Err(e),
        };
        // The client exits with the container; if it does not, it is killed.
        if tokio::time::timeout(COMMAND_LIMIT, client.wait())
            .await
            .is_err()
        {
            process::signal_group(pgid, libc::SIGKILL);
            let _ = client.wait().await;
        }
        let rm = rm_args(self.rt, &self.name);
        let removed = run(program, &rm, COMMAND_LIMIT).await;
        match removed {
            Ok(out) if out.status.success() || is_missing(&out) => {}
            Ok(out) => result = result.and(Err(failed(program, &rm, &out))),
            Err(e) => result = result.and(Err(e)),
        }
        process::signal_group(pgid, libc::SIGKILL);
        result
    }
}

/// Checks the digest a runtime reports against the pin: the container's
/// own digest (Podman), or the image's repository digests for the pinned
/// repository (an image pulled by an index digest lists that one too).
pub(super) fn verify_digest(
    pinned: &ImageRef,
    container_name: &str,
    image_digest: Option<&str>,
    repo_digests: &[String],
) -> Result<String, EngineError> {
    let Some(pin) = pinned.digest.as_ref().map(|d| format!("sha256:{d}")) else {
        return Err(EngineError::Unpinned {
            key: "engine.image".to_string(),
            reference: pinned.to_string(),
            fix: "containers run by digest only".to_string(),
        });
    };
    if image_digest == Some(pin.as_str()) {
        return Ok(pin);
    }
    let for_repo: Vec<String> = repo_digests
        .iter()
        .filter_map(|r| ImageRef::parse(r).ok())
        .filter(|r| r.name() == pinned.name())
        .filter_map(|r| r.digest.map(|d| format!("sha256:{d}")))
        .collect();
    if for_repo.contains(&pin) {
        return Ok(pin);
    }
    let mut observed: Vec<String> = image_digest.into_iter().map(str::to_string).collect();
    observed.extend(for_repo);
    Err(EngineError::PinMismatch {
        what: format!("image of container `{container_name}`"),
        expected: pin,
        observed: if observed.is_empty() {
            format!("no digest for `{}`", pinned.name())
        } else {
            observed.join(", ")
        },
        hint: "the runtime ran another image than the pinned one; remove the local image and start again, and check the registry".to_string(),
    })
}

fn rm_args(rt: Rt, name: &str) -> Vec<&str> {
    match rt {
        // `-t 0`: no second grace period; `stop` already gave one.
        Rt::Podman => vec!["rm", "-f", "-t", "0", name],
        _ => vec!["rm", "-f", name],
    }
}

/// Removes a container by force, synchronously: for `Drop` and
/// `kill_all_started`, where no async runtime can be relied on. Bounded:
/// gives up after [`COMMAND_LIMIT`].
pub(super) fn remove_now(program: &str, name: &str) {
    let rt = if program == "podman" {
        Rt::Podman
    } else {
        Rt::Docker
    };
    let child = std::process::Command::new(program)
        .args(rm_args(rt, name))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return };
    let deadline = Instant::now() + COMMAND_LIMIT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a runtime command to completion within `limit`.
async fn run(program: &str, args: &[&str], limit: Duration) -> Result<Output, EngineError> {
    let fut = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(spawn_error(program, e)),
        Err(_) => Err(EngineError::RuntimeCommand {
            command: format!("{program} {}", args.join(" ")),
            status: format!("no answer within {}s", limit.as_secs()),
            output: String::new(),
        }),
    }
}

fn spawn_error(program: &str, e: std::io::Error) -> EngineError {
    if e.kind() == std::io::ErrorKind::NotFound {
        EngineError::RuntimeMissing {
            program: program.to_string(),
        }
    } else {
        EngineError::Spawn {
            program: program.to_string(),
            source: e,
        }
    }
}

fn failed(program: &str, args: &[&str], out: &Output) -> EngineError {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    // A pull's progress can run to pages; its last lines say why it failed.
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    EngineError::RuntimeCommand {
        command: format!("{program} {}", args.join(" ")),
        status: out.status.to_string(),
        output: tail,
    }
}

/// The label naming the harness process that started a container:
/// `<pid>:<its start time in clock ticks after boot>:<boot id>`, which no
/// other process of any boot shares (a reused pid has another start time).
pub(super) const OWNER_LABEL: &str = "infermark.owner";

/// This process as [`OWNER_LABEL`] names it.
pub(super) fn this_owner() -> String {
    let start = proc_start_ticks(std::process::id()).unwrap_or(0);
    format!("{}:{start}:{}", std::process::id(), boot_id())
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks
/// after boot. The command name before it may hold spaces and parentheses,
/// so fields are counted from the last `)`.
fn proc_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the harness an [`OWNER_LABEL`] names still runs: the same boot,
/// and a process of that pid that started when it did. A label this
/// version cannot read counts as alive: such a container is left alone.
pub(super) fn owner_alive(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(pid), Some(start), Some(boot)) = (parts.next(), parts.next(), parts.next()) else {
        return true;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return true;
    };
    boot == boot_id() && proc_start_ticks(pid) == Some(start)
}

/// Removes the containers a harness on this host started and could not
/// remove because it was killed (SIGKILL, OOM): those whose
/// [`OWNER_LABEL`] names a process that no longer runs. An engine left so
/// holds its port and its accelerators' memory, and the next start would
/// fail or measure beside it. Containers of running harnesses (a parallel
/// job) and containers without the label are left alone. Returns the names
/// removed; a runtime that cannot list is an error the caller reports and
/// goes on after.
pub(super) async fn sweep_stale(rt: Rt) -> Result<Vec<String>, EngineError> {
    let program = rt.program();
    let filter = format!("label={OWNER_LABEL}");
    let args = [
        "ps",
        "-a",
        "--filter",
        filter.as_str(),
        "--format",
        "{{.Names}}",
    ];
    let out = run(program, &args, COMMAND_LIMIT).await?;
    if !out.status.success() {
        return Err(failed(program, &args, &out));
    }
    let mut removed = Vec::new();
    for name in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
        if name.is_empty() {
            continue;
        }
        let iargs = ["container", "inspect", name];
        let out = run(program, &iargs, COMMAND_LIMIT).await?;
        if !out.status.success() {
            continue; // gone meanwhile
        }
        let owner = first_object(&out.stdout).and_then(|c| {
            c.pointer(&format!("/Config/Labels/{OWNER_LABEL}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        if owner.as_deref().is_some_and(|o| !owner_alive(o)) {
            let rargs = rm_args(rt, name);
            let out = run(program, &rargs, COMMAND_LIMIT).await?;
            if out.status.success() || is_missing(&out) {
                removed.push(name.to_string());
            } else {
                return Err(failed(program, &rargs, &out));
            }
        }
    }
    Ok(removed)
}

/// "no such container/image/object" in the runtime's words.
fn is_missing(out: &Output) -> bool {
    let text = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    text.contains("no such") || text.contains("not found") || text.contains("does not exist")
}

fn first_object(stdout: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(stdout).ok()? {
        Value::Array(mut items) if !items.is_empty() => Some(items.swap_remove(0)),
        obj @ Value::Object(_) => Some(obj),
        _ => None,
    }
}

fn bad_json(program: &str, args: &[&str]) -> EngineError {
    EngineError::RuntimeCommand {
        command: format!("{program} {}", args.join(" ")),
        status: "exit status: 0".to_string(),
        output: "the output is not the JSON object expected (`Id`, `Image`)".to_string(),
    }
}
