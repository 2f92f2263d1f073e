//! `infermark report` over a real results tree: two sim experiments (two
//! series, two load levels each) measured by `nightly` on two nights, and
//! one run verified, then the site checked in headless Chromium, by a link
//! checker, and against its JSON Schemas and OpenAPI document.
//!
//! The tree is measured once per test binary (it takes a few seconds) and
//! each test builds its own site from it, or from its own copy when it
//! changes the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::chromium::{console_lines, headless};
use crate::support::night::{FAST, Night, runs, sim_experiment};
use crate::support::{infermark, json, stderr, stdout};

const NIGHTS: [&str; 2] = ["2026-01-01", "2026-01-02"];

/// The measured tree, shared read-only by the tests.
struct Fixture {
    night: Night,
    verified_point: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let n = Night::new();
        n.add("sim-a.toml", &sim_experiment("sim-a", FAST));
        n.add(
            "sim-b.toml",
            &sim_experiment("sim-b", r#"["--ttft-ms", "8", "--itl-ms", "2"]"#),
        );
        let results = n.results();
        for night in NIGHTS {
            let o = n.nightly(&results, &["--night", night]);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        }
        // One verdict, on the first run of the tree.
        let run = runs(&results, "runs")[0].clone();
        let o = infermark(
            n.root(),
            &["verify", run.to_str().unwrap(), "--repeats", "1"],
        );
        assert!(
            matches!(o.status.code(), Some(0 | 5 | 6)),
            "{}{}",
            stdout(&o),
            stderr(&o)
        );
        let point = run.ancestors().nth(2).unwrap();
        Fixture {
            verified_point: point.file_name().unwrap().to_string_lossy().into_owned(),
            night: n,
        }
    })
}

fn report(results: &Path, site: &Path) -> std::process::Output {
    infermark(
        results.parent().unwrap(),
        &[
            "report",
            "--results",
            results.to_str().unwrap(),
            "--out",
            site.to_str().unwrap(),
        ],
    )
}

fn built_site(results: &Path) -> tempfile::TempDir {
    let site = tempfile::tempdir().unwrap();
    let o = report(results, site.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    site
}

/// Every file under `dir`, `/`-separated, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn html_pages(site: &Path) -> Vec<String> {
    files(site)
        .into_iter()
        .filter(|f| f.ends_with(".html") && !f.starts_with(".infermark-site/"))
        .collect()
}

/// Values of every `attr="..."` in `html`.
fn attr_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            rest[..rest.find('"').unwrap()].replace("&amp;", "&")
        })
        .collect()
}

// --- Chromium ---------------------------------------------------------------

