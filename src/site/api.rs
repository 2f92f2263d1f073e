//! The JSON API documents, version 1: pure functions of the loaded tree,
//! so the static build writes them as files under `api/v1/` and a live
//! server can build the same document per request.
//!
//! | path | document |
//! |---|---|
//! | `api/v1/index.json` | every point (pins, counts, latest run), night and model × workload |
//! | `api/v1/nights/<night>.json` | one night: each point's status, figures and the series' previous night |
//! | `api/v1/points/<id>.json` | one point: pins, canonical form, runs, verdicts |
//! | `api/v1/runs/<run-id>.json` | one run: summary, provenance, audit, CDFs, raw files |
//!
//! Every document carries `"api": "infermark.api.v1"`. Within v1 fields
//! are only ever added; a change of meaning or a removal is v2 under
//! `api/v2/`, with v1 kept. Schemas: [`super::schema`].

use serde_json::{Value, json};

use super::model::{Figures, NightEntry, PointEntry, RunEntry, Tree, VerdictEntry};
use super::pages::{NightRow, View};

/// The value of every document's `api` field.
pub const API_VERSION: &str = "infermark.api.v1";

/// Paths of the documents, relative to the site root.
pub fn index_path() -> String {
    "api/v1/index.json".to_string()
}
pub fn night_path(night: &str) -> String {
    format!("api/v1/nights/{night}.json")
}
pub fn point_path(id: &str) -> String {
    format!("api/v1/points/{id}.json")
}
pub fn run_path(run_id: &str) -> String {
    format!("api/v1/runs/{run_id}.json")
}

fn figures(f: Option<Figures>) -> Value {
    match f {
        Some(f) => json!({
            "output_tok_s_per_gpu": f.output_tok_s_per_gpu,
            "tok_s_per_user": f.tok_s_per_user,
            "median_e2el_ms": f.median_e2el_ms,
        }),
        None => Value::Null,
    }
}

/// The keys of a point's `pins` object, in the order the exports list them.
pub const PIN_KEYS: [&str; 11] = [
    "hardware",
    "gpus",
    "engine",
    "runtime",
    "image",
    "command_sha256",
    "model",
    "model_pin",
    "input_tokens",
    "output_tokens",
    "load",
];

/// A point's pins: the `pins` object of the documents, one value per
/// [`PIN_KEYS`].
pub fn pins(p: &PointEntry) -> Value {
    let values = [
        json!(p.hardware),
        json!(p.gpus),
        json!(p.engine),
        json!(p.runtime),
        json!(p.image),
        json!(p.command_sha256),
        json!(p.model),
        json!(p.model_pin),
        json!(p.input_tokens),
        json!(p.output_tokens),
        json!(p.load),
    ];
    Value::Object(PIN_KEYS.iter().map(|k| k.to_string()).zip(values).collect())
}

/// The fields every description of a point starts with.
fn point_head(p: &PointEntry) -> serde_json::Map<String, Value> {
    let mut head = serde_json::Map::new();
    head.insert("id".into(), json!(p.id));
    head.insert("pins".into(), pins(p));
    head.insert("config".into(), json!(p.config));
    head.insert("config_label".into(), json!(p.config_label));
    head.insert("series".into(), json!(p.series));
    head.insert("workload".into(), json!(p.workload_key()));
    head
}

/// `head` with `rest`'s fields added.
fn extend(mut head: serde_json::Map<String, Value>, rest: Value) -> Value {
    if let Value::Object(rest) = rest {
        head.extend(rest);
    }
    Value::Object(head)
}

