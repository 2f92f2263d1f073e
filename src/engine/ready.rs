//! Readiness: poll the engine's readiness path until it answers 2xx, while
//! watching that the engine is still alive (and, for a container, asking the
//! runtime which image it runs as soon as the container exists, so a wrong
//! image is refused before a long model load completes).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::{EngineError, RunningEngine};

/// Time between readiness probes.
const POLL: Duration = Duration::from_millis(200);
/// Longest wait for one probe's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines of the engine log an error message quotes.
const TAIL_LINES: usize = 30;

/// Creates (or truncates) the engine log, with its directory.
pub(super) fn create_log(path: &Path) -> Result<File, EngineError> {
    let log_err = |source| EngineError::Log {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(log_err)?;
    }
    // Truncate, then write in append mode: the pull and the engine write
    // one after the other through their own handles.
    File::create(path)
        .and_then(|_| std::fs::OpenOptions::new().append(true).open(path))
        .map_err(log_err)
}

/// Writes the command line about to run at the head of the engine's output,
/// so the log says what produced it.
pub(super) fn note(mut log: &File, argv: &[String]) {
    use std::io::Write;
    let _ = writeln!(
        log,
        "infermark: starting: {}",
        super::command::shell_words(argv)
    );
}

/// A line of the harness's own in the engine log.
pub(super) fn note_line(mut log: &File, line: &str) {
    use std::io::Write;
    let _ = writeln!(log, "infermark: {line}");
}

/// The last [`TAIL_LINES`] lines of the log (at most its last 64 KiB).
pub(super) fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
            if tail.trim().is_empty() {
                "(the log is empty)".to_string()
            } else {
                tail
            }
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Waits until `GET <base_url><path>` answers 2xx, for at most `limit`.
pub(super) async fn wait(
    engine: &mut RunningEngine,
    path: &str,
    limit: Duration,
) -> Result<(), EngineError> {
    let url = format!("{}{}", engine.facts.base_url, path);
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| EngineError::Io {
            what: "cannot build the readiness HTTP client".to_string(),
            source: std::io::Error::other(e),
        })?;
    let start = Instant::now();
    let deadline = start + limit;
    let mut inspected = engine.container.is_none();
    loop {
        if let Ok(Some(status)) = engine.child.try_wait() {
            return Err(EngineError::Exited {
                status: status.to_string(),
                log_tail: log_tail(&engine.log_path),
            });
        }
        if !inspected {
            inspected = inspect(engine).await?;
        }
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        let probe = client
            .get(&url)
            .timeout(PROBE_TIMEOUT.min(remaining.max(Duration::from_millis(50))))
            .send()
            .await;
        if probe.is_ok_and(|r| r.status().is_success()) {
            if !inspected && !inspect(engine).await? {
                return Err(EngineError::RuntimeCommand {
                    command: format!("inspect of the container behind {url}"),
                    status: "the container answers but its runtime does not know it".to_string(),
                    output: String::new(),
                });
            }
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(EngineError::NotReady {
                url,
                after: limit,
                log_tail: log_tail(&engine.log_path),
            });
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// Records what the container runs once it exists; `false` while it does
/// not yet.
async fn inspect(engine: &mut RunningEngine) -> Result<bool, EngineError> {
    let Some(container) = &engine.container else {
        return Ok(true);
    };
    let Some(found) = container.inspect().await? else {
        return Ok(false);
    };
    if let Some(image) = engine.facts.image.as_mut() {
        image.digest = found.digest;
        image.image_id = Some(found.image_id);
        image.container_id = Some(found.container_id);
    }
    Ok(true)
}
