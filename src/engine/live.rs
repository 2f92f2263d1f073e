//! The registry of engines this process started and has not stopped.
//!
//! Every started engine is listed here until it is stopped or dropped, so
//! that one synchronous call ([`kill_all_started`]) can tear all of them down
//! from a signal path or an error exit, where no `RunningEngine` is at hand
//! and no async runtime may be running any more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{container, process};

/// How to kill one engine without waiting on an async runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Teardown {
    /// A process engine: its process group.
    Group { pgid: i32 },
    /// A container: removed by name through its runtime, and the runtime's
    /// foreground `run` client's process group.
    Container {
        program: &'static str,
        name: String,
        pgid: i32,
    },
}

impl Teardown {
    /// Kills now (SIGKILL, forced removal): the last resort, no grace.
    pub(super) fn kill_now(&self) {
        match self {
            Teardown::Group { pgid } => process::signal_group(*pgid, libc::SIGKILL),
            Teardown::Container {
                program,
                name,
                pgid,
            } => {
                container::remove_now(program, name);
                process::signal_group(*pgid, libc::SIGKILL);
            }
        }
    }
}

static LIVE: Mutex<Vec<(u64, Teardown)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A poisoned lock still holds a valid list: a panic elsewhere must not stop
/// the teardown.
fn live() -> MutexGuard<'static, Vec<(u64, Teardown)>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn register(teardown: Teardown) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    live().push((id, teardown));
    id
}

/// Removes an engine from the registry; `None` if something already tore it
/// down.
pub(super) fn unregister(id: u64) -> Option<Teardown> {
    let mut list = live();
    let i = list.iter().position(|(x, _)| *x == id)?;
    Some(list.swap_remove(i).1)
}

/// Kills every engine this process started and has not stopped: process
/// groups get SIGKILL, containers are removed by force. Synchronous, for
/// signal handlers and error exits; each engine is torn down once, and a
/// later `stop` or drop of its `RunningEngine` does nothing more.
pub fn kill_all_started() {
    let all = std::mem::take(&mut *live());
    for (_, teardown) in all {
        teardown.kill_now();
    }
}
