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
//!
//! The module is split by concern: where client and sim run (`cpus`) and
//! over which loopback (`netns`), the sim child (`sim`), the client's load
//! (`drive`), what the machine took meanwhile (`interference`), the figures
//! (`report`), the table (`render`) and the saved calibration (`saved`).
//! This file holds the options and the run that ties them together.

mod cpus;
mod drive;
mod interference;
mod netns;
mod render;
mod report;
mod saved;
mod sim;

use std::path::PathBuf;
use std::time::Duration;

use crate::loadgen;
use crate::loadgen::record::RequestRecord;
use crate::workload;

pub use cpus::{allowed_cpus, pin_current_thread, place_client, split_cpus};
pub use interference::{DISTURBED_STEAL_SHARE, Interference, OtherTask};
pub use netns::{Network, choose_loopback};
pub use render::render;
pub use report::{CalibrationReport, FlatOutReport, LevelReport, RateAt, late_after, level_report};
pub use saved::{
    LastCalibrationError, Machine, SAVED_FORMAT, SavedCalibration, last_path, load_last, save_last,
};

use drive::drive;
use interference::{InterferenceCounters, busiest, task_run_ns};
use report::{fastest_within, measured_window};
use sim::start_sim;

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
    /// the runtime starts; see [`choose_loopback`]).
    pub network: Network,
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
    #[error("the sim server did not report its address: {0}")]
    AddressRead(std::io::Error),
    #[error(transparent)]
    Workload(#[from] workload::WorkloadError),
    #[error(transparent)]
    Load(#[from] loadgen::LoadError),
    #[error("failed to pin the client to CPUs {cpus:?}")]
    Pin {
        cpus: Vec<usize>,
        source: std::io::Error,
    },
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
