//! The built-in OpenAI-compatible calibration server.
//!
//! `sim` answers `/v1/completions` and `/v1/chat/completions` (streaming and
//! not), `/v1/models` and `/health` with a deterministic timing model and
//! deterministic fault injection. It exists for two reasons:
//!
//! - it is the test fixture of the whole harness: because its timing is known
//!   (TTFT = `ttft_base + ttft_per_prompt_token × prompt_tokens`, then one
//!   chunk every `itl`), every measured metric can be asserted against it;
//! - it is the calibration target (see DESIGN "Calibration"): every
//!   token-bearing chunk carries `"infermark_sent_ns"`, the CLOCK_MONOTONIC
//!   time at which the chunk was handed to the connection. A client on the
//!   same host reads the same clock ([`monotonic_ns`]), so receive time minus
//!   that stamp is the client's own delivery error, independent of how
//!   precisely the sim's timers fire.
//!
//! Chunks are scheduled on absolute deadlines (`start + ttft + k·itl`) so
//! timer lateness never accumulates. The hot path (one chunk) formats bytes
//! with a small hand-written writer into a per-stream buffer: no JSON tree,
//! no logging, no locks; counters are merged once per request.
//!
//! Wire details a client may rely on:
//! - Prompt length: a `prompt` array of token ids counts its elements; a
//!   `prompt` string, and chat message contents, count whitespace-separated
//!   words (an estimate: the sim has no tokenizer).
//! - Every output token is the text `" tok"`. A non-streaming response
//!   carries `"infermark_sent_ns"` too, stamped just before it is sent.
//! - `stream_options.continuous_usage_stats` is honoured only together with
//!   `stream_options.include_usage`, as vLLM does; every token-bearing chunk
//!   then carries the cumulative `usage`.
//! - Fault requests are chosen by request sequence number (generation
//!   requests only, counted from 0 in arrival order) and
//!   [`Faults::seed`]; see [`Faults`] for what each fault looks like.
//!
//! Speed variation with known parameters ([`Drift`], off by default): every
//! generation request's TTFT and every gap between its chunks are multiplied
//! by one factor, `exp(run_sigma · z)` shared by each block of
//! `run_requests` requests (one run of a point: its warmup and measured
//! requests) times `exp(request_sigma · u)` of the request's own, with `z`,
//! `u` standard normal draws from [`Drift::seed`] and the request's sequence
//! number (the same numbering as the faults). [`Drift::factor`] computes it,
//! so a test knows what each request got. Injected stalls, `/health` delays
//! and the refusal of a failed request are not scaled: they are not the
//! engine's speed. `serve-sim` sets it with `--run-drift SIGMA`,
//! `--run-requests K`, `--request-jitter SIGMA` and `--drift-seed N`.

mod drift;
mod faults;
mod request;
mod server;
mod stream;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use drift::Drift;

/// Listen backlog for [`spawn`]: a benchmark opens hundreds of connections at
/// once, and the kernel's default (128 in many distributions) would make some
/// of them wait for a SYN retry, which would show up as TTFT.
const LISTEN_BACKLOG: u32 = 4096;

/// Read CLOCK_MONOTONIC in nanoseconds.
///
/// The sim stamps chunks with it and the client reads it for its time origin,
/// so both sides of a same-host measurement use one clock.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC is
    // supported on every platform this crate builds for; clock_gettime
    // writes nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    // Both fields are non-negative for CLOCK_MONOTONIC.
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Everything that defines the sim's behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The one model name `/v1/models` lists and responses carry.
    pub model_name: String,
    pub timing: Timing,
    /// `max_tokens` when a request does not send one.
    pub default_max_tokens: u32,
    /// When set, a request without `ignore_eos: true` stops ("stop") after a
    /// length drawn uniformly from `[1, eos_after]` (from [`Faults::seed`] and
    /// the request's sequence number), if that is below its `max_tokens`.
    /// When unset, every request produces exactly `max_tokens` tokens.
    pub eos_after: Option<u32>,
    pub faults: Faults,
    pub health: Health,
    /// Seeded speed variation per run and per request (none by default).
    pub drift: Drift,
}

