//! SIGINT and SIGTERM while engines run, handled once for every command
//! that starts one: the first signal asks the library to stop (it stops the
//! engine and records the point in flight as failed), a second does not
//! wait. Here, not in the library, because a second signal ends the
//! process.

use std::future::Future;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use super::exit;
use super::measure_cmd::runtime;

/// Runs `work` on a fresh runtime with the signals watched: `work` gets the
/// receiver that names the first signal (`SIGINT` or `SIGTERM`); a second
/// signal kills every engine started and exits 130 or 143 at once. Every
/// engine started is killed when `work` returns, whatever it returned.
pub(super) fn interruptible<F, Fut, T>(work: F) -> anyhow::Result<T>
where
    F: FnOnce(watch::Receiver<Option<String>>) -> Fut,
    Fut: Future<Output = T>,
{
    let rt = runtime()?;
    let out = rt.block_on(async {
        let (tx, rx) = watch::channel(None::<String>);
        let signals = tokio::spawn(async move {
            let mut term = signal(SignalKind::terminate()).ok();
            let mut int = signal(SignalKind::interrupt()).ok();
            let first = first_of(&mut term, &mut int).await;
            let _ = tx.send(Some(first.to_string()));
            // A second signal does not wait for a graceful stop.
            first_of(&mut term, &mut int).await;
            crate::engine::kill_all_started();
            std::process::exit(i32::from(exit::after_signal(first)));
        });
        let r = work(rx).await;
        signals.abort();
        r
    });
    crate::engine::kill_all_started();
    Ok(out)
}

/// Waits for SIGTERM or SIGINT, whichever comes first; its name. A signal
/// that could not be watched never comes.
async fn first_of(term: &mut Option<Signal>, int: &mut Option<Signal>) -> &'static str {
    tokio::select! {
        _ = recv(term) => "SIGTERM",
        _ = recv(int) => "SIGINT",
    }
}

/// Waits for the first SIGTERM or SIGINT from the call on: the handlers
/// are installed by the call, not when the future is first polled, so a
/// signal sent after a server printed its address is never the default
/// (fatal) one. Call it inside the runtime.
pub(super) fn shutdown_requested() -> impl Future<Output = &'static str> {
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move { first_of(&mut term, &mut int).await }
}

async fn recv(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// The exit code of a run a signal stopped, after saying so; `None` when
/// `e` is not such a stop.
pub(super) fn interrupted(e: &anyhow::Error) -> Option<u8> {
    let why = e.chain().find_map(|c| match super::run_error(c)? {
        crate::run::RunError::Interrupted(why) => Some(why.clone()),
        _ => None,
    })?;
    eprintln!("error: {why}: the engine was stopped and the point in flight recorded as failed");
    Some(exit::after_signal(&why))
}
