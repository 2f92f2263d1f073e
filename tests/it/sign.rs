//! Signed statements end to end: `key generate` through the binary (file
//! modes, no overwrite, OpenSSL reads the keys), a sim point run with
//! `--sign-key`, and `audit --trust` telling trusted, untrusted, invalid and
//! unsigned runs apart.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::support::{infermark, repo, stderr, stdout};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Fails unless OpenSSL's command runs here, saying how to install it.
fn require_openssl() {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "`openssl` is not installed: apt-get install openssl");
}

/// `openssl pkey -in <private> -pubout`: the public key OpenSSL derives.
fn openssl_public(private: &Path) -> String {
    let o = Command::new("openssl")
        .args(["pkey", "-in"])
        .arg(private)
        .arg("-pubout")
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl pkey: {}", stderr(&o));
    stdout(&o)
}

/// The raw 32-byte Ed25519 key inside an SPKI PEM (its last 32 DER bytes).
fn raw_public_key(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).unwrap();
    assert_eq!(der.len(), 44, "SPKI of an Ed25519 key");
    der[12..].to_vec()
}

fn generate(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let o = infermark(dir, &["key", "generate", "--out", name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let keyid = stdout(&o).trim().to_string();
    (dir.join(name), dir.join(format!("{name}.pub")), keyid)
}

#[test]
fn key_generate_writes_a_0600_private_key_and_its_public_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public, keyid) = generate(dir.path(), "signing.key");
    assert_eq!(mode(&private), 0o600);
    let private_text = std::fs::read_to_string(&private).unwrap();
    let public_text = std::fs::read_to_string(&public).unwrap();
    assert!(private_text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(public_text.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    // The printed keyid is the hex sha256 of the raw public key.
    let expected: String = Sha256::digest(raw_public_key(&public_text))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(keyid, expected);

    // Neither file is overwritten, even when only one of them exists.
    let again = infermark(dir.path(), &["key", "generate", "--out", "signing.key"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&private).unwrap(), private_text);
    std::fs::write(dir.path().join("other.pub"), "mine").unwrap();
    let half = infermark(dir.path(), &["key", "generate", "--out", "other"]);
    assert_eq!(half.status.code(), Some(2), "{}", stderr(&half));
    assert!(!dir.path().join("other").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("other.pub")).unwrap(),
        "mine"
    );

    require_openssl();
    assert_eq!(openssl_public(&private), public_text);
}

/// A results tree with one sim run signed by `key`, made by the binary.
struct SignedRun {
    dir: tempfile::TempDir,
    results: PathBuf,
    run: PathBuf,
    public: PathBuf,
    /// Another key's public half: OpenSSL's own.
    other_public: PathBuf,
}

fn signed_run() -> SignedRun {
    let dir = tempfile::tempdir().unwrap();
    // The concurrency-1 point of the calibration experiment, made short.
    let text = std::fs::read_to_string(repo().join("experiments/cpu/sim-calibration.toml"))
        .unwrap()
        .replace("output-tokens = 64", "output-tokens = 8")
        .replace("requests-per-client = 8", "requests-per-client = 2");
    std::fs::write(dir.path().join("sim.toml"), text).unwrap();
    let ids = infermark(dir.path(), &["spec", "id", "sim.toml"]);
    assert!(ids.status.success(), "{}", stderr(&ids));
    let first = stdout(&ids).lines().next().unwrap().to_string();
    let (_, public, _) = generate(dir.path(), "key");
    require_openssl();
    let o = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(dir.path().join("openssl.key"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let pem = openssl_public(&dir.path().join("openssl.key"));
    std::fs::write(dir.path().join("openssl.pub"), pem).unwrap();
    let other_public = dir.path().join("openssl.pub");

    let o = infermark(
        dir.path(),
        &[
            "run",
            "sim.toml",
            "--point",
            &first,
            "--results",
            "results",
            "--sign-key",
            "key",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let results = dir.path().join("results");
    let runs: Vec<PathBuf> = std::fs::read_dir(results.join("points").join(&first).join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].clone();
    SignedRun {
        dir,
        results,
        run,
        public,
        other_public,
    }
}

fn audit(s: &SignedRun, trust: &[&Path]) -> Output {
    let mut args = vec!["audit".to_string(), s.results.to_str().unwrap().to_string()];
    if !trust.is_empty() {
        args.push("--trust".to_string());
        args.extend(trust.iter().map(|p| p.to_str().unwrap().to_string()));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    infermark(s.dir.path(), &refs)
}

fn envelope(s: &SignedRun) -> PathBuf {
    s.run.join("provenance.dsse.json")
}

/// Asserts exit 4 with a problem line for `file` that contains `needle`.
fn assert_problem(o: &Output, file: &Path, needle: &str) {
    let out = stdout(o);
    assert_eq!(o.status.code(), Some(4), "{out}{}", stderr(o));
    let prefix = format!("{}: ", file.display());
    assert!(
        out.lines()
            .any(|l| l.starts_with(&prefix) && l.contains(needle)),
        "no `{needle}` problem for {}:\n{out}",
        file.display()
    );
}

#[test]
fn a_signed_run_is_trusted_by_its_key_and_untrusted_invalid_or_unsigned_otherwise() {
    let s = signed_run();

    // The envelope is the statement's, signed by the key, in the run directory.
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(envelope(&s)).unwrap()).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let statement = std::fs::read(s.run.join("provenance.json")).unwrap();
    assert_eq!(
        STANDARD.decode(env["payload"].as_str().unwrap()).unwrap(),
        statement
    );
    assert_eq!(env["signatures"].as_array().unwrap().len(), 1);
    assert!(
        std::fs::read_dir(s.results.join(".tmp"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "nothing left in progress"
    );

    // Trusted: clean, and the line counts it.
    let o = audit(&s, &[&s.public]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("signatures: 1 trusted, 0 unsigned, 0 untrusted, 0 invalid"),
        "{}",
        stdout(&o)
    );
    let o = audit(&s, &[&s.other_public, &s.public]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // No --trust: clean, but the signature is said to be unchecked.
    let o = audit(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("signatures: 1 signed run not checked (no --trust given)"),
        "{}",
        stdout(&o)
    );

    // Another key: untrusted.
    let o = audit(&s, &[&s.other_public]);
    assert_problem(&o, &envelope(&s), "untrusted");
    assert!(stdout(&o).contains("0 trusted, 0 unsigned, 1 untrusted, 0 invalid"));

    // The statement edited after signing (one trailing byte: still a valid
    // statement whose subjects all match): invalid, with or without --trust.
    let original = statement.clone();
    let mut edited = original.clone();
    edited.push(b'\n');
    std::fs::write(s.run.join("provenance.json"), &edited).unwrap();
    assert_problem(&audit(&s, &[&s.public]), &envelope(&s), "byte for byte");
    assert_problem(&audit(&s, &[]), &envelope(&s), "byte for byte");
    std::fs::write(s.run.join("provenance.json"), &original).unwrap();

    // The payload tampered to match an edited statement, signature kept.
    let env_text = std::fs::read_to_string(envelope(&s)).unwrap();
    let mut tampered = env.clone();
    tampered["payload"] = STANDARD.encode(&edited).into();
    std::fs::write(envelope(&s), tampered.to_string()).unwrap();
    std::fs::write(s.run.join("provenance.json"), &edited).unwrap();
    let o = audit(&s, &[&s.public]);
    assert_problem(&o, &envelope(&s), "does not verify");
    assert!(stdout(&o).contains("0 trusted, 0 unsigned, 0 untrusted, 1 invalid"));
    std::fs::write(s.run.join("provenance.json"), &original).unwrap();

    // Another payload type.
    let mut retyped = env.clone();
    retyped["payloadType"] = "application/json".into();
    std::fs::write(envelope(&s), retyped.to_string()).unwrap();
    assert_problem(&audit(&s, &[&s.public]), &envelope(&s), "payloadType");
    std::fs::write(envelope(&s), &env_text).unwrap();
    assert_eq!(audit(&s, &[&s.public]).status.code(), Some(0));

    // Unsigned: the statement is named.
    std::fs::remove_file(envelope(&s)).unwrap();
    let o = audit(&s, &[&s.public]);
    assert_problem(&o, &s.run.join("provenance.json"), "unsigned");
    assert!(stdout(&o).contains("0 trusted, 1 unsigned, 0 untrusted, 0 invalid"));
    // Without --trust an unsigned run is clean, as before signing existed.
    let o = audit(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(!stdout(&o).contains("signatures:"), "{}", stdout(&o));
}

#[test]
fn run_refuses_a_sign_key_that_is_not_a_private_key_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public, _) = generate(dir.path(), "key");
    let o = infermark(
        dir.path(),
        &[
            "run",
            repo()
                .join("experiments/cpu/sim-calibration.toml")
                .to_str()
                .unwrap(),
            "--results",
            "results",
            "--sign-key",
            public.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("this is a public key"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("results").exists());
}
