//! Merging result trees written by many runners into one.
//!
//! Points are named by the hash of their canonical bytes and runs by a
//! unique id, so trees merge as a union: what is missing is copied, an
//! identical file is skipped, and the same path with different bytes is a
//! conflict — reported, never overwritten. A run directory is copied whole
//! into `.tmp/` and renamed into place, so a merge cut short never leaves
//! half a run looking like a result.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{FAILED_DIR, POINTS_DIR, RUNS_DIR, StoreError, TMP_DIR, read_dir_sorted};
use super::{atomic, sync_dir};

/// The same path holds different bytes in the two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The file in the tree being merged in.
    pub source: PathBuf,
    /// The file already in the target tree (kept as it was).
    pub target: PathBuf,
    pub message: String,
}

/// What merging one tree did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectReport {
    /// Run directories (completed or failed) copied in.
    pub runs_copied: usize,
    /// Run directories already present with identical files.
    pub runs_identical: usize,
    /// Files copied outside new run directories (e.g. `point.json`).
    pub files_copied: usize,
    /// Files already present with identical bytes.
    pub files_identical: usize,
    pub conflicts: Vec<Conflict>,
}

impl CollectReport {
    pub fn add(&mut self, other: CollectReport) {
        self.runs_copied += other.runs_copied;
        self.runs_identical += other.runs_identical;
        self.files_copied += other.files_copied;
        self.files_identical += other.files_identical;
        self.conflicts.extend(other.conflicts);
    }
}

/// Merges the `points/` of the results tree `src` into the tree `into`
/// (created when absent). Derived and transient parts (`index.sqlite`,
/// `.tmp/`) are not merged; rebuild the index afterwards.
pub fn collect_points(into: &Path, src: &Path) -> Result<CollectReport, StoreError> {
    let mut report = CollectReport::default();
    let src_points = src.join(POINTS_DIR);
    if !src_points.is_dir() {
        return Ok(report);
    }
    let into_points = into.join(POINTS_DIR);
    create_dir_all(&into_points)?;
    for src_point in read_dir_sorted(&src_points)? {
        let Some(name) = src_point.file_name() else {
            continue;
        };
        let dest_point = into_points.join(name);
        if !src_point.is_dir() {
            merge_file(&src_point, &dest_point, &mut report)?;
            continue;
        }
        create_dir_all(&dest_point)?;
        for entry in read_dir_sorted(&src_point)? {
            let Some(name) = entry.file_name() else {
                continue;
            };
            let dest = dest_point.join(name);
            let is_runs = name == RUNS_DIR || name == FAILED_DIR;
            if is_runs && entry.is_dir() {
                create_dir_all(&dest)?;
                for run in read_dir_sorted(&entry)? {
                    let Some(run_name) = run.file_name() else {
                        continue;
                    };
                    merge_run(into, &run, &dest.join(run_name), &mut report)?;
                }
            } else {
                merge_any(&entry, &dest, &mut report)?;
            }
        }
    }
    Ok(report)
}

/// A run directory: copied whole when absent, compared file by file when
/// present. A committed run is never changed, not even to add a file.
fn merge_run(
    root: &Path,
    src: &Path,
    dest: &Path,
    report: &mut CollectReport,
) -> Result<(), StoreError> {
    if !dest.exists() {
        let tmp = root.join(TMP_DIR).join(format!(
            "collect-{}-{}",
            std::process::id(),
            src.file_name().and_then(|n| n.to_str()).unwrap_or("run")
        ));
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        copy_tree(src, &tmp)?;
        fs::rename(&tmp, dest).map_err(|source| StoreError::Move {
            from: tmp.clone(),
            to: dest.to_path_buf(),
            source,
        })?;
        // copy_tree synced the files and directories; the rename is
        // durable once its parent is.
        if let Some(parent) = dest.parent() {
            sync_dir(parent)?;
        }
        report.runs_copied += 1;
        return Ok(());
    }
    let before = report.conflicts.len();
    let src_files = files_under(src)?;
    let dest_files = files_under(dest)?;
    for rel in &src_files {
        let (s, d) = (src.join(rel), dest.join(rel));
        if !dest_files.contains(rel) {
            report.conflicts.push(Conflict {
                source: s,
                target: d,
                message: "the run already here lacks this file; a stored run is not changed"
                    .to_string(),
            });
        } else if !same_bytes(&s, &d)? {
            report.conflicts.push(conflict(s, d));
        }
    }
    for rel in dest_files.iter().filter(|r| !src_files.contains(r)) {
        report.conflicts.push(Conflict {
            source: src.join(rel),
            target: dest.join(rel),
            message: "the run being merged lacks this file".to_string(),
        });
    }
    if report.conflicts.len() == before {
        report.runs_identical += 1;
    }
    Ok(())
}

/// A file or a directory outside run directories, merged entry by entry.
fn merge_any(src: &Path, dest: &Path, report: &mut CollectReport) -> Result<(), StoreError> {
    if src.is_dir() {
        create_dir_all(dest)?;
        for entry in read_dir_sorted(src)? {
            if let Some(name) = entry.file_name() {
                merge_any(&entry, &dest.join(name), report)?;
            }
        }
        Ok(())
    } else {
        merge_file(src, dest, report)
    }
}

