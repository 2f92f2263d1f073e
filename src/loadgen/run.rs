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
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::record::{Origin, RequestRecord};
use super::request::{Clock, Job, Target, execute};
use crate::workload::PreparedRequest;
use crate::workload::rng::Rng;

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
    /// Idle connections kept per host (`reqwest` `pool_max_idle_per_host`).
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
    #[error("failed to build the HTTP client")]
    Client(#[source] reqwest::Error),
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
    let url = validate(&plan)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.pool_size)
        .tcp_nodelay(true)
        .no_proxy()
        .http1_only()
        .build()
        .map_err(LoadError::Client)?;
    let (origin_instant, origin) = capture_origin();
    let target = Arc::new(Target {
        client,
        url,
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
    let wall = SystemTime::now();
    let monotonic_ns = if rc == 0 {
        u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
            + u64::try_from(ts.tv_nsec).unwrap_or(0)
    } else {
        0
    };
    let origin = Origin {
        wall_clock: humantime::format_rfc3339_nanos(wall).to_string(),
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
