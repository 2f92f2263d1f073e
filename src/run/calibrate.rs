//! `infermark calibrate`: how precisely does the client time what it claims?
//!
//! The sim server runs as a child process on this host with known timing and
//! stamps every chunk with its CLOCK_MONOTONIC send time; the client records
//! its receive time on the same clock. Their difference is the client's own
//! delivery error, free of how precisely the sim's timers fire (see DESIGN,
//! "Calibration"). The reported TTFT error is the first chunk's delivery
//! error; the ITL error compares each client-side gap with the server-side
//! gap between the same two chunks. Errors against the nominal timing are
//! printed as a secondary check. The caller gives client and sim CPUs of
//! their own ([`split_cpus`]) or lets them share every CPU, the sim niced.
//! Timings are printed, never asserted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::loadgen::record::RequestRecord;
use crate::loadgen::{self, LoadOutcome, LoadPlan, Schedule};
use crate::spec::Api;
use crate::workload::{self, WorkloadParams};

/// What to calibrate.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// The infermark executable whose `serve-sim` is the target.
    pub sim_exe: PathBuf,
    /// Concurrent streams per level.
    pub streams: Vec<u32>,
    pub ttft: Duration,
    pub itl: Duration,
    /// Output tokens per request.
    pub tokens: u32,
    /// Requests per stream (after one warmup request per stream).
    pub requests_per_stream: u32,
    /// Streams and tokens per request of the flat-out run (ITL 0).
    pub flat_out_streams: u32,
    pub flat_out_tokens: u32,
    /// CPUs for the sim child; `None` shares the client's.
    pub sim_cpus: Option<Vec<usize>>,
    /// Every stream's requests the same length from the same start, so
    /// that all of them end, and are sent again, at once (see `drive`).
    pub phase_locked: bool,
    /// Which loopback client and sim talk over (set up by the caller before
    /// the runtime starts; see [`super::netns`]).
    pub network: Network,
}

/// The loopback of a calibration run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Network {
    /// `true` in a network namespace of the run's own.
    pub private: bool,
    /// Why a private namespace was asked for and not had, if so.
    pub fallback: Option<String>,
    /// The namespace the run was in, as `/proc/self/ns/net` names it
    /// (`net:[INODE]`).
    pub namespace: Option<String>,
}

/// One concurrency level's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LevelReport {
    pub streams: u32,
    pub requests: usize,
    pub failed: usize,
    pub events: u64,
    /// First-chunk delivery error (client receive − sim send), ms.
    pub ttft_error_median_ms: f64,
    pub ttft_error_p99_ms: f64,
    /// Std of (client gap − sim gap) over successive chunks, ms.
    pub itl_error_std_ms: f64,
    /// Delivery error of every chunk, ms.
    pub delivery_median_ms: f64,
    pub delivery_p99_ms: f64,
    pub delivery_max_ms: f64,
    /// Chunks whose delivery error reached [`late_after`] (half the nominal
    /// ITL): the client's reads had fallen that far behind, so the kernel
    /// had probably merged them with the stream's next chunk under its
    /// stamp.
    pub late_events: u64,
    /// The late chunks in runs of sends no more than one nominal ITL (at
    /// least 2 ms) apart: one burst is one stretch in which the client fell
    /// behind.
    pub late_bursts: u64,
    /// Secondary: measured TTFT − nominal TTFT (includes the sim's timer), ms.
    pub ttft_vs_nominal_median_ms: f64,
    /// Secondary: std of measured ITL around the nominal ITL, ms.
    pub itl_vs_nominal_std_ms: f64,
    pub events_per_s: f64,
    pub client_cpu_us_per_event: f64,
    /// What the machine took from client and sim while the level ran;
    /// `None` where `/proc` does not tell.
    pub interference: Option<Interference>,
    /// The other tasks of the machine that ran longest meanwhile (at most
    /// three, each 1 ms or more), by name.
    pub busiest_others: Vec<OtherTask>,
    /// The hypervisor took more than [`DISTURBED_STEAL_SHARE`] of the
    /// client's or the sim's CPU time during the level: its figures then
    /// say more about the host than about the client.
    pub disturbed: bool,
}

/// Steal above this share of a level's CPU time (on the client's or the
/// sim's CPUs) marks the level as disturbed.
///
/// A level stalls the client for as long as its CPU is stolen and then as
/// long again, and longer, to work off the backlog; on the two-core virtual
/// machines infermark is tested on, levels at 1000 streams with a third of
/// their CPU time stolen gave ITL error stds of 2-6 ms, levels with none
/// 0.003-0.2 ms. Two per cent is two clock ticks of a one-second level.
pub const DISTURBED_STEAL_SHARE: f64 = 0.02;

/// CPU time a task outside client and sim had during a level: by name, the
/// threads of one name summed (`/proc/PID/task/TID/comm` and `schedstat`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OtherTask {
    pub name: String,
    pub cpu_ms: f64,
}

/// Time the machine took away from the client and the sim during a level.
///
/// On a virtual machine the hypervisor pauses a virtual CPU now and then
/// (steal time); measured on the two-core machines infermark is tested on,
/// each virtual CPU stops for over 5 ms a few times in half a minute, and
/// for up to about 8 ms. A pause of the client's CPU lets the next chunk of
/// a stream arrive before the last one is read; the kernel then merges the
/// two in the socket's receive queue under the later one's stamp, and
/// nothing in user space can tell them apart. These figures say whether a
/// level's outliers coincide with such time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interference {
    /// Steal time of the client's CPUs (`/proc/stat`), ms: resolution one
    /// clock tick (10 ms where USER_HZ is 100).
    pub steal_client_ms: f64,
    /// The same for the sim's CPUs (the client's where they share).
    pub steal_sim_ms: f64,
    /// Steal of the client's CPUs as a share of their time over the level
    /// (wall time times their number).
    pub steal_client_share: f64,
    /// The same for the sim's CPUs.
    pub steal_sim_share: f64,
    /// Time the client's threads were runnable but waited for their CPU
    /// (`/proc/PID/task/*/schedstat`), ms: other tasks on it.
    pub run_wait_client_ms: f64,
    /// The same for the sim's threads.
    pub run_wait_sim_ms: f64,
}

/// Counters behind [`Interference`], read before and after a level.
#[derive(Debug, Clone, Copy)]
struct InterferenceCounters {
    steal_client_ticks: u64,
    steal_sim_ticks: u64,
    run_wait_client_ns: u64,
    run_wait_sim_ns: u64,
}

