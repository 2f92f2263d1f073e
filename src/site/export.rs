//! `runs.csv` and `runs.jsonl`: one row per run, completed or failed, with
//! the same columns in the same order in both.
//!
//! The columns are the run's identity and pins ([`fixed_columns`]) followed by
//! every field of `summary.json`, flattened with `.` (`throughput.
//! output_tokens_per_s`, `latency.ttft.p99_ms`, ...). The summary columns
//! are taken from the summary format itself (a summary of no records), so
//! a field added to the summary becomes a column without a change here,
//! and a failed run has the same columns, empty.

use serde_json::{Map, Value};

use super::api;
use super::model::{PointEntry, RunEntry, Tree};
use crate::metrics::{Slo, SummaryContext};

/// The columns before the pins.
const HEAD: [&str; 4] = ["point_id", "run_id", "status", "night"];
/// The columns after the pins, before the summary's.
const TAIL: [&str; 4] = ["started_at", "finished_at", "reason", "statement_sha256"];

/// The columns before the summary's: [`HEAD`], the pins
/// ([`api::PIN_KEYS`]), [`TAIL`].
pub fn fixed_columns() -> Vec<&'static str> {
    HEAD.iter()
        .chain(api::PIN_KEYS.iter())
        .chain(TAIL.iter())
        .copied()
        .collect()
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// The summary's columns, flattened key paths sorted by name.
pub fn summary_columns() -> Vec<String> {
    let empty = crate::metrics::summarize(
        &[],
        &SummaryContext {
            point_id: String::new(),
            gpus: 0,
            slo: Slo::default(),
        },
    );
    let mut out = Vec::new();
    flatten(
        "",
        &serde_json::to_value(empty).unwrap_or_default(),
        &mut out,
    );
    out.into_iter()
        .map(|(k, _)| k)
        // Already among the fixed columns (or constant).
        .filter(|k| !matches!(k.as_str(), "format" | "point_id" | "gpus"))
        .collect()
}

fn row(p: &PointEntry, r: &RunEntry, summary_cols: &[String]) -> Vec<(String, Value)> {
    let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    let pins = api::pins(p);
    let mut out: Vec<(String, Value)> = vec![
        ("point_id".into(), p.id.clone().into()),
        ("run_id".into(), r.run_id.clone().into()),
        ("status".into(), r.status.as_str().into()),
        ("night".into(), opt(&r.night)),
    ];
    out.extend(
        api::PIN_KEYS
            .iter()
            .map(|k| (k.to_string(), pins[k].clone())),
    );
    out.extend([
        ("started_at".into(), r.started_at.clone().into()),
        ("finished_at".into(), r.finished_at.clone().into()),
        ("reason".into(), opt(&r.reason)),
        ("statement_sha256".into(), opt(&r.derived.statement_sha256)),
    ]);
    let mut values = Map::new();
    if let Some(s) = &r.summary {
        let mut flat = Vec::new();
        flatten("", &serde_json::to_value(s).unwrap_or_default(), &mut flat);
        values.extend(flat);
    }
    for c in summary_cols {
        out.push((c.clone(), values.get(c).cloned().unwrap_or(Value::Null)));
    }
    out
}

fn csv_field(v: &Value) -> String {
    let text = match v {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // A leading formula character is quoted as text by spreadsheet users'
    // convention; here it is enough to quote fields that need it.
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// `runs.csv` and `runs.jsonl`, rows by point then run.
pub fn runs(tree: &Tree) -> (Vec<u8>, Vec<u8>) {
    let cols = summary_columns();
    let mut csv = String::new();
    let header: Vec<String> = fixed_columns()
        .iter()
        .map(|s| s.to_string())
        .chain(cols.iter().cloned())
        .collect();
    csv.push_str(&header.join(","));
    csv.push('\n');
    let mut jsonl = String::new();
    for p in &tree.points {
        for r in &p.runs {
            let fields = row(p, r, &cols);
            let line: Vec<String> = fields.iter().map(|(_, v)| csv_field(v)).collect();
            csv.push_str(&line.join(","));
            csv.push('\n');
            let object: Map<String, Value> = fields.into_iter().collect();
            jsonl.push_str(&serde_json::to_string(&Value::Object(object)).unwrap_or_default());
            jsonl.push('\n');
        }
    }
    (csv.into_bytes(), jsonl.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_columns_cover_every_headline_figure_once() {
        let cols = summary_columns();
        for c in [
            "throughput.output_tokens_per_s",
            "throughput.output_tokens_per_s_per_gpu",
            "latency.ttft.p99_ms",
            "latency.e2el.p50_ms",
            "interactivity.median_tok_s_per_user",
            "counts.completed",
        ] {
            assert_eq!(
                cols.iter().filter(|k| *k == c).count(),
                1,
                "{c} in {cols:?}"
            );
        }
        for f in fixed_columns() {
            assert!(!cols.iter().any(|c| c == f), "{f} twice");
        }
    }

    #[test]
    fn csv_fields_with_separators_are_quoted() {
        assert_eq!(
            csv_field(&Value::String("a,b \"c\"".into())),
            "\"a,b \"\"c\"\"\""
        );
        assert_eq!(csv_field(&Value::Null), "");
        assert_eq!(csv_field(&serde_json::json!(1.5)), "1.5");
    }
}
