//! Merging the result trees of many runners into one: their runs (a union,
//! through `store::collect`), their night records point by point, and the
//! index rebuilt over the result. `infermark collect` is one call of
//! [`collect`].

use std::path::{Path, PathBuf};

use crate::store::collect::{CollectReport, collect_points};
use crate::store::layout::{NIGHT_FILE, NIGHTS_DIR, POINTS_DIR};
use crate::store::{Index, RebuildReport, Store};

use super::NightError;
use super::ledger::{NightRecord, check_night_id, night_path};

/// What merging every source into one tree did.
#[derive(Debug)]
pub struct Collected {
    /// The runs and files copied, and their conflicts.
    pub points: CollectReport,
    /// Night records created or updated, and their conflicts.
    pub nights: NightsMerged,
    /// The index rebuilt over the merged tree.
    pub index: RebuildReport,
}

impl Collected {
    /// Conflicts of runs and of night records together.
    pub fn conflicts(&self) -> usize {
        self.points.conflicts.len() + self.nights.conflicts.len()
    }
}

/// Merges the result trees `sources` into `into` (created when absent):
/// runs as a union, conflicts reported and the target's side kept, night
/// records point by point; then rebuilds `into`'s index.
pub fn collect(into: &Path, sources: &[PathBuf]) -> Result<Collected, NightError> {
    Store::open(into)?;
    let mut points = CollectReport::default();
    let mut nights = NightsMerged::default();
    for src in sources {
        let is_tree = src.join(POINTS_DIR).is_dir() || src.join(NIGHTS_DIR).is_dir();
        if !is_tree {
            return Err(NightError::NotATree(src.clone()));
        }
        points.add(collect_points(into, src)?);
        let merged = collect_nights(into, src)?;
        nights.nights += merged.nights;
        nights.conflicts.extend(merged.conflicts);
    }
    let (_, index) = Index::rebuild(into)?;
    Ok(Collected {
        points,
        nights,
        index,
    })
}

/// What merging the night records of one tree did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NightsMerged {
    /// Night records created or updated in the target tree.
    pub nights: usize,
    /// `(record, message)` for every conflict; the target's side was kept.
    pub conflicts: Vec<(PathBuf, String)>,
}

/// Merges every `nights/<night>/night.json` of the results tree `src` into
/// the tree `into`, point by point ([`NightRecord::merge`]).
pub fn collect_nights(into: &Path, src: &Path) -> Result<NightsMerged, NightError> {
    let mut out = NightsMerged::default();
    let dir = src.join(NIGHTS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(NightError::Read { path: dir, source }),
    };
    let mut nights: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    nights.sort();
    for night_dir in nights {
        let theirs_path = night_dir.join(NIGHT_FILE);
        let Some(theirs) = NightRecord::load(&theirs_path)? else {
            continue;
        };
        check_night_id(&theirs.night).map_err(|e| NightError::Record(Box::new(e)))?;
        let target = night_path(into, &theirs.night);
        let mut mine =
            NightRecord::load(&target)?.unwrap_or_else(|| NightRecord::new(&theirs.night));
        let conflicts = mine.merge(&theirs);
        out.conflicts
            .extend(conflicts.into_iter().map(|c| (theirs_path.clone(), c)));
        mine.save(&target)?;
        out.nights += 1;
    }
    Ok(out)
}