/// The deterministic timing model.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// TTFT of a request with an empty prompt.
    pub ttft_base: Duration,
    /// Added to TTFT per prompt token (prefill cost).
    pub ttft_per_prompt_token: Duration,
    /// Gap between successive chunks. Zero streams as fast as the connection
    /// takes it (used to measure the client's maximum event rate).
    pub itl: Duration,
    /// Tokens per chunk; the last chunk may carry fewer. At least 1.
    pub tokens_per_chunk: u32,
}

/// Fault injection. Each generation request draws, from `seed` and its
/// sequence number, one uniform number per fault (always all of them, so
/// changing one rate never moves another fault to different requests).
/// "After N tokens" means at the first chunk boundary with at least N tokens
/// sent (N above the request's output length: after its last token).
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    pub seed: u64,
    /// Share of requests answered at once with HTTP 500 or 503 (chosen by
    /// the same draw) and an OpenAI error body.
    pub fail_rate: f64,
    /// Share of requests that pause for `stall_for` after
    /// `stall_after_tokens` tokens: every later chunk is shifted by
    /// `stall_for`, so the gap there is `itl + stall_for`.
    pub stall_rate: f64,
    pub stall_after_tokens: u32,
    pub stall_for: Duration,
    /// Share of requests with one malformed event: after
    /// `malformed_after_tokens` tokens a `data:` line that is truncated JSON
    /// is inserted, and the stream then continues normally to `[DONE]` (no
    /// token is lost). A non-streaming response body is truncated JSON.
    pub malformed_rate: f64,
    pub malformed_after_tokens: u32,
    /// Share of requests whose connection is closed after
    /// `disconnect_after_tokens` tokens (at the time the next chunk was due),
    /// mid chunked body, with no `[DONE]`. A non-streaming request's
    /// connection is closed with no response when it would have completed.
    pub disconnect_rate: f64,
    pub disconnect_after_tokens: u32,
}

/// How `/health` answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Delay before every `/health` answer.
    pub delay: Duration,
    /// Status `/health` answers once ready (200 for a healthy server).
    pub status: u16,
    /// Until this long after the server started, `/health` and the
    /// generation endpoints answer 503, like an engine loading its model.
    pub ready_after: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            model_name: "sim".to_owned(),
            timing: Timing::default(),
            default_max_tokens: 16,
            eos_after: None,
            faults: Faults::default(),
            health: Health::default(),
            drift: Drift::default(),
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ttft_base: Duration::from_millis(50),
            ttft_per_prompt_token: Duration::ZERO,
            itl: Duration::from_millis(10),
            tokens_per_chunk: 1,
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 0,
            fail_rate: 0.0,
            stall_rate: 0.0,
            stall_after_tokens: 0,
            stall_for: Duration::ZERO,
            malformed_rate: 0.0,
            malformed_after_tokens: 0,
            disconnect_rate: 0.0,
            disconnect_after_tokens: 0,
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Health {
            delay: Duration::ZERO,
            status: 200,
            ready_after: Duration::ZERO,
        }
    }
}

