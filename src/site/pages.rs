//! The HTML pages: home, one Pareto page per model × workload (and one per
//! night of it), one page per point, per run and per night.
//!
//! A point's page lists its runs and verdicts; each run has a page of its
//! own (summary, percentiles, CDFs, environment, provenance), so that no
//! page grows with a point's history beyond one table row per run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::html::{
    self, Page, esc, href, kv_rows, link, num, num_cell, page, point_page, raw_file, run_page,
    table,
};
use super::model::{NightEntry, PointEntry, RunEntry, Tree};
use super::svg::{Cdf, Mark, PALETTE_SIZE, Scatter, Series};
use crate::metrics::stats::LatencyStats;
use crate::night::ledger::NightStatus;
use crate::store::RunStatus;

/// A point of a night, as [`View::night_rows`] finds it.
pub struct NightRow<'a> {
    pub np: &'a crate::night::ledger::NightPoint,
    pub point: Option<&'a PointEntry>,
    pub run: Option<&'a RunEntry>,
    pub previous: Option<&'a RunEntry>,
}

/// The tree with the lookups the pages need.
pub struct View<'a> {
    pub tree: &'a Tree,
    /// Workload key → indices of its points.
    pub workloads: BTreeMap<String, Vec<usize>>,
    /// Series → (night, point index, run index), by night.
    history: BTreeMap<&'a str, Vec<(&'a str, usize, usize)>>,
    by_id: BTreeMap<&'a str, usize>,
}

impl<'a> View<'a> {
    pub fn new(tree: &'a Tree) -> View<'a> {
        let mut workloads: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut history: BTreeMap<&str, Vec<(&str, usize, usize)>> = BTreeMap::new();
        for (pi, p) in tree.points.iter().enumerate() {
            workloads.entry(p.workload_key()).or_default().push(pi);
            for (ri, r) in p.runs.iter().enumerate() {
                if let (Some(n), RunStatus::Completed) = (&r.night, r.status) {
                    history.entry(&p.series).or_default().push((n, pi, ri));
                }
            }
        }
        for h in history.values_mut() {
            h.sort();
        }
        let by_id = tree
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i))
            .collect();
        View {
            tree,
            workloads,
            history,
            by_id,
        }
    }

    /// Each point of a night record with its point and run, when the tree
    /// holds them, and the same series' run in the latest earlier night.
    pub fn night_rows(&self, n: &'a NightEntry) -> Vec<NightRow<'a>> {
        n.record
            .points
            .iter()
            .map(|np| {
                let point = self.point(&np.id);
                let run = point.and_then(|p| {
                    p.runs
                        .iter()
                        .find(|r| Some(&r.run_id) == np.run_id.as_ref())
                });
                let previous = point.and_then(|p| self.previous(&p.series, &n.night));
                NightRow {
                    np,
                    point,
                    run,
                    previous,
                }
            })
            .collect()
    }

    /// The point of `id`.
    pub fn point(&self, id: &str) -> Option<&'a PointEntry> {
        self.by_id.get(id).map(|&i| &self.tree.points[i])
    }

    pub fn workload_slug(key: &str) -> String {
        html::slug(key)
    }

    /// The same series' run in the latest night before `night`.
    pub fn previous(&self, series: &str, night: &str) -> Option<&'a RunEntry> {
        let h = self.history.get(series)?;
        h.iter()
            .rev()
            .find(|(n, _, _)| *n < night)
            .map(|&(_, pi, ri)| &self.tree.points[pi].runs[ri])
    }

    fn nights_of_workload(&self, key: &str) -> Vec<&'a str> {
        let mut nights: Vec<&str> = self.workloads[key]
            .iter()
            .flat_map(|&pi| self.tree.points[pi].runs.iter())
            .filter_map(|r| r.night.as_deref())
            .collect();
        nights.sort();
        nights.dedup();
        nights
    }
}

