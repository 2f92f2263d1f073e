//! The files a process engine runs and loads: found through the
//! content-addressed store first, then where the experiment says, and
//! hashed before anything starts.
//!
//! The store is `<cache>/files/<sha256>/<file name>`: a file is filed under
//! the hash of its content, so a pinned executable or model is found by its
//! pin wherever it was built or downloaded, and two versions never collide.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::spec::reference::Sha256;

use super::EngineError;

/// `<cache>/files/<sha256>/<name>`.
pub(super) fn store_path(cache: &Path, sha: &Sha256, name: &str) -> PathBuf {
    cache.join("files").join(sha.hex()).join(name)
}

fn base_name(s: &str) -> &str {
    Path::new(s)
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or(s)
}

/// Finds a process engine's executable: the store first, then the command
/// as written (a path if it contains `/`, relative to the experiment's
/// directory; else on `path_env`).
pub(super) fn find_executable(
    command: &str,
    pin: &Sha256,
    cache: &Path,
    spec_dir: &Path,
    path_env: Option<&OsStr>,
) -> Result<PathBuf, EngineError> {
    let mut tried = vec![store_path(cache, pin, base_name(command))];
    if command.contains('/') {
        tried.push(spec_dir.join(command));
    } else if let Some(path) = path_env {
        tried.extend(
            std::env::split_paths(path)
                .filter(|d| !d.as_os_str().is_empty())
                .map(|d| d.join(command)),
        );
    }
    match tried.iter().find(|p| is_executable(p)) {
        Some(found) => Ok(absolute(found)),
        None => Err(EngineError::NotFound {
            what: format!("`engine.command` `{command}`"),
            hint: format!(
                "put the pinned executable at {} or on PATH",
                tried[0].display()
            ),
            tried,
        }),
    }
}

/// Finds a process engine's weights file: the store first, then under each
/// model directory, then relative to the experiment's directory.
pub(super) fn find_model_file(
    file: &str,
    pin: &Sha256,
    cache: &Path,
    model_dirs: &[PathBuf],
    spec_dir: &Path,
) -> Result<PathBuf, EngineError> {
    let name = base_name(file);
    let mut tried = vec![store_path(cache, pin, name)];
    for dir in model_dirs {
        tried.push(dir.join(file));
        if name != file {
            tried.push(dir.join(name));
        }
    }
    tried.push(spec_dir.join(file));
    match tried.iter().find(|p| p.is_file()) {
        Some(found) => Ok(absolute(found)),
        None => Err(EngineError::NotFound {
            what: format!("`model.file` `{file}`"),
            hint: format!(
                "put the pinned file at {} or pass a model directory that holds it",
                tried[0].display()
            ),
            tried,
        }),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// An absolute path without resolving symlinks: a multi-call binary (a
/// `sh` linked to busybox) behaves by the name it is run as.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The sha256 of a file's content, read in a blocking thread.
pub(super) async fn sha256_file(path: &Path) -> Result<Sha256, EngineError> {
    let owned = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || hash(&owned)).await;
    let read_err = |source| EngineError::Read {
        path: path.to_path_buf(),
        source,
    };
    match result {
        Ok(r) => r.map_err(read_err),
        Err(join) => Err(read_err(std::io::Error::other(join.to_string()))),
    }
}

fn hash(path: &Path) -> std::io::Result<Sha256> {
    let (hex, _) = crate::digest::sha256_file(path)?;
    Sha256::parse(&hex).map_err(std::io::Error::other)
}

/// Refuses a file whose content is not the pinned one.
pub(super) async fn check_pin(
    path: &Path,
    pin: &Sha256,
    what: &str,
    cache: &Path,
) -> Result<(), EngineError> {
    let found = sha256_file(path).await?;
    if &found == pin {
        return Ok(());
    }
    let name = path
        .file_name()
        .map_or_else(|| "file".to_string(), |n| n.to_string_lossy().into_owned());
    Err(EngineError::PinMismatch {
        what: format!("{what} found at {}", path.display()),
        expected: format!("sha256 {pin}"),
        observed: format!("sha256 {found}"),
        hint: format!(
            "put the pinned file at {}, or re-pin if the change is intended",
            store_path(cache, pin, &name).display()
        ),
    })
}