/// The DOM of `page` after its scripts ran.
fn dump_dom(page: &Path) -> String {
    let o = headless(&["--dump-dom"], &format!("file://{}", page.display()));
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// The console messages Chromium logged while loading every page of
/// `pages` (each in a frame of one harness page). The site's own script
/// never writes to the console, so any message is a fault.
fn console_messages(dir: &Path, pages: &[PathBuf]) -> Vec<String> {
    let mut harness = String::from("<!doctype html><html><body>");
    for p in pages {
        harness.push_str(&format!("<iframe src=\"file://{}\"></iframe>", p.display()));
    }
    harness.push_str("</body></html>");
    let path = dir.join("harness.html");
    std::fs::write(&path, harness).unwrap();
    let o = headless(&["--dump-dom"], &format!("file://{}", path.display()));
    assert!(o.status.success(), "{}", stderr(&o));
    console_lines(&stderr(&o))
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts/report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn chromium_loads_every_page_from_file_urls_without_a_console_message() {
    let f = fixture();
    let site = built_site(&f.night.results());
    let scratch = tempfile::tempdir().unwrap();
    // The detector itself: a page with an uncaught error is caught.
    let broken = scratch.path().join("broken.html");
    std::fs::write(
        &broken,
        "<!doctype html><script>undefinedFunction();</script>",
    )
    .unwrap();
    let caught = console_messages(scratch.path(), &[broken]);
    assert!(
        caught.iter().any(|l| l.contains("undefinedFunction")),
        "the console check misses errors: {caught:?}"
    );
    let pages: Vec<PathBuf> = html_pages(site.path())
        .iter()
        .map(|p| site.path().join(p))
        .collect();
    assert!(pages.len() >= 10, "{pages:?}");
    let messages = console_messages(scratch.path(), &pages);
    assert!(messages.is_empty(), "{messages:#?}");
}

#[test]
fn each_pareto_chart_has_one_mark_per_run_it_plots() {
    let f = fixture();
    let results = f.night.results();
    let site = built_site(&results);
    // What the tree holds, counted from its files: per night, the night's
    // completed runs; on the latest page, one per series — here each point
    // is its own series (the sim has no moving pins), so one per point.
    let mut per_night = Vec::new();
    for night in NIGHTS {
        let record = json(&results.join(format!("nights/{night}/night.json")));
        let done = record["points"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"] == "completed")
            .count();
        per_night.push((night, done));
    }
    let points = std::fs::read_dir(results.join("points")).unwrap().count();
    let pareto: Vec<String> = html_pages(site.path())
        .into_iter()
        .filter(|p| p.starts_with("pareto/"))
        .collect();
    // Both sim experiments share model and workload: one Pareto page set.
    assert_eq!(pareto.len(), 1 + NIGHTS.len(), "{pareto:?}");
    for page in &pareto {
        let dom = dump_dom(&site.path().join(page));
        let expected = match per_night
            .iter()
            .find(|(n, _)| page.ends_with(&format!("night-{n}.html")))
        {
            Some((_, done)) => *done,
            None => points,
        };
        let charts: Vec<&str> = dom.split("<svg class=\"chart\"").skip(1).collect();
        assert_eq!(charts.len(), 2, "{page}");
        for chart in charts {
            let chart = &chart[..chart.find("</svg>").unwrap()];
            let marks = chart.matches("class=\"mark ").count();
            assert_eq!(marks, expected, "{page}");
            // Every mark has its tooltip and its link to the point.
            assert_eq!(chart.matches("<title>point ").count(), expected, "{page}");
            assert!(
                attr_values(chart, "href")
                    .iter()
                    .all(|h| h.contains("points/") && h.ends_with("/index.html"))
            );
        }
    }
}

#[test]
fn a_point_page_shows_its_id_pins_and_verdicts_and_screenshots_are_written() {
    let f = fixture();
    let results = f.night.results();
    let site = built_site(&results);
    let id = &f.verified_point;
    let page = site.path().join(format!("points/{id}/index.html"));
    let dom = dump_dom(&page);
    assert!(dom.contains(id.as_str()), "the full id");
    for pin in [
        "hardware class",
        "image digest",
        "model commit",
        "cpu",
        "sim (process)",
    ] {
        assert!(dom.contains(pin), "{pin}");
    }
    assert!(dom.contains(&format!("infermark verify {id}")));
    let verdicts = std::fs::read_dir(results.join(format!("points/{id}/verdicts"))).unwrap();
    for v in verdicts.flatten() {
        let statement = json(&v.path().join("verdict.json"));
        let result = statement["predicate"]["verification_result"]
            .as_str()
            .unwrap();
        let vid = v.file_name().to_string_lossy().into_owned();
        let heading = dom
            .split("<h3 class=\"verdict\">")
            .find(|s| s.starts_with(&vid))
            .unwrap_or_else(|| panic!("verdict {vid} not shown"));
        assert!(heading.contains(result), "{vid}: {result}");
        assert!(heading.contains("median-ttft"), "the metrics table");
    }
    let out = artifacts();
    let pareto = html_pages(site.path())
        .into_iter()
        .find(|p| p.starts_with("pareto/") && p.ends_with("/index.html"))
        .unwrap();
    for (name, rel) in [
        ("home.png", "index.html".to_string()),
        ("pareto.png", pareto),
        ("point.png", format!("points/{id}/index.html")),
    ] {
        let png = out.join(name);
        let _ = std::fs::remove_file(&png);
        let o = headless(
            &[
                &format!("--screenshot={}", png.display()),
                "--window-size=1280,1600",
            ],
            &format!("file://{}", site.path().join(rel).display()),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let bytes = std::fs::read(&png).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{name}"
        );
    }
}

#[test]
fn every_internal_link_and_source_of_the_site_resolves_to_a_file() {
    let f = fixture();
    let site = built_site(&f.night.results());
    let mut checked = 0;
    let mut dead = BTreeSet::new();
    for page in html_pages(site.path()) {
        let html = std::fs::read_to_string(site.path().join(&page)).unwrap();
        let dir = Path::new(&page).parent().unwrap().to_path_buf();
        for target in attr_values(&html, "href")
            .into_iter()
            .chain(attr_values(&html, "src"))
        {
            assert!(
                !target.contains("://") && !target.starts_with("//"),
                "{page}: {target}: the site fetches nothing at view time"
            );
            let path = target.split(['#', '?']).next().unwrap();
            if path.is_empty() {
                continue;
            }
            // Resolve `..` lexically against the page's directory.
            let mut parts: Vec<String> = dir
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            for c in path.split('/') {
                match c {
                    ".." => {
                        assert!(parts.pop().is_some(), "{page}: {target} leaves the site");
                    }
                    "." | "" => {}
                    c => parts.push(c.to_string()),
                }
            }
            checked += 1;
            if !site.path().join(parts.join("/")).is_file() {
                dead.insert(format!("{page} -> {target}"));
            }
        }
    }
    assert!(checked > 100, "{checked} links");
    assert!(dead.is_empty(), "dead links: {dead:#?}");
}

const VALIDATE: &str = r#"
import glob, json, os, sys
try:
    import jsonschema
    from openapi_spec_validator import validate
except ImportError as e:
    sys.exit(f"{e}: pip install -r tests/setup/site-validators.txt (.ci/setup installs them)")
api = sys.argv[1]
def load(p):
    with open(p) as f:
        return json.load(f)
docs = {"index.json": [os.path.join(api, "index.json")],
        "night.json": glob.glob(os.path.join(api, "nights", "*.json")),
        "point.json": glob.glob(os.path.join(api, "points", "*.json")),
        "run.json": glob.glob(os.path.join(api, "runs", "*.json"))}
count = 0
for schema_name, paths in docs.items():
    schema = load(os.path.join(api, "schema", schema_name))
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    if not paths:
        sys.exit(f"no documents for {schema_name}")
    for p in paths:
        errors = list(v.iter_errors(load(p)))
        if errors:
            sys.exit(f"{p}: {errors[0].message} at {list(errors[0].absolute_path)}")
        count += 1
validate(load(os.path.join(api, "openapi.json")))
print(f"validated {count} documents and the OpenAPI document")
"#;

#[test]
fn every_api_document_validates_against_its_schema_and_the_openapi_document_is_valid() {
    let f = fixture();
    let site = built_site(&f.night.results());
    let o = Command::new("python3")
        .args(["-c", VALIDATE])
        .arg(site.path().join("api/v1"))
        .output()
        .expect("python3 runs (.ci/setup installs it)");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let runs = files(&site.path().join("api/v1/runs")).len();
    assert!(
        stdout(&o).contains(&format!("validated {} documents", 1 + 2 + 4 + runs)),
        "{}",
        stdout(&o)
    );
    // A document that breaks its schema is refused: the check can fail.
    let index = site.path().join("api/v1/index.json");
    let mut doc = json(&index);
    doc["points"][0]["id"] = serde_json::json!("not a point id");
    std::fs::write(&index, doc.to_string()).unwrap();
    let o = Command::new("python3")
        .args(["-c", VALIDATE])
        .arg(site.path().join("api/v1"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", stdout(&o));
}

#[test]
fn exports_have_one_row_per_run_with_the_same_columns() {
    let f = fixture();
    let results = f.night.results();
    let site = built_site(&results);
    let all_runs = runs(&results, "runs").len() + runs(&results, "failed").len();
    let csv = std::fs::read_to_string(site.path().join("runs.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..3], ["point_id", "run_id", "status"]);
    assert!(header.contains(&"throughput.output_tokens_per_s"));
    assert!(header.contains(&"latency.e2el.p99_ms"));
    assert_eq!(lines.count(), all_runs);
    let jsonl = std::fs::read_to_string(site.path().join("runs.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), all_runs);
    for line in jsonl.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: BTreeSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, header.iter().copied().collect::<BTreeSet<_>>());
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dest) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dest);
        } else {
            std::fs::copy(&src, &dest).unwrap();
        }
    }
}

fn written(o: &std::process::Output) -> usize {
    let out = stdout(o);
    let at = out
        .find(" files written")
        .unwrap_or_else(|| panic!("{out}"));
    out[..at].rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_second_build_writes_nothing_and_a_new_night_rewrites_only_what_it_changed() {
    let f = fixture();
    let n = Night::new();
    for e in std::fs::read_dir(f.night.root().join("experiments/cpu"))
        .unwrap()
        .flatten()
    {
        n.add(
            &e.file_name().to_string_lossy(),
            &std::fs::read_to_string(e.path()).unwrap(),
        );
    }
    let results = n.results();
    copy_dir(&f.night.results(), &results);
    let site = built_site(&results);
    let o = report(&results, site.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(written(&o), 0, "{}", stdout(&o));

    // Every write replaces the file (a new inode): what changed inode was
    // written.
    let inodes = |site: &Path| -> BTreeMap<String, u64> {
        files(site)
            .into_iter()
            .filter(|f| !f.starts_with(".infermark-site/"))
            .map(|f| {
                let ino = std::fs::metadata(site.join(&f)).unwrap().ino();
                (f, ino)
            })
            .collect()
    };
    let before = inodes(site.path());
    let o = n.nightly(&results, &["--night", "2026-01-03"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = report(&results, site.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after = inodes(site.path());
    let rewritten: Vec<&String> = after
        .iter()
        .filter(|(f, ino)| before.get(*f) != Some(ino))
        .map(|(f, _)| f)
        .collect();
    assert_eq!(rewritten.len(), written(&o), "{}", stdout(&o));
    let new_runs: Vec<String> = json(&results.join("nights/2026-01-03/night.json"))["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(new_runs.len(), 4);
    for must in [
        "nights/2026-01-03/index.html".to_string(),
        "api/v1/nights/2026-01-03.json".to_string(),
        "index.html".to_string(),
        "runs.csv".to_string(),
    ]
    .into_iter()
    .chain(new_runs.iter().map(|r| format!("runs/{r}/index.html")))
    {
        assert!(
            rewritten.contains(&&must),
            "{must} not written: {rewritten:?}"
        );
    }
    // Untouched: every page, document and raw copy of an old run, the old
    // nights' pages (but the last night's Pareto page, which gains a link to
    // the next night), the schemas.
    let is_new = |f: &str| new_runs.iter().any(|r| f.contains(r.as_str()));
    for f in rewritten
        .iter()
        .filter(|f| !f.ends_with("/night-2026-01-02.html"))
    {
        let old_kind =
            ((f.starts_with("runs/") || f.starts_with("api/v1/runs/") || f.contains("/runs/"))
                && !is_new(f))
                || f.contains("2026-01-01")
                || f.contains("2026-01-02")
                || f.starts_with("api/v1/schema/")
                || f.starts_with("assets/");
        assert!(
            !old_kind,
            "{f} was rewritten though the new night did not change it"
        );
    }
}

#[test]
fn a_missing_results_dir_or_a_symlinked_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = report(&dir.path().join("absent"), &dir.path().join("site"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("absent: no results tree there"),
        "{}",
        stderr(&o)
    );

    let f = fixture();
    let results = dir.path().join("results");
    copy_dir(&f.night.results(), &results);
    let run = runs(&results, "runs")[0].clone();
    let summary = run.join("summary.json");
    let elsewhere = dir.path().join("summary-elsewhere.json");
    std::fs::rename(&summary, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &summary).unwrap();
    let o = report(&results, &dir.path().join("site"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{}: a symbolic link", summary.display())),
        "{}",
        stderr(&o)
    );
}

// --- the benchmark -------------------------------------------------------

/// Writes `nights` nights of `points` runs each into `results`, from the
/// template run's records scaled per run (so figures differ), each run
/// with its summary and statement as a real run has them.
fn synthesise(
    results: &Path,
    template: &Path,
    points: &[infermark::spec::Point],
    nights: std::ops::Range<usize>,
) {
    use infermark::metrics::{self, SummaryContext};
    use infermark::night::ledger::{NightPoint, NightRecord, NightStatus, night_path};
    use infermark::provenance::{RunPredicate, Statement};
    let records = metrics::read_records(&template.join("requests.jsonl")).unwrap();
    let environment = std::fs::read(template.join("environment.json")).unwrap();
    let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
    for night in nights {
        let name = format!("2027-{:02}-{:02}", 1 + night / 28, 1 + night % 28);
        let mut record = NightRecord::new(&name);
        record.hardware_classes = vec!["cpu".to_string()];
        for (i, point) in points.iter().enumerate() {
            let point_dir = results.join("points").join(point.id());
            std::fs::create_dir_all(&point_dir).unwrap();
            std::fs::write(point_dir.join("point.json"), point.canonical_bytes()).unwrap();
            let run_id = format!("20270101T{:06}Z-{:08x}", night, i);
            let dir = point_dir.join("runs").join(&run_id);
            std::fs::create_dir_all(&dir).unwrap();
            let f = 0.8 + ((night * 31 + i * 17) % 45) as f64 / 100.0;
            let scale = |ns: u64| (ns as f64 * f) as u64;
            let mut scaled = records.clone();
            for r in &mut scaled {
                r.scheduled_ns = scale(r.scheduled_ns);
                r.sent_ns = scale(r.sent_ns);
                r.stale_sent_ns = r.stale_sent_ns.map(scale);
                r.first_token_ns = r.first_token_ns.map(scale);
                r.end_ns = scale(r.end_ns);
                for c in &mut r.chunks {
                    c.t_ns = scale(c.t_ns);
                    c.server_ns = c.server_ns.map(scale);
                }
            }
            let summary = metrics::summarize(
                &scaled,
                &SummaryContext {
                    point_id: point.id().to_string(),
                    gpus: 0,
                    slo: Default::default(),
                },
            );
            metrics::write_records(&dir.join("requests.jsonl"), &scaled).unwrap();
            metrics::write_summary(&dir.join("summary.json"), &summary).unwrap();
            std::fs::write(dir.join("environment.json"), &environment).unwrap();
            std::fs::write(dir.join("engine.log"), "synthesised\n").unwrap();
            let started = t0 + std::time::Duration::from_secs((night * 1000 + i) as u64);
            let predicate = RunPredicate::new(point, &run_id, started, started, false);
            let statement = Statement::for_run(&dir, &point_dir, predicate).unwrap();
            std::fs::write(dir.join("provenance.json"), statement.to_json().unwrap()).unwrap();
            record.points.push(NightPoint {
                id: point.id().to_string(),
                group: format!("g{}", i % 2),
                hardware: "cpu".to_string(),
                experiment: format!("sim-{}", i % 2),
                load: "synthesised".to_string(),
                status: NightStatus::Completed,
                run_id: Some(run_id),
                reason: None,
            });
        }
        record.save(&night_path(results, &name)).unwrap();
    }
}

#[test]
#[ignore = "benchmark, prints figures: cargo test --release --test it -- --ignored --nocapture report::bench_"]
fn bench_report_of_10000_runs_full_and_after_one_night() {
    let f = fixture();
    let template = runs(&f.night.results(), "runs")[0].clone();
    // 100 points: two configurations × 50 load levels, 100 nights of each.
    let mut points = Vec::new();
    for (name, args) in [
        ("sim-a", FAST),
        ("sim-b", r#"["--ttft-ms", "8", "--itl-ms", "2"]"#),
    ] {
        let levels: Vec<String> = (1..=50).map(|c| c.to_string()).collect();
        let text = sim_experiment(name, args).replace(
            "concurrency = [1, 4]",
            &format!("concurrency = [{}]", levels.join(", ")),
        );
        let exp = infermark::spec::parse(Path::new("bench.toml"), &text).unwrap();
        points.extend(exp.points(&infermark::spec::NoPins).unwrap());
    }
    assert_eq!(points.len(), 100);
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let started = std::time::Instant::now();
    synthesise(&results, &template, &points, 0..100);
    println!(
        "synthesised 10000 runs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let opts = infermark::site::BuildOptions {
        results: results.clone(),
        out: dir.path().join("site"),
        trust: Vec::new(),
    };
    let t = std::time::Instant::now();
    let full = infermark::site::build(&opts).unwrap();
    let full_s = t.elapsed().as_secs_f64();
    assert_eq!(full.runs, 10_000);
    synthesise(&results, &template, &points, 100..101);
    let t = std::time::Instant::now();
    let incremental = infermark::site::build(&opts).unwrap();
    let incremental_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let unchanged = infermark::site::build(&opts).unwrap();
    let unchanged_s = t.elapsed().as_secs_f64();
    let (page, size) = full.largest_page.clone().unwrap();
    let (page2, size2) = incremental.largest_page.clone().unwrap();
    println!(
        "full build: {full_s:.2} s, {} files written, {} runs derived",
        full.write.written.len(),
        full.derived_runs
    );
    println!(
        "after one more night (100 runs): {incremental_s:.2} s, {} files written, {} removed, {} runs derived",
        incremental.write.written.len(),
        incremental.write.removed.len(),
        incremental.derived_runs
    );
    println!(
        "nothing changed: {unchanged_s:.2} s, {} files written",
        unchanged.write.written.len()
    );
    println!("largest page: {page} {size} bytes; after the new night: {page2} {size2} bytes");
}