impl Interference {
    /// Whether the hypervisor took enough to mark the level (see
    /// [`DISTURBED_STEAL_SHARE`]).
    pub fn disturbs(&self) -> bool {
        self.steal_client_share.max(self.steal_sim_share) > DISTURBED_STEAL_SHARE
    }
}

impl InterferenceCounters {
    fn read(client_cpus: &[usize], sim_cpus: &[usize], sim_pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        Some(InterferenceCounters {
            steal_client_ticks: steal_ticks(&stat, client_cpus)?,
            steal_sim_ticks: steal_ticks(&stat, sim_cpus)?,
            run_wait_client_ns: run_wait_ns(std::process::id())?,
            run_wait_sim_ns: run_wait_ns(sim_pid)?,
        })
    }

    /// What grew from `before` over a level of `wall` on `client_cpus` and
    /// `sim_cpus` CPUs.
    fn since(
        &self,
        before: &Self,
        wall: Duration,
        client_cpus: usize,
        sim_cpus: usize,
    ) -> Interference {
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let tick_ms = |a: u64, b: u64| a.saturating_sub(b) as f64 * 1000.0 / hz;
        let ns_ms = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1e6;
        let steal_client_ms = tick_ms(self.steal_client_ticks, before.steal_client_ticks);
        let steal_sim_ms = tick_ms(self.steal_sim_ticks, before.steal_sim_ticks);
        let share = |ms: f64, cpus: usize| {
            let available = wall.as_secs_f64() * 1000.0 * cpus.max(1) as f64;
            if available > 0.0 { ms / available } else { 0.0 }
        };
        Interference {
            steal_client_ms,
            steal_sim_ms,
            steal_client_share: share(steal_client_ms, client_cpus),
            steal_sim_share: share(steal_sim_ms, sim_cpus),
            run_wait_client_ms: ns_ms(self.run_wait_client_ns, before.run_wait_client_ns),
            run_wait_sim_ms: ns_ms(self.run_wait_sim_ns, before.run_wait_sim_ns),
        }
    }
}

/// Steal ticks summed over `cpus`, from the text of `/proc/stat` (the
/// eighth number of each `cpuN` line); `None` if a CPU's line is missing or
/// has no steal field.
fn steal_ticks(stat: &str, cpus: &[usize]) -> Option<u64> {
    let mut total = 0;
    for &cpu in cpus {
        let name = format!("cpu{cpu}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        total += line.split_whitespace().nth(8)?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Nanoseconds the threads of process `pid` have waited on a run queue:
/// the second field of each `/proc/PID/task/TID/schedstat`.
fn run_wait_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        // A thread that ended since the listing is simply not counted.
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += schedstat_wait_ns(&text)?;
        }
    }
    Some(total)
}

/// The run-queue wait of one `schedstat` line (`run_ns wait_ns slices`).
fn schedstat_wait_ns(line: &str) -> Option<u64> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Time on CPU of every thread of the machine, by thread id, with its name:
/// all processes but those in `exclude`. Threads that end while the listing
/// is read are left out.
fn task_run_ns(exclude: &[u32]) -> HashMap<u32, (String, u64)> {
    let mut tasks = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return tasks;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if exclude.contains(&pid) {
            continue;
        }
        let Ok(threads) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in threads.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let run = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok());
            let name = std::fs::read_to_string(t.path().join("comm"));
            if let (Some(run), Ok(name)) = (run, name) {
                tasks.insert(tid, (name.trim_end().to_string(), run));
            }
        }
    }
    tasks
}

/// The `n` names whose threads ran longest between two [`task_run_ns`]
/// listings, each at least 1 ms, under the name it has in `after`; a thread
/// new in `after` counts in full.
fn busiest(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
    n: usize,
) -> Vec<OtherTask> {
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    for (tid, (name, run)) in after {
        // By id alone: a kernel worker's name changes with the work it
        // runs. (An id reused by a new thread meanwhile counts as nothing.)
        let earlier = before.get(tid).map_or(0, |(_, r)| *r);
        *by_name.entry(name).or_default() += run.saturating_sub(earlier);
    }
    let mut ranked: Vec<(&str, u64)> = by_name
        .into_iter()
        .filter(|&(_, ns)| ns >= 1_000_000)
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(n)
        .map(|(name, ns)| OtherTask {
            name: name.to_string(),
            cpu_ms: ns as f64 / 1e6,
        })
        .collect()
}

/// The flat-out run: the most events the client ingests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlatOutReport {
    pub streams: u32,
    pub events: u64,
    pub wall_s: f64,
    pub events_per_s: f64,
    pub client_cpu_s: f64,
    /// Events per second of client CPU time: the per-core ingest rate.
    pub events_per_cpu_s: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CalibrationReport {
    /// CPUs the client and the sim ran on (the sim's empty: it shared them).
    pub client_cpus: Vec<usize>,
    pub sim_cpus: Vec<usize>,
    pub ttft_ms: f64,
    pub itl_ms: f64,
    pub tokens: u32,
    pub network: Network,
    pub levels: Vec<LevelReport>,
    pub flat_out: FlatOutReport,
    /// The highest event rate among the levels whose p99 delivery error
    /// stayed under 1 ms (DESIGN, "Calibration"); `None` if none did.
    pub fastest_under_1ms_p99: Option<RateAt>,
}

/// An event rate and the level that reached it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RateAt {
    pub events_per_s: f64,
    pub streams: u32,
}

