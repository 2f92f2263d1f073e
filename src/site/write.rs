//! Putting the built site in place incrementally: a file is written only
//! when its bytes differ from what is there, and files an earlier build
//! wrote that this build no longer produces are removed.
//!
//! The build's own record (`.infermark-site/manifest.json`) lists every
//! file it owns with the sha256 of the bytes it wrote, so an unchanged
//! file costs a hash and a `stat`, not a read; a file whose record does
//! not match is compared byte for byte before it is replaced. Files the
//! build never wrote are left alone. Every write is the one atomic write
//! (`store::atomic`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SiteError;
use crate::store::{atomic, bounded};

/// The build's own directory inside the site: the manifest and the cache.
pub const STATE_DIR: &str = ".infermark-site";
const MANIFEST_FORMAT: &str = "infermark.site-manifest.v1";
/// The most copied from one raw file of the tree.
pub const RAW_CAP: u64 = 1 << 30;

/// One file of the site.
#[derive(Debug, Clone)]
pub enum Content {
    Bytes(Vec<u8>),
    /// A raw file of the results tree, copied as it is.
    Copy(PathBuf),
}

/// Every file of a build, by `/`-separated path under the site root.
#[derive(Debug, Default)]
pub struct Output {
    pub files: BTreeMap<String, Content>,
}

impl Output {
    pub fn put(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), Content::Bytes(bytes.into()));
    }

    pub fn copy(&mut self, path: impl Into<String>, src: PathBuf) {
        self.files.insert(path.into(), Content::Copy(src));
    }
}

/// What a build changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Files written (new or changed), sorted.
    pub written: Vec<String>,
    /// Files of an earlier build removed, sorted.
    pub removed: Vec<String>,
    /// Files left as they were.
    pub unchanged: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    format: String,
    files: BTreeMap<String, Entry>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// `sha256:<hex>` of the bytes written, or `copy:<stamp of the source>`.
    key: String,
    /// The written file's stamp, so an edit by hand is noticed.
    stamp: String,
}

fn manifest_path(site: &Path) -> PathBuf {
    site.join(STATE_DIR).join("manifest.json")
}

fn read_manifest(site: &Path) -> Manifest {
    bounded::read(&manifest_path(site), 1 << 30)
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        .filter(|m| m.format == MANIFEST_FORMAT)
        .unwrap_or_default()
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SiteError + '_ {
    move |source| SiteError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// A file's identity without reading it: length, mtime and inode.
fn stamp(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = path.symlink_metadata().ok().filter(|m| m.is_file())?;
    Some(format!(
        "{}:{}.{}:{}",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    ))
}

/// Writes `out` under `site`: only what differs, and removes what an
/// earlier build wrote that `out` lacks. `extra` are the build's own state
/// files (the cache), written if given and never counted.
pub fn apply(
    site: &Path,
    out: Output,
    extra: Option<(PathBuf, Vec<u8>)>,
) -> Result<WriteReport, SiteError> {
    std::fs::create_dir_all(site.join(STATE_DIR)).map_err(io_error(site))?;
    let old = read_manifest(site);
    let mut new = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        files: BTreeMap::new(),
    };
    let mut report = WriteReport::default();
    for (rel, content) in out.files {
        let dest = site.join(&rel);
        // What is on disk is what this build recorded when the content key
        // and the file's own stamp both match; otherwise compare bytes.
        let recorded = |key: &str| {
            old.files
                .get(&rel)
                .is_some_and(|e| e.key == key && Some(&e.stamp) == stamp(&dest).as_ref())
        };
        let (key, bytes) = match content {
            Content::Bytes(bytes) => (format!("sha256:{}", super::sha256_hex(&bytes)), Some(bytes)),
            Content::Copy(src) => {
                let key = stamp(&src).map(|s| format!("copy:{s}")).unwrap_or_default();
                if recorded(&key) {
                    (key, None)
                } else {
                    (key, Some(bounded::read(&src, RAW_CAP)?))
                }
            }
        };
        let unchanged = match &bytes {
            None => true,
            Some(b) => {
                recorded(&key)
                    || (dest
                        .symlink_metadata()
                        .is_ok_and(|m| m.is_file() && m.len() == b.len() as u64)
                        && std::fs::read(&dest).is_ok_and(|d| d == *b))
            }
        };
        if unchanged {
            report.unchanged += 1;
        } else if let Some(b) = bytes {
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            }
            atomic::write(&dest, &b).map_err(io_error(&dest))?;
            report.written.push(rel.clone());
        }
        let stamp = stamp(&dest).unwrap_or_default();
        new.files.insert(rel, Entry { key, stamp });
    }
    for rel in old.files.keys() {
        if new.files.contains_key(rel) {
            continue;
        }
        let path = site.join(rel);
        if path.symlink_metadata().is_ok_and(|m| m.is_file()) {
            std::fs::remove_file(&path).map_err(io_error(&path))?;
            report.removed.push(rel.clone());
            remove_empty_parents(site, &path);
        }
    }
    if let Some((path, bytes)) = extra {
        atomic::write(&path, &bytes).map_err(io_error(&path))?;
    }
    if old.files != new.files || old.format != MANIFEST_FORMAT {
        let path = manifest_path(site);
        let bytes = serde_json::to_vec(&new).unwrap_or_default();
        atomic::write(&path, &bytes).map_err(io_error(&path))?;
    }
    Ok(report)
}