/// Links to a stored file's copy and to its API document.
fn sources(from: &str, raw: &str, api: &str, what: &str) -> String {
    let name = raw.rsplit('/').next().unwrap_or(raw);
    format!(
        "{} · {}",
        link(from, &raw_file(raw), name),
        link(from, api, &format!("this {what} in the JSON API"))
    )
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn status_cell(status: RunStatus) -> String {
    match status {
        RunStatus::Completed => r#"<td class="ok">completed</td>"#.to_string(),
        RunStatus::Failed => r#"<td class="bad">failed</td>"#.to_string(),
    }
}

fn audit_text(r: &RunEntry) -> (String, &'static str) {
    match &r.derived.audit {
        None => ("not a result".to_string(), "muted"),
        Some(p) if p.is_empty() => ("clean".to_string(), "ok"),
        Some(p) => (format!("{} problems", p.len()), "bad"),
    }
}

/// Every page of the site.
pub fn all(view: &View) -> Vec<Page> {
    let mut pages = vec![home(view)];
    for key in view.workloads.keys() {
        pages.push(pareto(view, key, None));
        for night in view.nights_of_workload(key) {
            pages.push(pareto(view, key, Some(night)));
        }
    }
    for p in &view.tree.points {
        pages.push(point(view, p));
        for r in &p.runs {
            pages.push(run(p, r));
        }
    }
    for n in &view.tree.nights {
        pages.push(night(view, n));
    }
    pages
}

fn home(view: &View) -> Page {
    let path = "index.html";
    let tree = view.tree;
    let mut body = String::new();
    // The latest night of each hardware class, counting that class's points.
    let mut latest: BTreeMap<&str, &NightEntry> = BTreeMap::new();
    for n in &tree.nights {
        for class in &n.record.hardware_classes {
            latest.insert(class, n);
        }
    }
    let rows: Vec<String> = latest
        .iter()
        .map(|(class, n)| {
            let of_class = n.record.points.iter().filter(|p| p.hardware == *class);
            let (mut done, mut failed) = (0, 0);
            for p in of_class {
                match p.status {
                    NightStatus::Completed => done += 1,
                    NightStatus::Failed => failed += 1,
                }
            }
            format!(
                "<td>{}</td><td>{}</td><td class=\"n\">{done}</td><td class=\"n\">{failed}</td>",
                esc(class),
                link(path, &html::night_page(&n.night), &n.night)
            )
        })
        .collect();
    body.push_str(&table(
        "Latest night per hardware class",
        &["hardware", "night", "completed", "failed"],
        &rows,
        false,
    ));
    let rows: Vec<String> = tree
        .nights
        .iter()
        .rev()
        .map(|n| {
            let (done, failed) = n.counts();
            format!(
                "<td>{}</td><td>{}</td><td class=\"n\">{done}</td><td class=\"n\">{failed}</td>",
                link(path, &html::night_page(&n.night), &n.night),
                esc(&n.record.hardware_classes.join(", "))
            )
        })
        .collect();
    body.push_str(&table(
        "Nights",
        &["night", "hardware", "completed", "failed"],
        &rows,
        true,
    ));
    body.push_str("<h2>Experiments</h2>\n<p>Every point, grouped by model × workload × hardware. Each model × workload has a Pareto page.</p>\n");
    for (key, points) in &view.workloads {
        let slug = View::workload_slug(key);
        let mut by_hw: BTreeMap<&str, Vec<&PointEntry>> = BTreeMap::new();
        for &pi in points {
            let p = &tree.points[pi];
            by_hw.entry(&p.hardware).or_default().push(p);
        }
        let _ = writeln!(
            body,
            "<h3>{}</h3><p>{}</p>",
            esc(key),
            link(path, &html::pareto_page(&slug), "Pareto charts")
        );
        for (hw, ps) in by_hw {
            let rows: Vec<String> = ps
                .iter()
                .map(|p| {
                    let done = p.runs.iter().filter(|r| r.status == RunStatus::Completed).count();
                    let latest = p.latest().and_then(RunEntry::figures);
                    format!(
                        "<td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{done}</td><td class=\"n\">{}</td>{}{}",
                        link(path, &point_page(&p.id), short(&p.id)),
                        esc(&p.config_label),
                        esc(&p.load),
                        p.runs.len() - done,
                        num_cell(latest.map(|f| f.output_tok_s_per_gpu), 1),
                        num_cell(latest.map(|f| f.tok_s_per_user), 1),
                    )
                })
                .collect();
            body.push_str(&table(
                &format!("{key} on {hw}"),
                &[
                    "point",
                    "engine · hardware · configuration",
                    "load",
                    "completed runs",
                    "failed runs",
                    "latest output tok/s/GPU",
                    "latest tok/s/user",
                ],
                &rows,
                true,
            ));
        }
    }
    if tree.points.is_empty() {
        body.push_str("<p>The results tree holds no point yet.</p>");
    }
    page(path, "Benchmark results", &body)
}

/// The runs a Pareto page plots: with a night, that night's runs; without,
/// the latest completed run of each series.
fn pareto_runs<'a>(
    view: &View<'a>,
    key: &str,
    night: Option<&str>,
) -> Vec<(&'a PointEntry, &'a RunEntry)> {
    let tree = view.tree;
    let mut out = Vec::new();
    match night {
        Some(n) => {
            for &pi in &view.workloads[key] {
                let p = &tree.points[pi];
                for r in &p.runs {
                    if r.night.as_deref() == Some(n) && r.figures().is_some() {
                        out.push((p, r));
                    }
                }
            }
        }
        None => {
            let mut latest: BTreeMap<&str, (&PointEntry, &RunEntry)> = BTreeMap::new();
            for &pi in &view.workloads[key] {
                let p = &tree.points[pi];
                for r in p.runs.iter().filter(|r| r.figures().is_some()) {
                    let e = latest.entry(&p.series).or_insert((p, r));
                    if r.run_id > e.1.run_id {
                        *e = (p, r);
                    }
                }
            }
            out.extend(latest.into_values());
        }
    }
    out
}

