//! Signed statements: Ed25519 keys and DSSE envelopes around a statement
//! file's exact bytes.
//!
//! A statement proves which files a run holds; the envelope proves who
//! vouched for the statement. The format is the DSSE envelope v1 (the
//! in-toto attestation framework's signature wrapper):
//!
//! ```json
//! {"payloadType": "application/vnd.in-toto+json",
//!  "payload": "<base64 of the statement file>",
//!  "signatures": [{"keyid": "<hex>", "sig": "<base64>"}]}
//! ```
//!
//! The signature is over the pre-authentication encoding
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`
//! (LEN: the byte length in ASCII decimal), so the payload type is signed
//! too and a payload cannot be replayed under another type.
//!
//! Keys are Ed25519: the private key a PKCS#8 PEM file (mode 0600), the
//! public key an SPKI PEM file beside it (`<file>.pub`), both as OpenSSL
//! writes them. A key's id is the lowercase hex sha256 of its raw 32-byte
//! public key, so anyone holding the public key computes the same id.
//!
//! The envelope of `<name>.json` is `<name>.dsse.json` beside it; its payload
//! must be the statement file byte for byte, which is what ties the two.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::atomic;

/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("failed to read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("failed to write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "{} already exists: infermark never overwrites a key; choose another `--out` or remove it",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "{}: not an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`): {reason}; \
         create one with `infermark key generate --out FILE`",
        path.display()
    )]
    PrivateKey { path: PathBuf, reason: String },
    #[error(
        "{}: not an Ed25519 public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`): {reason}",
        path.display()
    )]
    PublicKey { path: PathBuf, reason: String },
    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
    #[error("not a DSSE envelope: {0}")]
    Envelope(String),
}

/// The pre-authentication encoding of DSSE v1: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    );
    let mut out = Vec::with_capacity(head.len() + payload.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// A key's id: the lowercase hex sha256 of the raw 32-byte public key.
pub fn keyid(key: &VerifyingKey) -> String {
    crate::spec::hex(&Sha256::digest(key.as_bytes()))
}

/// A private key, ready to sign.
pub struct Signer {
    key: SigningKey,
    keyid: String,
}

impl fmt::Debug for Signer {
    // Never prints the secret half.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    fn new(key: SigningKey) -> Signer {
        let keyid = keyid(&key.verifying_key());
        Signer { key, keyid }
    }

    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Signer, SignError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(SignError::Random)?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(Signer::new(key))
    }

    /// Reads a PKCS#8 PEM private key (as `key generate` or
    /// `openssl genpkey -algorithm ed25519` write it).
    pub fn load(path: &Path) -> Result<Signer, SignError> {
        let text = fs::read_to_string(path).map_err(|source| SignError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| SignError::PrivateKey {
            path: path.to_path_buf(),
            reason: if text.contains("PUBLIC KEY") {
                "this is a public key; sign with the private key it was written beside".to_string()
            } else {
                e.to_string()
            },
        })?;
        Ok(Signer::new(key))
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The public half, as the verifier will hold it.
    pub fn public_key(&self) -> TrustedKey {
        TrustedKey {
            key: self.key.verifying_key(),
            keyid: self.keyid.clone(),
        }
    }

    /// An envelope of `payload` with one signature by this key.
    pub fn sign(&self, payload_type: &str, payload: &[u8]) -> Envelope {
        let sig = self.key.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload: payload.to_vec(),
            signatures: vec![Signature {
                keyid: self.keyid.clone(),
                sig: sig.to_bytes().to_vec(),
            }],
        }
    }

    /// The private key as PKCS#8 v1 PEM: the seed alone, as OpenSSL writes
    /// it (OpenSSL 3.0 refuses the v2 form with the public key inside).
    fn private_pem(&self) -> Result<String, SignError> {
        KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| SignError::Envelope(format!("cannot encode the private key: {e}")))
    }
}

/// A public key whose signatures are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    key: VerifyingKey,
    keyid: String,
}

impl TrustedKey {
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The key as SPKI PEM, as `openssl pkey -pubout` writes it.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Whether `sig` is this key's signature of `payload` under `payload_type`.
    fn verifies(&self, payload_type: &str, payload: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        // Strict: no weak keys, no malleable signatures.
        self.key
            .verify_strict(&pae(payload_type, payload), &sig)
            .is_ok()
    }
}