/// The fastest of `(streams, p99 delivery error ms, events/s)` levels whose
/// p99 is under `limit_ms`.
fn fastest_within(
    levels: impl IntoIterator<Item = (u32, f64, f64)>,
    limit_ms: f64,
) -> Option<RateAt> {
    levels
        .into_iter()
        .filter(|&(_, p99, _)| p99 < limit_ms)
        .map(|(streams, _, events_per_s)| RateAt {
            events_per_s,
            streams,
        })
        .max_by(|a, b| a.events_per_s.total_cmp(&b.events_per_s))
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("failed to start the sim server ({}): {source}", exe.display())]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("the sim server did not report its address: {0}")]
    NoAddress(String),
    #[error(transparent)]
    Workload(#[from] workload::WorkloadError),
    #[error(transparent)]
    Load(#[from] loadgen::LoadError),
}

/// The sim's scheduling niceness, when it shares CPUs with other work.
const SIM_NICE: libc::c_int = 19;

/// The CPUs this process may run on (its affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a valid cpu_set_t that sched_getaffinity fills;
    // CPU_ISSET only reads it, for indices below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Splits `cpus` between client and sim: the sim gets the last one, the
/// client the rest; `None` with fewer than two.
///
/// Sim and client share one host for calibration, and at 1000 streams each
/// needs about a core (most of it the kernel's loopback path). On shared
/// CPUs their bursts preempt each other: the sim, between stamping a chunk
/// and writing it, or the client, between a chunk's arrival and its read,
/// and either delay is counted as the client's error although it is the
/// rig's. On CPUs of their own, as an engine on its own accelerator would
/// be, the figures are the client's.
pub fn split_cpus(cpus: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    let (last, rest) = cpus.split_last()?;
    (!rest.is_empty()).then(|| (rest.to_vec(), vec![*last]))
}

/// Restricts the calling thread, and the threads it creates from now on, to
/// `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: as in `allowed_cpus`; CPU_SET writes within `set`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A `serve-sim` child process, killed when dropped.
struct SimChild {
    child: Child,
    url: String,
}

async fn start_sim(
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
        .map_err(|e| CalibrateError::NoAddress(e.to_string()))?
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

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

async fn drive(
    url: &str,
    streams: u32,
    tokens: u32,
    per_stream: u32,
    phase_locked: bool,
) -> Result<(LoadOutcome, Duration, Duration), CalibrateError> {
    let params = WorkloadParams {
        api: Api::Completions,
        dataset: workload::Dataset::Random {
            token_id_min: 1000,
            token_id_max: 10000,
        },
        input_tokens: 16,
        output_tokens: tokens,
        range_ratio: 1.0,
        ignore_eos: true,
        seed: 0,
        model: "sim".to_string(),
    };
    let full = workload::generate(&params, 0, (streams * per_stream) as usize)?;
    // Unless phase-locked, each stream first gets one request of a length
    // drawn from [1, tokens] (measured like the rest): the streams' request
    // ends then fall apart over one request's duration, as in any steady
    // state. Phase-locked, a thousand streams end and are sent again within
    // the same few milliseconds at every turn, and what is measured is the
    // client working off that one burst.
    let mut measured = Vec::new();
    if !phase_locked && tokens > 1 {
        let spread = WorkloadParams {
            range_ratio: 1.0 / f64::from(tokens),
            seed: 1,
            ..params.clone()
        };
        measured = workload::generate(&spread, 0, streams as usize)?.measured;
    }
    measured.extend(full.measured);
    // One short warmup request per stream opens the connections without
    // adding events or CPU time that the figures would have to exclude.
    let warmup = workload::generate(
        &WorkloadParams {
            output_tokens: 1,
            ..params
        },
        streams as usize,
        0,
    )?;
    let plan = LoadPlan {
        base_url: url.to_string(),
        api: loadgen::Api::Completions,
        schedule: Schedule::Closed {
            concurrency: streams,
        },
        warmup: warmup.warmup,
        measured,
        request_timeout: Duration::from_secs(120),
        duration: None,
        pool_size: streams as usize,
    };
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let outcome = loadgen::run(plan, None).await?;
    Ok((outcome, t0.elapsed(), cpu_time().saturating_sub(cpu0)))
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Population std of `xs` (ns), in ms.
fn std_ms(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
    var.sqrt() / 1e6
}

/// First send to last end of the measured requests.
fn measured_window(measured: &[&RequestRecord]) -> Option<Duration> {
    let start = measured.iter().map(|r| r.sent_ns).min()?;
    let end = measured.iter().map(|r| r.end_ns).max()?;
    Some(Duration::from_nanos(end.saturating_sub(start)))
}

/// Reduces one level's records to its error figures.
pub fn level_report(
    streams: u32,
    origin_mono_ns: u64,
    records: &[RequestRecord],
    nominal_ttft: Duration,
    nominal_itl: Duration,
    wall: Duration,
    cpu: Duration,
) -> LevelReport {
    let measured: Vec<&RequestRecord> = records.iter().filter(|r| !r.warmup).collect();
    let mut delivery = hist();
    let mut ttft_err = hist();
    let mut ttft_nominal = hist();
    let mut itl_err = Vec::new();
    let mut itl_nominal = Vec::new();
    let mut events = 0u64;
    let mut failed = 0usize;
    let late = late_after(nominal_itl).as_nanos() as u64;
    let mut late_sent = Vec::new();
    for r in &measured {
        if r.error.is_some() {
            failed += 1;
        }
        events += r.chunks.len() as u64;
        let mut prev: Option<(u64, u64)> = None;
        for (i, c) in r.chunks.iter().enumerate() {
            let recv = origin_mono_ns + c.t_ns;
            if let Some(sent) = c.server_ns {
                let d = recv.saturating_sub(sent).max(1);
                let _ = delivery.record(d);
                if d >= late {
                    late_sent.push(sent);
                }
                if i == 0 {
                    let _ = ttft_err.record(d);
                }
                if let Some((pc, ps)) = prev {
                    itl_err.push((c.t_ns - pc) as f64 - (sent as f64 - ps as f64));
                }
                prev = Some((c.t_ns, sent));
            }
            if i > 0 {
                itl_nominal
                    .push((c.t_ns - r.chunks[i - 1].t_ns) as f64 - nominal_itl.as_nanos() as f64);
            }
        }
        if let Some(first) = r.first_token_ns {
            let ttft = first.saturating_sub(r.sent_ns);
            let _ = ttft_nominal.record(ttft.saturating_sub(nominal_ttft.as_nanos() as u64).max(1));
        }
    }
    // The nominal-ITL deviations are centred on the nominal, not their mean.
    let itl_vs_nominal = if itl_nominal.is_empty() {
        0.0
    } else {
        (itl_nominal.iter().map(|x| x * x).sum::<f64>() / itl_nominal.len() as f64).sqrt() / 1e6
    };
    let (late_events, late_bursts) =
        bursts(&mut late_sent, nominal_itl.max(Duration::from_millis(2)));
    LevelReport {
        streams,
        requests: measured.len(),
        failed,
        events,
        ttft_error_median_ms: ms(ttft_err.value_at_quantile(0.5)),
        ttft_error_p99_ms: ms(ttft_err.value_at_quantile(0.99)),
        itl_error_std_ms: std_ms(&itl_err),
        delivery_median_ms: ms(delivery.value_at_quantile(0.5)),
        delivery_p99_ms: ms(delivery.value_at_quantile(0.99)),
        delivery_max_ms: ms(delivery.max()),
        late_events,
        late_bursts,
        ttft_vs_nominal_median_ms: ms(ttft_nominal.value_at_quantile(0.5)),
        itl_vs_nominal_std_ms: itl_vs_nominal,
        events_per_s: events as f64
            / measured_window(&measured)
                .unwrap_or(wall)
                .as_secs_f64()
                .max(1e-9),
        client_cpu_us_per_event: cpu.as_secs_f64() * 1e6 / (events.max(1) as f64),
        interference: None,
        busiest_others: Vec::new(),
        disturbed: false,
    }
}

/// The delivery error from which a chunk counts as late: half the nominal
/// ITL, at least 1 ms. On a steady machine the client's delivery error at
/// 1000 streams stays under a millisecond; a level whose reads fall half a
/// gap behind is one in which the client's CPU was stopped or taken for
/// that long (or the client could not keep up), and each of its late chunks
/// weighs on the ITL error std by up to one ITL.
pub fn late_after(nominal_itl: Duration) -> Duration {
    (nominal_itl / 2).max(Duration::from_millis(1))
}

/// How many of `sent` (the send stamps of late chunks, any order) there
/// are and in how many bursts: runs whose successive sends are at most
/// `gap` apart.
fn bursts(sent: &mut [u64], gap: Duration) -> (u64, u64) {
    sent.sort_unstable();
    let gap = gap.as_nanos() as u64;
    let bursts =
        sent.windows(2).filter(|w| w[1] - w[0] > gap).count() as u64 + u64::from(!sent.is_empty());
    (sent.len() as u64, bursts)
}

/// Runs every level, then the flat-out run.
pub async fn calibrate(opts: &CalibrateOptions) -> Result<CalibrationReport, CalibrateError> {
    let mut levels = Vec::new();
    {
        let sim = start_sim(&opts.sim_exe, opts.itl, opts.ttft, opts.sim_cpus.as_deref()).await?;
        let client_cpus = allowed_cpus();
        let sim_cpus = opts.sim_cpus.clone().unwrap_or_else(|| client_cpus.clone());
        let counters =
            || InterferenceCounters::read(&client_cpus, &sim_cpus, sim.child.id().unwrap_or(0));
        for &streams in &opts.streams {
            let exclude = [std::process::id(), sim.child.id().unwrap_or(0)];
            let others_before = task_run_ns(&exclude);
            let before = counters();
            let (outcome, wall, cpu) = drive(
                &sim.url,
                streams,
                opts.tokens,
                opts.requests_per_stream,
                opts.phase_locked,
            )
            .await?;
            let after = counters();
            let others = busiest(&others_before, &task_run_ns(&exclude), 3);
            let mut level = level_report(
                streams,
                outcome.origin.monotonic_ns,
                &outcome.records,
                opts.ttft,
                opts.itl,
                wall,
                cpu,
            );
            level.interference = before
                .zip(after)
                .map(|(b, a)| a.since(&b, wall, client_cpus.len(), sim_cpus.len()));
            level.disturbed = level.interference.is_some_and(|i| i.disturbs());
            level.busiest_others = others;
            levels.push(level);
        }
        drop(sim.child);
    }
    let sim = start_sim(
        &opts.sim_exe,
        Duration::ZERO,
        Duration::ZERO,
        opts.sim_cpus.as_deref(),
    )
    .await?;
    let (outcome, wall, cpu) = drive(
        &sim.url,
        opts.flat_out_streams,
        opts.flat_out_tokens,
        1,
        true,
    )
    .await?;
    let measured: Vec<&RequestRecord> = outcome.records.iter().filter(|r| !r.warmup).collect();
    let events: u64 = measured.iter().map(|r| r.chunks.len() as u64).sum();
    let wall = measured_window(&measured).unwrap_or(wall);
    drop(sim.child);
    let fastest_under_1ms_p99 = fastest_within(
        levels
            .iter()
            .map(|l| (l.streams, l.delivery_p99_ms, l.events_per_s)),
        1.0,
    );
    Ok(CalibrationReport {
        client_cpus: allowed_cpus(),
        sim_cpus: opts.sim_cpus.clone().unwrap_or_default(),
        ttft_ms: opts.ttft.as_secs_f64() * 1000.0,
        itl_ms: opts.itl.as_secs_f64() * 1000.0,
        tokens: opts.tokens,
        network: opts.network.clone(),
        levels,
        flat_out: FlatOutReport {
            streams: opts.flat_out_streams,
            events,
            wall_s: wall.as_secs_f64(),
            events_per_s: events as f64 / wall.as_secs_f64().max(1e-9),
            client_cpu_s: cpu.as_secs_f64(),
            events_per_cpu_s: events as f64 / cpu.as_secs_f64().max(1e-9),
        },
        fastest_under_1ms_p99,
    })
}

/// Format tag of a saved calibration.
pub const SAVED_FORMAT: &str = "infermark.calibration/v1";

/// Where a host's last calibration is kept: attached from there to the
/// environment of every run on the host (DESIGN, "Calibration").
pub fn last_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("calibration").join("last.json")
}

/// A calibration as saved and attached: the report with when, where and by
/// which harness it was measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedCalibration {
    pub format: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub hostname: String,
    /// `/etc/machine-id` where the host has one: two machines of one host
    /// name sharing a cache directory do not take each other's figures.
    /// Absent from calibrations saved before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    pub harness: crate::probe::Harness,
    pub report: serde_json::Value,
}

/// The machine a calibration belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub hostname: String,
    pub machine_id: Option<String>,
}

