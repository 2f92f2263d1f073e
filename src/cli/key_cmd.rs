//! `infermark key generate`: the key pair that signs statements
//! (`run --sign-key`) and that auditors trust (`audit --trust`).

use super::{InvalidInput, KeyCommand, exit};
use crate::provenance::sign::{self, SignError};

pub fn key(c: KeyCommand) -> anyhow::Result<u8> {
    match c {
        KeyCommand::Generate { out } => {
            let files = sign::generate_key_files(&out).map_err(|e| match e {
                // An existing file is the user's to move, not a failure of ours.
                SignError::Exists { .. } => anyhow::Error::new(InvalidInput(e.to_string())),
                other => anyhow::Error::new(other),
            })?;
            eprintln!(
                "wrote {} (private, keep it secret) and {} (public, give it to auditors)",
                files.private.display(),
                files.public.display()
            );
            println!("{}", files.keyid);
            Ok(exit::OK)
        }
    }
}
