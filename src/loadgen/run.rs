//! Running a load plan: warmup, then the measured requests under a closed-
//! or open-loop schedule, each request becoming one raw record.
//!
//! Both schedules are one dispatch loop with two knobs (the arrival times
//! and the number of client slots):
//! - closed loop: no arrival times and `concurrency` slots; a request waits
//!   for a free slot and is scheduled at the instant that slot freed (the
//!   phase start for each slot's first request);
//! - open loop: an absolute arrival schedule `start + t_i` drawn from a
//!   seeded gamma process and `sleep_until`, with unlimited slots or
//!   `max_concurrency`. A request that must wait for a slot keeps its
//!   arrival time as its scheduled time, so the wait shows as queue delay
//!   (sent − scheduled) and coordinated omission cannot hide it (Gil Tene,
//!   "How NOT to Measure Latency", 2015).
//!
//! Warmup requests go first through the same loop, closed-loop: over the
//! plan's `concurrency` slots, or for an open loop over `max_concurrency`
//! slots (one slot when unbounded, so warmup never floods a server that the
//! measured phase would not). Measured requests start when every warmup
//! request has finished. Records are returned sorted by index.
//!
//! Every request runs on its own task that owns its record; the dispatcher
//! joins the tasks once at the end. Nothing is shared per chunk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::http::Client;
use super::record::{Origin, RequestRecord};
use super::request::{Clock, Job, Target, execute};
use crate::clock;
use crate::rng::Rng;
use crate::workload::PreparedRequest;

/// The RNG stream for arrival times, so that other draws from the same seed
/// (prompts, lengths) never shift the schedule. ASCII "arrivals".
const ARRIVAL_STREAM: u64 = 0x6172_7269_7661_6c73;

/// Which OpenAI-compatible endpoint the bodies are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/completions`
    Completions,
    /// `/v1/chat/completions`
    Chat,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Completions => "/v1/completions",
            Api::Chat => "/v1/chat/completions",
        }
    }
}

/// When requests are dispatched.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// `concurrency` client slots, each sending its next request as soon as
    /// its previous one ends.
    Closed { concurrency: u32 },
    /// Arrivals at `rate` requests per second (`f64::INFINITY`: all at
    /// once) with gamma-distributed gaps of shape `burstiness` (1.0 =
    /// Poisson), seeded; at most `max_concurrency` in flight when set.
    Open {
        rate: f64,
        burstiness: f64,
        max_concurrency: Option<u32>,
        seed: u64,
    },
}

/// Everything one load run needs.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Server root, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    pub api: Api,
    pub schedule: Schedule,
    /// Sent first, recorded with `warmup: true`, excluded from metrics.
    pub warmup: Vec<PreparedRequest>,
    pub measured: Vec<PreparedRequest>,
    /// Limit for one request, from sending to the end of its stream.
    pub request_timeout: Duration,
    /// Stop dispatching measured requests this long after the measured
    /// phase started; requests in flight complete.
    pub duration: Option<Duration>,
    /// Idle connections kept for reuse.
    /// Set it to at least the concurrency so that connections are reused
    /// rather than reopened.
    pub pool_size: usize,
}

/// What a run produced: the time origin and one record per dispatched
/// request, warmup first, sorted by index.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    pub origin: Origin,
    pub records: Vec<RequestRecord>,
}

/// Told about every completed request (warmup included), so a caller can
/// draw a progress bar. Called from request tasks: keep it cheap (an atomic).
pub trait Progress: Send + Sync {
    fn request_done(&self);
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load plan: `{field}`: {problem}")]
    InvalidPlan {
        field: &'static str,
        problem: String,
    },
    /// The plan's `base_url` names no host or port (its cause is in the
    /// message, as an [`LoadError::InvalidPlan`]'s problem is).
    #[error("invalid load plan: `base_url`: {0}")]
    BaseUrl(super::http::UrlError),
    #[error("a request task failed")]
    Task(#[from] tokio::task::JoinError),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> LoadError {
    LoadError::InvalidPlan {
        field,
        problem: problem.into(),
    }
}

/// Offsets from the start of the measured phase at which an open loop
/// dispatches its `n` requests: the first at zero, then gaps drawn from
/// Gamma(shape = burstiness, scale = 1 / (rate · burstiness)), whose mean is
/// 1 / rate (the convention of vLLM's `benchmark_serving`, where burstiness
/// 1 gives a Poisson process). An infinite rate gives all zeros. Offsets are
/// accumulated in seconds and converted once each, so rounding does not
/// drift over a long schedule.
pub fn arrival_offsets(rate: f64, burstiness: f64, seed: u64, n: usize) -> Vec<Duration> {
    let mut rng = Rng::new(seed, ARRIVAL_STREAM);
    let scale = 1.0 / (rate * burstiness);
    let mut at = 0.0_f64;
    let mut offsets = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 && rate.is_finite() {
            at += rng.next_gamma(burstiness, scale);
        }
        offsets.push(Duration::try_from_secs_f64(at).unwrap_or(Duration::MAX));
    }
    offsets
}

