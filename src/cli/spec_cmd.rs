//! `infermark spec ...`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{LockDirArg, SpecCommand, exit};
use crate::lock::Lockfiles;
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

fn lock_dir_for(file: &Path, arg: &LockDirArg) -> Option<PathBuf> {
    arg.lock_dir.clone().or_else(|| Lockfiles::find_dir(file))
}

fn lockfiles_for(file: &Path, arg: &LockDirArg) -> anyhow::Result<Lockfiles> {
    Ok(match lock_dir_for(file, arg) {
        Some(dir) => Lockfiles::load_checked(&dir)?,
        None => Lockfiles::default(),
    })
}

fn points_of(file: &Path, arg: &LockDirArg) -> anyhow::Result<Vec<Point>> {
    let experiment = spec::load(file)?;
    let lock = lockfiles_for(file, arg)?;
    experiment
        .points(&lock)
        .with_context(|| format!("{}: cannot form the canonical point", file.display()))
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
    let mut errors = 0usize;
    let mut points = 0usize;
    for file in &files {
        let result = spec::load(file).map_err(anyhow::Error::from).and_then(|e| {
            let lock = lockfiles_for(file, arg)?;
            Ok(e.points(&lock)?)
        });
        match result {
            Ok(p) => points += p.len(),
            Err(e) => match e.downcast_ref::<spec::SpecError>() {
                Some(se) => {
                    for line in se.lines() {
                        eprintln!("{line}");
                        errors += 1;
                    }
                }
                None => {
                    eprintln!("{}: {e:#}", file.display());
                    errors += 1;
                }
            },
        }
    }
    if errors > 0 {
        eprintln!("{errors} error(s) in {} file(s) checked", files.len());
        Ok(exit::INVALID)
    } else {
        println!("{} file(s) ok, {points} point(s)", files.len());
        Ok(exit::OK)
    }
}