impl SimConfig {
    /// Reject settings the sim cannot honour, naming the field.
    pub fn validate(&self) -> Result<(), SimError> {
        let invalid = |field: &'static str, expected: &'static str| {
            Err(SimError::InvalidConfig { field, expected })
        };
        if self.timing.tokens_per_chunk == 0 {
            return invalid("timing.tokens_per_chunk", "at least 1");
        }
        if self.default_max_tokens == 0 {
            return invalid("default_max_tokens", "at least 1");
        }
        if self.eos_after == Some(0) {
            return invalid("eos_after", "at least 1 when set");
        }
        let rates = [
            ("faults.fail_rate", self.faults.fail_rate),
            ("faults.stall_rate", self.faults.stall_rate),
            ("faults.malformed_rate", self.faults.malformed_rate),
            ("faults.disconnect_rate", self.faults.disconnect_rate),
        ];
        for (field, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return invalid(field, "a share between 0 and 1");
            }
        }
        let sigmas = [
            ("drift.run_sigma", self.drift.run_sigma),
            ("drift.request_sigma", self.drift.request_sigma),
        ];
        for (field, sigma) in sigmas {
            if !(sigma.is_finite() && sigma >= 0.0) {
                return invalid(field, "a finite standard deviation, at least 0");
            }
        }
        if self.drift.run_sigma > 0.0 && self.drift.run_requests.is_none() {
            return invalid(
                "drift.run_requests",
                "the number of requests per run when `drift.run_sigma` is above 0",
            );
        }
        if hyper::StatusCode::from_u16(self.health.status).is_err() {
            return invalid("health.status", "an HTTP status code (100-999)");
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid sim setting `{field}`: expected {expected}")]
    InvalidConfig {
        field: &'static str,
        expected: &'static str,
    },
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the sim server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Totals over the server's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Generation requests received (including those failed by injection).
    pub requests: u64,
    /// Token-bearing chunks sent (streaming) or full responses (not).
    pub chunks: u64,
    /// Output tokens sent.
    pub tokens: u64,
}

/// Shared counters. `requests` is bumped once per request (it also hands out
/// sequence numbers); chunk and token counts are added once when a response
/// finishes, never per chunk.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    chunks: AtomicU64,
    tokens: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SimStats {
        SimStats {
            requests: self.requests.load(Ordering::Relaxed),
            chunks: self.chunks.load(Ordering::Relaxed),
            tokens: self.tokens.load(Ordering::Relaxed),
        }
    }
}

/// Serve on `listener` until `shutdown` completes, then stop accepting, let
/// in-flight responses finish (for at most 10 s, then they are cut) and
/// return. Build the listener with [`listen`] to get the sim's socket options.
pub async fn serve(
    config: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    config.validate()?;
    server::run(config, Arc::new(Counters::default()), listener, shutdown).await
}

/// Bind `addr` (port 0 picks a free port) and serve in a background task.
pub async fn spawn(config: SimConfig, addr: SocketAddr) -> Result<SimHandle, SimError> {
    config.validate()?;
    let listener = listen(addr)?;
    let local = listener
        .local_addr()
        .map_err(|source| SimError::Bind { addr, source })?;
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // A dropped handle also stops the server: the receiver then resolves.
    let stop = async move {
        let _ = stop_rx.await;
    };
    let task = tokio::spawn(server::run(config, Arc::clone(&counters), listener, stop));
    Ok(SimHandle {
        addr: local,
        stop: stop_tx,
        task,
        counters,
    })
}

/// A listener for [`serve`] on `addr` (port 0 picks a free port), with
/// SO_REUSEADDR so a restarted sim can take its port back at once and a large
/// backlog (see `LISTEN_BACKLOG`). Must be called inside a tokio runtime.
pub fn listen(addr: SocketAddr) -> Result<TcpListener, SimError> {
    let bind = || {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    bind().map_err(|source| SimError::Bind { addr, source })
}

/// A sim server running in the background.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), SimError>>,
    counters: Arc<Counters>,
}

impl SimHandle {
    /// The address it listens on (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr` without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Totals so far.
    pub fn stats(&self) -> SimStats {
        self.counters.snapshot()
    }

    /// Stop accepting, let in-flight responses finish, and return the totals.
    pub async fn shutdown(self) -> Result<SimStats, SimError> {
        // The server may already have stopped on its own; nothing to signal then.
        let _ = self.stop.send(());
        self.task.await??;
        Ok(self.counters.snapshot())
    }
}
