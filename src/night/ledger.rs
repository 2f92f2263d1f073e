//! The night record: what one night of `infermark nightly` ran, under which
//! lock, and what became of each point — `<results>/nights/<night>/night.json`.
//!
//! It is the resume ledger (a completed point is not run again the same
//! night) and the night's summary for people (the table) and tools (the
//! JSON). Runners of one night write records of the same name; `collect`
//! merges them point by point.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::NightError;
use crate::store::layout::{NIGHT_FILE, NIGHTS_DIR};

/// The value of `night.json`'s `format` field.
pub const NIGHT_FORMAT: &str = "infermark.night.v1";

/// What became of a point in a night.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NightStatus {
    Completed,
    Failed,
}

/// One point of the night.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NightPoint {
    /// The full point id (it hashes every pin).
    pub id: String,
    /// The engine start it belongs to (`run::pipeline::group_id`).
    pub group: String,
    pub hardware: String,
    /// The experiment's name.
    pub experiment: String,
    /// Load level, e.g. `concurrency=4`.
    pub load: String,
    pub status: NightStatus,
    /// The run directory's name: the result, or the failed run's record.
    pub run_id: Option<String>,
    /// Why it failed; null when completed.
    pub reason: Option<String>,
}

/// `night.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NightRecord {
    pub format: String,
    /// The night id: by default the UTC date the night started.
    pub night: String,
    /// Hardware classes that ran in this night, sorted (several once
    /// `collect` merged the records of several runners).
    pub hardware_classes: Vec<String>,
    /// sha256 of each lockfile the night's points were pinned by, by file name.
    pub locks: BTreeMap<String, String>,
    /// sha256 of each lockfile of the local overlay (`<lock dir>/local/`:
    /// pins only the runner's machine has), by hardware class, then file
    /// name. Absent when no runner had one, so records without it read alike.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub local_locks: BTreeMap<String, BTreeMap<String, String>>,
    /// RFC 3339 time the record was last written.
    pub updated_at: String,
    /// Sorted by group, then point id.
    pub points: Vec<NightPoint>,
}

/// Where the record of `night` lives under `results`.
pub fn night_path(results: &Path, night: &str) -> PathBuf {
    results.join(NIGHTS_DIR).join(night).join(NIGHT_FILE)
}

/// The default night id: today's UTC date, `YYYY-MM-DD`.
pub fn today(now: std::time::SystemTime) -> String {
    let mut s = humantime::format_rfc3339_seconds(now).to_string();
    s.truncate(10);
    s
}

/// A night id names a directory: letters, digits, `.`, `_` and `-` only,
/// and not `.` or `..`.
pub fn check_night_id(night: &str) -> Result<(), NightError> {
    if crate::store::layout::is_plain_name(night, 64) {
        Ok(())
    } else {
        Err(NightError::BadNightId(night.to_string()))
    }
}

impl NightRecord {
    pub fn new(night: &str) -> NightRecord {
        NightRecord {
            format: NIGHT_FORMAT.to_string(),
            night: night.to_string(),
            hardware_classes: Vec::new(),
            locks: BTreeMap::new(),
            local_locks: BTreeMap::new(),
            updated_at: String::new(),
            points: Vec::new(),
        }
    }

