//! `infermark serve-sim`, `bench` and `calibrate`.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;

use super::{BenchArgs, CalibrateArgs, InvalidInput, SimArgs, exit};
use crate::calibrate;
use crate::run::{self, bench};
use crate::sim::{self, SimConfig};
use crate::spec::Point;

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    crate::loadgen::runtime().context("failed to start the async runtime")
}

/// A millisecond flag as a duration; negative or NaN values are refused,
/// never clamped.
fn ms(flag: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v / 1000.0).map_err(|_| {
        InvalidInput(format!(
            "`--{flag} {v}`: expected a non-negative number of milliseconds"
        ))
        .into()
    })
}

/// A log-normal sigma flag; negative, infinite or NaN values are refused.
fn sigma(flag: &str, v: f64) -> anyhow::Result<f64> {
    if v.is_finite() && v >= 0.0 {
        return Ok(v);
    }
    Err(InvalidInput(format!(
        "`--{flag} {v}`: expected a finite standard deviation of the log speed factor, \
         at least 0 (0 turns it off)"
    ))
    .into())
}

pub fn sim_config(a: &SimArgs) -> anyhow::Result<SimConfig> {
    let mut c = SimConfig {
        model_name: a.model_name.clone(),
        default_max_tokens: a.default_max_tokens,
        eos_after: a.eos_after,
        ..SimConfig::default()
    };
    c.timing.ttft_base = ms("ttft-ms", a.ttft_ms)?;
    c.timing.ttft_per_prompt_token = ms(
        "ttft-per-prompt-token-us",
        a.ttft_per_prompt_token_us / 1000.0,
    )?;
    c.timing.itl = ms("itl-ms", a.itl_ms)?;
    c.timing.tokens_per_chunk = a.tokens_per_chunk;
    c.faults.seed = a.fault_seed;
    c.faults.fail_rate = a.fail_rate;
    c.faults.stall_rate = a.stall_rate;
    c.faults.stall_after_tokens = a.stall_after_tokens;
    c.faults.stall_for = ms("stall-ms", a.stall_ms)?;
    c.faults.malformed_rate = a.malformed_rate;
    c.faults.malformed_after_tokens = a.malformed_after_tokens;
    c.faults.disconnect_rate = a.disconnect_rate;
    c.faults.disconnect_after_tokens = a.disconnect_after_tokens;
    c.health.delay = ms("health-delay-ms", a.health_delay_ms)?;
    c.health.status = a.health_status;
    c.health.ready_after = ms("health-ready-after-ms", a.health_ready_after_ms)?;
    c.drift.seed = a.drift_seed;
    c.drift.run_sigma = sigma("run-drift", a.run_drift)?;
    c.drift.request_sigma = sigma("request-jitter", a.request_jitter)?;
    c.drift.run_requests = a.run_requests.and_then(NonZeroU64::new);
    if c.drift.run_sigma > 0.0 && c.drift.run_requests.is_none() {
        return Err(InvalidInput(format!(
            "`--run-drift {}`: needs `--run-requests K` too, K the requests in one run \
             (a point's warmup + measured requests), after which the speed factor is redrawn",
            a.run_drift
        ))
        .into());
    }
    c.validate().map_err(|e| InvalidInput(e.to_string()))?;
    Ok(c)
}

pub fn serve_sim(a: SimArgs) -> anyhow::Result<u8> {
    let config = sim_config(&a)?;
    let addr: SocketAddr = format!("{}:{}", a.host, a.port)
        .parse()
        .map_err(|_| InvalidInput(format!("`--host {}`: not an IP address", a.host)))?;
    runtime()?.block_on(async move {
        let listener = sim::listen(addr)?;
        let local = listener.local_addr().context("no local address")?;
        // The first stdout line is the contract with whoever started us.
        println!("listening on http://{local}");
        let shutdown = async {
            super::signals::shutdown_requested().await;
        };
        sim::serve(config, listener, shutdown).await?;
        anyhow::Ok(exit::OK)
    })
}

/// Counts finished requests for the progress bar.
pub(super) struct Bar {
    done: AtomicU64,
    bar: indicatif::ProgressBar,
}

impl crate::loadgen::Progress for Bar {
    fn request_done(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.bar.inc(1);
    }
}

/// A progress bar over a point's requests when stderr is a terminal, else
/// a hidden one.
pub(super) fn progress_bar(point: &Point, total: usize) -> Arc<Bar> {
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} requests {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_prefix(format!("{} {}", point.short_id(), point.spec.load.label()));
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    Arc::new(Bar {
        done: AtomicU64::new(0),
        bar,
    })
}

