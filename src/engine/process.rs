//! Spawning and signalling engine processes.
//!
//! Each engine (or a container runtime's foreground `run` client) starts in
//! its own process group, so one signal reaches the server and every worker
//! it forks, and so a terminal's Ctrl-C reaches infermark alone, which then
//! stops the engine in order. On Linux each also gets `PR_SET_PDEATHSIG =
//! SIGKILL`: if infermark is killed outright (SIGKILL, OOM killer) the kernel
//! kills the engine too, instead of leaving it holding the GPUs.

use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::EngineError;

/// One spawn request for the spawner thread.
struct Job {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<std::io::Result<Child>>,
}

/// The thread every engine is forked from.
///
/// The kernel sends the parent-death signal when the *thread* that forked
/// the child exits, not the process. A tokio worker thread is not a safe
/// parent: `block_in_place` turns it into a blocking-pool thread, and those
/// exit after ten idle seconds, which would SIGKILL a healthy engine
/// mid-run. A `spawn_blocking` thread is worse still. So engines are forked
/// from one dedicated thread that lives as long as the process (its channel
/// never closes), entering the caller's runtime so tokio can reap the child.
fn spawner() -> Option<&'static mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("infermark-engine-spawner".to_string())
                .spawn(move || {
                    for mut job in rx {
                        // A panic (say, a runtime already shut down) must not
                        // end the thread: later engines still need it.
                        let spawned = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            let _entered = job.runtime.enter();
                            job.command.spawn()
                        }))
                        .unwrap_or_else(|_| {
                            Err(std::io::Error::other("spawning the engine panicked"))
                        });
                        let _ = job.reply.send(spawned);
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Starts `argv` in a new process group with stdout and stderr appended to
/// `log`, killed on drop and (Linux) when this process dies.
pub(super) async fn spawn(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&Path>,
    log: &File,
) -> Result<Child, EngineError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(EngineError::Unsupported(
            "empty engine command line".to_string(),
        ));
    };
    let spawn_err = |source| EngineError::Spawn {
        program: program.clone(),
        source,
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(spawn_err)?)
        .stderr(log.try_clone().map_err(spawn_err)?)
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    die_with_parent(&mut command);
    let thread_gone = || spawn_err(std::io::Error::other("the engine spawner thread is gone"));
    let spawner = spawner().ok_or_else(thread_gone)?;
    let (reply, answer) = oneshot::channel();
    spawner
        .send(Job {
            command,
            runtime: tokio::runtime::Handle::current(),
            reply,
        })
        .map_err(|_| thread_gone())?;
    answer.await.map_err(|_| thread_gone())?.map_err(spawn_err)
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions (prctl, getppid, raise).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

/// Sends `signal` to every process of the group `pgid`.
pub(super) fn signal_group(pgid: i32, signal: libc::c_int) {
    // 0 and 1 would mean our own group and init: never.
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// SIGTERM to the group, up to `grace` for the engine to exit, then SIGKILL;
/// finally SIGKILL to whatever of the group outlived its leader.
pub(super) async fn terminate(child: &mut Child, pgid: i32, grace: Duration) {
    if matches!(child.try_wait(), Ok(None)) {
        signal_group(pgid, libc::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            signal_group(pgid, libc::SIGKILL);
            let _ = child.wait().await;
        }
    }
    signal_group(pgid, libc::SIGKILL);
}
