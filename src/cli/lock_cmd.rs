//! `infermark lock [PATHS...] [--update]` and `infermark lock set REF VALUE`.

use std::path::PathBuf;

use super::{InvalidInput, LockArgs, LockCommand, exit};
use crate::lock::Lockfiles;
use crate::lock::resolve::{self, ResolveError};

pub fn lock(args: LockArgs) -> anyhow::Result<u8> {
    match args.command {
        Some(LockCommand::Set {
            reference,
            value,
            local,
            lock,
        }) => {
            let dir = lock.lock_dir.unwrap_or_else(|| PathBuf::from("lockfiles"));
            let mut lockfiles = Lockfiles::load_checked(&dir)?;
            let target = if local {
                lockfiles.local_mut()
            } else {
                &mut lockfiles
            };
            let now = crate::clock::now_rfc3339_seconds();
            let what = target.set(&reference, &value, &now)?;
            target.save()?;
            println!("locked in {}/{what}", target.dir.display());
            Ok(exit::OK)
        }
        None => resolve_all(args),
    }
}

fn resolve_all(args: LockArgs) -> anyhow::Result<u8> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("experiments")]
    } else {
        args.paths
    };
    let cwd = std::env::current_dir().ok();
    let update = args.update;
    let mut print = |report: &resolve::Report| {
        let dir = report.lock_dir.clone();
        // Shown relative to the working directory when below it.
        let dir = cwd
            .as_deref()
            .and_then(|c| dir.strip_prefix(c).ok())
            .map(PathBuf::from)
            .unwrap_or(dir);
        for c in &report.changed {
            println!(
                "{}/{}  {}  {} → {}",
                dir.display(),
                c.lockfile,
                c.reference,
                c.old.as_deref().unwrap_or("(none)"),
                c.new
            );
        }
        for r in &report.unchanged {
            println!("unchanged  {r}");
        }
        for r in &report.local {
            println!(
                "pinned locally  {r}  (in {}/local; not resolved)",
                dir.display()
            );
        }
        for cmd in &report.commands_unpinned {
            eprintln!(
                "note: process engine command `{cmd}` has no sha256; pin it with `infermark lock set {cmd} <sha256 of the executable>`"
            );
        }
        let kept = if report.kept.is_empty() || update {
            String::new()
        } else {
            format!(
                ", {} already locked (`--update` resolves them again)",
                report.kept.len()
            )
        };
        println!(
            "{}: {} changed, {} unchanged{kept}",
            dir.display(),
            report.changed.len(),
            report.unchanged.len()
        );
    };
    super::measure_cmd::runtime()?
        .block_on(resolve::update_each_lock(
            &paths,
            args.lock.lock_dir.as_deref(),
            update,
            &mut print,
        ))
        .map_err(cli_error)?;
    Ok(exit::OK)
}

/// Exit 2 for what the user must fix in the experiment or lock (a bad
/// spec or lockfile, a tag or revision the registry does not have); exit 1
/// for network, access and server failures.
pub(super) fn cli_error(e: ResolveError) -> anyhow::Error {
    match e {
        ResolveError::Lock(e) => e.into(),
        ResolveError::Spec(e) => e.into(),
        e if e.is_invalid_input() => InvalidInput(e.to_string()).into(),
        e => anyhow::Error::msg(e.to_string()),
    }
}
