//! The calibration report and the maths that makes it: one level's records
//! reduced to its error figures, late chunks and their bursts, the flat-out
//! run, and the fastest level within the delivery-error limit.
//!
//! Pure functions of the records, so that every printed figure can be
//! checked against requests built by hand.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::interference::{Interference, OtherTask};
use super::netns::Network;
use crate::loadgen::record::RequestRecord;

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
    /// The hypervisor took more than
    /// [`DISTURBED_STEAL_SHARE`](super::DISTURBED_STEAL_SHARE) of the
    /// client's or the sim's CPU time during the level: its figures then
    /// say more about the host than about the client.
    pub disturbed: bool,
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
pub(super) fn fastest_within(
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
pub(super) fn measured_window(measured: &[&RequestRecord]) -> Option<Duration> {
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
/// ITL, at least 1 ms. On a steady machine the client's delivery error
/// stays below that floor (docs/calibration.md, "Figures behind the code");
/// a level whose reads fall half a gap behind is one in which the client's
/// CPU was stopped or taken for that long (or the client could not keep
/// up), and each of its late chunks weighs on the ITL error std by up to
/// one ITL.
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

/// Reports and records built by hand, for the tests of this module and of
/// the rendering.
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;

    pub(crate) fn small_report() -> CalibrationReport {
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

    /// A measured request whose chunks were sent at `sends` and received
    /// at `recvs` (ms, on one clock; the client's origin at 0).
    pub(crate) fn streamed(index: u64, sends: &[f64], recvs: &[f64]) -> RequestRecord {
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
}

#[cfg(test)]
mod tests {
    use super::fixtures::streamed;
    use super::*;

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
    }

    #[test]
    fn chunks_half_an_itl_late_are_counted_in_bursts() {
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
    }
}
