//! sha256 digests as infermark writes them: lowercase hex, files hashed
//! streaming.
//!
//! A leaf (it imports nothing of the crate) because hashing is needed on
//! both sides of the data flow: `workload` checks a dataset's pin, `engine`
//! an executable's and a model file's, `provenance` a run's files and
//! `verify` all of them again. Without it those modules would reach into
//! `provenance` for a function that has nothing to do with statements.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// `bytes` as lowercase hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The sha256 (lowercase hex) and length of a file, read in 256 KiB blocks
/// so a large `requests.jsonl` never sits in memory whole.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex(&hasher.finalize()), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn files_larger_than_the_read_block_hash_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("big");
        let data: Vec<u8> = (0..700_001u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let (hex_digest, len) = sha256_file(&path).unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(hex_digest, hex(&Sha256::digest(&data)));
    }
}