/// Reads an SPKI PEM public key (`<file>.pub` of `key generate`, or
/// `openssl pkey -pubout`).
pub fn load_public_key(path: &Path) -> Result<TrustedKey, SignError> {
    let text = fs::read_to_string(path).map_err(|source| SignError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let key = VerifyingKey::from_public_key_pem(&text).map_err(|e| SignError::PublicKey {
        path: path.to_path_buf(),
        reason: if text.contains("PRIVATE KEY") {
            "this is a private key; trust its public half (the `.pub` file beside it)".to_string()
        } else {
            e.to_string()
        },
    })?;
    Ok(TrustedKey {
        keyid: keyid(&key),
        key,
    })
}

/// The key files `key generate` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    pub private: PathBuf,
    pub public: PathBuf,
    pub keyid: String,
}

/// `<file>.pub`: where the public half of the key in `file` goes.
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Generates a key pair: the private key as PKCS#8 PEM in `out` (mode 0600),
/// the public key as SPKI PEM in `<out>.pub`. Refuses to overwrite either.
pub fn generate_key_files(out: &Path) -> Result<KeyFiles, SignError> {
    let public = public_key_path(out);
    for path in [out, public.as_path()] {
        if path.symlink_metadata().is_ok() {
            return Err(SignError::Exists {
                path: path.to_path_buf(),
            });
        }
    }
    let signer = Signer::generate()?;
    let private_pem = signer.private_pem()?;
    let public_pem = signer.public_key().to_pem();
    create_new(out, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = create_new(&public, public_pem.as_bytes(), 0o644) {
        // Half a key pair is worse than none.
        let _ = fs::remove_file(out);
        return Err(e);
    }
    Ok(KeyFiles {
        private: out.to_path_buf(),
        public,
        keyid: signer.keyid,
    })
}

/// Writes a file that must not exist yet, created with `mode`, atomically.
fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SignError> {
    atomic::write_new_with_mode(path, bytes, mode).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            SignError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            SignError::Write {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// A DSSE envelope, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<Signature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub keyid: String,
    pub sig: Vec<u8>,
}

/// The envelope as JSON: standard base64 for the payload and signatures.
#[derive(Serialize, Deserialize)]
struct WireEnvelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<WireSignature>,
}

#[derive(Serialize, Deserialize)]
struct WireSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

impl Envelope {
    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let wire = WireEnvelope {
            payload_type: self.payload_type.clone(),
            payload: STANDARD.encode(&self.payload),
            signatures: self
                .signatures
                .iter()
                .map(|s| WireSignature {
                    keyid: s.keyid.clone(),
                    sig: STANDARD.encode(&s.sig),
                })
                .collect(),
        };
        // Strings and lists of strings only: serializing cannot fail.
        let mut text = serde_json::to_string_pretty(&wire).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Parses an envelope. DSSE allows standard or URL-safe base64, padded
    /// or not; all are read. Unknown fields are ignored, as DSSE asks.
    pub fn from_json(text: &str) -> Result<Envelope, SignError> {
        let wire: WireEnvelope = serde_json::from_str(text)
            .map_err(|e| SignError::Envelope(format!("not valid envelope JSON: {e}")))?;
        let payload = decode_base64(&wire.payload)
            .ok_or_else(|| SignError::Envelope("`payload` is not base64".to_string()))?;
        let mut signatures = Vec::with_capacity(wire.signatures.len());
        for (i, s) in wire.signatures.into_iter().enumerate() {
            let sig = decode_base64(&s.sig).ok_or_else(|| {
                SignError::Envelope(format!("`signatures[{i}].sig` is not base64"))
            })?;
            signatures.push(Signature {
                keyid: s.keyid,
                sig,
            });
        }
        Ok(Envelope {
            payload_type: wire.payload_type,
            payload,
            signatures,
        })
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// Where the envelope of a statement file goes: `provenance.json` →
/// `provenance.dsse.json`, `verdict.json` → `verdict.dsse.json` (a name
/// without `.json` gets `.dsse.json` appended).
pub fn envelope_path(statement_path: &Path) -> PathBuf {
    let name = statement_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    statement_path.with_file_name(format!("{stem}.dsse.json"))
}

/// Signs the statement file at `statement_path` (payload: its exact bytes)
/// and writes the envelope beside it, synced. Returns the envelope's path.
pub fn sign_statement_file(statement_path: &Path, signer: &Signer) -> Result<PathBuf, SignError> {
    let bytes = fs::read(statement_path).map_err(|source| SignError::Read {
        path: statement_path.to_path_buf(),
        source,
    })?;
    let envelope = signer.sign(IN_TOTO_PAYLOAD_TYPE, &bytes);
    let path = envelope_path(statement_path);
    atomic::write(&path, envelope.to_json().as_bytes()).map_err(|source| SignError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// What a statement's envelope says about who vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// No envelope beside the statement.
    Unsigned,
    /// A well-formed envelope of this statement, but no signature is by a
    /// trusted key (these are the keys that did sign).
    Untrusted { keyids: Vec<String> },
    /// The envelope is broken, of another payload type, not of this
    /// statement's bytes, or a trusted key's signature does not verify.
    Invalid { reason: String },
    /// Signed by this trusted key, and every trusted key's signature verifies.
    Trusted { keyid: String },
}

/// Checks the envelope beside `statement_path` against the statement's bytes
/// and the `trusted` keys. With no trusted keys, a well-formed envelope of
/// this statement is `Untrusted`.
pub fn check_envelope(statement_path: &Path, trusted: &[TrustedKey]) -> SignatureStatus {
    let path = envelope_path(statement_path);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return SignatureStatus::Unsigned,
        Err(e) => {
            return SignatureStatus::Invalid {
                reason: format!("cannot read the envelope: {e}"),
            };
        }
    };
    let envelope = match Envelope::from_json(&text) {
        Ok(e) => e,
        Err(e) => {
            return SignatureStatus::Invalid {
                reason: e.to_string(),
            };
        }
    };
    let statement_name = statement_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return SignatureStatus::Invalid {
            reason: format!(
                "`payloadType` is `{}`, not `{IN_TOTO_PAYLOAD_TYPE}`: not a signed statement",
                envelope.payload_type
            ),
        };
    }
    match fs::read(statement_path) {
        Ok(bytes) if bytes == envelope.payload => {}
        Ok(_) => {
            return SignatureStatus::Invalid {
                reason: format!(
                    "the signed payload is not {statement_name} byte for byte: the statement \
                     was changed after it was signed, or the envelope is another statement's"
                ),
            };
        }
        Err(e) => {
            return SignatureStatus::Invalid {
                reason: format!("cannot read {statement_name} to compare with the payload: {e}"),
            };
        }
    }
    if envelope.signatures.is_empty() {
        return SignatureStatus::Invalid {
            reason: "`signatures` is empty".to_string(),
        };
    }
    let mut trusted_by = None;
    for s in &envelope.signatures {
        // DSSE's keyid is a hint: without one, every trusted key is tried.
        let candidates: Vec<&TrustedKey> = trusted
            .iter()
            .filter(|k| s.keyid.is_empty() || k.keyid == s.keyid)
            .collect();
        if candidates.is_empty() {
            continue;
        }
        match candidates
            .iter()
            .find(|k| k.verifies(&envelope.payload_type, &envelope.payload, &s.sig))
        {
            Some(k) => {
                trusted_by.get_or_insert_with(|| k.keyid.clone());
            }
            None if !s.keyid.is_empty() => {
                return SignatureStatus::Invalid {
                    reason: format!(
                        "the signature by trusted key {} does not verify: the envelope was \
                         altered or forged",
                        s.keyid
                    ),
                };
            }
            None => {}
        }
    }
    match trusted_by {
        Some(keyid) => SignatureStatus::Trusted { keyid },
        None => SignatureStatus::Untrusted {
            keyids: envelope
                .signatures
                .iter()
                .map(|s| s.keyid.clone())
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layout::RUN_ENVELOPE_FILE;

    #[test]
    fn pae_is_the_dsse_specs_worked_example() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        // Lengths are bytes, not characters; an empty body still has its space.
        assert_eq!(pae("t", "é".as_bytes()), "DSSEv1 1 t 2 é".as_bytes());
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn keyid_is_the_sha256_of_the_raw_public_key() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let signer = Signer::new(key.clone());
        let raw = key.verifying_key().to_bytes();
        assert_eq!(signer.keyid(), crate::spec::hex(&Sha256::digest(raw)));
        assert_eq!(signer.keyid().len(), 64);
        assert_eq!(signer.public_key().keyid(), signer.keyid());
        let other = Signer::new(SigningKey::from_bytes(&[8u8; 32]));
        assert_ne!(other.keyid(), signer.keyid());
    }

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let signer = Signer::new(SigningKey::from_bytes(&[1u8; 32]));
        let env = signer.sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        let sig = &env.signatures[0].sig;
        assert_eq!(sig.len(), 64);
        assert!(
            signer
                .public_key()
                .verifies(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}", sig)
        );
        assert!(
            !signer
                .public_key()
                .verifies(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":2}", sig)
        );
        assert!(
            !signer
                .public_key()
                .verifies("text/plain", b"{\"a\":1}", sig)
        );
        let other = Signer::new(SigningKey::from_bytes(&[2u8; 32]));
        assert!(
            !other
                .public_key()
                .verifies(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}", sig)
        );
    }

    #[test]
    fn an_envelope_round_trips_through_json() {
        let signer = Signer::new(SigningKey::from_bytes(&[3u8; 32]));
        let env = signer.sign(IN_TOTO_PAYLOAD_TYPE, b"payload \x00\xff bytes");
        let text = env.to_json();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["payloadType"], IN_TOTO_PAYLOAD_TYPE);
        assert_eq!(value["payload"], STANDARD.encode(b"payload \x00\xff bytes"));
        assert_eq!(value["signatures"][0]["keyid"], signer.keyid());
        assert_eq!(Envelope::from_json(&text).unwrap(), env);
        // URL-safe, unpadded base64 is read too.
        let url = format!(
            r#"{{"payloadType":"x","payload":"{}","signatures":[{{"keyid":"k","sig":"{}"}}]}}"#,
            URL_SAFE_NO_PAD.encode(b"\xfb\xff"),
            URL_SAFE_NO_PAD.encode(b"\xfe")
        );
        let parsed = Envelope::from_json(&url).unwrap();
        assert_eq!(parsed.payload, b"\xfb\xff");
        assert_eq!(parsed.signatures[0].sig, b"\xfe");
        assert!(matches!(
            Envelope::from_json(r#"{"payloadType":"x","payload":"!!","signatures":[]}"#),
            Err(SignError::Envelope(m)) if m.contains("`payload`")
        ));
    }

    #[test]
    fn envelope_paths_sit_beside_their_statements() {
        assert_eq!(
            envelope_path(Path::new("a/b/provenance.json")),
            Path::new("a/b/provenance.dsse.json")
        );
        assert_eq!(
            envelope_path(Path::new("verdict.json")),
            Path::new("verdict.dsse.json")
        );
        assert_eq!(
            envelope_path(Path::new("x/statement")),
            Path::new("x/statement.dsse.json")
        );
        assert_eq!(
            envelope_path(Path::new("x/provenance.json")).file_name(),
            Some(std::ffi::OsStr::new(RUN_ENVELOPE_FILE))
        );
    }

    /// A signed statement in a temp dir, with the signer and the path.
    fn signed(seed: u8) -> (tempfile::TempDir, PathBuf, Signer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provenance.json");
        fs::write(&path, b"{\"_type\":\"https://in-toto.io/Statement/v1\"}\n").unwrap();
        let signer = Signer::new(SigningKey::from_bytes(&[seed; 32]));
        let written = sign_statement_file(&path, &signer).unwrap();
        assert_eq!(written, dir.path().join(RUN_ENVELOPE_FILE));
        (dir, path, signer)
    }

    #[test]
    fn a_signed_statement_is_trusted_by_its_key() {
        let (_dir, path, signer) = signed(4);
        assert_eq!(
            check_envelope(&path, &[signer.public_key()]),
            SignatureStatus::Trusted {
                keyid: signer.keyid().to_string()
            }
        );
        // Among other trusted keys, too.
        let other = Signer::new(SigningKey::from_bytes(&[5u8; 32]));
        assert_eq!(
            check_envelope(&path, &[other.public_key(), signer.public_key()]),
            SignatureStatus::Trusted {
                keyid: signer.keyid().to_string()
            }
        );
    }

    #[test]
    fn unsigned_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provenance.json");
        fs::write(&path, b"{}").unwrap();
        let signer = Signer::new(SigningKey::from_bytes(&[6u8; 32]));
        assert_eq!(
            check_envelope(&path, &[signer.public_key()]),
            SignatureStatus::Unsigned
        );
    }

    #[test]
    fn rejected_wrong_key() {
        let (_dir, path, signer) = signed(9);
        let other = Signer::new(SigningKey::from_bytes(&[10u8; 32]));
        assert_eq!(
            check_envelope(&path, &[other.public_key()]),
            SignatureStatus::Untrusted {
                keyids: vec![signer.keyid().to_string()]
            }
        );
        // No trusted keys at all: well formed, but nobody vouched.
        assert!(matches!(
            check_envelope(&path, &[]),
            SignatureStatus::Untrusted { .. }
        ));
        // A signature that claims a trusted key's id but was made by another.
        let forged = Envelope {
            signatures: vec![Signature {
                keyid: other.keyid().to_string(),
                sig: signer
                    .sign(IN_TOTO_PAYLOAD_TYPE, &fs::read(&path).unwrap())
                    .signatures[0]
                    .sig
                    .clone(),
            }],
            ..other.sign(IN_TOTO_PAYLOAD_TYPE, &fs::read(&path).unwrap())
        };
        fs::write(envelope_path(&path), forged.to_json()).unwrap();
        assert!(matches!(
            check_envelope(&path, &[other.public_key()]),
            SignatureStatus::Invalid { reason } if reason.contains("does not verify")
        ));
    }

    #[test]
    fn rejected_changed_payload() {
        let (_dir, path, signer) = signed(11);
        let trusted = [signer.public_key()];
        // The statement edited after signing.
        fs::write(&path, b"{\"_type\":\"edited\"}\n").unwrap();
        assert!(matches!(
            check_envelope(&path, &trusted),
            SignatureStatus::Invalid { reason } if reason.contains("byte for byte")
        ));
        // The envelope's payload swapped for the edited statement, old signature kept.
        let mut env =
            Envelope::from_json(&fs::read_to_string(envelope_path(&path)).unwrap()).unwrap();
        env.payload = fs::read(&path).unwrap();
        fs::write(envelope_path(&path), env.to_json()).unwrap();
        assert!(matches!(
            check_envelope(&path, &trusted),
            SignatureStatus::Invalid { reason } if reason.contains("does not verify")
        ));
    }

    #[test]
    fn rejected_wrong_payload_type() {
        let (_dir, path, signer) = signed(12);
        let trusted = [signer.public_key()];
        let bytes = fs::read(&path).unwrap();
        // Properly signed, but as another type: not a statement.
        let env = signer.sign("application/json", &bytes);
        fs::write(envelope_path(&path), env.to_json()).unwrap();
        assert!(matches!(
            check_envelope(&path, &trusted),
            SignatureStatus::Invalid { reason } if reason.contains("`payloadType`")
        ));
        // The type relabelled, signature kept: the type is signed too.
        let mut env = env;
        env.payload_type = IN_TOTO_PAYLOAD_TYPE.to_string();
        fs::write(envelope_path(&path), env.to_json()).unwrap();
        assert!(matches!(
            check_envelope(&path, &trusted),
            SignatureStatus::Invalid { reason } if reason.contains("does not verify")
        ));
    }

    #[test]
    fn a_broken_envelope_is_invalid() {
        let (_dir, path, signer) = signed(13);
        fs::write(envelope_path(&path), "{not json").unwrap();
        assert!(matches!(
            check_envelope(&path, &[signer.public_key()]),
            SignatureStatus::Invalid { reason } if reason.contains("not valid envelope JSON")
        ));
        let empty = Envelope {
            signatures: vec![],
            ..signer.sign(IN_TOTO_PAYLOAD_TYPE, &fs::read(&path).unwrap())
        };
        fs::write(envelope_path(&path), empty.to_json()).unwrap();
        assert!(matches!(
            check_envelope(&path, &[signer.public_key()]),
            SignatureStatus::Invalid { reason } if reason.contains("empty")
        ));
    }

    #[test]
    fn key_files_round_trip_and_are_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("key");
        let files = generate_key_files(&out).unwrap();
        assert_eq!(files.public, dir.path().join("key.pub"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), 0o600);
        let signer = Signer::load(&out).unwrap();
        let public = load_public_key(&files.public).unwrap();
        assert_eq!(signer.keyid(), files.keyid);
        assert_eq!(public.keyid(), files.keyid);
        let before = fs::read(&out).unwrap();
        assert!(matches!(
            generate_key_files(&out),
            Err(SignError::Exists { path }) if path == out
        ));
        assert_eq!(fs::read(&out).unwrap(), before);
        // The halves are not interchangeable, and the error says so.
        assert!(matches!(
            Signer::load(&files.public),
            Err(SignError::PrivateKey { reason, .. }) if reason.contains("public key")
        ));
        assert!(matches!(
            load_public_key(&out),
            Err(SignError::PublicKey { reason, .. }) if reason.contains("private key")
        ));
    }
}
