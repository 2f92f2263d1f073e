//! `GET /api/v1/runs?…`: the runs of the tree filtered and paged.
//!
//! Parameters (each at most once; an unknown one is a 400, so a typo never
//! silently widens the answer): `hardware`, `model`, `engine`, `night`
//! (exact matches), `status` (`completed` | `failed`), `since` and `until`
//! (`YYYY-MM-DD`, inclusive, on the day the run started, UTC), `limit`
//! (1..=[`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and `offset`. Runs are in
//! run-id order, so an offset names the same run while the tree does not
//! change; `next` is the URL of the following page, or `null`.

use serde_json::{Value, json};

use super::paths::percent_decode;
use crate::site::api::{API_VERSION, point_path, run_path};
use crate::site::model::Tree;
use crate::store::RunStatus;

/// The largest page.
pub const MAX_LIMIT: usize = 1000;
/// The page size when none is asked for.
pub const DEFAULT_LIMIT: usize = 100;
/// The collection's path, relative to the site root.
pub const RUNS_PATH: &str = "api/v1/runs";

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunQuery {
    pub hardware: Option<String>,
    pub model: Option<String>,
    pub engine: Option<String>,
    pub night: Option<String>,
    pub status: Option<RunStatus>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// What a query row holds: enough to filter on and to link to.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: String,
    pub point_id: String,
    pub hardware: String,
    pub gpus: u32,
    pub model: String,
    pub engine: String,
    pub load: String,
    pub night: Option<String>,
    pub status: RunStatus,
    pub started_at: String,
    pub figures: Value,
}