/// Whether a Pareto page's marks are each run of a night or the latest of
/// each series; the API and the tests count marks the same way.
pub fn pareto_mark_count(view: &View, key: &str, night: Option<&str>) -> usize {
    pareto_runs(view, key, night).len()
}

/// A run on a chart, with its point.
type Plotted<'a> = (&'a PointEntry, &'a RunEntry);

fn pareto(view: &View, key: &str, night: Option<&str>) -> Page {
    let slug = View::workload_slug(key);
    let path = match night {
        Some(n) => html::pareto_night_page(&slug, n),
        None => html::pareto_page(&slug),
    };
    let runs = pareto_runs(view, key, night);
    let mut by_config: BTreeMap<&str, (String, Vec<Plotted>)> = BTreeMap::new();
    for (p, r) in &runs {
        by_config
            .entry(&p.config)
            .or_insert_with(|| (p.config_label.clone(), Vec::new()))
            .1
            .push((p, r));
    }
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>{}. One mark per {}; one series per engine × hardware × configuration, its frontier drawn. Hover a mark for its values; click it for its point.</p>\n<nav aria-label=\"nights\"><p>Night: ",
        esc(key),
        if night.is_some() {
            "run of this night"
        } else {
            "series (engine, hardware, configuration and load level): its latest run"
        }
    );
    // The latest page lists every night; a night's page links only to its
    // neighbours, so a new night rewrites one old page, not all of them.
    let nights = view.nights_of_workload(key);
    let mut choices = Vec::new();
    match night {
        None => {
            choices.push("<strong>latest</strong>".to_string());
            for n in nights.iter().rev() {
                choices.push(link(&path, &html::pareto_night_page(&slug, n), n));
            }
        }
        Some(this) => {
            choices.push(link(
                &path,
                &html::pareto_page(&slug),
                "latest (every night)",
            ));
            let at = nights.iter().position(|n| *n == this).unwrap_or(0);
            if let Some(prev) = at.checked_sub(1).and_then(|i| nights.get(i)) {
                choices.push(link(
                    &path,
                    &html::pareto_night_page(&slug, prev),
                    &format!("previous: {prev}"),
                ));
            }
            choices.push(format!("<strong>{}</strong>", esc(this)));
            if let Some(next) = nights.get(at + 1) {
                choices.push(link(
                    &path,
                    &html::pareto_night_page(&slug, next),
                    &format!("next: {next}"),
                ));
            }
        }
    }
    body.push_str(&choices.join(" · "));
    body.push_str("</p></nav>\n<ul class=\"legend\">");
    for (i, (label, _)) in by_config.values().enumerate() {
        let _ = write!(
            body,
            r#"<li><svg class="sw" viewBox="0 0 10 10" aria-hidden="true"><rect class="s{}" width="10" height="10"/></svg>{}</li>"#,
            i % PALETTE_SIZE,
            esc(label)
        );
    }
    body.push_str("</ul>\n");
    type Axis = fn(&super::model::Figures) -> f64;
    let charts: [(&str, &str, &str, Axis, bool); 2] = [
        (
            "interactivity",
            "Throughput per GPU against interactivity",
            "interactivity (tok/s/user, median)",
            |f| f.tok_s_per_user,
            false,
        ),
        (
            "latency",
            "Throughput per GPU against median end-to-end latency",
            "median end-to-end latency (ms)",
            |f| f.median_e2el_ms,
            true,
        ),
    ];
    for (id, title, x_label, x_of, lower) in charts {
        let series: Vec<Series> = by_config
            .values()
            .map(|(label, runs)| Series {
                name: label.clone(),
                marks: runs
                    .iter()
                    .filter_map(|(p, r)| {
                        let f = r.figures()?;
                        Some(Mark {
                            x: x_of(&f),
                            y: f.output_tok_s_per_gpu,
                            title: format!(
                                "point {} · load {} · {:.1} output tok/s/GPU · {:.1} tok/s/user · median E2EL {:.1} ms · night {} · run {}",
                                short(&p.id),
                                p.load,
                                f.output_tok_s_per_gpu,
                                f.tok_s_per_user,
                                f.median_e2el_ms,
                                r.night.as_deref().unwrap_or("none"),
                                r.run_id
                            ),
                            href: href(&path, &point_page(&p.id)),
                        })
                    })
                    .collect(),
            })
            .collect();
        let chart = Scatter {
            id: id.to_string(),
            title: format!("{title}: {key}"),
            x_label: x_label.to_string(),
            y_label: "output tok/s per GPU".to_string(),
            x_lower_is_better: lower,
            series,
        };
        let _ = writeln!(
            body,
            "<h2>{}</h2><figure>{}<figcaption>{} marks. The data is in the table below.</figcaption></figure>",
            esc(title),
            chart.render(),
            runs.len()
        );
    }
    let rows: Vec<String> = runs
        .iter()
        .filter_map(|(p, r)| {
            let f = r.figures()?;
            Some(format!(
                "<td>{}</td><td>{}</td><td>{}</td>{}{}{}<td>{}</td><td>{}</td>",
                link(&path, &point_page(&p.id), short(&p.id)),
                esc(&p.config_label),
                esc(&p.load),
                num_cell(Some(f.output_tok_s_per_gpu), 1),
                num_cell(Some(f.tok_s_per_user), 1),
                num_cell(Some(f.median_e2el_ms), 1),
                esc(r.night.as_deref().unwrap_or("–")),
                link(&path, &run_page(&r.run_id), &r.run_id),
            ))
        })
        .collect();
    body.push_str(&table(
        "The charts' data",
        &[
            "point",
            "series",
            "load",
            "output tok/s/GPU",
            "tok/s/user",
            "median E2EL ms",
            "night",
            "run",
        ],
        &rows,
        true,
    ));
    let title = match night {
        Some(n) => format!("Pareto: {key}, night {n}"),
        None => format!("Pareto: {key}"),
    };
    page(&path, &title, &body)
}