impl Machine {
    /// This machine: its host name and `/etc/machine-id`.
    pub fn this() -> Machine {
        Machine {
            hostname: crate::probe::host().hostname,
            machine_id: machine_id(Path::new("/etc/machine-id")),
        }
    }

    /// Whether `saved` was measured here: the same host name, and the same
    /// machine id where both sides have one.
    fn measured(&self, saved: &SavedCalibration) -> bool {
        saved.hostname == self.hostname
            && match (&saved.machine_id, &self.machine_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// The machine id in `path` (systemd's 32 hex digits), if it holds one.
fn machine_id(path: &Path) -> Option<String> {
    let id = std::fs::read_to_string(path).ok()?.trim().to_string();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Saves `report` as the host's last calibration (written whole or not at
/// all: a temporary file renamed over the old one).
pub fn save_last(
    cache_dir: &Path,
    machine: &Machine,
    report: &CalibrationReport,
) -> std::io::Result<PathBuf> {
    let saved = SavedCalibration {
        format: SAVED_FORMAT.to_string(),
        at: crate::clock::rfc3339(crate::clock::now()),
        hostname: machine.hostname.clone(),
        machine_id: machine.machine_id.clone(),
        harness: crate::probe::Harness::current(),
        report: serde_json::to_value(report).map_err(std::io::Error::other)?,
    };
    let path = last_path(cache_dir);
    let dir = path.parent().expect("last_path has a parent");
    std::fs::create_dir_all(dir)?;
    let mut bytes = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    crate::store::atomic::write(&path, &bytes)?;
    Ok(path)
}

/// Why a saved calibration is not attached.
#[derive(Debug, thiserror::Error)]
pub enum LastCalibrationError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: not a saved calibration ({reason}); run `infermark calibrate` again to replace it",
        path.display()
    )]
    Malformed { path: PathBuf, reason: String },
}

/// This machine's last calibration, if one was saved on it: `Ok(None)` when
/// there is none or it was measured on another machine (a cache directory
/// shared between machines).
pub fn load_last(
    cache_dir: &Path,
    machine: &Machine,
) -> Result<Option<SavedCalibration>, LastCalibrationError> {
    let path = last_path(cache_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LastCalibrationError::Read { path, source }),
    };
    let saved: SavedCalibration =
        serde_json::from_slice(&bytes).map_err(|e| LastCalibrationError::Malformed {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if saved.format != SAVED_FORMAT {
        return Err(LastCalibrationError::Malformed {
            path,
            reason: format!("format `{}`, expected `{SAVED_FORMAT}`", saved.format),
        });
    }
    Ok(machine.measured(&saved).then_some(saved))
}

/// The printed table.
pub fn render(r: &CalibrationReport) -> String {
    let mut s = format!(
        "Client calibration against the sim server (nominal TTFT {:.1} ms, ITL {:.1} ms, {} tokens/request)\n",
        r.ttft_ms, r.itl_ms, r.tokens
    );
    s.push_str(&format!(
        "{:>8} {:>8} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>12} {:>11}\n",
        "streams",
        "failed",
        "events",
        "ttft p50",
        "ttft p99",
        "itl std",
        "deliv p99",
        "deliv max",
        "events/s",
        "cpu us/event",
        "vs nominal"
    ));
    for l in &r.levels {
        s.push_str(&format!(
            "{:>8} {:>8} {:>9} {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>11.0} {:>12.2} {:>5.2}/{:.2} ms\n",
            l.streams,
            l.failed,
            l.events,
            l.ttft_error_median_ms,
            l.ttft_error_p99_ms,
            l.itl_error_std_ms,
            l.delivery_p99_ms,
            l.delivery_max_ms,
            l.events_per_s,
            l.client_cpu_us_per_event,
            l.ttft_vs_nominal_median_ms,
            l.itl_vs_nominal_std_ms,
        ));
    }
    for l in &r.levels {
        if let Some(i) = &l.interference {
            s.push_str(&format!(
                "{:>8} streams: machine took {:.0} ms (steal, {:.1}%) + {:.1} ms (run queue) from the client, {:.0} ms ({:.1}%) + {:.1} ms from the sim{}\n",
                l.streams,
                i.steal_client_ms,
                i.steal_client_share * 100.0,
                i.run_wait_client_ms,
                i.steal_sim_ms,
                i.steal_sim_share * 100.0,
                i.run_wait_sim_ms,
                if l.disturbed { ": DISTURBED" } else { "" }
            ));
        }
        if !l.busiest_others.is_empty() {
            let others: Vec<String> = l
                .busiest_others
                .iter()
                .map(|o| format!("{} {:.1} ms", o.name, o.cpu_ms))
                .collect();
            s.push_str(&format!(
                "{:>8} streams: other tasks that ran longest: {}\n",
                l.streams,
                others.join(", ")
            ));
        }
    }
    if r.sim_cpus.is_empty() {
        s.push_str(&format!(
            "client and sim shared CPUs {:?} (the sim at nice {SIM_NICE})\n",
            r.client_cpus
        ));
    } else {
        s.push_str(&format!(
            "client on CPUs {:?}, sim on CPUs {:?}\n",
            r.client_cpus, r.sim_cpus
        ));
    }
    s.push_str(&match (r.network.private, &r.network.fallback) {
        (true, _) => "network: a namespace of its own, whose loopback no packet-filter rule of the host sees\n".to_string(),
        (false, Some(why)) => format!(
            "network: the host's loopback, through its packet filter (no namespace of its own: {why})\n"
        ),
        (false, None) => {
            "network: the host's loopback, through its packet filter (--host-network)\n".to_string()
        }
    });
    let disturbed: Vec<String> = r
        .levels
        .iter()
        .filter(|l| l.disturbed)
        .map(|l| l.streams.to_string())
        .collect();
    if !disturbed.is_empty() {
        // Split, a paused CPU stops the client pinned to it; shared, its
        // other worker takes over the streams.
        let or_shared = if r.sim_cpus.is_empty() {
            ""
        } else {
            ", or with the client on every CPU (--shared-cpus)"
        };
        s.push_str(&format!(
            "DISTURBED at {} streams: the hypervisor took over {:.0}% of the client's or the sim's CPU time, so those figures show the host more than the client; calibrate again when the host is quieter{or_shared}\n",
            disturbed.join(", "),
            DISTURBED_STEAL_SHARE * 100.0
        ));
    }
    let late: Vec<String> = r
        .levels
        .iter()
        .filter(|l| l.late_events > 0)
        .map(|l| {
            format!(
                "{} of {} at {} streams ({} burst{})",
                l.late_events,
                l.events,
                l.streams,
                l.late_bursts,
                if l.late_bursts == 1 { "" } else { "s" }
            )
        })
        .collect();
    if !late.is_empty() {
        s.push_str(&format!(
            "late events (delivery error {:.1} ms or more, half an ITL): {}; the client's reads fell that far behind, so each weighs on the ITL error std by up to one ITL: a burst or two that do not recur when calibrating again point at the host stopping or taking the client's CPU, late events in every run at a client short of CPU\n",
            late_after(Duration::from_secs_f64(r.itl_ms / 1000.0)).as_secs_f64() * 1000.0,
            late.join(", ")
        ));
    }
    match r.fastest_under_1ms_p99 {
        Some(f) => s.push_str(&format!(
            "fastest level with p99 delivery error under 1 ms: {:.0} events/s ({} streams)\n",
            f.events_per_s, f.streams
        )),
        None => s.push_str("no level kept its p99 delivery error under 1 ms\n"),
    }
    let f = &r.flat_out;
    s.push_str(&format!(
        "flat out ({} streams, ITL 0): {} events in {:.2} s = {:.0} events/s; client CPU {:.2} s = {:.0} events per CPU-second\n",
        f.streams, f.events, f.wall_s, f.events_per_s, f.client_cpu_s, f.events_per_cpu_s
    ));
    s.push_str("ttft/itl/deliv: client receive time against the sim's send stamp on the same clock; vs nominal: TTFT p50 excess / ITL RMS around the nominal, which include the sim's own timer\n");
    s.push_str("machine took: steal is time the hypervisor paused those CPUs (in clock ticks; % of their time over the level); run queue is time the threads were ready but other tasks had the CPU\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_and_run_queue_waits_are_read_from_proc_text() {
        let stat = "cpu  366303 0 37048 1989040 996 0 5492 9644 0 0\n\
                    cpu0 183000 0 18000 990000 500 0 2700 4799 0 0\n\
                    cpu1 183303 0 19048 999040 496 0 2792 4845 0 0\n\
                    cpu10 1 0 1 1 0 0 0 7 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(steal_ticks(stat, &[0]), Some(4799));
        assert_eq!(steal_ticks(stat, &[1]), Some(4845));
        assert_eq!(steal_ticks(stat, &[0, 1]), Some(9644));
        assert_eq!(steal_ticks(stat, &[10]), Some(7), "cpu10 is not cpu1");
        assert_eq!(steal_ticks(stat, &[2]), None, "no line for cpu2");
        assert_eq!(steal_ticks("cpu0 1 2 3\n", &[0]), None, "no steal field");
        assert_eq!(schedstat_wait_ns("81234567 4500123 977\n"), Some(4_500_123));
        assert_eq!(schedstat_wait_ns("81234567\n"), None);
    }

    #[test]
    fn the_table_says_which_loopback_the_run_was_on_and_why() {
        let report = |private, fallback: Option<&str>| CalibrationReport {
            network: Network {
                private,
                fallback: fallback.map(str::to_string),
                namespace: Some("net:[4026531840]".into()),
            },
            ..small_report()
        };
        let network_line = |r: &CalibrationReport| {
            render(r)
                .lines()
                .find(|l| l.starts_with("network: "))
                .unwrap()
                .to_string()
        };
        assert!(network_line(&report(true, None)).contains("a namespace of its own"));
        assert!(network_line(&report(false, None)).ends_with("(--host-network)"));
        let refused = network_line(&report(false, Some("Operation not permitted (os error 1)")));
        assert!(
            refused.ends_with("(no namespace of its own: Operation not permitted (os error 1))"),
            "{refused}"
        );
    }

    #[test]
    fn the_busiest_other_tasks_are_ranked_by_growth_and_grouped_by_name() {
        let listing = |rows: &[(u32, &str, u64)]| -> HashMap<u32, (String, u64)> {
            rows.iter()
                .map(|&(tid, name, ms)| (tid, (name.to_string(), ms * 1_000_000)))
                .collect()
        };
        let before = listing(&[
            (1, "containerd", 100),
            (2, "containerd", 50),
            (3, "kdamond.0", 900),
            (4, "rcu_preempt", 7),
            (5, "sshd", 10),
        ]);
        let after = listing(&[
            (1, "containerd", 104),
            (2, "containerd", 52),
            (3, "kdamond.0", 911),
            (4, "rcu_preempt", 7),
            // A thread that started meanwhile counts in full; a kernel
            // worker renamed after its current work counts by its id.
            (6, "kworker/0:1-events", 3),
            (5, "sshd-session", 12),
        ]);
        let top = busiest(&before, &after, 3);
        let named: Vec<(&str, f64)> = top.iter().map(|o| (o.name.as_str(), o.cpu_ms)).collect();
        assert_eq!(
            named,
            [
                ("kdamond.0", 11.0),
                ("containerd", 6.0),
                ("kworker/0:1-events", 3.0)
            ]
        );
        assert_eq!(
            busiest(&before, &after, 10).len(),
            4,
            "under 1 ms is left out"
        );
    }

    #[test]
    fn a_busy_process_shows_among_the_other_tasks_and_this_one_does_not() {
        let me = std::process::id();
        let before = task_run_ns(&[me]);
        assert!(!before.is_empty(), "/proc lists the machine's threads");
        let mut spinner = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let after = task_run_ns(&[me]);
        spinner.kill().unwrap();
        spinner.wait().unwrap();
        assert!(
            after
                .keys()
                .all(|tid| !std::path::Path::new(&format!("/proc/{me}/task/{tid}")).exists()),
            "this process's threads are excluded"
        );
        let top = busiest(&before, &after, 50);
        let sh = top
            .iter()
            .find(|o| o.name == "sh")
            .expect("the spinner ran");
        // A busy loop for 300 ms on a machine of two or more CPUs gets far
        // more than this unless the machine is saturated.
        assert!(sh.cpu_ms >= 30.0, "{top:?}");
    }

    fn small_report() -> CalibrationReport {
        CalibrationReport {
            client_cpus: vec![0],
            sim_cpus: vec![1],
            ttft_ms: 50.0,
            itl_ms: 10.0,
            tokens: 100,
            network: Network {
                private: true,
                fallback: None,
                namespace: None,
            },
            levels: Vec::new(),
            flat_out: FlatOutReport {
                streams: 8,
                events: 800_000,
                wall_s: 0.4,
                events_per_s: 2e6,
                client_cpu_s: 0.4,
                events_per_cpu_s: 2e6,
            },
            fastest_under_1ms_p99: None,
        }
    }

    #[test]
    fn the_machine_id_is_read_only_when_it_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("machine-id");
        std::fs::write(&file, "3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(
            machine_id(&file).as_deref(),
            Some("3d1219c7c4c5404aaa1f6d2a48adfda4")
        );
        std::fs::write(&file, "uninitialized\n").unwrap();
        assert_eq!(machine_id(&file), None);
        std::fs::write(&file, "").unwrap();
        assert_eq!(machine_id(&file), None);
        assert_eq!(machine_id(&dir.path().join("absent")), None);
    }

    #[test]
    fn the_fastest_level_within_the_p99_limit_is_reported() {
        let levels = [
            (1, 0.004, 98.0),
            (100, 0.006, 9_800.0),
            (1000, 3.2, 80_000.0),
        ];
        assert_eq!(
            fastest_within(levels, 1.0),
            Some(RateAt {
                events_per_s: 9_800.0,
                streams: 100
            })
        );
        assert_eq!(fastest_within(levels, 5.0).unwrap().streams, 1000);
        assert_eq!(fastest_within(levels, 0.001), None);
        let table = render(&CalibrationReport {
            fastest_under_1ms_p99: fastest_within(levels, 1.0),
            ..small_report()
        });
        assert!(
            table.contains("under 1 ms: 9800 events/s (100 streams)"),
            "{table}"
        );
        assert!(render(&small_report()).contains("no level kept its p99"));
    }

    #[test]
    fn the_last_calibration_is_kept_per_host_and_a_bad_file_is_named() {
        let machine = |hostname: &str, id: Option<&str>| Machine {
            hostname: hostname.to_string(),
            machine_id: id.map(str::to_string),
        };
        let node_a = machine("node-a", None);
        let dir = tempfile::tempdir().unwrap();
        assert!(
            load_last(dir.path(), &node_a).unwrap().is_none(),
            "none yet"
        );
        let path = save_last(dir.path(), &node_a, &small_report()).unwrap();
        assert_eq!(path, last_path(dir.path()));
        let saved = load_last(dir.path(), &node_a).unwrap().unwrap();
        assert_eq!(saved.format, SAVED_FORMAT);
        assert_eq!(saved.hostname, "node-a");
        assert_eq!(saved.harness, crate::probe::Harness::current());
        assert!(saved.at.ends_with('Z'), "{}", saved.at);
        assert_eq!(saved.report["flat_out"]["events"], 800_000);
        // Measured elsewhere (a cache shared between hosts): not this host's.
        assert!(
            load_last(dir.path(), &machine("node-b", None))
                .unwrap()
                .is_none()
        );
        // A second save replaces the first.
        let mut other = small_report();
        other.tokens = 7;
        save_last(dir.path(), &node_a, &other).unwrap();
        let saved = load_last(dir.path(), &node_a).unwrap().unwrap();
        assert_eq!(saved.report["tokens"], 7);
        // Two machines of one host name: told apart by their machine ids
        // where both have one; one saved without an id (before ids were
        // recorded) still counts by its host name.
        let id_a = "0123456789abcdef0123456789abcdef";
        let id_b = "fedcba9876543210fedcba9876543210";
        save_last(dir.path(), &machine("node-a", Some(id_a)), &other).unwrap();
        let saved = load_last(dir.path(), &machine("node-a", Some(id_a)))
            .unwrap()
            .unwrap();
        assert_eq!(saved.machine_id.as_deref(), Some(id_a));
        assert!(
            load_last(dir.path(), &machine("node-a", Some(id_b)))
                .unwrap()
                .is_none()
        );
        assert!(load_last(dir.path(), &node_a).unwrap().is_some());
        save_last(dir.path(), &node_a, &other).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("machine_id"), "{text}");
        assert!(
            load_last(dir.path(), &machine("node-a", Some(id_b)))
                .unwrap()
                .is_some()
        );
        std::fs::write(&path, "{ not json").unwrap();
        let e = load_last(dir.path(), &node_a).unwrap_err().to_string();
        assert!(e.contains(path.to_str().unwrap()), "{e}");
        assert!(e.contains("infermark calibrate"), "{e}");
        let wrong = serde_json::json!({
            "format": "infermark.calibration/v0", "at": "2026-01-01T00:00:00Z",
            "hostname": "node-a", "harness": crate::probe::Harness::current(), "report": {}
        });
        std::fs::write(&path, wrong.to_string()).unwrap();
        let e = load_last(dir.path(), &node_a).unwrap_err().to_string();
        assert!(e.contains("infermark.calibration/v0"), "{e}");
    }

