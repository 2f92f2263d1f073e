//! The printed calibration table and the lines after it.
//!
//! Apart from the figures so that the text a person reads can change
//! without touching how the figures are made; the JSON (`--json`) and the
//! saved calibration carry the same report unrendered.

use std::time::Duration;

use super::interference::DISTURBED_STEAL_SHARE;
use super::report::{CalibrationReport, late_after};
use super::sim::SIM_NICE;

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
    use super::super::interference::Interference;
    use super::super::netns::Network;
    use super::super::report::fixtures::{small_report, streamed};
    use super::super::report::{LevelReport, fastest_within, level_report};
    use super::*;

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
    fn the_table_names_the_fastest_level_under_1ms_or_that_none_did() {
        let levels = [
            (1, 0.004, 98.0),
            (100, 0.006, 9_800.0),
            (1000, 3.2, 80_000.0),
        ];
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
    fn disturbed_levels_are_marked_and_named_in_the_table() {
        let took = |client: f64, sim: f64| Interference {
            steal_client_ms: 0.0,
            steal_sim_ms: 0.0,
            steal_client_share: client,
            steal_sim_share: sim,
            run_wait_client_ms: 0.0,
            run_wait_sim_ms: 0.0,
        };
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

    #[test]
    fn late_chunks_are_named_in_the_table() {
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
        let on_time = level_report(
            2,
            0,
            &[streamed(0, &[0.0, 10.0], &[0.1, 10.1])],
            Duration::ZERO,
            itl,
            Duration::from_secs(1),
            Duration::ZERO,
        );
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
}