fn point(view: &View, p: &PointEntry) -> Page {
    let path = point_page(&p.id);
    let mut body = String::new();
    let code = |s: &str| format!("<code>{}</code>", esc(s));
    let pins = vec![
        ("point id".to_string(), code(&p.id)),
        (
            "hardware class".to_string(),
            esc(&super::model::hardware_label(p.gpus, &p.hardware)),
        ),
        (
            "engine".to_string(),
            format!("{} ({})", esc(&p.engine), esc(&p.runtime)),
        ),
        (
            "image digest".to_string(),
            p.image.as_deref().map_or("–".to_string(), code),
        ),
        (
            "executable sha256".to_string(),
            p.command_sha256.as_deref().map_or("–".to_string(), code),
        ),
        ("model".to_string(), esc(&p.model)),
        (
            "model commit".to_string(),
            p.model_pin.as_deref().map_or("–".to_string(), code),
        ),
        (
            "workload".to_string(),
            format!(
                "{} input, {} output tokens",
                p.input_tokens, p.output_tokens
            ),
        ),
        ("load".to_string(), esc(&p.load)),
        ("series".to_string(), esc(&p.config_label)),
    ];
    body.push_str(&table("Pins", &["", ""], &kv_rows(&pins), false));
    let commit = p
        .latest()
        .and_then(|r| r.statement.as_ref())
        .map(|s| s.predicate.harness.commit.clone())
        .unwrap_or_else(|| "<commit>".to_string());
    let _ = write!(
        body,
        "<h2>Reproduce</h2><p>With this results tree (or the point's files) at hand:</p><pre><code>infermark verify {id}</code></pre><p>With the harness that measured it, from its flake:</p><pre><code>git checkout {commit}\nnix run . -- verify {id}</code></pre><p>{}</p>\n",
        sources(
            &path,
            &format!("points/{}/point.json", p.id),
            &super::api::point_path(&p.id),
            "point"
        ),
        id = esc(&p.id),
        commit = esc(&commit),
    );
    let rows: Vec<String> = p
        .runs
        .iter()
        .map(|r| {
            let f = r.figures();
            let (audit, class) = audit_text(r);
            format!(
                "<td>{}</td>{}<td>{}</td><td>{}</td>{}{}{}<td class=\"{class}\">{}</td><td>{}</td>",
                link(&path, &run_page(&r.run_id), &r.run_id),
                status_cell(r.status),
                esc(r.night.as_deref().unwrap_or("–")),
                esc(&r.started_at),
                num_cell(f.map(|f| f.output_tok_s_per_gpu), 1),
                num_cell(f.map(|f| f.tok_s_per_user), 1),
                num_cell(f.map(|f| f.median_e2el_ms), 1),
                esc(&audit),
                esc(&r.derived.signature),
            )
        })
        .collect();
    body.push_str("<h2>Runs</h2>");
    body.push_str(&table(
        "Every run of this point",
        &[
            "run",
            "status",
            "night",
            "started",
            "output tok/s/GPU",
            "tok/s/user",
            "median E2EL ms",
            "audit",
            "signature",
        ],
        &rows,
        true,
    ));
    body.push_str("<h2>Verdicts</h2>");
    if p.verdicts.is_empty() {
        body.push_str("<p>No <code>infermark verify</code> verdict is stored for this point.</p>");
    }
    for v in &p.verdicts {
        let _ = write!(
            body,
            "<h3 class=\"verdict\">{} <span class=\"{}\">{}</span></h3><p>Verified {} after {} re-runs, of run {}. {}</p>",
            esc(&v.verdict_id),
            if v.result == "REPRODUCED" {
                "ok"
            } else {
                "bad"
            },
            esc(&v.result),
            esc(&v.time_verified),
            v.reruns,
            esc(v.resource_uri.rsplit('/').next().unwrap_or("")),
            link(&path, &raw_file(&v.rel_path), "verdict.json"),
        );
        let rows: Vec<String> = v
            .metrics
            .iter()
            .map(|m| {
                format!(
                    "<td>{}</td><td>{}</td>{}{}{}<td class=\"n\">{}</td><td class=\"n\">±{}</td><td>{}</td>",
                    esc(&m.metric),
                    esc(&m.unit),
                    num_cell(m.reported, 2),
                    num_cell(m.remeasured, 2),
                    num_cell(m.ratio, 3),
                    m.interval.map_or("–".to_string(), |(lo, hi)| format!("[{lo:.3}, {hi:.3}]")),
                    num(m.band, 3),
                    esc(m.verdict.as_deref().unwrap_or("not judged")),
                )
            })
            .collect();
        body.push_str(&table(
            "Metrics with the interval of the ratio here / reported",
            &[
                "metric", "unit", "reported", "here", "ratio", "interval", "band", "verdict",
            ],
            &rows,
            false,
        ));
    }
    let _ = view;
    page(&path, &format!("Point {}", short(&p.id)), &body)
}

