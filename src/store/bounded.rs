//! Reading a file of a results tree as someone else's data: a regular file
//! only, opened without following a symlink, and no more than a cap.
//!
//! A results tree may come from another machine (`collect`, a download); a
//! symlink in it could point a reader at any file of this host, and a huge
//! file could exhaust memory. So readers that publish what they read
//! (`report`) open each file with `O_NOFOLLOW`, check it is a regular file
//! on the open descriptor (no window between a check and the open), and
//! refuse more than `cap` bytes, naming the file in every error.
//!
//! A leaf: imports nothing of the crate.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BoundedError {
    #[error("failed to read {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{}: a symbolic link; a results tree is read without following links: \
         replace it with the file itself",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error("{}: not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error(
        "{}: larger than {cap} bytes, the most this reader takes from one file",
        path.display()
    )]
    TooLarge { path: PathBuf, cap: u64 },
}

impl BoundedError {
    /// Whether the file is simply absent.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BoundedError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Opens `path` for reading without following a final symlink, and checks
/// on the descriptor that it is a regular file.
pub fn open(path: &Path) -> Result<File, BoundedError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| {
            // O_NONBLOCK keeps a FIFO from blocking the open; it changes
            // nothing for a regular file. ELOOP is what O_NOFOLLOW answers for a symlink.
            if source.raw_os_error() == Some(libc::ELOOP) {
                BoundedError::Symlink {
                    path: path.to_path_buf(),
                }
            } else {
                BoundedError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    let meta = file.metadata().map_err(|source| BoundedError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(BoundedError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// The whole of `path`, refusing a symlink, anything but a regular file
/// and more than `cap` bytes.
pub fn read(path: &Path, cap: u64) -> Result<Vec<u8>, BoundedError> {
    let file = open(path)?;
    let mut bytes = Vec::new();
    // One byte past the cap tells a file of exactly `cap` bytes from a
    // larger one, even if it grew after the open.
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| BoundedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > cap {
        return Err(BoundedError::TooLarge {
            path: path.to_path_buf(),
            cap,
        });
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_text(path: &Path, cap: u64) -> Result<String, BoundedError> {
    String::from_utf8(read(path, cap)?).map_err(|e| BoundedError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

/// Whether `path` is a directory itself, not a symlink to one.
pub fn is_real_dir(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("secret");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("summary.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = read(&link, 10).unwrap_err();
        assert!(matches!(e, BoundedError::Symlink { .. }), "{e}");
        assert!(e.to_string().contains("summary.json"), "{e}");
    }

    #[test]
    fn the_cap_is_inclusive_and_a_larger_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read(&path, 5).unwrap(), b"12345");
        let e = read(&path, 4).unwrap_err();
        assert!(matches!(e, BoundedError::TooLarge { cap: 4, .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn a_directory_or_fifo_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(dir.path(), 10).unwrap_err(),
            BoundedError::NotAFile { .. } | BoundedError::Io { .. }
        ));
        assert!(
            read(&dir.path().join("absent"), 10)
                .unwrap_err()
                .is_not_found()
        );
    }
}
