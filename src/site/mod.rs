//! `infermark report`: a static site built from a results tree — HTML
//! pages with SVG charts, a versioned JSON API as files, CSV and JSONL
//! exports, and copies of the raw files every page links to.
//!
//! The site works opened from `file://` and on any static host: nothing is
//! fetched when it is viewed (no CDN, web font or tracker), charts are drawn
//! here as SVG, and the one script only sorts and filters tables.
//!
//! The build is `load` (the tree, through each format's own reader, bounded
//! and never following a symlink: [`model`]) → pages ([`pages`], [`svg`],
//! [`html`]), documents ([`api`], [`schema`]) and exports ([`export`]) →
//! [`write`], which writes only the files whose bytes changed and removes
//! the ones an earlier build wrote that this build no longer makes. Derived
//! figures that cost a read of every record are cached by the run's files
//! ([`cache`]), so a rebuild after one new night reads only that night's
//! runs in full.
//!
//! `site` reads the formats of `night` (night records) and `verify` (the
//! audit, verdict statements) although those modules sit above it in the
//! module map: a report is a reader of everything the pipeline wrote, and
//! reusing each format's one reader is what keeps them agreed.

pub mod api;
pub mod cache;
pub mod export;
pub mod html;
pub mod model;
pub mod pages;
pub mod schema;
pub mod svg;
pub mod write;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::provenance::sign::TrustedKey;
use crate::store::bounded::BoundedError;

pub use write::WriteReport;

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(
        "{}: no results tree there; pass the directory `infermark run` or `nightly` wrote with --results DIR",
        .0.display()
    )]
    NoResults(PathBuf),
    #[error(transparent)]
    Read(#[from] BoundedError),
    #[error("{0}")]
    Input(String),
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: the site directory must not be inside the results tree {}",
        site.display(),
        results.display()
    )]
    SiteInsideResults { site: PathBuf, results: PathBuf },
}

impl SiteError {
    fn input(e: impl std::fmt::Display) -> SiteError {
        SiteError::Input(e.to_string())
    }

    /// Whether the fault is in what was given (a missing or malformed
    /// tree, a bad path), not in this machine.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, SiteError::Write { .. })
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub results: PathBuf,
    pub out: PathBuf,
    /// Keys a run's signature is checked against.
    pub trust: Vec<TrustedKey>,
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub points: usize,
    pub runs: usize,
    pub nights: usize,
    /// Runs whose files were read in full (not from the cache).
    pub derived_runs: usize,
    pub files: usize,
    pub write: WriteReport,
    /// The largest HTML page and its size in bytes.
    pub largest_page: Option<(String, usize)>,
}

impl BuildReport {
    /// `built site/ from 3 points, 6 runs, 2 nights: 5 files written, 0 removed, 120 unchanged`
    pub fn render(&self, out: &Path) -> String {
        format!(
            "built {} from {} points, {} runs, {} nights: {} files written, {} removed, {} unchanged; open {}\n",
            out.display(),
            self.points,
            self.runs,
            self.nights,
            self.write.written.len(),
            self.write.removed.len(),
            self.write.unchanged,
            out.join("index.html").display()
        )
    }
}

/// sha256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    crate::digest::hex(&Sha256::digest(bytes))
}

/// Builds the site of `opts.results` into `opts.out`.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, SiteError> {
    let results = &opts.results;
    if !store_root(results) {
        return Err(SiteError::NoResults(results.clone()));
    }
    if let (Ok(r), Ok(o)) = (results.canonicalize(), absolute(&opts.out))
        && o.starts_with(&r)
    {
        return Err(SiteError::SiteInsideResults {
            site: opts.out.clone(),
            results: results.clone(),
        });
    }
    let mut cache = cache::Cache::open(&opts.out, opts.trust.clone());
    let tree = model::load(results, &mut cache)?;
    let derived_runs = cache.derived_runs;
    let mut out = write::Output::default();
    let view = pages::View::new(&tree);
    let mut largest: Option<(String, usize)> = None;
    for page in pages::all(&view) {
        if largest.as_ref().is_none_or(|(_, n)| page.html.len() > *n) {
            largest = Some((page.path.clone(), page.html.len()));
        }
        out.put(page.path, page.html);
    }
    out.put("assets/site.css", html::CSS);
    out.put("assets/site.js", html::JS);
    out.put(api::index_path(), api::to_bytes(&api::index(&tree)));
    for n in &tree.nights {
        out.put(
            api::night_path(&n.night),
            api::to_bytes(&api::night(&view, n)),
        );
        let rel = format!("nights/{}/night.json", n.night);
        out.copy(html::raw_file(&rel), results.join(&rel));
    }
    for p in &tree.points {
        out.put(api::point_path(&p.id), api::to_bytes(&api::point(p)));
        let rel = format!("points/{}/point.json", p.id);
        out.copy(html::raw_file(&rel), results.join(&rel));
        for r in &p.runs {
            out.put(api::run_path(&r.run_id), api::to_bytes(&api::run(p, r)));
            for f in &r.files {
                let rel = format!("{}/{f}", r.rel_dir);
                out.copy(html::raw_file(&rel), results.join(&rel));
            }
        }
        for v in &p.verdicts {
            out.copy(html::raw_file(&v.rel_path), results.join(&v.rel_path));
        }
    }
    for (name, schema) in schema::all() {
        out.put(format!("api/v1/schema/{name}"), api::to_bytes(&schema));
    }
    out.put("api/v1/openapi.json", api::to_bytes(&schema::openapi()));
    let (csv, jsonl) = export::runs(&tree);
    out.put("runs.csv", csv);
    out.put("runs.jsonl", jsonl);
    let files = out.files.len();
    let report = write::apply(&opts.out, out, cache.finish())?;
    Ok(BuildReport {
        points: tree.points.len(),
        runs: tree.points.iter().map(|p| p.runs.len()).sum(),
        nights: tree.nights.len(),
        derived_runs,
        files,
        write: report,
        largest_page: largest,
    })
}

/// Whether `dir` is a directory (not a symlink to one) that can be read.
fn store_root(dir: &Path) -> bool {
    crate::store::bounded::is_real_dir(dir)
}

/// `path` made absolute through its nearest existing ancestor.
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => break,
        }
    }
    let mut abs = existing.canonicalize()?;
    abs.extend(rest.iter().rev());
    Ok(abs)
}