/// The rows of `tree`, by run id.
pub fn rows(tree: &Tree) -> Vec<RunRow> {
    let mut rows: Vec<RunRow> = tree
        .points
        .iter()
        .flat_map(|p| {
            p.runs.iter().map(move |r| RunRow {
                run_id: r.run_id.clone(),
                point_id: p.id.clone(),
                hardware: p.hardware.clone(),
                gpus: p.gpus,
                model: p.model.clone(),
                engine: p.engine.clone(),
                load: p.load.clone(),
                night: r.night.clone(),
                status: r.status,
                started_at: r.started_at.clone(),
                figures: serde_json::to_value(r.figures()).unwrap_or(Value::Null),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    rows
}

fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// Parses the query string (without `?`); the message says what is wrong.
pub fn parse(query: Option<&str>) -> Result<RunQuery, String> {
    let mut q = RunQuery {
        limit: DEFAULT_LIMIT,
        ..RunQuery::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k, true).ok_or("malformed percent-encoding in a key")?;
        let v =
            percent_decode(v, true).ok_or_else(|| format!("`{k}`: malformed percent-encoding"))?;
        if seen.contains(&k) {
            return Err(format!("`{k}`: given more than once"));
        }
        seen.push(k.clone());
        let day = |v: String| {
            if is_day(&v) {
                Ok(Some(v))
            } else {
                Err(format!("`{k}={v}`: expected a day, YYYY-MM-DD"))
            }
        };
        let count = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("`{k}={v}`: expected a whole number"))
        };
        match k.as_str() {
            "hardware" => q.hardware = Some(v),
            "model" => q.model = Some(v),
            "engine" => q.engine = Some(v),
            "night" => q.night = Some(v),
            "status" => {
                q.status = Some(
                    RunStatus::parse(&v)
                        .ok_or_else(|| format!("`status={v}`: expected `completed` or `failed`"))?,
                )
            }
            "since" => q.since = day(v)?,
            "until" => q.until = day(v)?,
            "limit" => {
                q.limit = count(&v)?;
                if !(1..=MAX_LIMIT).contains(&q.limit) {
                    return Err(format!("`limit={v}`: expected 1 to {MAX_LIMIT}"));
                }
            }
            "offset" => q.offset = count(&v)?,
            _ => {
                return Err(format!(
                    "`{k}`: unknown parameter; expected hardware, model, engine, night, \
                     status, since, until, limit or offset"
                ));
            }
        }
    }
    Ok(q)
}

impl RunQuery {
    fn keeps(&self, r: &RunRow) -> bool {
        let day = r.started_at.get(..10).unwrap_or("");
        self.hardware.as_ref().is_none_or(|h| *h == r.hardware)
            && self.model.as_ref().is_none_or(|m| *m == r.model)
            && self.engine.as_ref().is_none_or(|e| *e == r.engine)
            && self
                .night
                .as_ref()
                .is_none_or(|n| r.night.as_ref() == Some(n))
            && self.status.is_none_or(|s| s == r.status)
            && self.since.as_ref().is_none_or(|s| day >= s.as_str())
            && self.until.as_ref().is_none_or(|u| day <= u.as_str())
    }

    /// This query's URL at `offset`.
    fn url(&self, offset: usize) -> String {
        let mut parts = Vec::new();
        let mut add = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={}", encode(v)));
            }
        };
        add("hardware", &self.hardware);
        add("model", &self.model);
        add("engine", &self.engine);
        add("night", &self.night);
        add("status", &self.status.map(|s| s.as_str().to_string()));
        add("since", &self.since);
        add("until", &self.until);
        parts.push(format!("limit={}", self.limit));
        parts.push(format!("offset={offset}"));
        format!("/{RUNS_PATH}?{}", parts.join("&"))
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The answer to `q` over `rows`.
pub fn answer(rows: &[RunRow], q: &RunQuery) -> Value {
    let matched: Vec<&RunRow> = rows.iter().filter(|r| q.keeps(r)).collect();
    let total = matched.len();
    let page: Vec<Value> = matched
        .iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|r| {
            json!({
                "run_id": r.run_id,
                "point_id": r.point_id,
                "hardware": r.hardware,
                "gpus": r.gpus,
                "model": r.model,
                "engine": r.engine,
                "load": r.load,
                "night": r.night,
                "status": r.status.as_str(),
                "started_at": r.started_at,
                "figures": r.figures,
                "href": format!("/{}", run_path(&r.run_id)),
                "point_href": format!("/{}", point_path(&r.point_id)),
            })
        })
        .collect();
    let end = q.offset.saturating_add(q.limit);
    json!({
        "api": API_VERSION,
        "total": total,
        "limit": q.limit,
        "offset": q.offset,
        "runs": page,
        "next": (end < total).then(|| q.url(end)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_query_is_every_run_in_pages_of_the_default_size() {
        let q = parse(None).unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert_eq!(q.offset, 0);
        assert_eq!(q.hardware, None);
    }

    #[test]
    fn parameters_are_decoded_and_typed() {
        let q = parse(Some(
            "hardware=cpu&model=a%2Fb+c&status=failed&since=2026-01-01&limit=5&offset=10",
        ))
        .unwrap();
        assert_eq!(q.hardware.as_deref(), Some("cpu"));
        assert_eq!(q.model.as_deref(), Some("a/b c"));
        assert_eq!(q.status, Some(RunStatus::Failed));
        assert_eq!(q.since.as_deref(), Some("2026-01-01"));
        assert_eq!((q.limit, q.offset), (5, 10));
    }

    #[test]
    fn unknown_repeated_and_malformed_parameters_are_refused_naming_them() {
        for (query, names) in [
            ("colour=red", "`colour`"),
            ("night=a&night=b", "`night`: given more than once"),
            ("limit=0", "`limit=0`"),
            ("limit=1001", "`limit=1001`"),
            ("offset=-1", "`offset=-1`"),
            ("status=ok", "`status=ok`"),
            ("since=2026-1-1", "`since=2026-1-1`"),
            ("model=%zz", "`model`"),
        ] {
            let e = parse(Some(query)).unwrap_err();
            assert!(e.contains(names), "{query}: {e}");
        }
    }

    #[test]
    fn the_next_link_keeps_the_filters_and_moves_the_offset() {
        let q = parse(Some("night=2026-01-02&limit=2")).unwrap();
        assert_eq!(q.url(2), "/api/v1/runs?night=2026-01-02&limit=2&offset=2");
    }
}