/// Removes the directories left empty above a removed file, up to `site`.
fn remove_empty_parents(site: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == site || !d.starts_with(site) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(files: &[(&str, &str)]) -> Output {
        let mut out = Output::default();
        for (p, b) in files {
            out.put(*p, b.as_bytes().to_vec());
        }
        out
    }

    #[test]
    fn a_second_identical_build_writes_nothing() {
        let site = tempfile::tempdir().unwrap();
        let files = [("index.html", "home"), ("points/a/index.html", "a")];
        let first = apply(site.path(), output(&files), None).unwrap();
        assert_eq!(first.written, ["index.html", "points/a/index.html"]);
        let second = apply(site.path(), output(&files), None).unwrap();
        assert!(
            second.written.is_empty() && second.removed.is_empty(),
            "{second:?}"
        );
        assert_eq!(second.unchanged, 2);
    }

    #[test]
    fn only_changed_files_are_written_and_stale_ones_removed() {
        let site = tempfile::tempdir().unwrap();
        let one = [("index.html", "v1"), ("a/x.html", "x"), ("b/y.html", "y")];
        apply(site.path(), output(&one), None).unwrap();
        let two = [("index.html", "v2"), ("a/x.html", "x"), ("c/z.html", "z")];
        let r = apply(site.path(), output(&two), None).unwrap();
        assert_eq!(r.written, ["c/z.html", "index.html"]);
        assert_eq!(r.removed, ["b/y.html"]);
        assert!(
            !site.path().join("b").exists(),
            "the emptied directory stays"
        );
        assert_eq!(
            std::fs::read_to_string(site.path().join("index.html")).unwrap(),
            "v2"
        );
    }

    #[test]
    fn a_file_the_build_did_not_write_is_never_removed() {
        let site = tempfile::tempdir().unwrap();
        std::fs::write(site.path().join("CNAME"), "example.org").unwrap();
        apply(site.path(), output(&[("index.html", "x")]), None).unwrap();
        apply(site.path(), output(&[]), None).unwrap();
        assert!(site.path().join("CNAME").exists());
        assert!(!site.path().join("index.html").exists());
    }

    #[test]
    fn a_file_edited_by_hand_is_restored() {
        let site = tempfile::tempdir().unwrap();
        apply(site.path(), output(&[("index.html", "abc")]), None).unwrap();
        std::fs::write(site.path().join("index.html"), "xyz").unwrap();
        let r = apply(site.path(), output(&[("index.html", "abc")]), None).unwrap();
        assert_eq!(r.written, ["index.html"]);
    }
}
