//! What is costly to derive from a run, kept between builds: its latency
//! CDFs (from `requests.jsonl`), its audit and its signature status.
//!
//! A committed run never changes, but a tree can be edited or merged, so
//! the cache is keyed by a fingerprint of the run directory's files (name,
//! length, modification time, inode) and by the trusted keys: any change
//! to a file derives the run again. The cache lives in the site directory
//! (`.infermark-site/cache.json`), is written only when it changed, and a
//! cache that does not parse is simply rebuilt.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SiteError;
use crate::metrics::{RequestSample, records_from_text, request_samples};
use crate::provenance::sign::{self, SignatureStatus, TrustedKey};
use crate::store::layout::{REQUESTS_FILE, STATEMENT_FILE};
use crate::store::{RunStatus, StoredRun, bounded};

/// The most read of one `requests.jsonl`.
pub const RECORDS_CAP: u64 = 1 << 30;
/// Points of each CDF kept (quantiles 0, 1/(N-1), ..., 1).
pub const CDF_POINTS: usize = 51;
const FORMAT: &str = "infermark.site-cache.v1";

/// What is derived from one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Derived {
    /// sha256 of `provenance.json` (completed runs).
    pub statement_sha256: Option<String>,
    /// `unsigned`, `signed`, `trusted` or `invalid`.
    pub signature: String,
    /// Key ids of the envelope's signatures.
    pub keyids: Vec<String>,
    /// Why the envelope is invalid.
    pub signature_problem: Option<String>,
    /// Audit problems, one line each; empty when clean. `None` for a
    /// failed run (not a result, not audited).
    pub audit: Option<Vec<String>>,
    pub ttft_cdf_ms: Vec<f64>,
    pub itl_cdf_ms: Vec<f64>,
    pub e2el_cdf_ms: Vec<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Entry {
    fingerprint: String,
    derived: Derived,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    format: String,
    runs: BTreeMap<String, Entry>,
}

/// The cache of one site directory.
#[derive(Debug)]
pub struct Cache {
    path: PathBuf,
    trust: Vec<TrustedKey>,
    trust_ids: String,
    old: BTreeMap<String, Entry>,
    new: BTreeMap<String, Entry>,
    /// Runs derived in this build (not taken from the cache).
    pub derived_runs: usize,
}

impl Cache {
    /// Opens the cache under `site`; an absent or unreadable one is empty.
    pub fn open(site: &Path, trust: Vec<TrustedKey>) -> Cache {
        let path = site.join(super::write::STATE_DIR).join("cache.json");
        let old = bounded::read(&path, 1 << 30)
            .ok()
            .and_then(|b| serde_json::from_slice::<Stored>(&b).ok())
            .filter(|s| s.format == FORMAT)
            .map(|s| s.runs)
            .unwrap_or_default();
        let trust_ids = trust
            .iter()
            .map(|k| k.keyid().to_string())
            .collect::<Vec<_>>()
            .join(",");
        Cache {
            path,
            trust,
            trust_ids,
            old,
            new: BTreeMap::new(),
            derived_runs: 0,
        }
    }

    /// The derived data of `run`, from the cache when its files are as
    /// they were.
    pub fn derived(&mut self, run: &StoredRun, files: &[String]) -> Result<Derived, SiteError> {
        let key = format!("{}/{}", crate::store::file_name(&run.point_dir), run.run_id);
        let fingerprint = self.fingerprint(run, files);
        if let Some(e) = self.old.get(&key)
            && e.fingerprint == fingerprint
        {
            let derived = e.derived.clone();
            self.new.insert(key, e.clone());
            return Ok(derived);
        }
        let derived = derive(run, &self.trust)?;
        self.derived_runs += 1;
        self.new.insert(
            key,
            Entry {
                fingerprint,
                derived: derived.clone(),
            },
        );
        Ok(derived)
    }

    fn fingerprint(&self, run: &StoredRun, files: &[String]) -> String {
        let mut s = format!("trust={};", self.trust_ids);
        for name in files {
            if let Ok(m) = run.dir.join(name).symlink_metadata() {
                s.push_str(&format!(
                    "{name}:{}:{}.{}:{};",
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ino()
                ));
            }
        }
        s
    }

    /// The cache's bytes and path when they differ from what was read;
    /// runs no longer in the tree are dropped.
    pub fn finish(self) -> Option<(PathBuf, Vec<u8>)> {
        let same = self.old.len() == self.new.len()
            && self
                .old
                .iter()
                .zip(&self.new)
                .all(|((ka, a), (kb, b))| ka == kb && a.fingerprint == b.fingerprint);
        if same {
            return None;
        }
        let stored = Stored {
            format: FORMAT.to_string(),
            runs: self.new,
        };
        serde_json::to_vec(&stored).ok().map(|b| (self.path, b))
    }
}

fn derive(run: &StoredRun, trust: &[TrustedKey]) -> Result<Derived, SiteError> {
    let mut d = Derived {
        signature: "unsigned".to_string(),
        ..Derived::default()
    };
    if run.status == RunStatus::Failed {
        return Ok(d);
    }
    let statement = run.dir.join(STATEMENT_FILE);
    let bytes = bounded::read(&statement, super::model::JSON_CAP)?;
    d.statement_sha256 = Some(super::sha256_hex(&bytes));
    match sign::check_envelope(&statement, trust) {
        SignatureStatus::Unsigned => {}
        SignatureStatus::Untrusted { keyids } => {
            d.signature = "signed".to_string();
            d.keyids = keyids;
        }
        SignatureStatus::Trusted { keyid } => {
            d.signature = "trusted".to_string();
            d.keyids = vec![keyid];
        }
        SignatureStatus::Invalid { reason } => {
            d.signature = "invalid".to_string();
            d.signature_problem = Some(reason);
        }
    }
    let trust = (!trust.is_empty()).then_some(trust);
    d.audit = Some(match crate::verify::audit_with_trust(&run.dir, trust) {
        Ok(report) => report
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.file.display(), p.message))
            .collect(),
        Err(e) => vec![e.to_string()],
    });
    let path = run.dir.join(REQUESTS_FILE);
    let text = bounded::read_text(&path, RECORDS_CAP)?;
    let records = records_from_text(&path, &text).map_err(SiteError::input)?;
    let samples = request_samples(&records);
    let pick = |f: fn(&RequestSample, &mut Vec<f64>)| {
        let mut v = Vec::new();
        for s in &samples {
            f(s, &mut v);
        }
        cdf(v)
    };
    d.ttft_cdf_ms = pick(|s, v| v.extend(s.ttft_ms));
    d.itl_cdf_ms = pick(|s, v| v.extend_from_slice(&s.itl_ms));
    d.e2el_cdf_ms = pick(|s, v| v.push(s.e2el_ms));
    Ok(d)
}

/// [`CDF_POINTS`] quantiles of `values` (nearest rank), or none when empty.
pub fn cdf(mut values: Vec<f64>) -> Vec<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return Vec::new();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (0..CDF_POINTS)
        .map(|i| {
            let q = i as f64 / (CDF_POINTS - 1) as f64;
            let at = ((q * (n - 1) as f64).round() as usize).min(n - 1);
            values[at]
        })
        .collect()
}