/// Runs the plan against the server and returns every request's record.
pub async fn run(
    plan: LoadPlan,
    progress: Option<Arc<dyn Progress>>,
) -> Result<LoadOutcome, LoadError> {
    // The dispatcher runs as a task of the runtime, beside the request tasks
    // it spawns. Awaited directly under `block_on` it would run on the
    // calling thread instead, and every request's start and end would cross
    // threads: a futex wake and two context switches per request, which on
    // a loaded core made a burst of a thousand request ends stall the reads
    // of the streams still running by several milliseconds.
    tokio::spawn(run_on_runtime(plan, progress)).await?
}

async fn run_on_runtime(
    plan: LoadPlan,
    progress: Option<Arc<dyn Progress>>,
) -> Result<LoadOutcome, LoadError> {
    let url = validate(&plan)?;
    let client = Client::new(&url, plan.pool_size).map_err(LoadError::BaseUrl)?;
    let (origin_instant, origin) = capture_origin();
    let target = Arc::new(Target {
        client,
        timeout: plan.request_timeout,
        clock: Clock {
            origin: origin_instant,
        },
    });

    let warmup_slots = match plan.schedule {
        Schedule::Closed { concurrency } => concurrency,
        Schedule::Open {
            max_concurrency, ..
        } => max_concurrency.unwrap_or(1),
    };
    let warmup_count = plan.warmup.len() as u64;
    let mut records = Vec::with_capacity(plan.warmup.len() + plan.measured.len());
    let warmup = Phase {
        requests: Arc::new(plan.warmup),
        first_index: 0,
        warmup: true,
        arrivals: None,
        slots: Some(warmup_slots),
        duration: None,
    };
    records.extend(dispatch(&target, warmup, progress.clone()).await?);

    let (arrivals, slots) = match plan.schedule {
        Schedule::Closed { concurrency } => (None, Some(concurrency)),
        Schedule::Open {
            rate,
            burstiness,
            max_concurrency,
            seed,
        } => (
            Some(arrival_offsets(rate, burstiness, seed, plan.measured.len())),
            max_concurrency,
        ),
    };
    let measured = Phase {
        requests: Arc::new(plan.measured),
        first_index: warmup_count,
        warmup: false,
        arrivals,
        slots,
        duration: plan.duration,
    };
    records.extend(dispatch(&target, measured, progress).await?);
    records.sort_by_key(|r| r.index);
    Ok(LoadOutcome { origin, records })
}

fn validate(plan: &LoadPlan) -> Result<reqwest::Url, LoadError> {
    let joined = format!("{}{}", plan.base_url.trim_end_matches('/'), plan.api.path());
    let url = reqwest::Url::parse(&joined)
        .map_err(|e| invalid("base_url", format!("`{}`: {e}", plan.base_url)))?;
    if url.scheme() != "http" {
        return Err(invalid(
            "base_url",
            format!("`{}`: only http:// is supported", plan.base_url),
        ));
    }
    if plan.request_timeout.is_zero() {
        return Err(invalid("request_timeout", "must be positive"));
    }
    match plan.schedule {
        Schedule::Closed { concurrency: 0 } => {
            Err(invalid("schedule.concurrency", "must be at least 1"))
        }
        Schedule::Open { rate, .. } if rate.is_nan() || rate <= 0.0 => Err(invalid(
            "schedule.rate",
            format!("must be positive, got {rate}"),
        )),
        Schedule::Open { burstiness, .. } if !(burstiness.is_finite() && burstiness > 0.0) => {
            Err(invalid(
                "schedule.burstiness",
                format!("must be positive and finite, got {burstiness}"),
            ))
        }
        Schedule::Open {
            max_concurrency: Some(0),
            ..
        } => Err(invalid(
            "schedule.max_concurrency",
            "must be at least 1 when set",
        )),
        _ => Ok(url),
    }
}

/// Reads the clocks once, side by side: the monotonic `Instant` every time
/// is measured from, CLOCK_MONOTONIC (which a server on the same host can
/// stamp chunks with) and the wall clock (stored once, for humans).
fn capture_origin() -> (Instant, Origin) {
    let instant = Instant::now();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC is
    // always available on the platforms this builds for.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let wall = clock::now();
    let monotonic_ns = if rc == 0 {
        u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
            + u64::try_from(ts.tv_nsec).unwrap_or(0)
    } else {
        0
    };
    let origin = Origin {
        wall_clock: clock::rfc3339_nanos(wall),
        monotonic_ns,
    };
    (instant, origin)
}

/// One phase (warmup or measured) of a run.
struct Phase {
    requests: Arc<Vec<PreparedRequest>>,
    first_index: u64,
    warmup: bool,
    /// Open loop: offsets from the phase start; closed loop: `None`.
    arrivals: Option<Vec<Duration>>,
    /// Client slots; `None` is unbounded (open loop without a limit).
    slots: Option<u32>,
    duration: Option<Duration>,
}

