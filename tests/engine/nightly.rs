//! A night of CPU experiments end to end with the real llama.cpp server as
//! a process beside two sim experiments: every point run, the night
//! recorded, resumed, and another night id run again.

use crate::support::night::{FAST, Night, groups, night_points, runs, sim_experiment};
use crate::support::{infermark, json, stderr, stdout};

#[test]
fn a_cpu_night_runs_every_point_records_the_night_and_resumes() {
    let _heavy = crate::support::heavy();
    let n = Night::new();
    n.add("sim-a.toml", &sim_experiment("sim-a", FAST));
    n.add(
        "sim-b.toml",
        &sim_experiment("sim-b", r#"["--ttft-ms", "2", "--itl-ms", "1"]"#),
    );
    n.add_llama();
    let results = n.results();

    let o = n.nightly(&results, &["--night", "2026-11-24"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    // sim-a and sim-b at two load levels each, llama.cpp at one.
    let points = night_points(&results, "2026-11-24");
    assert_eq!(points.len(), 5, "{points:#?}");
    assert!(
        points.iter().all(|p| p["status"] == "completed"),
        "{points:#?}"
    );
    assert!(points.iter().all(|p| p["hardware"] == "cpu"));
    let record = json(&results.join("nights/2026-11-24/night.json"));
    let files_lock = std::fs::read(n.root().join("lockfiles/files.lock")).unwrap();
    assert_eq!(
        record["locks"]["files.lock"],
        format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&files_lock)),
        "the record pins the lock by digest"
    );
    // Three engine starts, each its own group, as `plan` names them.
    let mut in_record: Vec<&str> = points
        .iter()
        .map(|p| p["group"].as_str().unwrap())
        .collect();
    in_record.sort();
    in_record.dedup();
    let mut planned = groups(&n);
    planned.sort();
    assert_eq!(in_record, planned);
    assert_eq!(planned.len(), 3);
    // Every run of the record is a stored, auditable result.
    let completed = runs(&results, "runs");
    assert_eq!(completed.len(), 5);
    for p in &points {
        let dir = results
            .join("points")
            .join(p["id"].as_str().unwrap())
            .join("runs")
            .join(p["run_id"].as_str().unwrap());
        assert!(dir.join("provenance.json").is_file(), "{}", dir.display());
    }
    let llama = points
        .iter()
        .find(|p| p["experiment"] == "llamacpp-smollm2")
        .expect("the llama.cpp point is in the night");
    assert_eq!(llama["status"], "completed");
    let table = stdout(&o);
    assert!(
        table.contains("5 point(s): 5 completed, 0 failed"),
        "{table}"
    );
    let audit = infermark(n.root(), &["audit", results.to_str().unwrap()]);
    assert_eq!(audit.status.code(), Some(0), "{}", stdout(&audit));

    // The same night again: everything was done, nothing runs.
    let again = n.nightly(&results, &["--night", "2026-11-24"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(runs(&results, "runs"), completed, "no new runs");
    let out = stdout(&again);
    assert_eq!(out.matches("skip point").count(), 5, "{out}");
    assert!(out.contains("0 ran, 5 skipped"), "{out}");
    assert!(!stderr(&again).contains("starting "), "no engine started");

    // Another night id is another night: it runs again (one group only).
    let one = &planned[0];
    let other = n.nightly(&results, &["--night", "2026-11-25", "--only", one]);
    assert_eq!(other.status.code(), Some(0), "{}", stderr(&other));
    let pts = night_points(&results, "2026-11-25");
    assert!(!pts.is_empty() && pts.iter().all(|p| p["group"] == one.as_str()));
    assert_eq!(runs(&results, "runs").len(), 5 + pts.len());
}