/// `api/v1/index.json`.
pub fn index(tree: &Tree) -> Value {
    let view = View::new(tree);
    let points: Vec<Value> = tree
        .points
        .iter()
        .map(|p| {
            let done = p
                .runs
                .iter()
                .filter(|r| r.status == crate::store::RunStatus::Completed)
                .count();
            let latest = p.latest();
            extend(
                point_head(p),
                json!({
                    "completed_runs": done,
                    "failed_runs": p.runs.len() - done,
                    "latest_run": latest.map(|r| r.run_id.clone()),
                    "latest_figures": figures(latest.and_then(RunEntry::figures)),
                    "href": point_path(&p.id),
                }),
            )
        })
        .collect();
    let nights: Vec<Value> = tree
        .nights
        .iter()
        .map(|n| {
            let (done, failed) = n.counts();
            json!({
                "night": n.night,
                "hardware_classes": n.record.hardware_classes,
                "completed": done,
                "failed": failed,
                "href": night_path(&n.night),
            })
        })
        .collect();
    let workloads: Vec<Value> = view
        .workloads
        .iter()
        .map(|(key, pis)| {
            json!({
                "workload": key,
                "page": super::html::pareto_page(&View::workload_slug(key)),
                "points": pis.iter().map(|&i| tree.points[i].id.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "api": API_VERSION,
        "points": points,
        "nights": nights,
        "workloads": workloads,
    })
}

/// `api/v1/nights/<night>.json`.
pub fn night<'a>(view: &View<'a>, n: &'a NightEntry) -> Value {
    let points: Vec<Value> = view
        .night_rows(n)
        .into_iter()
        .map(
            |NightRow {
                 np, run, previous, ..
             }| {
                json!({
                    "id": np.id,
                    "group": np.group,
                    "hardware": np.hardware,
                    "experiment": np.experiment,
                    "load": np.load,
                    "status": match np.status {
                        crate::night::ledger::NightStatus::Completed => "completed",
                        crate::night::ledger::NightStatus::Failed => "failed",
                    },
                    "run_id": np.run_id,
                    "reason": np.reason,
                    "figures": figures(run.and_then(RunEntry::figures)),
                    "previous": previous.map(|r| json!({
                        "night": r.night,
                        "run_id": r.run_id,
                        "figures": figures(r.figures()),
                    })),
                })
            },
        )
        .collect();
    json!({
        "api": API_VERSION,
        "night": n.night,
        "hardware_classes": n.record.hardware_classes,
        "locks": n.record.locks,
        "updated_at": n.record.updated_at,
        "points": points,
    })
}

fn verdict(v: &VerdictEntry) -> Value {
    json!({
        "verdict_id": v.verdict_id,
        "result": v.result,
        "time_verified": v.time_verified,
        "reported_run": v.resource_uri.rsplit('/').next().unwrap_or(""),
        "reruns": v.reruns,
        "file": super::html::raw_file(&v.rel_path),
        "metrics": v.metrics.iter().map(|m| json!({
            "metric": m.metric,
            "unit": m.unit,
            "reported": m.reported,
            "remeasured": m.remeasured,
            "ratio": m.ratio,
            "interval": m.interval.map(|(lo, hi)| json!({"lo": lo, "hi": hi})),
            "band": m.band,
            "verdict": m.verdict,
        })).collect::<Vec<_>>(),
    })
}

/// `api/v1/points/<id>.json`.
pub fn point(p: &PointEntry) -> Value {
    let canonical: Value = serde_json::from_str(&p.canonical).unwrap_or(Value::Null);
    let mut head = point_head(p);
    head.insert("api".into(), json!(API_VERSION));
    extend(
        head,
        json!({
            "canonical": canonical,
            "point_file": super::html::raw_file(&format!("points/{}/point.json", p.id)),
            "reproduce": format!("infermark verify {}", p.id),
            "runs": p.runs.iter().map(|r| json!({
                "run_id": r.run_id,
                "status": r.status.as_str(),
                "night": r.night,
                "figures": figures(r.figures()),
                "href": run_path(&r.run_id),
            })).collect::<Vec<_>>(),
            "verdicts": p.verdicts.iter().map(verdict).collect::<Vec<_>>(),
        }),
    )
}

/// `api/v1/runs/<run-id>.json`.
pub fn run(p: &PointEntry, r: &RunEntry) -> Value {
    let d = &r.derived;
    json!({
        "api": API_VERSION,
        "run_id": r.run_id,
        "point_id": p.id,
        "status": r.status.as_str(),
        "night": r.night,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "reason": r.reason,
        "figures": figures(r.figures()),
        "summary": r.summary.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
        "provenance": {
            "statement_sha256": d.statement_sha256,
            "signature": d.signature,
            "keyids": d.keyids,
            "signature_problem": d.signature_problem,
            "harness": r.statement.as_ref().map(|s| json!({
                "version": s.predicate.harness.version,
                "commit": s.predicate.harness.commit,
            })),
        },
        "audit": match &d.audit {
            None => json!({"status": "not_audited", "problems": []}),
            Some(p) if p.is_empty() => json!({"status": "clean", "problems": []}),
            Some(p) => json!({"status": "problems", "problems": p}),
        },
        "cdf_ms": {
            "ttft": d.ttft_cdf_ms,
            "itl": d.itl_cdf_ms,
            "e2el": d.e2el_cdf_ms,
        },
        "files": r.files.iter().map(|f| super::html::raw_file(&format!("{}/{f}", r.rel_dir))).collect::<Vec<_>>(),
    })
}

/// Pretty JSON with a final newline, the bytes of a document file.
pub fn to_bytes(v: &Value) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s.into_bytes()
}