fn percentile_rows(s: &crate::metrics::Summary) -> Vec<String> {
    let l = &s.latency;
    let stats: [(&str, &LatencyStats); 6] = [
        ("TTFT", &l.ttft),
        ("TPOT", &l.tpot),
        ("ITL", &l.itl),
        ("ITL per token", &l.itl_per_token),
        ("E2EL", &l.e2el),
        ("queue delay", &l.queue_delay),
    ];
    stats
        .iter()
        .map(|(name, st)| {
            format!(
                "<th scope=\"row\">{}</th><td class=\"n\">{}</td>{}{}{}{}{}{}{}",
                name,
                st.count,
                num_cell(st.mean_ms, 2),
                num_cell(st.p50_ms, 2),
                num_cell(st.p90_ms, 2),
                num_cell(st.p95_ms, 2),
                num_cell(st.p99_ms, 2),
                num_cell(st.p99_9_ms, 2),
                num_cell(st.max_ms, 2),
            )
        })
        .collect()
}

/// `key path → value` rows of a JSON document, leaves only, at most `max`.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>, max: usize) {
    if out.len() >= max {
        return;
    }
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out, max);
            }
        }
        serde_json::Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect();
            out.push((
                prefix.to_string(),
                format!("<code>{}</code>", esc(&items.join(" "))),
            ));
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out, max);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), esc(s))),
        other => out.push((prefix.to_string(), esc(&other.to_string()))),
    }
}

