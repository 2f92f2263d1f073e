//! The sim server as a child process of calibration: started with known
//! timing on this host, pinned to its own CPUs or niced onto the client's,
//! and killed when dropped.
//!
//! It is a separate process so that its timers and its writes never run on
//! the client's runtime; whatever it costs the client is then the rig's CPU
//! sharing, which the caller controls (see [`super::split_cpus`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::CalibrateError;
use super::cpus::pin_current_thread;

/// The sim's scheduling niceness, when it shares CPUs with other work.
pub(super) const SIM_NICE: libc::c_int = 19;

/// A `serve-sim` child process, killed when dropped.
pub(super) struct SimChild {
    pub(super) child: Child,
    pub(super) url: String,
}

pub(super) async fn start_sim(
    exe: &PathBuf,
    itl: Duration,
    ttft: Duration,
    sim_cpus: Option<&[usize]>,
) -> Result<SimChild, CalibrateError> {
    let mut command = Command::new(exe);
    let cpus = sim_cpus.map(<[usize]>::to_vec);
    // SAFETY: the closure runs in the forked child before exec and calls
    // only sched_setaffinity and setpriority, which are async-signal-safe
    // (the CPU list was allocated before the fork).
    unsafe {
        command.pre_exec(move || {
            match &cpus {
                Some(cpus) => pin_current_thread(cpus)?,
                // Sharing the client's CPUs: the sim runs in the time the
                // client leaves. A failure only costs precision.
                None => {
                    libc::setpriority(libc::PRIO_PROCESS, 0, SIM_NICE);
                }
            }
            Ok(())
        });
    }
    let mut child = command
        .args(["serve-sim", "--host", "127.0.0.1", "--port", "0"])
        .arg("--ttft-ms")
        .arg(format!("{}", ttft.as_secs_f64() * 1000.0))
        .arg("--itl-ms")
        .arg(format!("{}", itl.as_secs_f64() * 1000.0))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CalibrateError::Spawn {
            exe: exe.clone(),
            source,
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| CalibrateError::NoAddress("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| CalibrateError::NoAddress("timed out after 10 s".into()))?
        .map_err(CalibrateError::AddressRead)?
        .ok_or_else(|| CalibrateError::NoAddress("it exited".into()))?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| CalibrateError::NoAddress(format!("unexpected first line `{line}`")))?
        .to_string();
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(SimChild { child, url })
}
