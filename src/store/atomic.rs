//! The one way infermark puts a file in place: a temporary file in the same
//! directory, written, synced, renamed over the name, and the directory
//! synced. A reader (or a crash, or a power cut) sees the old file or the
//! new one, never half of one, and once a call returns the new file stays.
//!
//! The same-directory temporary is what makes the rename atomic (one file
//! system); syncing the file before the rename keeps a crash from leaving
//! the name pointing at unwritten blocks; syncing the directory after makes
//! the rename itself durable. A temporary left by a failed call is removed.
//!
//! A leaf (it imports nothing of the crate): lockfiles, saved calibrations
//! and key files are not in a results tree, and the modules writing them
//! sit below `store` in the data flow.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` as `path`, replacing a file already there.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    place(path, Replace::Yes, None, |f| f.write_all(bytes))
}

/// Writes `bytes` as `path`, which must not exist yet: an existing file is
/// left alone and the error's kind is [`io::ErrorKind::AlreadyExists`].
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    place(path, Replace::No, None, |f| f.write_all(bytes))
}

/// [`write_new`], the file created with permissions `mode` (less the umask).
pub fn write_new_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    place(path, Replace::No, Some(mode), |f| f.write_all(bytes))
}

/// Copies the file `src` to `dest`, replacing a file already there.
pub fn copy(src: &Path, dest: &Path) -> io::Result<()> {
    let mut from = File::open(src)?;
    place(dest, Replace::Yes, None, |f| {
        io::copy(&mut from, f).map(drop)
    })
}

/// Moves `tmp`, a file written whole beside `dest` by someone else (SQLite,
/// say), over `dest`: synced, renamed, the directory synced.
pub fn persist(tmp: &Path, dest: &Path) -> io::Result<()> {
    sync_file(tmp)?;
    std::fs::rename(tmp, dest)?;
    sync_dir(parent(dest))
}

/// Makes a file's content durable.
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Makes a directory's entries durable (a rename into it, a new file).
pub fn sync_dir(path: &Path) -> io::Result<()> {
    sync_file(path)
}

#[derive(Clone, Copy)]
enum Replace {
    Yes,
    No,
}

fn place(
    path: &Path,
    replace: Replace,
    mode: Option<u32>,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    if let Some(mode) = mode {
        builder.permissions(Permissions::from_mode(mode));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    match replace {
        Replace::Yes => tmp.persist(path).map_err(|e| e.error)?,
        Replace::No => tmp.persist_noclobber(path).map_err(|e| e.error)?,
    };
    sync_dir(dir)
}

/// The directory holding `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_new_with_mode(&path, b"first", 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let e = write_new(&path, b"second").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["key"]);
    }

    #[test]
    fn copy_and_persist_put_whole_files_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("src"), dir.path().join("dest"));
        std::fs::write(&src, b"bytes").unwrap();
        copy(&src, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"bytes");
        let built = dir.path().join("built");
        std::fs::write(&built, b"new").unwrap();
        persist(&built, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["dest", "src"]);
    }

    #[test]
    fn a_write_into_a_missing_directory_fails_and_names_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("x");
        assert!(write(&path, b"x").is_err());
        assert_eq!(names(dir.path()), Vec::<String>::new());
    }
}