    #[test]
    fn interference_is_the_growth_of_the_counters() {
        let c = |steal_c, steal_s, wait_c, wait_s| InterferenceCounters {
            steal_client_ticks: steal_c,
            steal_sim_ticks: steal_s,
            run_wait_client_ns: wait_c,
            run_wait_sim_ns: wait_s,
        };
        // SAFETY: as in `since`.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let i = c(12, 7, 9_000_000, 2_500_000).since(
            &c(10, 7, 1_000_000, 500_000),
            Duration::from_secs(2),
            1,
            1,
        );
        assert_eq!(i.steal_client_ms, 2.0 * 1000.0 / hz);
        assert_eq!(i.steal_sim_ms, 0.0);
        assert_eq!(i.run_wait_client_ms, 8.0);
        assert_eq!(i.run_wait_sim_ms, 2.0);
        // Two ticks of two seconds on one CPU.
        assert_eq!(i.steal_client_share, 2.0 / hz / 2.0);
        assert_eq!(i.steal_sim_share, 0.0);
        // The share is of every CPU of the side: 300 ticks of a
        // one-second level on two shared CPUs is 1.5 s of 2.
        let shared = c(300, 300, 0, 0).since(&c(0, 0, 0, 0), Duration::from_secs(1), 2, 2);
        assert_eq!(shared.steal_client_share, 150.0 / hz);
        assert_eq!(shared.steal_sim_share, 150.0 / hz);
        let empty = c(3, 3, 0, 0).since(&c(0, 0, 0, 0), Duration::ZERO, 1, 1);
        assert_eq!(empty.steal_client_share, 0.0, "no time, no share");
    }

    #[test]
    fn a_level_is_disturbed_when_either_side_lost_over_two_per_cent_to_steal() {
        let took = |client: f64, sim: f64| Interference {
            steal_client_ms: 0.0,
            steal_sim_ms: 0.0,
            steal_client_share: client,
            steal_sim_share: sim,
            run_wait_client_ms: 0.0,
            run_wait_sim_ms: 0.0,
        };
        assert!(!took(0.0, 0.0).disturbs());
        assert!(
            !took(0.02, 0.02).disturbs(),
            "the limit itself is not over it"
        );
        assert!(took(0.021, 0.0).disturbs());
        assert!(took(0.0, 0.35).disturbs());

        let level = |streams, disturbed, share| LevelReport {
            interference: Some(took(share, 0.0)),
            disturbed,
            ..level_report(
                streams,
                0,
                &[],
                Duration::ZERO,
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::ZERO,
            )
        };
        let report = CalibrationReport {
            levels: vec![level(100, false, 0.0), level(1000, true, 0.35)],
            ..small_report()
        };
        let text = render(&report);
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` line in\n{text}"))
                .to_string()
        };
        assert!(line("1000 streams: machine took").ends_with(": DISTURBED"));
        assert!(line("1000 streams: machine took").contains("(steal, 35.0%)"));
        assert!(!line("100 streams: machine took").contains("DISTURBED"));
        assert!(
            line("DISTURBED at")
                .starts_with("DISTURBED at 1000 streams: the hypervisor took over 2%"),
            "{text}"
        );
        // Split (as here), sharing is offered; already shared, it is not.
        assert!(line("DISTURBED at").ends_with("(--shared-cpus)"), "{text}");
        let shared = CalibrationReport {
            client_cpus: vec![0, 1],
            sim_cpus: vec![],
            ..report.clone()
        };
        let shared_text = render(&shared);
        assert!(shared_text.contains("DISTURBED at 1000"), "{shared_text}");
        assert!(!shared_text.contains("--shared-cpus"), "{shared_text}");
        let quiet = CalibrationReport {
            levels: vec![level(100, false, 0.0)],
            ..small_report()
        };
        assert!(!render(&quiet).contains("DISTURBED"));
    }

    /// A measured request whose chunks were sent at `sends` and received
    /// at `recvs` (ms, on one clock; the client's origin at 0).
    fn streamed(index: u64, sends: &[f64], recvs: &[f64]) -> RequestRecord {
        let ns = |ms: f64| (ms * 1e6).round() as u64;
        RequestRecord {
            index,
            slot: index as u32,
            warmup: false,
            scheduled_ns: 0,
            sent_ns: 0,
            stale_sent_ns: None,
            first_token_ns: recvs.first().map(|&r| ns(r)),
            end_ns: recvs.last().map_or(0, |&r| ns(r)),
            chunks: sends
                .iter()
                .zip(recvs)
                .map(|(&s, &r)| crate::loadgen::record::Chunk {
                    t_ns: ns(r),
                    tokens: 1,
                    server_ns: Some(ns(s)),
                })
                .collect(),
            input_tokens: 1,
            max_output_tokens: sends.len() as u32,
            usage_input_tokens: None,
            usage_output_tokens: None,
            http_status: Some(200),
            error: None,
        }
    }

    #[test]
    fn chunks_half_an_itl_late_are_counted_in_bursts_and_named() {
        let itl = Duration::from_millis(10);
        let records = [
            // Read 0.1 ms after each send, but the chunk sent at 20 ms only
            // with the one sent at 30 ms: 10.1 ms late.
            streamed(0, &[0.0, 10.0, 20.0, 30.0], &[0.1, 10.1, 30.1, 30.1]),
            // 6 ms late at 25 ms (the same stretch as the one above, sent
            // 5 ms after it), 4.9 ms (under half an ITL: on time) at 60 ms,
            // and 5 ms late at 100 ms: a second burst.
            streamed(1, &[5.0, 25.0, 60.0, 100.0], &[5.1, 31.0, 64.9, 105.0]),
        ];
        let level = level_report(
            2,
            0,
            &records,
            Duration::ZERO,
            itl,
            Duration::from_secs(1),
            Duration::ZERO,
        );
        assert_eq!((level.late_events, level.late_bursts), (3, 2));
        assert_eq!(late_after(itl), Duration::from_millis(5));
        assert_eq!(
            late_after(Duration::from_micros(500)),
            Duration::from_millis(1),
            "at least 1 ms"
        );
        let on_time = level_report(
            2,
            0,
            &[streamed(0, &[0.0, 10.0], &[0.1, 10.1])],
            Duration::ZERO,
            itl,
            Duration::from_secs(1),
            Duration::ZERO,
        );
        assert_eq!((on_time.late_events, on_time.late_bursts), (0, 0));

        let report = CalibrationReport {
            levels: vec![on_time, level],
            ..small_report()
        };
        let text = render(&report);
        let line = text
            .lines()
            .find(|l| l.starts_with("late events"))
            .unwrap_or_else(|| panic!("no late-events line in\n{text}"));
        assert!(
            line.starts_with(
                "late events (delivery error 5.0 ms or more, half an ITL): 3 of 8 at 2 streams (2 bursts);"
            ),
            "{line}"
        );
        let quiet = CalibrationReport {
            levels: vec![report.levels[0].clone()],
            ..small_report()
        };
        assert!(!render(&quiet).contains("late events"));
    }

    #[test]
    fn this_process_has_run_queue_counters() {
        // Every thread's schedstat is readable: a sum, if only of zeros.
        assert!(run_wait_ns(std::process::id()).is_some());
        assert!(
            steal_ticks(
                &std::fs::read_to_string("/proc/stat").unwrap(),
                &allowed_cpus()
            )
            .is_some()
        );
    }

    #[test]
    fn the_sim_gets_the_last_cpu_and_the_client_the_rest() {
        assert_eq!(split_cpus(&[0, 1]), Some((vec![0], vec![1])));
        assert_eq!(split_cpus(&[2, 5, 7]), Some((vec![2, 5], vec![7])));
        assert_eq!(split_cpus(&[3]), None, "one CPU is shared");
        assert_eq!(split_cpus(&[]), None);
    }

    #[test]
    fn this_process_knows_its_cpus_and_a_pinned_thread_keeps_to_them() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let first = cpus[0];
        // On a thread of its own, so the test runner's threads keep theirs.
        let seen = std::thread::spawn(move || {
            pin_current_thread(&[first]).unwrap();
            let here = allowed_cpus();
            let inherited = std::thread::spawn(allowed_cpus).join().unwrap();
            (here, inherited)
        })
        .join()
        .unwrap();
        assert_eq!(seen, (vec![first], vec![first]));
    }
}