fn run(p: &PointEntry, r: &RunEntry) -> Page {
    let path = run_page(&r.run_id);
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Run of point {} ({}, {}), {}. {}</p>",
        link(&path, &point_page(&p.id), short(&p.id)),
        esc(&p.config_label),
        esc(&p.load),
        match r.status {
            RunStatus::Completed => "completed".to_string(),
            RunStatus::Failed => "failed".to_string(),
        },
        link(
            &path,
            &super::api::run_path(&r.run_id),
            "this run in the JSON API"
        ),
    );
    let mut facts = vec![
        (
            "run id".to_string(),
            format!("<code>{}</code>", esc(&r.run_id)),
        ),
        ("started".to_string(), esc(&r.started_at)),
        ("finished".to_string(), esc(&r.finished_at)),
        ("night".to_string(), esc(r.night.as_deref().unwrap_or("–"))),
    ];
    if let Some(reason) = &r.reason {
        facts.push(("reason".to_string(), esc(reason)));
    }
    if let Some(s) = &r.summary {
        let c = &s.counts;
        facts.push((
            "requests".to_string(),
            format!(
                "{} measured, {} completed, {} failed",
                c.measured, c.completed, c.failed
            ),
        ));
        let t = &s.throughput;
        for (k, v) in [
            ("output tok/s", t.output_tokens_per_s),
            ("output tok/s per GPU", t.output_tokens_per_s_per_gpu),
            ("requests/s", t.requests_per_s),
            ("total tok/s", t.total_tokens_per_s),
            (
                "interactivity, median tok/s/user",
                s.interactivity.median_tok_s_per_user,
            ),
            ("duration s", s.window.duration_s),
        ] {
            facts.push((k.to_string(), num(v, 2)));
        }
    }
    body.push_str(&table("Summary", &["", ""], &kv_rows(&facts), false));
    if let Some(s) = &r.summary {
        body.push_str(&table(
            "Latency percentiles (ms)",
            &[
                "metric", "count", "mean", "p50", "p90", "p95", "p99", "p99.9", "max",
            ],
            &percentile_rows(s),
            false,
        ));
        let requests = raw_file(&format!("{}/requests.jsonl", r.rel_dir));
        for (id, name, q) in [
            ("ttft", "TTFT", &r.derived.ttft_cdf_ms),
            ("itl", "ITL", &r.derived.itl_cdf_ms),
            ("e2el", "E2EL", &r.derived.e2el_cdf_ms),
        ] {
            if q.is_empty() {
                continue;
            }
            let chart = Cdf {
                id: format!("cdf-{id}"),
                title: format!("{name} distribution of run {}", r.run_id),
                x_label: format!("{name} (ms)"),
                lines: vec![(name.to_string(), q.clone(), href(&path, &requests))],
            };
            let n = q.len() - 1;
            let rows: Vec<String> = (0..=10)
                .map(|k| {
                    let i = k * n / 10;
                    format!(
                        "<td class=\"n\">{}%</td>{}",
                        k * 10,
                        num_cell(Some(q[i]), 2)
                    )
                })
                .collect();
            let _ = write!(
                body,
                "<h2>{name} CDF</h2><figure>{}<figcaption>From requests.jsonl: the fraction of measured requests at or below each {name}. Text alternative:</figcaption>{}</figure>",
                chart.render(),
                table(
                    &format!("{name} quantiles (ms)"),
                    &["fraction", "ms"],
                    &rows,
                    false
                )
            );
        }
    }
    if let Some(env) = &r.environment {
        body.push_str("<h2>Environment</h2>");
        let value = serde_json::to_value(env).unwrap_or_default();
        for part in [
            "host",
            "gpus",
            "hardware",
            "engine",
            "harness",
            "energy",
            "calibration",
        ] {
            let mut rows = Vec::new();
            flatten("", &value[part], &mut rows, 200);
            if rows.is_empty() || value[part].is_null() {
                let _ = write!(body, "<p>{part}: none recorded.</p>");
                continue;
            }
            body.push_str(&table(part, &["key", "value"], &kv_rows(&rows), false));
        }
    }
    body.push_str("<h2>Provenance</h2>");
    let (audit, class) = audit_text(r);
    let mut prov = vec![
        (
            "statement sha256".to_string(),
            r.derived
                .statement_sha256
                .as_deref()
                .map_or("–".to_string(), |d| format!("<code>{}</code>", esc(d))),
        ),
        (
            "signature".to_string(),
            esc(&match r.derived.signature.as_str() {
                "signed" => "signed; the envelope is of this statement; no trusted key given (report --trust)".to_string(),
                "trusted" => "signed by a trusted key; the signature verifies".to_string(),
                "invalid" => format!(
                    "invalid: {}",
                    r.derived.signature_problem.as_deref().unwrap_or("")
                ),
                other => other.to_string(),
            }),
        ),
        (
            "key ids".to_string(),
            if r.derived.keyids.is_empty() {
                "–".to_string()
            } else {
                format!("<code>{}</code>", esc(&r.derived.keyids.join(", ")))
            },
        ),
        ("audit".to_string(), format!("<span class=\"{class}\">{}</span>", esc(&audit))),
    ];
    if let Some(st) = &r.statement {
        prov.push((
            "harness".to_string(),
            format!(
                "{} <code>{}</code>",
                esc(&st.predicate.harness.version),
                esc(&st.predicate.harness.commit)
            ),
        ));
    }
    body.push_str(&table("Provenance", &["", ""], &kv_rows(&prov), false));
    if let Some(problems) = r.derived.audit.as_ref().filter(|p| !p.is_empty()) {
        body.push_str("<ul>");
        for problem in problems {
            let _ = write!(body, "<li>{}</li>", esc(problem));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>Raw files</h2><ul>");
    for f in &r.files {
        let _ = write!(
            body,
            "<li>{}</li>",
            link(&path, &raw_file(&format!("{}/{f}", r.rel_dir)), f)
        );
    }
    body.push_str("</ul>");
    page(&path, &format!("Run {}", r.run_id), &body)
}

fn delta(now: Option<f64>, before: Option<f64>) -> String {
    match (now, before) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => {
            let d = (a / b - 1.0) * 100.0;
            format!(r#"<td class="n" data-v="{d}">{d:+.1}%</td>"#)
        }
        _ => r#"<td class="n" data-v="-1e308">–</td>"#.to_string(),
    }
}

fn night<'a>(view: &View<'a>, n: &'a NightEntry) -> Page {
    let path = html::night_page(&n.night);
    let rows: Vec<String> = view
        .night_rows(n)
        .into_iter()
        .map(|NightRow { np, point, run, previous }| {
            let f = run.and_then(RunEntry::figures);
            let before = previous.and_then(RunEntry::figures);
            let point_cell = match point {
                Some(p) => link(&path, &point_page(&p.id), short(&p.id)),
                None => format!("<span class=\"id\">{}</span>", esc(short(&np.id))),
            };
            let run_cell = match (run, &np.run_id) {
                (Some(r), _) => link(&path, &run_page(&r.run_id), &r.run_id),
                (None, Some(id)) => esc(id),
                (None, None) => "–".to_string(),
            };
            format!(
                "<td>{point_cell}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{run_cell}</td>{}{}{}{}{}",
                esc(&np.hardware),
                esc(&np.experiment),
                esc(&np.load),
                if np.status == NightStatus::Completed { "ok" } else { "bad" },
                esc(&match np.status {
                    NightStatus::Completed => "completed".to_string(),
                    NightStatus::Failed => format!("failed: {}", np.reason.as_deref().unwrap_or("")),
                }),
                num_cell(f.map(|f| f.output_tok_s_per_gpu), 1),
                delta(f.map(|f| f.output_tok_s_per_gpu), before.map(|f| f.output_tok_s_per_gpu)),
                num_cell(f.map(|f| f.tok_s_per_user), 1),
                delta(f.map(|f| f.tok_s_per_user), before.map(|f| f.tok_s_per_user)),
                delta(f.map(|f| f.median_e2el_ms), before.map(|f| f.median_e2el_ms)),
            )
        })
        .collect();
    let (done, failed) = n.counts();
    let mut body = format!(
        "<p>{done} points completed, {failed} failed, on {}. Each change is against the same series' run in the latest earlier night. {}</p>",
        esc(&n.record.hardware_classes.join(", ")),
        sources(
            &path,
            &format!("nights/{}/night.json", n.night),
            &super::api::night_path(&n.night),
            "night"
        ),
    );
    body.push_str(&table(
        &format!("Night {}", n.night),
        &[
            "point",
            "hardware",
            "experiment",
            "load",
            "status",
            "run",
            "output tok/s/GPU",
            "change",
            "tok/s/user",
            "change",
            "median E2EL change",
        ],
        &rows,
        true,
    ));
    page(&path, &format!("Night {}", n.night), &body)
}