fn merge_file(src: &Path, dest: &Path, report: &mut CollectReport) -> Result<(), StoreError> {
    if dest.exists() {
        if dest.is_file() && same_bytes(src, dest)? {
            report.files_identical += 1;
        } else {
            report
                .conflicts
                .push(conflict(src.to_path_buf(), dest.to_path_buf()));
        }
        return Ok(());
    }
    copy_atomically(src, dest)?;
    report.files_copied += 1;
    Ok(())
}

fn conflict(source: PathBuf, target: PathBuf) -> Conflict {
    Conflict {
        source,
        target,
        message: "same path, different bytes; kept the file already here".to_string(),
    }
}

/// Copies a file into place atomically (see [`atomic`]).
pub fn copy_atomically(src: &Path, dest: &Path) -> Result<(), StoreError> {
    atomic::copy(src, dest).map_err(|source| StoreError::Write {
        path: dest.to_path_buf(),
        source,
    })
}

fn copy_tree(src: &Path, dest: &Path) -> Result<(), StoreError> {
    create_dir_all(dest)?;
    for entry in read_dir_sorted(src)? {
        let Some(name) = entry.file_name() else {
            continue;
        };
        let to = dest.join(name);
        if entry.is_dir() {
            copy_tree(&entry, &to)?;
        } else {
            copy_atomically(&entry, &to)?;
        }
    }
    sync_dir(dest)
}

/// Paths of the files under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StoreError> {
        for entry in read_dir_sorted(dir)? {
            if entry.is_dir() {
                walk(base, &entry, out)?;
            } else if let Ok(rel) = entry.strip_prefix(base) {
                out.push(rel.to_path_buf());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Compares two files chunk by chunk (result files can be large).
fn same_bytes(a: &Path, b: &Path) -> Result<bool, StoreError> {
    let open = |p: &Path| {
        fs::File::open(p).map_err(|source| StoreError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let len = |f: &fs::File, p: &Path| {
        f.metadata()
            .map(|m| m.len())
            .map_err(|source| StoreError::Read {
                path: p.to_path_buf(),
                source,
            })
    };
    if len(&fa, a)? != len(&fb, b)? {
        return Ok(false);
    }
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|source| StoreError::Read {
            path: a.to_path_buf(),
            source,
        })?;
        let nb = read_full(&mut fb, &mut bb).map_err(|source| StoreError::Read {
            path: b.to_path_buf(),
            source,
        })?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn create_dir_all(path: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(path).map_err(|source| StoreError::Create {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn a_union_copies_missing_runs_skips_identical_and_reports_conflicts() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (a.path(), b.path());
        write(&a.join("points/p1/point.json"), "P1");
        write(&a.join("points/p1/runs/r1/summary.json"), "S1");
        write(&b.join("points/p1/point.json"), "P1");
        write(&b.join("points/p1/runs/r1/summary.json"), "S1");
        write(&b.join("points/p1/runs/r2/summary.json"), "S2");
        write(&b.join("points/p1/failed/r3/failure.json"), "F3");
        write(&b.join("points/p2/point.json"), "P2-other");
        write(&a.join("points/p2/point.json"), "P2");
        write(&b.join("index.sqlite"), "derived");

        let r = collect_points(a, b).unwrap();
        assert_eq!(r.runs_copied, 2);
        assert_eq!(r.runs_identical, 1);
        assert_eq!(r.files_identical, 1);
        assert_eq!(r.conflicts.len(), 1);
        assert!(r.conflicts[0].target.ends_with("points/p2/point.json"));
        assert_eq!(
            fs::read_to_string(a.join("points/p2/point.json")).unwrap(),
            "P2"
        );
        assert_eq!(
            fs::read_to_string(a.join("points/p1/failed/r3/failure.json")).unwrap(),
            "F3"
        );
        assert!(
            !a.join("index.sqlite").exists(),
            "derived files are not merged"
        );
        let tmp: Vec<_> = fs::read_dir(a.join(TMP_DIR)).unwrap().collect();
        assert!(tmp.is_empty(), "nothing left in progress");

        // Merging again changes nothing.
        let again = collect_points(a, b).unwrap();
        assert_eq!((again.runs_copied, again.runs_identical), (0, 3));
    }

    #[test]
    fn a_run_that_differs_in_one_file_is_a_conflict_and_left_alone() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (a.path(), b.path());
        write(&a.join("points/p/runs/r/summary.json"), "one");
        write(&b.join("points/p/runs/r/summary.json"), "two");
        write(&b.join("points/p/runs/r/extra.json"), "x");
        let r = collect_points(a, b).unwrap();
        assert_eq!(r.conflicts.len(), 2, "{:?}", r.conflicts);
        assert_eq!(r.runs_identical, 0);
        assert!(!a.join("points/p/runs/r/extra.json").exists());
        assert_eq!(
            fs::read_to_string(a.join("points/p/runs/r/summary.json")).unwrap(),
            "one"
        );
    }
}