impl Bar {
    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

pub fn bench(a: BenchArgs) -> anyhow::Result<u8> {
    let choice = bench::Choice {
        concurrency: a.concurrency,
        point: a.point.clone(),
    };
    let points = bench::choose(&a.spec, a.lock.lock_dir.as_deref(), &choice)?;
    let spec_dir = a.spec.parent().map(Path::to_path_buf).unwrap_or_default();
    let rt = runtime()?;
    let mut any_failed = false;
    for point in &points {
        let (warmup, measured) = run::request_counts(&point.spec);
        let progress = progress_bar(point, warmup + measured);
        eprintln!(
            "point {} ({}): {warmup} warmup + {measured} measured requests against {}",
            point.short_id(),
            point.spec.load.label(),
            a.url
        );
        let (m, written) = rt.block_on(bench::bench_point(
            point,
            &a.url,
            &spec_dir,
            a.out.as_deref(),
            Some(progress.clone()),
        ))?;
        progress.bar.finish_and_clear();
        println!("{}", crate::metrics::render_table(&m.summary));
        any_failed |= m.summary.counts.failed > 0;
        if let Some(dir) = written {
            println!("wrote {}", dir.display());
        }
    }
    if a.out.is_none() {
        eprintln!("(no --out DIR given: records and summaries were not written)");
    }
    Ok(if any_failed { exit::FAILURE } else { exit::OK })
}

pub fn calibrate(a: CalibrateArgs) -> anyhow::Result<u8> {
    let exe: PathBuf = std::env::current_exe().context("cannot find the infermark executable")?;
    // Both before the runtime starts, so that its threads inherit the
    // client's CPUs (and their number sizes it) and start in the namespace.
    let sim_cpus = calibrate::place_client(a.shared_cpus)?;
    let network = calibrate::choose_loopback(a.host_network);
    let opts = calibrate::CalibrateOptions {
        sim_exe: exe,
        streams: a.streams.clone(),
        ttft: ms("ttft-ms", a.ttft_ms)?,
        itl: ms("itl-ms", a.itl_ms)?,
        tokens: a.tokens,
        requests_per_stream: a.requests_per_stream,
        flat_out_streams: a.flat_out_streams,
        flat_out_tokens: a.flat_out_tokens,
        sim_cpus,
        phase_locked: a.phase_locked,
        network,
    };
    let report = runtime()?.block_on(calibrate::calibrate(&opts))?;
    print!("{}", calibrate::render(&report));
    if !a.no_save {
        let cache = a
            .cache_dir
            .clone()
            .unwrap_or_else(crate::engine::default_cache_dir);
        let path = calibrate::save_last(&cache, &calibrate::Machine::this(), &report)
            .with_context(|| {
                format!(
                    "failed to save the calibration as {} (--cache-dir DIR puts it elsewhere, --no-save skips it)",
                    calibrate::last_path(&cache).display()
                )
            })?;
        println!(
            "saved as this host's last calibration: {} (attached to the environment.json of every run here)",
            path.display()
        );
    }
    if let Some(path) = &a.json {
        let mut bytes = serde_json::to_vec_pretty(&report)?;
        bytes.push(b'\n');
        std::fs::write(path, bytes)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn sim_args(flags: &[&str]) -> SimArgs {
        let argv = ["infermark", "serve-sim"].iter().chain(flags);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::ServeSim(a)) => a,
            other => panic!("{flags:?} did not parse as serve-sim: {other:?}"),
        }
    }

    fn error_of(flags: &[&str]) -> String {
        match sim_config(&sim_args(flags)) {
            Ok(c) => panic!("{flags:?} accepted: {c:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn drift_flags_set_the_drift() {
        let c = sim_config(&sim_args(&[
            "--run-drift",
            "0.1",
            "--run-requests",
            "24",
            "--request-jitter",
            "0.02",
            "--drift-seed",
            "9",
        ]));
        let drift = c.map(|c| c.drift).ok();
        assert_eq!(
            drift,
            Some(sim::Drift {
                seed: 9,
                run_sigma: 0.1,
                run_requests: NonZeroU64::new(24),
                request_sigma: 0.02,
            })
        );
        let plain = sim_config(&sim_args(&[])).map(|c| c.drift).ok();
        assert_eq!(plain, Some(sim::Drift::default()));
    }

    #[test]
    fn bad_drift_flags_are_refused_naming_the_flag_and_the_fix() {
        insta::assert_snapshot!(error_of(&["--run-drift", "0.1"]), @"`--run-drift 0.1`: needs `--run-requests K` too, K the requests in one run (a point's warmup + measured requests), after which the speed factor is redrawn");
        insta::assert_snapshot!(error_of(&["--run-drift=-0.1", "--run-requests", "4"]), @"`--run-drift -0.1`: expected a finite standard deviation of the log speed factor, at least 0 (0 turns it off)");
        insta::assert_snapshot!(error_of(&["--request-jitter", "NaN"]), @"`--request-jitter NaN`: expected a finite standard deviation of the log speed factor, at least 0 (0 turns it off)");
        insta::assert_snapshot!(error_of(&["--request-jitter", "inf"]), @"`--request-jitter inf`: expected a finite standard deviation of the log speed factor, at least 0 (0 turns it off)");
        let zero_k = Cli::try_parse_from(["infermark", "serve-sim", "--run-requests", "0"]);
        assert!(zero_k.is_err(), "`--run-requests 0` must not parse");
    }
}
