//! `infermark bench` end to end against `infermark serve-sim`, whose timing
//! is known: the measured figures must match the ground truth within bounds
//! loose enough for a shared two-core machine yet tight enough to catch a
//! wrong formula or unit.

use crate::support::{bench, bench_output, infermark, repo, serve_sim, stderr};

fn f(v: &serde_json::Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

#[test]
fn measured_ttft_itl_and_counts_match_the_sim_timing() {
    let sim = serve_sim(&["--ttft-ms", "50", "--itl-ms", "10"]);
    let b = bench(
        &sim.url,
        "cpu/sim-calibration.toml",
        &["--concurrency", "16"],
    );
    assert_eq!(b.code, Some(0), "{}", b.stderr);
    let (s, records) = (b.summary, b.records);
    // 16 clients x 8 requests measured, 16 x 1 warmup recorded but excluded.
    assert_eq!(s["counts"]["completed"], 128);
    assert_eq!(s["counts"]["failed"], 0);
    assert_eq!(s["counts"]["warmup_excluded"], 16);
    assert_eq!(records.len(), 144);
    assert_eq!(s["totals"]["output_tokens"], 128 * 64);
    assert_eq!(s["counts"]["token_disagreements"], 0);
    // TTFT: 50 ms true; TPOT and ITL: 10 ms true.
    let ttft = f(&s, "latency.ttft.p50_ms");
    assert!((50.0..65.0).contains(&ttft), "median TTFT {ttft} ms");
    let tpot = f(&s, "latency.tpot.p50_ms");
    assert!((9.8..11.0).contains(&tpot), "median TPOT {tpot} ms");
    let itl = f(&s, "latency.itl.mean_ms");
    assert!((9.8..11.0).contains(&itl), "mean ITL {itl} ms");
    // E2EL = TTFT + 63 x ITL = 680 ms.
    let e2el = f(&s, "latency.e2el.p50_ms");
    assert!((675.0..720.0).contains(&e2el), "median E2EL {e2el} ms");
    // 16 streams x 100 tok/s each.
    let tput = f(&s, "throughput.output_tokens_per_s");
    assert!(
        (1300.0..1700.0).contains(&tput),
        "output throughput {tput} tok/s"
    );
    assert_eq!(s["throughput"]["max_concurrent_requests"], 16);
}

#[test]
fn multi_token_chunks_are_counted_per_token() {
    let sim = serve_sim(&[
        "--ttft-ms",
        "20",
        "--itl-ms",
        "8",
        "--tokens-per-chunk",
        "4",
    ]);
    let b = bench(
        &sim.url,
        "cpu/sim-calibration.toml",
        &["--concurrency", "2"],
    );
    assert_eq!(b.code, Some(0), "{}", b.stderr);
    let (s, records) = (b.summary, b.records);
    for r in &records {
        let chunks = r["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), 16, "64 tokens in chunks of 4");
        let tokens: u64 = chunks.iter().map(|c| c[1].as_u64().unwrap()).sum();
        assert_eq!(tokens, 64);
        assert_eq!(r["usage_output_tokens"], 64);
    }
    // Per chunk 8 ms; per token 2 ms.
    let per_chunk = f(&s, "latency.itl.mean_ms");
    let per_token = f(&s, "latency.itl_per_token.mean_ms");
    assert!((7.8..9.5).contains(&per_chunk), "{per_chunk}");
    assert!(
        (per_token * 4.0 - per_chunk).abs() < 0.01,
        "{per_token} x 4 != {per_chunk}"
    );
    assert_eq!(s["counts"]["token_disagreements"], 0);
}

#[test]
fn sim_faults_become_request_errors_not_panics() {
    let sim = serve_sim(&[
        "--ttft-ms",
        "5",
        "--itl-ms",
        "1",
        "--fail-rate",
        "0.2",
        "--malformed-rate",
        "0.2",
        "--malformed-after-tokens",
        "3",
        "--disconnect-rate",
        "0.2",
        "--disconnect-after-tokens",
        "5",
        "--fault-seed",
        "7",
    ]);
    let b = bench(
        &sim.url,
        "cpu/sim-calibration.toml",
        &["--concurrency", "8"],
    );
    // Failed requests make bench exit 1, after writing everything.
    assert_eq!(b.code, Some(1), "{}", b.stderr);
    let (s, records) = (b.summary, b.records);
    let kinds = &s["counts"]["failed_by_kind"];
    assert!(kinds["http"].as_u64().unwrap() > 0, "{kinds}");
    assert!(kinds["stream"].as_u64().unwrap() > 0, "{kinds}");
    assert!(kinds["disconnected"].as_u64().unwrap() > 0, "{kinds}");
    let failed = records.iter().filter(|r| !r["error"].is_null()).count() as u64;
    assert!(failed >= s["counts"]["failed"].as_u64().unwrap());
    for r in records.iter().filter(|r| r["error"]["kind"] == "http") {
        let status = r["http_status"].as_u64().unwrap();
        assert!(status == 500 || status == 503, "{r}");
    }
    assert!(s["counts"]["completed"].as_u64().unwrap() > 0);
}

#[test]
fn the_open_loop_point_reproduces_its_schedule_and_bodies() {
    let sim = serve_sim(&["--ttft-ms", "5", "--itl-ms", "1"]);
    let spec = repo().join("experiments/cpu/sim-open-loop.toml");
    let mut schedules = Vec::new();
    for _ in 0..2 {
        let out = tempfile::tempdir().unwrap();
        let points = infermark(out.path(), &["spec", "id", spec.to_str().unwrap()]);
        let id = String::from_utf8(points.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_string();
        let run = infermark(
            out.path(),
            &[
                "bench",
                "--url",
                &sim.url,
                "--spec",
                spec.to_str().unwrap(),
                "--point",
                &id[..12],
                "--out",
                "res",
            ],
        );
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
        let (_, records) = bench_output(&out.path().join("res"));
        let measured: Vec<&serde_json::Value> =
            records.iter().filter(|r| r["warmup"] == false).collect();
        assert_eq!(measured.len(), 100);
        // Scheduled offsets from the first measured arrival, in µs.
        let t0 = measured[0]["scheduled_ns"].as_u64().unwrap();
        schedules.push(
            measured
                .iter()
                .map(|r| (r["scheduled_ns"].as_u64().unwrap() - t0) / 1000)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        schedules[0], schedules[1],
        "same seed, same arrival schedule"
    );
    // 100 Poisson arrivals at 20/s span about 5 s.
    let span_s = *schedules[0].last().unwrap() as f64 / 1e6;
    assert!((3.0..7.5).contains(&span_s), "{span_s}");
}

/// `calibrate` end to end at a small scale: every level's events arrive,
/// none fail, and the sim ran on a CPU of its own where there are two.
/// Its timings are benchmark output and not asserted.
/// Runs `calibrate` small (20 tokens a request, 2 requests a stream, 5 ms
/// TTFT, 2 ms ITL) with `extra` flags; returns its output and JSON report.
fn small_calibrate(
    dir: &std::path::Path,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let json = dir.join(format!("cal-{}.json", extra.join("")));
    let mut args = vec![
        "calibrate",
        "--tokens",
        "20",
        "--requests-per-stream",
        "2",
        "--ttft-ms",
        "5",
        "--itl-ms",
        "2",
        "--json",
        json.to_str().unwrap(),
        // Never over the last calibration of the machine running the tests.
        "--cache-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    // The harness under a name of its own (the sim child is started from
    // the same executable, so it has it too): the fast tier runs other
    // `infermark` processes beside this one, and those are rightly among
    // "other tasks", while client and sim must never be.
    let exe = dir.join(CALIBRATING);
    if !exe.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_infermark"), &exe).unwrap();
    }
    let o = std::process::Command::new(&exe)
        .args(&args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (o, r)
}

/// The executable name `small_calibrate` runs the harness under (at most
/// 15 characters, the kernel's limit on a task's name).
const CALIBRATING: &str = "im-calibrating";

#[test]
fn calibrate_counts_every_event_and_splits_the_cpus_unless_told_to_share() {
    let dir = tempfile::tempdir().unwrap();
    let (o, r) = small_calibrate(
        dir.path(),
        &[
            "--streams",
            "1,8",
            "--flat-out-streams",
            "2",
            "--flat-out-tokens",
            "5000",
        ],
    );
    let levels = r["levels"].as_array().unwrap();
    for (level, streams) in levels.iter().zip([1u64, 8]) {
        assert_eq!(level["streams"], streams);
        assert_eq!(level["failed"], 0);
        // Each stream's first request, of 1 to 20 tokens, spreads the
        // streams' phases; then two of exactly 20.
        assert_eq!(level["requests"], streams * 3);
        let events = level["events"].as_u64().unwrap();
        assert!(
            (streams * 41..=streams * 60).contains(&events),
            "{events} events for {streams} streams"
        );
        // Late chunks (half an ITL behind) and their bursts: counted, at
        // most one burst per late chunk, and a burst only with one.
        let (late, bursts) = (
            level["late_events"].as_u64().unwrap(),
            level["late_bursts"].as_u64().unwrap(),
        );
        assert!(late <= events && bursts <= late, "{level}");
        assert_eq!(bursts == 0, late == 0, "{level}");
        // What the machine took from client and sim, read from /proc for
        // both processes (null if the sim's threads could not be found).
        let took = &level["interference"];
        for key in [
            "steal_client_ms",
            "steal_sim_ms",
            "run_wait_client_ms",
            "run_wait_sim_ms",
        ] {
            let ms = took[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key}: {took}"));
            assert!(ms >= 0.0, "{key}: {ms}");
        }
        // Steal as a share of the level's time; over 2% on either side
        // marks the level disturbed.
        let share = |key: &str| {
            took[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key}: {took}"))
        };
        let (client, sim) = (share("steal_client_share"), share("steal_sim_share"));
        assert!(
            (0.0..=1.0).contains(&client) && (0.0..=1.0).contains(&sim),
            "{took}"
        );
        assert_eq!(
            level["disturbed"].as_bool(),
            Some(client.max(sim) > 0.02),
            "{level}"
        );
        // Other tasks of the machine that ran meanwhile: names with their
        // time, at most three, longest first, never the client's or the
        // sim's main thread (other processes may have tokio threads too).
        let others = level["busiest_others"].as_array().unwrap();
        assert!(others.len() <= 3, "{others:?}");
        let ms: Vec<f64> = others
            .iter()
            .map(|o| o["cpu_ms"].as_f64().unwrap())
            .collect();
        assert!(ms.iter().all(|&t| t >= 1.0), "{others:?}");
        assert!(ms.windows(2).all(|w| w[0] >= w[1]), "{others:?}");
        assert!(
            others.iter().all(|o| o["name"] != CALIBRATING),
            "{others:?}"
        );
    }
    // Phase-locked: every request exactly --tokens long; client and sim
    // on the same CPUs.
    let (lo, l) = small_calibrate(
        dir.path(),
        &[
            "--streams",
            "8",
            "--flat-out-streams",
            "1",
            "--flat-out-tokens",
            "100",
            "--phase-locked",
            "--shared-cpus",
        ],
    );
    assert_eq!(l["levels"][0]["requests"], 16);
    assert_eq!(l["levels"][0]["events"], 8 * 2 * 20);
    assert_eq!(r["flat_out"]["events"], 2 * 5000);
    // By default, with two or more CPUs, the sim gets the last CPU and the
    // client the others.
    let cpus = std::thread::available_parallelism().unwrap().get();
    let client: Vec<u64> = serde_json::from_value(r["client_cpus"].clone()).unwrap();
    let sim: Vec<u64> = serde_json::from_value(r["sim_cpus"].clone()).unwrap();
    let text = crate::support::stdout(&o);
    assert!(text.contains("8 streams: machine took"), "{text}");
    if cpus >= 2 {
        assert_eq!(client.len() + sim.len(), cpus, "{client:?} {sim:?}");
        assert_eq!(sim.len(), 1, "{sim:?}");
        assert!(!client.contains(&sim[0]), "{client:?} {sim:?}");
        assert!(text.contains("sim on CPUs"), "{text}");
    } else {
        assert!(sim.is_empty(), "{sim:?}");
        assert!(text.contains("shared CPUs"), "{text}");
    }
    // --shared-cpus puts both on every CPU (the sim niced).
    let client: Vec<u64> = serde_json::from_value(l["client_cpus"].clone()).unwrap();
    let sim: Vec<u64> = serde_json::from_value(l["sim_cpus"].clone()).unwrap();
    let text = crate::support::stdout(&lo);
    assert_eq!(client.len(), cpus, "{client:?}");
    assert!(sim.is_empty(), "{sim:?}");
    assert!(text.contains("shared CPUs"), "{text}");
}

/// By default client and sim talk over the loopback of a network namespace
/// of their own; `--host-network` keeps them on the host's. The report names
/// the namespace the run was in, which is compared with the test's own.
#[test]
fn calibrate_runs_in_a_namespace_of_its_own_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let small = [
        "--streams",
        "4",
        "--flat-out-streams",
        "1",
        "--flat-out-tokens",
        "100",
    ];
    let (o, r) = small_calibrate(dir.path(), &small);
    let ours = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    assert_eq!(r["network"]["private"], true, "{}", r["network"]);
    assert!(r["network"]["fallback"].is_null(), "{}", r["network"]);
    let theirs = r["network"]["namespace"].as_str().unwrap();
    assert!(theirs.starts_with("net:["), "{theirs}");
    assert_ne!(theirs, ours);
    assert!(
        crate::support::stdout(&o).contains("network: a namespace of its own"),
        "{}",
        crate::support::stdout(&o)
    );
    let mut host = small.to_vec();
    host.push("--host-network");
    let (o, r) = small_calibrate(dir.path(), &host);
    assert_eq!(r["network"]["private"], false);
    assert!(r["network"]["fallback"].is_null(), "{}", r["network"]);
    assert_eq!(r["network"]["namespace"], ours.as_str());
    assert!(
        crate::support::stdout(&o).contains("network: the host's loopback"),
        "{}",
        crate::support::stdout(&o)
    );
}

/// The unprivileged path: as user `nobody` (via util-linux `setpriv`, run
/// as root), calibrate still gets a namespace of its own, and the report it
/// writes belongs to that user.
#[test]
fn calibrate_gets_a_private_loopback_without_privileges() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test drops to user `nobody` with setpriv: run the tests as root, as CI does"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // A copy nobody can execute, wherever the build directory is.
    let exe = dir.path().join("infermark");
    std::fs::copy(env!("CARGO_BIN_EXE_infermark"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let json = dir.path().join("cal.json");
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["calibrate", "--streams", "4"])
        .args(crate::support::QUICK_CALIBRATE)
        .arg("--json")
        .arg(&json)
        .arg("--cache-dir")
        .arg(dir.path())
        .current_dir(dir.path())
        .output()
        .expect("setpriv (util-linux) runs");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["network"]["private"], true, "{}", r["network"]);
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        r["network"]["namespace"],
        ours.display().to_string().as_str()
    );
    assert_eq!(r["levels"][0]["failed"], 0);
    assert_eq!(std::fs::metadata(&json).unwrap().uid(), 65534);
    let saved = dir.path().join("calibration/last.json");
    assert_eq!(std::fs::metadata(&saved).unwrap().uid(), 65534);
}
