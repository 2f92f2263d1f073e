//! The load generator: streaming HTTP client, SSE parsing and the closed- and
//! open-loop schedulers that produce one raw [`record::RequestRecord`] per
//! request.
//!
//! Built to time what it claims and never be the bottleneck (oha's "fast
//! mode" is the model): the per-chunk path reads the clock once per network
//! read, parses SSE into reusable buffers, reads only the few JSON fields a
//! record needs, and pushes `(time, tokens)` into a vector sized up front. No
//! logging, no JSON tree, no lock per chunk; each task owns its records and
//! they are merged once at the end. Statistics happen later, in `metrics`.

mod http;
pub mod record;
mod request;
pub mod run;
pub mod scan;
pub mod sse;

pub use run::{Api, LoadError, LoadOutcome, LoadPlan, Progress, Schedule, arrival_offsets, run};

#[cfg(test)]
mod test_server;

/// How many tasks a busy worker runs between looks at the I/O driver
/// (tokio's default is 61).
///
/// After the client's CPU stalls, a thousand streams are ready at once.
/// Looking for new readiness every 61 tasks puts the streams found since
/// ahead of those still waiting (the newest wake-up runs next), and some
/// stream's unread event waits a whole inter-token gap; the kernel then
/// merges it with the next one under the later stamp. Working off more of
/// the backlog first keeps them in order. Receive times are the kernel's
/// stamps, so a later look delays no measured time; a timer (the open-loop
/// schedule) so delayed shows as queue delay. The measurements behind 512 are
/// in docs/calibration.md, "Figures behind the code".
const EVENT_INTERVAL: u32 = 512;

/// The runtime a measuring client runs in: tokio's multi-threaded one with
/// [`EVENT_INTERVAL`].
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .event_interval(EVENT_INTERVAL)
        .enable_all()
        .build()
}