    /// Reads a record; `Ok(None)` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<NightRecord>, NightError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(NightError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Self::from_slice(path, &bytes).map(Some)
    }

    /// Parses a record's bytes; `path` names it in errors.
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<NightRecord, NightError> {
        // The version first, so a future format is named as such rather
        // than as an unknown key.
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| NightError::Json {
                path: path.to_path_buf(),
                key: String::new(),
                source,
            })?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != NIGHT_FORMAT {
            return Err(NightError::UnknownFormat {
                path: path.to_path_buf(),
                found: format.to_string(),
                expected: NIGHT_FORMAT,
            });
        }
        serde_path_to_error::deserialize(value).map_err(|e| NightError::Json {
            path: path.to_path_buf(),
            key: e.path().to_string(),
            source: e.into_inner(),
        })
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Writes the record beside its final name and renames it into place,
    /// so a reader (or a crash) never sees half a record.
    pub fn save(&mut self, path: &Path) -> Result<(), NightError> {
        self.updated_at = crate::clock::now_rfc3339_seconds();
        self.sort();
        let write = |p: &Path, source| NightError::Write {
            path: p.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| write(dir, e))?;
        }
        crate::store::atomic::write(path, self.to_json().as_bytes()).map_err(|e| write(path, e))
    }

    fn sort(&mut self) {
        self.points
            .sort_by(|a, b| (&a.group, &a.id).cmp(&(&b.group, &b.id)));
        self.hardware_classes.sort();
        self.hardware_classes.dedup();
    }

    /// The run id of `point_id` when this night completed it.
    pub fn completed_run(&self, point_id: &str) -> Option<&str> {
        self.points
            .iter()
            .find(|p| p.id == point_id && p.status == NightStatus::Completed)
            .and_then(|p| p.run_id.as_deref())
    }

    /// Records what became of a point, replacing an earlier entry for it.
    pub fn record(&mut self, point: NightPoint) {
        if !self.hardware_classes.contains(&point.hardware) {
            self.hardware_classes.push(point.hardware.clone());
        }
        match self.points.iter_mut().find(|p| p.id == point.id) {
            Some(slot) => *slot = point,
            None => self.points.push(point),
        }
        self.sort();
    }

    pub fn count(&self, status: NightStatus) -> usize {
        self.points.iter().filter(|p| p.status == status).count()
    }

    /// Merges another runner's record of the same night into this one: a
    /// union of points. A point completed on either side is completed; a
    /// point completed on both with different runs, or the same lockfile
    /// with different bytes, is a conflict — reported, and this side kept.
    pub fn merge(&mut self, other: &NightRecord) -> Vec<String> {
        let mut conflicts = Vec::new();
        if other.night != self.night {
            conflicts.push(format!(
                "night `{}` cannot merge into night `{}`",
                other.night, self.night
            ));
            return conflicts;
        }
        merge_digests(&mut self.locks, &other.locks, "lockfile ", &mut conflicts);
        for (class, theirs) in &other.local_locks {
            let mine = self.local_locks.entry(class.clone()).or_default();
            let what = format!("`{class}`'s local overlay ");
            merge_digests(mine, theirs, &what, &mut conflicts);
        }
        for theirs in &other.points {
            match self.points.iter_mut().find(|p| p.id == theirs.id) {
                None => self.points.push(theirs.clone()),
                Some(mine) => match (mine.status, theirs.status) {
                    (NightStatus::Failed, NightStatus::Completed) => *mine = theirs.clone(),
                    (NightStatus::Completed, NightStatus::Completed)
                        if mine.run_id != theirs.run_id =>
                    {
                        conflicts.push(format!(
                            "point {}: completed as run {} here and as run {} already",
                            theirs.id,
                            theirs.run_id.as_deref().unwrap_or("?"),
                            mine.run_id.as_deref().unwrap_or("?")
                        ))
                    }
                    _ => {}
                },
            }
        }
        for class in &other.hardware_classes {
            if !self.hardware_classes.contains(class) {
                self.hardware_classes.push(class.clone());
            }
        }
        self.sort();
        conflicts
    }

    /// The night as a table: one line per point, then the totals.
    pub fn render_table(&self) -> String {
        let header = [
            "group",
            "point",
            "hardware",
            "experiment",
            "load",
            "status",
            "run / reason",
        ];
        let rows: Vec<[String; 7]> = self
            .points
            .iter()
            .map(|p| {
                let detail = match p.status {
                    NightStatus::Completed => p.run_id.clone().unwrap_or_default(),
                    NightStatus::Failed => first_line(p.reason.as_deref().unwrap_or("")),
                };
                [
                    p.group.clone(),
                    p.id.chars().take(12).collect(),
                    p.hardware.clone(),
                    p.experiment.clone(),
                    p.load.clone(),
                    match p.status {
                        NightStatus::Completed => "completed".to_string(),
                        NightStatus::Failed => "FAILED".to_string(),
                    },
                    detail,
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = format!("night {}\n", self.night);
        let line = |cells: Vec<&str>, out: &mut String| {
            let mut l = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(cell);
                } else {
                    l.push_str(&format!("{cell:<w$}  "));
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(header.to_vec(), &mut out);
        for r in &rows {
            line(r.iter().map(String::as_str).collect(), &mut out);
        }
        out.push_str(&format!(
            "{} point(s): {} completed, {} failed\n",
            self.points.len(),
            self.count(NightStatus::Completed),
            self.count(NightStatus::Failed)
        ));
        out
    }
}

/// The first line of a reason, cut to fit a table cell.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > 80 {
        let mut cut: String = line.chars().take(77).collect();
        cut.push_str("...");
        cut
    } else {
        line.to_string()
    }
}

/// Adds `theirs` lockfile digests to `mine`; the same file with other
/// bytes is a conflict, and `mine` is kept.
fn merge_digests(
    mine: &mut BTreeMap<String, String>,
    theirs: &BTreeMap<String, String>,
    what: &str,
    conflicts: &mut Vec<String>,
) {
    for (file, sha) in theirs {
        match mine.get(file) {
            Some(kept) if kept != sha => conflicts.push(format!(
                "{what}{file}: sha256 {sha} here, {kept} already; the runners used different \
                 locks"
            )),
            Some(_) => {}
            None => {
                mine.insert(file.clone(), sha.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: &str, status: NightStatus, run: &str) -> NightPoint {
        NightPoint {
            id: id.to_string(),
            group: "g1".to_string(),
            hardware: "cpu".to_string(),
            experiment: "sim".to_string(),
            load: "concurrency=1".to_string(),
            status,
            run_id: Some(run.to_string()),
            reason: (status == NightStatus::Failed).then(|| "engine failed to start".to_string()),
        }
    }

    #[test]
    fn a_record_round_trips_and_a_future_format_is_named() {
        let mut r = NightRecord::new("2026-11-24");
        r.record(point("b", NightStatus::Failed, "r1"));
        r.record(point("a", NightStatus::Completed, "r2"));
        let dir = tempfile::tempdir().unwrap();
        let path = night_path(dir.path(), "2026-11-24");
        r.save(&path).unwrap();
        let back = NightRecord::load(&path).unwrap().unwrap();
        assert_eq!(back, r);
        assert_eq!(back.points[0].id, "a", "sorted by group then id");
        assert_eq!(back.completed_run("a"), Some("r2"));
        assert_eq!(back.completed_run("b"), None);

        let future = r.to_json().replace(NIGHT_FORMAT, "infermark.night.v9");
        let e = NightRecord::from_slice(&path, future.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("infermark.night.v9"), "{e}");
    }

    #[test]
    fn local_overlay_digests_are_kept_per_class_absent_when_none_and_merged() {
        let none = NightRecord::new("n");
        assert!(
            !none.to_json().contains("local_locks"),
            "{}",
            none.to_json()
        );

        let overlay = |sha: &str| BTreeMap::from([("images.lock".to_string(), sha.to_string())]);
        let mut cpu = NightRecord::new("n");
        cpu.local_locks.insert("cpu".into(), overlay("aa"));
        let dir = tempfile::tempdir().unwrap();
        let path = night_path(dir.path(), "n");
        cpu.save(&path).unwrap();
        assert_eq!(NightRecord::load(&path).unwrap().unwrap(), cpu);

        let mut gpu = NightRecord::new("n");
        gpu.local_locks
            .insert("nvidia-h100-sxm".into(), overlay("bb"));
        assert!(cpu.merge(&gpu).is_empty());
        assert_eq!(cpu.local_locks.len(), 2);

        let mut other_cpu = NightRecord::new("n");
        other_cpu.local_locks.insert("cpu".into(), overlay("cc"));
        let conflicts = cpu.merge(&other_cpu);
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert!(
            conflicts[0].contains("`cpu`'s local overlay images.lock"),
            "{conflicts:?}"
        );
        assert_eq!(cpu.local_locks["cpu"], overlay("aa"), "this side kept");
    }

    #[test]
    fn merging_keeps_completed_points_and_reports_conflicts() {
        let mut a = NightRecord::new("n");
        a.locks.insert("files.lock".into(), "aa".into());
        a.record(point("p1", NightStatus::Failed, "r1"));
        a.record(point("p2", NightStatus::Completed, "r2"));
        let mut b = NightRecord::new("n");
        b.locks.insert("files.lock".into(), "aa".into());
        b.record(point("p1", NightStatus::Completed, "r3"));
        b.record(point("p3", NightStatus::Completed, "r4"));
        assert!(a.merge(&b).is_empty());
        assert_eq!(a.points.len(), 3);
        assert_eq!(a.completed_run("p1"), Some("r3"));

        let mut c = NightRecord::new("n");
        c.locks.insert("files.lock".into(), "bb".into());
        c.record(point("p2", NightStatus::Completed, "r9"));
        let conflicts = a.merge(&c);
        assert_eq!(conflicts.len(), 2, "{conflicts:?}");
        assert_eq!(a.completed_run("p2"), Some("r2"), "this side kept");
    }

    #[test]
    fn the_night_table_lists_points_by_group_with_run_or_reason() {
        let mut r = NightRecord::new("2026-11-24");
        r.record(point(
            "a1",
            NightStatus::Completed,
            "20261124T010203Z-0a1b2c3d",
        ));
        let mut bad = point("b2", NightStatus::Failed, "20261124T010509Z-4e5f6a7b");
        bad.group = "g2".to_string();
        bad.reason = Some(format!(
            "engine failed to start: {}\nlog tail",
            "x".repeat(100)
        ));
        r.record(bad);
        insta::assert_snapshot!(r.render_table());
    }

    #[test]
    fn night_ids_are_directory_names() {
        assert!(check_night_id("2026-11-24").is_ok());
        assert!(check_night_id("nightly_7.b").is_ok());
        for bad in ["", ".", "..", "a/b", "x y"] {
            assert!(check_night_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            today(std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 365)),
            "1971-01-01"
        );
    }
}
