//! The host's last calibration on disk: its one writer ([`save_last`]), its
//! one reader ([`load_last`]), where it lives ([`last_path`]) and which
//! machine it belongs to ([`Machine`]).
//!
//! Every run on the host attaches the last calibration to its
//! `environment.json`, so that a reader of a result knows the client's error
//! bars on that machine; keeping the format's reader and writer together
//! keeps them in step.

use std::path::{Path, PathBuf};

use super::CalibrationReport;

/// Format tag of a saved calibration.
pub const SAVED_FORMAT: &str = "infermark.calibration/v1";

/// Where a host's last calibration is kept: attached from there to the
/// environment of every run on the host (DESIGN, "Calibration").
pub fn last_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("calibration").join("last.json")
}

/// A calibration as saved and attached: the report with when, where and by
/// which harness it was measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedCalibration {
    pub format: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub hostname: String,
    /// `/etc/machine-id` where the host has one: two machines of one host
    /// name sharing a cache directory do not take each other's figures.
    /// Absent from calibrations saved before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    pub harness: crate::probe::Harness,
    pub report: serde_json::Value,
}

/// The machine a calibration belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub hostname: String,
    pub machine_id: Option<String>,
}

impl Machine {
    /// This machine: its host name and `/etc/machine-id`.
    pub fn this() -> Machine {
        Machine {
            hostname: crate::probe::host().hostname,
            machine_id: machine_id(Path::new("/etc/machine-id")),
        }
    }

    /// Whether `saved` was measured here: the same host name, and the same
    /// machine id where both sides have one.
    fn measured(&self, saved: &SavedCalibration) -> bool {
        saved.hostname == self.hostname
            && match (&saved.machine_id, &self.machine_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// The machine id in `path` (systemd's 32 hex digits), if it holds one.
fn machine_id(path: &Path) -> Option<String> {
    let id = std::fs::read_to_string(path).ok()?.trim().to_string();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Saves `report` as the host's last calibration (written whole or not at
/// all: a temporary file renamed over the old one).
pub fn save_last(
    cache_dir: &Path,
    machine: &Machine,
    report: &CalibrationReport,
) -> std::io::Result<PathBuf> {
    let saved = SavedCalibration {
        format: SAVED_FORMAT.to_string(),
        at: crate::clock::rfc3339(crate::clock::now()),
        hostname: machine.hostname.clone(),
        machine_id: machine.machine_id.clone(),
        harness: crate::probe::Harness::current(),
        report: serde_json::to_value(report).map_err(std::io::Error::other)?,
    };
    let path = last_path(cache_dir);
    let dir = path.parent().expect("last_path has a parent");
    std::fs::create_dir_all(dir)?;
    let mut bytes = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    crate::store::atomic::write(&path, &bytes)?;
    Ok(path)
}

/// Why a saved calibration is not attached.
#[derive(Debug, thiserror::Error)]
pub enum LastCalibrationError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: not a saved calibration ({reason}); run `infermark calibrate` again to replace it",
        path.display()
    )]
    Malformed { path: PathBuf, reason: String },
}

/// This machine's last calibration, if one was saved on it: `Ok(None)` when
/// there is none or it was measured on another machine (a cache directory
/// shared between machines).
pub fn load_last(
    cache_dir: &Path,
    machine: &Machine,
) -> Result<Option<SavedCalibration>, LastCalibrationError> {
    let path = last_path(cache_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LastCalibrationError::Read { path, source }),
    };
    let saved: SavedCalibration =
        serde_json::from_slice(&bytes).map_err(|e| LastCalibrationError::Malformed {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if saved.format != SAVED_FORMAT {
        return Err(LastCalibrationError::Malformed {
            path,
            reason: format!("format `{}`, expected `{SAVED_FORMAT}`", saved.format),
        });
    }
    Ok(machine.measured(&saved).then_some(saved))
}

#[cfg(test)]
mod tests {
    use super::super::report::fixtures::small_report;
    use super::*;

    #[test]
    fn the_machine_id_is_read_only_when_it_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("machine-id");
        std::fs::write(&file, "3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(
            machine_id(&file).as_deref(),
            Some("3d1219c7c4c5404aaa1f6d2a48adfda4")
        );
        std::fs::write(&file, "uninitialized\n").unwrap();
        assert_eq!(machine_id(&file), None);
        std::fs::write(&file, "").unwrap();
        assert_eq!(machine_id(&file), None);
        assert_eq!(machine_id(&dir.path().join("absent")), None);
    }

    #[test]
    fn the_last_calibration_is_kept_per_host_and_a_bad_file_is_named() {
        let machine = |hostname: &str, id: Option<&str>| Machine {
            hostname: hostname.to_string(),
            machine_id: id.map(str::to_string),
        };
        let node_a = machine("node-a", None);
        let dir = tempfile::tempdir().unwrap();
        assert!(
            load_last(dir.path(), &node_a).unwrap().is_none(),
            "none yet"
        );
        let path = save_last(dir.path(), &node_a, &small_report()).unwrap();
        assert_eq!(path, last_path(dir.path()));
        let saved = load_last(dir.path(), &node_a).unwrap().unwrap();
        assert_eq!(saved.format, SAVED_FORMAT);
        assert_eq!(saved.hostname, "node-a");
        assert_eq!(saved.harness, crate::probe::Harness::current());
        assert!(saved.at.ends_with('Z'), "{}", saved.at);
        assert_eq!(saved.report["flat_out"]["events"], 800_000);
        // Measured elsewhere (a cache shared between hosts): not this host's.
        assert!(
            load_last(dir.path(), &machine("node-b", None))
                .unwrap()
                .is_none()
        );
        // A second save replaces the first.
        let mut other = small_report();
        other.tokens = 7;
        save_last(dir.path(), &node_a, &other).unwrap();
        let saved = load_last(dir.path(), &node_a).unwrap().unwrap();
        assert_eq!(saved.report["tokens"], 7);
        // Two machines of one host name: told apart by their machine ids
        // where both have one; one saved without an id (before ids were
        // recorded) still counts by its host name.
        let id_a = "0123456789abcdef0123456789abcdef";
        let id_b = "fedcba9876543210fedcba9876543210";
        save_last(dir.path(), &machine("node-a", Some(id_a)), &other).unwrap();
        let saved = load_last(dir.path(), &machine("node-a", Some(id_a)))
            .unwrap()
            .unwrap();
        assert_eq!(saved.machine_id.as_deref(), Some(id_a));
        assert!(
            load_last(dir.path(), &machine("node-a", Some(id_b)))
                .unwrap()
                .is_none()
        );
        assert!(load_last(dir.path(), &node_a).unwrap().is_some());
        save_last(dir.path(), &node_a, &other).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("machine_id"), "{text}");
        assert!(
            load_last(dir.path(), &machine("node-a", Some(id_b)))
                .unwrap()
                .is_some()
        );
        std::fs::write(&path, "{ not json").unwrap();
        let e = load_last(dir.path(), &node_a).unwrap_err().to_string();
        assert!(e.contains(path.to_str().unwrap()), "{e}");
        assert!(e.contains("infermark calibrate"), "{e}");
        let wrong = serde_json::json!({
            "format": "infermark.calibration/v0", "at": "2026-01-01T00:00:00Z",
            "hostname": "node-a", "harness": crate::probe::Harness::current(), "report": {}
        });
        std::fs::write(&path, wrong.to_string()).unwrap();
        let e = load_last(dir.path(), &node_a).unwrap_err().to_string();
        assert!(e.contains("infermark.calibration/v0"), "{e}");
    }
}