/// A client slot that is free, and since when.
#[derive(Debug, Clone, Copy)]
struct FreeSlot {
    id: u32,
    freed_at: Instant,
}

/// The dispatch loop shared by both schedules and both phases.
async fn dispatch(
    target: &Arc<Target>,
    phase: Phase,
    progress: Option<Arc<dyn Progress>>,
) -> Result<Vec<RequestRecord>, LoadError> {
    let start = Instant::now();
    let stop_at = phase.duration.and_then(|d| start.checked_add(d));
    let mut slots = Slots::new(phase.slots, start);
    let mut tasks: Vec<JoinHandle<RequestRecord>> = Vec::with_capacity(phase.requests.len());
    for k in 0..phase.requests.len() {
        let arrival = match &phase.arrivals {
            // An arrival too far away to represent is past any stop time.
            Some(offsets) => match start.checked_add(offsets[k]) {
                Some(at) => Some(at),
                None => break,
            },
            None => None,
        };
        if let (Some(at), Some(stop)) = (arrival, stop_at)
            && at >= stop
        {
            break;
        }
        if let Some(at) = arrival {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
        let slot = slots.acquire().await;
        if stop_at.is_some_and(|stop| Instant::now() >= stop) {
            break;
        }
        let job = Job {
            index: phase.first_index + k as u64,
            slot: slot.id,
            warmup: phase.warmup,
            scheduled_ns: target.clock.ns(arrival.unwrap_or(slot.freed_at)),
        };
        let target = Arc::clone(target);
        let requests = Arc::clone(&phase.requests);
        let progress = progress.clone();
        let free = slots.sender();
        tasks.push(tokio::spawn(async move {
            let record = execute(&target, job, &requests[k]).await;
            // The dispatcher may have stopped listening (duration reached);
            // then nobody needs the slot back.
            let _ = free.send(FreeSlot {
                id: job.slot,
                freed_at: Instant::now(),
            });
            if let Some(p) = &progress {
                p.request_done();
            }
            record
        }));
    }
    let mut records = Vec::with_capacity(tasks.len());
    for task in tasks {
        records.push(task.await?);
    }
    Ok(records)
}

/// Client slots: a freed slot is reused first (first freed, first reused);
/// new slots are opened up to the limit (free "since" the phase start);
/// beyond it a request waits.
struct Slots {
    free_tx: mpsc::UnboundedSender<FreeSlot>,
    free_rx: mpsc::UnboundedReceiver<FreeSlot>,
    limit: Option<u32>,
    opened: u32,
    start: Instant,
}

impl Slots {
    fn new(limit: Option<u32>, start: Instant) -> Self {
        let (free_tx, free_rx) = mpsc::unbounded_channel();
        Slots {
            free_tx,
            free_rx,
            limit,
            opened: 0,
            start,
        }
    }

    fn sender(&self) -> mpsc::UnboundedSender<FreeSlot> {
        self.free_tx.clone()
    }

    async fn acquire(&mut self) -> FreeSlot {
        if let Ok(slot) = self.free_rx.try_recv() {
            return slot;
        }
        if self.limit.is_none_or(|limit| self.opened < limit) {
            let id = self.opened;
            self.opened += 1;
            return FreeSlot {
                id,
                freed_at: self.start,
            };
        }
        match self.free_rx.recv().await {
            Some(slot) => slot,
            // Unreachable while `self` holds a sender; opening one more slot
            // is the harmless answer should it ever happen.
            None => {
                let id = self.opened;
                self.opened += 1;
                FreeSlot {
                    id,
                    freed_at: Instant::now(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::loadgen::record::ErrorKind;
    use crate::loadgen::test_server::{Script, TestServer, monotonic_ns};

    fn plan(server: &TestServer, schedule: Schedule, measured: Vec<PreparedRequest>) -> LoadPlan {
        LoadPlan {
            base_url: server.base_url.clone(),
            api: Api::Completions,
            schedule,
            warmup: Vec::new(),
            measured,
            request_timeout: Duration::from_secs(20),
            duration: None,
            pool_size: 64,
        }
    }

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Progress for Counter {
        fn request_done(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn ok(tokens: u32, delay_ms: u64) -> PreparedRequest {
        Script::Ok { tokens, delay_ms }.request()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_records_tokens_in_order_and_flags_warmup() {
        let server = TestServer::start().await;
        let mut p = plan(
            &server,
            Schedule::Closed { concurrency: 3 },
            vec![ok(5, 2); 9],
        );
        p.warmup = vec![ok(5, 2); 3];
        let counter = Arc::new(Counter::default());
        let outcome = run(p, Some(counter.clone())).await.unwrap();
        let records = &outcome.records;

        assert_eq!(records.len(), 12);
        assert_eq!(
            counter.0.load(Ordering::Relaxed),
            12,
            "progress is told once per request"
        );
        assert_eq!(server.stats.requests.load(Ordering::SeqCst), 12);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.index, i as u64);
            assert_eq!(r.warmup, i < 3, "record {i}");
            assert!(r.slot < 3);
            assert_eq!(r.error, None, "record {i}");
            assert_eq!(r.stale_sent_ns, None, "kept-alive and live: sent once");
            assert_eq!(r.http_status, Some(200));
            assert_eq!(r.chunks.len(), 5);
            assert!(
                r.chunks
                    .iter()
                    .all(|c| c.tokens == 1 && c.server_ns.is_some())
            );
            assert_eq!(r.chunk_output_tokens(), 5);
            assert_eq!(
                (r.usage_input_tokens, r.usage_output_tokens),
                (Some(7), Some(5))
            );
            assert_eq!((r.input_tokens, r.max_output_tokens), (7, 5));
            assert_eq!(r.first_token_ns, Some(r.chunks[0].t_ns));
            assert!(r.chunks.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
            assert!(r.scheduled_ns <= r.sent_ns);
            assert!(r.sent_ns < r.chunks[0].t_ns);
            assert!(r.chunks[4].t_ns <= r.end_ns);
        }
        let last_warmup_end = records[..3].iter().map(|r| r.end_ns).max().unwrap();
        let first_measured_sent = records[3..].iter().map(|r| r.sent_ns).min().unwrap();
        assert!(
            first_measured_sent >= last_warmup_end,
            "measured requests wait for warmup"
        );
        assert_eq!(server.stats.paths.lock().unwrap()[0], "/v1/completions");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_stamps_relate_to_the_origin_clock() {
        // Server and client share CLOCK_MONOTONIC: a chunk was sent after the
        // run began and before the client received it.
        let server = TestServer::start().await;
        let outcome = run(
            plan(
                &server,
                Schedule::Closed { concurrency: 2 },
                vec![ok(4, 1); 4],
            ),
            None,
        )
        .await
        .unwrap();
        let origin = outcome.origin.monotonic_ns;
        assert!(origin > 0 && origin <= monotonic_ns());
        assert!(humantime::parse_rfc3339(&outcome.origin.wall_clock).is_ok());
        for c in outcome.records.iter().flat_map(|r| &r.chunks) {
            let sent = c.server_ns.unwrap();
            assert!(sent >= origin, "stamp {sent} before origin {origin}");
            assert!(
                sent <= origin + c.t_ns,
                "stamp {sent} after receipt {}",
                origin + c.t_ns
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_keeps_exactly_n_in_flight() {
        let server = TestServer::start().await;
        let p = plan(
            &server,
            Schedule::Closed { concurrency: 4 },
            vec![ok(3, 10); 16],
        );
        let outcome = run(p, None).await.unwrap();
        assert_eq!(server.stats.max_in_flight.load(Ordering::SeqCst), 4);
        assert!(outcome.records.iter().all(|r| r.error.is_none()));

        // Each slot's first request is scheduled at the phase start; each
        // later one no earlier than its slot's previous request ended.
        let mut by_slot: BTreeMap<u32, Vec<&RequestRecord>> = BTreeMap::new();
        for r in &outcome.records {
            by_slot.entry(r.slot).or_default().push(r);
        }
        assert_eq!(by_slot.len(), 4);
        let starts: Vec<u64> = by_slot.values().map(|rs| rs[0].scheduled_ns).collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{starts:?}");
        for rs in by_slot.values() {
            for w in rs.windows(2) {
                assert!(w[1].scheduled_ns >= w[0].end_ns);
                assert!(w[1].sent_ns >= w[1].scheduled_ns);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_follows_arrival_offsets() {
        let server = TestServer::start().await;
        let schedule = Schedule::Open {
            rate: 40.0,
            burstiness: 1.0,
            max_concurrency: None,
            seed: 7,
        };
        let outcome = run(plan(&server, schedule, vec![ok(2, 1); 10]), None)
            .await
            .unwrap();
        let offsets = arrival_offsets(40.0, 1.0, 7, 10);
        let t0 = outcome.records[0].scheduled_ns;
        for (r, off) in outcome.records.iter().zip(&offsets) {
            assert_eq!(
                r.scheduled_ns - t0,
                off.as_nanos() as u64,
                "request {}",
                r.index
            );
            assert!(r.sent_ns >= r.scheduled_ns);
            assert!(r.error.is_none());
        }
        // Not all at once: the schedule really spreads the requests out.
        assert!(offsets[9] > Duration::from_millis(20));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_delay_appears_when_max_concurrency_limits() {
        let server = TestServer::start().await;
        let schedule = Schedule::Open {
            rate: f64::INFINITY,
            burstiness: 1.0,
            max_concurrency: Some(1),
            seed: 0,
        };
        let mut p = plan(&server, schedule, vec![ok(3, 10); 4]);
        p.warmup = vec![ok(1, 0)];
        let outcome = run(p, None).await.unwrap();
        assert_eq!(server.stats.max_in_flight.load(Ordering::SeqCst), 1);
        let measured: Vec<_> = outcome.records.iter().filter(|r| !r.warmup).collect();
        assert_eq!(measured.len(), 4);
        for (k, r) in measured.iter().enumerate() {
            // All arrive at once; request k waits for the k before it, each
            // of which the server kept busy for at least 30 ms.
            assert_eq!(r.scheduled_ns, measured[0].scheduled_ns);
            assert_eq!(r.slot, 0);
            let queue = Duration::from_nanos(r.sent_ns - r.scheduled_ns);
            assert!(
                queue >= Duration::from_millis(30) * k as u32,
                "request {k}: queue {queue:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_become_records() {
        let server = TestServer::start().await;
        let scripts = [
            Script::Http500,
            Script::Malformed,
            Script::ErrorEvent,
            Script::EndWithoutDone,
            Script::Abort,
            Script::Hang,
            Script::Ok {
                tokens: 2,
                delay_ms: 1,
            },
        ];
        let mut p = plan(
            &server,
            Schedule::Closed {
                concurrency: scripts.len() as u32,
            },
            scripts.iter().map(|s| s.request()).collect(),
        );
        p.request_timeout = Duration::from_millis(500);
        let outcome = run(p, None).await.unwrap();
        let kinds: Vec<Option<ErrorKind>> = outcome
            .records
            .iter()
            .map(|r| r.error.as_ref().map(|e| e.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                Some(ErrorKind::Http),
                Some(ErrorKind::Stream),
                Some(ErrorKind::Stream),
                Some(ErrorKind::Disconnected),
                Some(ErrorKind::Disconnected),
                Some(ErrorKind::Timeout),
                None,
            ]
        );
        let r = &outcome.records;
        assert_eq!(r[0].http_status, Some(500));
        assert!(
            r[0].error
                .as_ref()
                .unwrap()
                .message
                .contains("boom: engine crashed")
        );
        assert!(r[1].error.as_ref().unwrap().message.contains("oops"));
        assert_eq!(
            r[1].chunks.len(),
            1,
            "the good chunk before the bad one is kept"
        );
        assert!(
            r[2].error
                .as_ref()
                .unwrap()
                .message
                .contains("kv cache exhausted")
        );
        assert_eq!(r[3].chunks.len(), 2);
        assert_eq!(r[4].chunks.len(), 2);
        assert_eq!(r[5].http_status, None);
        assert!(
            r[5].end_ns - r[5].sent_ns >= 500_000_000,
            "a timeout ends at the deadline"
        );
        assert!(r.iter().all(|r| r.end_ns >= r.sent_ns));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_on_connections_the_server_closed_are_sent_again() {
        let server = TestServer::start().await;
        let mut p = plan(
            &server,
            Schedule::Closed { concurrency: 4 },
            vec![Script::OkThenClose.request(); 12],
        );
        // Warmup leaves four pooled connections that the server has closed,
        // so the measured phase starts by taking stale ones.
        p.warmup = vec![Script::OkThenClose.request(); 4];
        p.pool_size = 4;
        let outcome = run(p, None).await.unwrap();
        for r in &outcome.records {
            assert_eq!(r.error, None, "request {}", r.index);
            assert_eq!(r.chunks.len(), 1);
        }
        // A measured request that went first to a pooled connection the
        // server had closed is sent again, and its record keeps when,
        // between its schedule and its sending again. Whether a given one
        // met a closed connection depends on whether the server's close
        // reached the pool before it was taken, a race the test does not
        // fix; the four that start the measured phase take the warmup's
        // four closed connections, so some always do.
        let mut resent = 0;
        for r in outcome.records.iter().filter(|r| !r.warmup) {
            let Some(stale) = r.stale_sent_ns else {
                continue;
            };
            resent += 1;
            assert!(
                r.scheduled_ns <= stale && stale <= r.sent_ns,
                "request {}: {r:?}",
                r.index
            );
        }
        assert!(
            resent >= 1,
            "no request marked resent: {:?}",
            outcome.records
        );
        // Warmup requests started on new connections: sent once.
        assert!(
            outcome
                .records
                .iter()
                .filter(|r| r.warmup)
                .all(|r| r.stale_sent_ns.is_none()),
            "{:?}",
            outcome.records
        );
        // Every request had a connection of its own: none got through on a
        // closed one.
        assert_eq!(server.stats.requests.load(Ordering::SeqCst), 16);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connection_refused_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let p = LoadPlan {
            base_url,
            api: Api::Chat,
            schedule: Schedule::Closed { concurrency: 1 },
            warmup: Vec::new(),
            measured: vec![ok(1, 0)],
            request_timeout: Duration::from_secs(5),
            duration: None,
            pool_size: 1,
        };
        let outcome = run(p, None).await.unwrap();
        let error = outcome.records[0].error.as_ref().unwrap();
        assert_eq!(error.kind, ErrorKind::Connect);
        assert_eq!(outcome.records[0].http_status, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usage_counts_become_chunk_tokens() {
        let server = TestServer::start().await;
        let mut p = plan(
            &server,
            Schedule::Closed { concurrency: 1 },
            vec![
                Script::RunningUsage.request(),
                Script::FinalUsageOnLastText.request(),
            ],
        );
        p.api = Api::Chat;
        let outcome = run(p, None).await.unwrap();
        let tokens = |i: usize| {
            outcome.records[i]
                .chunks
                .iter()
                .map(|c| c.tokens)
                .collect::<Vec<_>>()
        };
        // Running usage 1, 3, 4: the middle chunk carried two tokens.
        assert_eq!(tokens(0), vec![1, 2, 1]);
        assert_eq!(outcome.records[0].usage_output_tokens, Some(4));
        // A final total on the last text chunk is not a burst of tokens.
        assert_eq!(tokens(1), vec![1, 1, 1]);
        assert_eq!(outcome.records[1].usage_output_tokens, Some(3));
        assert!(
            server
                .stats
                .paths
                .lock()
                .unwrap()
                .iter()
                .all(|p| p == "/v1/chat/completions")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duration_stops_dispatching_and_lets_in_flight_finish() {
        let server = TestServer::start().await;
        let mut p = plan(
            &server,
            Schedule::Closed { concurrency: 2 },
            vec![ok(2, 10); 200],
        );
        p.duration = Some(Duration::from_millis(100));
        let counter = Arc::new(Counter::default());
        let outcome = run(p, Some(counter.clone())).await.unwrap();
        let n = outcome.records.len();
        // 200 requests of at least 20 ms over 2 slots need 2 s.
        assert!((2..200).contains(&n), "{n} records");
        assert_eq!(counter.0.load(Ordering::Relaxed), n);
        assert!(
            outcome.records.iter().all(|r| r.error.is_none()),
            "in-flight requests completed"
        );
        let indices: Vec<u64> = outcome.records.iter().map(|r| r.index).collect();
        assert_eq!(indices, (0..n as u64).collect::<Vec<_>>());
    }

    #[test]
    fn arrival_offsets_reproduce_from_their_seed() {
        let a = arrival_offsets(10.0, 1.0, 42, 100);
        assert_eq!(a, arrival_offsets(10.0, 1.0, 42, 100));
        assert_ne!(a, arrival_offsets(10.0, 1.0, 43, 100));
        assert_eq!(a[0], Duration::ZERO);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        // A longer schedule starts with the shorter one.
        assert_eq!(&arrival_offsets(10.0, 1.0, 42, 150)[..100], &a[..]);
        assert!(
            arrival_offsets(f64::INFINITY, 1.0, 42, 5)
                .iter()
                .all(|d| d.is_zero())
        );
    }

    #[test]
    fn arrival_gaps_have_the_requested_mean_and_burstiness() {
        let n = 20_000;
        for (rate, burstiness) in [(50.0, 1.0), (8.0, 4.0), (8.0, 0.5)] {
            let offsets = arrival_offsets(rate, burstiness, 1, n + 1);
            let gaps: Vec<f64> = offsets
                .windows(2)
                .map(|w| (w[1] - w[0]).as_secs_f64())
                .collect();
            let mean = gaps.iter().sum::<f64>() / n as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
            assert!(
                (mean * rate - 1.0).abs() < 0.05,
                "rate {rate}: mean gap {mean}"
            );
            // Gamma's squared coefficient of variation is 1 / shape.
            let cv2 = var / (mean * mean);
            assert!(
                (cv2 * burstiness - 1.0).abs() < 0.1,
                "burstiness {burstiness}: cv² {cv2}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_plans_are_rejected() {
        let base = LoadPlan {
            base_url: "http://127.0.0.1:9".into(),
            api: Api::Completions,
            schedule: Schedule::Closed { concurrency: 1 },
            warmup: Vec::new(),
            measured: Vec::new(),
            request_timeout: Duration::from_secs(1),
            duration: None,
            pool_size: 1,
        };
        let open = |rate, burstiness, max_concurrency| Schedule::Open {
            rate,
            burstiness,
            max_concurrency,
            seed: 0,
        };
        let cases = [
            (
                "base_url",
                LoadPlan {
                    base_url: "not a url".into(),
                    ..base.clone()
                },
            ),
            (
                "base_url",
                LoadPlan {
                    base_url: "https://example.com".into(),
                    ..base.clone()
                },
            ),
            (
                "request_timeout",
                LoadPlan {
                    request_timeout: Duration::ZERO,
                    ..base.clone()
                },
            ),
            (
                "schedule.concurrency",
                LoadPlan {
                    schedule: Schedule::Closed { concurrency: 0 },
                    ..base.clone()
                },
            ),
            (
                "schedule.rate",
                LoadPlan {
                    schedule: open(0.0, 1.0, None),
                    ..base.clone()
                },
            ),
            (
                "schedule.rate",
                LoadPlan {
                    schedule: open(f64::NAN, 1.0, None),
                    ..base.clone()
                },
            ),
            (
                "schedule.burstiness",
                LoadPlan {
                    schedule: open(1.0, 0.0, None),
                    ..base.clone()
                },
            ),
            (
                "schedule.burstiness",
                LoadPlan {
                    schedule: open(1.0, f64::INFINITY, None),
                    ..base.clone()
                },
            ),
            (
                "schedule.max_concurrency",
                LoadPlan {
                    schedule: open(1.0, 1.0, Some(0)),
                    ..base.clone()
                },
            ),
        ];
        for (field, p) in cases {
            match run(p, None).await {
                Err(LoadError::InvalidPlan { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected an invalid plan, got {other:?}"),
            }
        }
        // An empty plan is valid and yields no records.
        assert!(run(base, None).await.unwrap().records.is_empty());
    }
}

/// Client cost measurements, run on demand:
/// `cargo test --release --lib loadgen::run::bench -- --ignored --nocapture`.
/// They print figures rather than assert them: timing belongs to a quiet
/// machine, not to the test suite.
#[cfg(test)]
mod bench {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::loadgen::test_server::monotonic_ns;

    fn thread_cpu_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    fn event(i: u64) -> String {
        format!(
            "data: {{\"id\":\"cmpl-bench\",\"object\":\"text_completion\",\"created\":1730000000,\"model\":\"m\",\"choices\":[{{\"index\":0,\"text\":\" tok{i}\",\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}}],\"usage\":null,\"infermark_sent_ns\":{}}}\n\n",
            monotonic_ns()
        )
    }

    #[test]
    #[ignore = "benchmark, prints numbers: cargo test --release --lib -- --ignored --nocapture loadgen::run::bench::parse_and_scan_throughput"]
    fn parse_and_scan_throughput() {
        let n = 200_000u64;
        let stream: Vec<u8> = (0..n).flat_map(|i| event(i).into_bytes()).collect();
        let mut parser = crate::loadgen::sse::Parser::new();
        let mut texts = 0u64;
        let cpu = thread_cpu_ns();
        for piece in stream.chunks(1400) {
            parser.feed(piece, |ev| {
                if let crate::loadgen::sse::Event::Data(d) = ev {
                    texts += u64::from(crate::loadgen::scan::scan(d).unwrap().has_text);
                }
            });
        }
        let ns = thread_cpu_ns() - cpu;
        assert_eq!(texts, n);
        let mut events = 0u64;
        let cpu = thread_cpu_ns();
        for piece in stream.chunks(1400) {
            parser.feed(piece, |_| events += 1);
        }
        let parse_ns = thread_cpu_ns() - cpu;
        assert_eq!(events, n);
        println!("parse alone: {:.0} ns/event", parse_ns as f64 / n as f64);
        let one = event(1);
        let data = one.trim_start_matches("data: ").trim_end().as_bytes();
        let cpu = thread_cpu_ns();
        for _ in 0..n {
            let _: serde::de::IgnoredAny =
                serde_json::from_slice(std::hint::black_box(data)).unwrap();
        }
        println!(
            "serde_json skipping the whole chunk (its floor): {:.0} ns/event",
            (thread_cpu_ns() - cpu) as f64 / n as f64
        );
        let cpu = thread_cpu_ns();
        for _ in 0..n {
            let _ = crate::loadgen::scan::scan(std::hint::black_box(data)).unwrap();
        }
        let scan_ns = thread_cpu_ns() - cpu;
        let cpu = thread_cpu_ns();
        for _ in 0..n {
            let _ = crate::loadgen::scan::scan_reference(std::hint::black_box(data)).unwrap();
        }
        println!(
            "scan_reference (serde): {:.0} ns/event",
            (thread_cpu_ns() - cpu) as f64 / n as f64
        );
        println!(
            "scan: {:.0} ns/event ({} bytes)",
            scan_ns as f64 / n as f64,
            data.len()
        );
        println!(
            "parse+scan: {:.0} ns/event, {:.2} M events/s",
            ns as f64 / n as f64,
            n as f64 / ns as f64 * 1e3
        );
    }

    /// Four streams of `n / 4` events written as fast as the socket takes
    /// them, each event its own HTTP chunk (as vLLM writes them); the client
    /// runs on a one-thread runtime whose CPU time is measured.
    #[test]
    #[ignore = "benchmark, prints numbers: cargo test --release --lib -- --ignored --nocapture loadgen::run::bench::flat_out_ingest_per_core"]
    fn flat_out_ingest_per_core() {
        let n: u64 = 1_000_000;
        let streams = 4;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut body = Vec::new();
        for i in 0..n / streams {
            let e = event(i);
            body.extend(format!("{:x}\r\n", e.len()).into_bytes());
            body.extend(e.into_bytes());
            body.extend(b"\r\n");
        }
        let done = "data: [DONE]\n\n";
        body.extend(format!("{:x}\r\n{done}\r\n0\r\n\r\n", done.len()).into_bytes());
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let body = Arc::new(body);
                let mut tasks = Vec::new();
                for _ in 0..streams {
                    let (mut s, _) = listener.accept().await.unwrap();
                    let body = Arc::clone(&body);
                    tasks.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        let _ = s.read(&mut buf).await.unwrap();
                        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
                        s.write_all(&body).await.unwrap();
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (outcome, cpu_ns, wall) = rt.block_on(async move {
            let plan = LoadPlan {
                base_url: format!("http://{addr}"),
                api: Api::Completions,
                schedule: Schedule::Closed {
                    concurrency: streams as u32,
                },
                warmup: Vec::new(),
                measured: vec![
                    PreparedRequest {
                        body: "{}".into(),
                        input_tokens: 1,
                        max_output_tokens: (n / streams) as u32
                    };
                    streams as usize
                ],
                request_timeout: Duration::from_secs(120),
                duration: None,
                pool_size: streams as usize,
            };
            let cpu = thread_cpu_ns();
            let wall = Instant::now();
            let outcome = run(plan, None).await.unwrap();
            (outcome, thread_cpu_ns() - cpu, wall.elapsed())
        });
        server.join().unwrap();
        let events: u64 = outcome
            .records
            .iter()
            .map(|r| r.chunk_output_tokens())
            .sum();
        assert_eq!(events, n / streams * streams);
        assert!(outcome.records.iter().all(|r| r.error.is_none()));
        println!(
            "flat out: {events} events, client CPU {:.0} ns/event = {:.2} M events/s per core (wall {wall:?})",
            cpu_ns as f64 / events as f64,
            events as f64 / cpu_ns as f64 * 1e3
        );
    }

    /// 1000 concurrent streams, one token every 10 ms, server and client
    /// sharing the machine's cores: how late does the client see each chunk
    /// compared with the server's CLOCK_MONOTONIC send stamp?
    #[test]
    #[ignore = "benchmark, prints numbers: cargo test --release --lib -- --ignored --nocapture loadgen::run::bench::delivery_error_at_1000_streams"]
    fn delivery_error_at_1000_streams() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = crate::loadgen::test_server::TestServer::start().await;
                tx.send(server.base_url.clone()).unwrap();
                std::future::pending::<()>().await;
            });
        });
        let base_url = rx.recv().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let request = crate::loadgen::test_server::Script::Ok {
            tokens: 30,
            delay_ms: 10,
        }
        .request();
        let plan = LoadPlan {
            base_url,
            api: Api::Completions,
            schedule: Schedule::Closed { concurrency: 1000 },
            warmup: vec![request.clone(); 1000],
            measured: vec![request; 3000],
            request_timeout: Duration::from_secs(60),
            duration: None,
            pool_size: 1000,
        };
        let outcome = rt.block_on(run(plan, None)).unwrap();
        let origin = outcome.origin.monotonic_ns;
        let measured: Vec<&RequestRecord> = outcome.records.iter().filter(|r| !r.warmup).collect();
        assert!(measured.iter().all(|r| r.error.is_none()));
        let mut errors: Vec<i64> = measured
            .iter()
            .flat_map(|r| &r.chunks)
            .map(|c| (origin + c.t_ns) as i64 - c.server_ns.unwrap() as i64)
            .collect();
        let mut first: Vec<i64> = measured
            .iter()
            .map(|r| (origin + r.chunks[0].t_ns) as i64 - r.chunks[0].server_ns.unwrap() as i64)
            .collect();
        errors.sort_unstable();
        first.sort_unstable();
        let pct = |v: &[i64], p: f64| v[((v.len() - 1) as f64 * p) as usize] as f64 / 1e3;
        println!(
            "delivery error over {} chunks: median {:.0} µs, p99 {:.0} µs, max {:.0} µs; first token: median {:.0} µs, p99 {:.0} µs",
            errors.len(),
            pct(&errors, 0.5),
            pct(&errors, 0.99),
            pct(&errors, 1.0),
            pct(&first, 0.5),
            pct(&first, 0.99),
        );
    }

    /// What one request costs the client apart from its chunks: many
    /// one-token requests, one at a time, over a kept-alive connection.
    #[test]
    #[ignore = "benchmark, prints numbers: cargo test --release --lib -- --ignored --nocapture loadgen::run::bench::client_cpu_per_request"]
    fn client_cpu_per_request() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = crate::loadgen::test_server::TestServer::start().await;
                tx.send(server.base_url.clone()).unwrap();
                std::future::pending::<()>().await;
            });
        });
        let base_url = rx.recv().unwrap();
        let n = 5000;
        let request = crate::loadgen::test_server::Script::Ok {
            tokens: 1,
            delay_ms: 0,
        }
        .request();
        let plan = LoadPlan {
            base_url,
            api: Api::Completions,
            schedule: Schedule::Closed { concurrency: 4 },
            warmup: Vec::new(),
            measured: vec![request; n],
            request_timeout: Duration::from_secs(60),
            duration: None,
            pool_size: 4,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cpu = thread_cpu_ns();
        let outcome = rt.block_on(run(plan, None)).unwrap();
        let ns = thread_cpu_ns() - cpu;
        assert!(outcome.records.iter().all(|r| r.error.is_none()));
        println!(
            "client CPU per request (3 events each): {:.1} µs",
            ns as f64 / n as f64 / 1e3
        );
    }
}
