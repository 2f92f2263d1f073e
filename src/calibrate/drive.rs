//! The client's side of one calibration level: the requests it sends, the
//! load plan that sends them, and the wall and CPU time it took.
//!
//! Apart from the sim and the figures so that what the client is asked to
//! do (stream count, lengths, phase-locking) reads in one place.

use std::time::{Duration, Instant};

use super::CalibrateError;
use crate::loadgen::{self, LoadOutcome, LoadPlan, Schedule};
use crate::spec::Api;
use crate::workload::{self, WorkloadParams};

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

pub(super) async fn drive(
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
