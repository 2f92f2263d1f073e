//! `infermark verify` against the real llama.cpp engine: a true run is
//! never accused, a run edited to claim 30% more throughput is refuted, and
//! the benchmark that counts verdicts of honest runs (docs/verify.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::engines::World;
use crate::support::verdicts::{
    alone_in_a_tree, assert_statement, inflate, reruns_of, runs_of, verdicts,
};
use crate::support::{heavy, json, stderr, stdout};

fn llama_world() -> (World, String) {
    // The committed experiment: one engine thread and eight requests per
    // client, so medians are judged and a run takes about 12 s here.
    let w = World::new("llamacpp-smollm2.toml", |t| t);
    let id = point_ids(&w)
        .into_iter()
        .find(|(_, level)| level == "c=1")
        .map(|(id, _)| id)
        .expect("a c=1 point");
    (w, id)
}

/// The points of the world's experiment: (full id, load level such as
/// `c=1`), from `infermark spec points`.
fn point_ids(w: &World) -> Vec<(String, String)> {
    let o = w.infermark(&[
        "spec",
        "points",
        w.experiment.to_str().unwrap(),
        "--lock-dir",
        w.root().join("lockfiles").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let points: Vec<(String, String)> = stdout(&o)
        .lines()
        .filter_map(|l| {
            let id = l.split_whitespace().next()?.to_string();
            let level = l.split_whitespace().find(|x| x.starts_with("c="))?;
            Some((id, level.to_string()))
        })
        .collect();
    assert!(!points.is_empty(), "{}", stdout(&o));
    points
}

/// Runs infermark in the world at a raised scheduling priority (`nice -n
/// -15`; the engine inherits it), so the builds and tests that share this
/// machine do not move the engine's speed between the reported run and
/// its re-runs: what an operator does on a benchmark host. Where raising
/// priority is not permitted, `nice` says so and the test fails plainly.
fn niced(w: &World, args: &[&str]) -> std::process::Output {
    Command::new("nice")
        .args(["-n", "-15", env!("CARGO_BIN_EXE_infermark")])
        .args(args)
        .current_dir(w.root())
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Runs the point, first once into a results tree of its own that nothing
/// reads: the reported run is then measured on a machine already under
/// load, as its re-runs are. On a machine that comes out of idle faster
/// (seen here: the first run after a quiet spell was 13-26% faster than the
/// two right after it, in six of six attempts), a reported run measured
/// cold is always "not reproduced" by its warm re-runs.
fn run_llama(w: &World, id: &str, extra: &[&str]) -> PathBuf {
    let (cache, lockfiles) = (w.root().join("cache"), w.root().join("lockfiles"));
    let run_into = |results: &Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            w.experiment.to_str().unwrap(),
            "--point",
            id,
            "--results",
            results.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--lock-dir",
            lockfiles.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = niced(w, &args);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    };
    run_into(&w.root().join("warmup"), &[]);
    run_into(&w.results(), extra);
    let runs = w.runs("runs");
    assert_eq!(runs.len(), 1);
    runs[0].clone()
}

fn verify_llama(w: &World, run: &Path, extra: &[&str]) -> std::process::Output {
    let cache = w.root().join("cache");
    let mut args = vec![
        "verify",
        run.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    niced(w, &args)
}

/// A true run is never accused, at the point's default bands (±5%
/// throughputs, ±10% latencies). Here llama.cpp's runs vary by about 1%
/// (docs/verify.md), where a REPRODUCED is reached in about four
/// verifications of five, not always: so the claim is
/// INCONCLUSIVE-or-better, and an INCONCLUSIVE must say, for each undecided
/// metric, how many runs would likely decide it or that none would. One
/// attempt: the verdict is what it is.
#[test]
fn a_true_llamacpp_run_is_reproduced_or_inconclusive_never_not_reproduced() {
    let _heavy = heavy();
    let (w, id) = llama_world();
    let run = run_llama(&w, &id, &[]);
    let o = verify_llama(&w, &run, &[]);
    let shown = format!("{}{}", stdout(&o), stderr(&o));
    let last = verdicts(&run).pop().unwrap_or_else(|| panic!("{shown}"));
    let v = json(&last);
    match o.status.code() {
        Some(0) => assert_statement(&last, &run, reruns_of(&last), "REPRODUCED"),
        Some(6) => {
            assert_statement(&last, &run, reruns_of(&last), "INCONCLUSIVE");
            for m in v["predicate"]["metrics"].as_array().unwrap() {
                if m["verdict"] == "INCONCLUSIVE" {
                    let says = m["runs_to_decide"].is_u64()
                        || m["note"]
                            .as_str()
                            .is_some_and(|n| n.starts_with("more re-runs cannot decide it"));
                    assert!(says, "{m}\n{shown}");
                }
            }
        }
        other => panic!("a true run got exit {other:?}:\n{shown}"),
    }
    // Throughputs are always judged; the p99 of 16 requests never is.
    let judged = &v["predicate"]["policy"]["judged"];
    assert!(judged.to_string().contains("output-throughput"), "{v}");
    let not_judged = &v["predicate"]["policy"]["not_judged"];
    assert!(not_judged.to_string().contains("p99-ttft"), "{v}");
}

#[test]
fn a_llamacpp_run_edited_to_claim_30_percent_more_throughput_is_not_reproduced() {
    let _heavy = heavy();
    let (w, id) = llama_world();
    // Signed when run, and re-signed after the edit with the same trusted
    // key: the signature vouches for the claim, the measurement refutes it.
    let key = w.root().join("key");
    let g = w.infermark(&["key", "generate", "--out", key.to_str().unwrap()]);
    assert_eq!(g.status.code(), Some(0), "{}", stderr(&g));
    let public = w.root().join("key.pub");
    let run = run_llama(&w, &id, &["--sign-key", key.to_str().unwrap()]);
    inflate(&run, 1.3);
    let signer = infermark::provenance::sign::Signer::load(&key).unwrap();
    infermark::provenance::sign::sign_statement_file(&run.join("provenance.json"), &signer)
        .unwrap();
    let a = w.infermark(&[
        "audit",
        run.to_str().unwrap(),
        "--trust",
        public.to_str().unwrap(),
    ]);
    assert_eq!(a.status.code(), Some(0), "{}", stdout(&a));
    assert!(stdout(&a).contains("1 trusted"), "{}", stdout(&a));
    let o = verify_llama(
        &w,
        &run,
        &[
            "--trust",
            public.to_str().unwrap(),
            "--sign-key",
            key.to_str().unwrap(),
        ],
    );
    let shown = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(5), "{shown}");
    assert!(stdout(&o).contains("overall: NOT REPRODUCED"), "{shown}");
    // Refuted on the claim's side: what was measured is slower than
    // claimed, never faster; output throughput among the refuted.
    let verdict = verdicts(&run).pop().unwrap();
    let v = json(&verdict);
    let refuted: Vec<&serde_json::Value> = v["predicate"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["verdict"] == "NOT REPRODUCED")
        .collect();
    assert!(
        refuted.iter().any(|m| m["metric"] == "output-throughput"),
        "{v}"
    );
    for m in refuted {
        let ratio = m["ratio"].as_f64().unwrap();
        let throughput = m["metric"].as_str().unwrap().ends_with("-throughput");
        assert!(if throughput { ratio < 1.0 } else { ratio > 1.0 }, "{m}");
    }
    // The verdict is signed too.
    let status = infermark::provenance::sign::check_envelope(
        &verdict,
        &[infermark::provenance::sign::load_public_key(&public).unwrap()],
    );
    assert!(
        matches!(
            status,
            infermark::provenance::sign::SignatureStatus::Trusted { .. }
        ),
        "{status:?}"
    );
}

/// How often an honest llama.cpp run is REPRODUCED here: for each point of
/// the CPU experiment as committed (default bands, `--repeats auto`), one
/// reported run (after one warm-up run), then `INFERMARK_BENCH_VERIFICATIONS`
/// (default 20) verifications of it, each in a tree of its own so none sees
/// another's re-runs. Prints the verdict counts and the median re-runs to a
/// verdict; the figures go in docs/verify.md.
#[test]
#[ignore = "benchmark, prints figures (about 30 minutes): cargo test --release --test engine -- --ignored --nocapture verify::bench_honest_llamacpp_verifications"]
fn bench_honest_llamacpp_verifications() {
    let n: usize = std::env::var("INFERMARK_BENCH_VERIFICATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let w = World::new("llamacpp-smollm2.toml", |t| t);
    let points = point_ids(&w);
    let cache = w.root().join("cache");
    for (id, level) in points {
        let (mut reproduced, mut inconclusive, mut refuted) = (0, 0, 0);
        let mut reruns = Vec::new();
        let run_into = |results: &str| {
            let o = w.infermark(&[
                "run",
                w.experiment.to_str().unwrap(),
                "--point",
                &id,
                "--results",
                results,
                "--cache-dir",
                cache.to_str().unwrap(),
            ]);
            assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        };
        run_into(w.root().join(format!("warmup-{id}")).to_str().unwrap());
        let results = w.root().join(format!("reported-{id}"));
        run_into(results.to_str().unwrap());
        let reported = runs_of(&results).pop().unwrap();
        for i in 0..n {
            let (_tree, copy) = alone_in_a_tree(&reported);
            let o = w.infermark(&[
                "verify",
                copy.to_str().unwrap(),
                "--cache-dir",
                cache.to_str().unwrap(),
            ]);
            match o.status.code() {
                Some(0) => reproduced += 1,
                Some(6) => inconclusive += 1,
                Some(5) => refuted += 1,
                other => panic!("exit {other:?}: {}{}", stdout(&o), stderr(&o)),
            }
            let made = reruns_of(&verdicts(&copy).pop().unwrap());
            reruns.push(made);
            eprintln!(
                "{level} verification {}: exit {:?}, {made} re-runs",
                i + 1,
                o.status.code()
            );
        }
        reruns.sort_unstable();
        println!(
            "{level}: {n} verifications: {reproduced} REPRODUCED, {inconclusive} INCONCLUSIVE, \
             {refuted} NOT REPRODUCED; median re-runs {}",
            reruns[reruns.len() / 2]
        );
    }
}
