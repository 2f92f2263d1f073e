//! `infermark spec ...`.

use std::path::{Path, PathBuf};

use super::{LockDirArg, SpecCommand, exit};
use crate::lock::apply::{self, PointsError};
use crate::spec::{self, Point};

pub fn spec(cmd: SpecCommand) -> anyhow::Result<u8> {
    match cmd {
        SpecCommand::Check { paths, lock } => check(&paths, &lock),
        SpecCommand::Points { file, json, lock } => {
            let points = points_of(&file, &lock)?;
            if json {
                for p in &points {
                    println!("{}", String::from_utf8_lossy(p.canonical_bytes()));
                }
            } else {
                println!("{:<64}  {:<12}  {:<12}  pins", "point id", "short", "load");
                for p in &points {
                    let unpinned = p.unpinned();
                    let pins = if unpinned.is_empty() {
                        "pinned".to_string()
                    } else {
                        let keys: Vec<&str> = unpinned.iter().map(|u| u.key).collect();
                        format!("unpinned: {}", keys.join(", "))
                    };
                    println!(
                        "{}  {}  {:<12}  {pins}",
                        p.id(),
                        p.short_id(),
                        p.spec.load.label()
                    );
                }
            }
            Ok(exit::OK)
        }
        SpecCommand::Id { file, lock } => {
            for p in points_of(&file, &lock)? {
                println!("{}", p.id());
            }
            Ok(exit::OK)
        }
    }
}

fn points_of(file: &Path, arg: &LockDirArg) -> Result<Vec<Point>, PointsError> {
    apply::points_of(file, arg.lock_dir.as_deref())
}

fn check(paths: &[PathBuf], arg: &LockDirArg) -> anyhow::Result<u8> {
    let files = spec::collect_files(paths)?;
    if files.is_empty() {
        return Err(super::InvalidInput(format!(
            "no experiment files (*.toml) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    let checked = apply::check_experiments(&files, arg.lock_dir.as_deref());
    for line in &checked.problems {
        eprintln!("{line}");
    }
    if checked.problems.is_empty() {
        println!("{} file(s) ok, {} point(s)", checked.files, checked.points);
        Ok(exit::OK)
    } else {
        eprintln!(
            "{} error(s) in {} file(s) checked",
            checked.problems.len(),
            checked.files
        );
        Ok(exit::INVALID)
    }
}
