//! The flake (flake.nix, flake.lock, nix/) checked with Debian's Nix 2.8
//! against the stand-in nixpkgs of tests/nix/nixpkgs-standin: parse, `flake
//! show`, `eval`, `flake check`, a real build and `nix run` of the harness
//! and of the nightly wrapper, `nix develop`.
//!
//! What this proves: the flake's wiring — its outputs, the arguments it
//! passes, the revision embedded in the binary, the nightly wrapper placing
//! the CPU engine and model in infermark's cache. What it does not prove:
//! that real nixpkgs accepts the flake. Real nixpkgs can be neither fetched
//! nor built here (no GitHub, no binary cache, and it needs a newer Nix); the
//! stand-in offers nixpkgs' names and refuses arguments nixpkgs would refuse,
//! but its builders use this machine's cargo, cmake and compiler.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, GGUF_SHA256, sha256_hex};

/// The nixpkgs pin flake.lock must carry (nixos-25.11).
const NIXPKGS_REV: &str = "8fd9daa3db09ced9700431c5b7ad0e8ba199b575";
const GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Nix 2.8 as root with no daemon, no binary cache, no registry download.
const NIX_CONFIG: &str = "experimental-features = nix-command flakes\n\
                          substituters =\n\
                          flake-registry =\n\
                          build-users-group =\n\
                          sandbox = false";

/// Fails unless Nix runs here, saying how to install it.
fn require_nix() {
    let runs = Command::new("nix")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        runs,
        "`nix --version` does not run: apt-get install nix-bin (.ci/setup installs it)"
    );
}

/// Runs a command with a time bound, capturing its output.
fn run(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// A copy of the repository's files (tracked and untracked-not-ignored, as
/// they are in the working tree) committed in a fresh git repository with a
/// fixed date, its flake.lock pointing nixpkgs at the stand-in.
///
/// The lock is rewritten with `nix flake lock --override-input` and
/// committed, rather than overriding on every command: Nix 2.8 treats a flake
/// evaluated with a lock change it did not write as dirty, without
/// `self.rev`, and the embedded revision is part of what is checked. The
/// stand-in's copy has a fixed place and fixed times, so the same files give
/// the same commit, hence the same Nix build, on the next run.
struct Fixture {
    _dir: tempfile::TempDir,
    flake: PathBuf,
    cache: PathBuf,
    rev: String,
    /// What `nix flake lock` said when it replaced the committed pin.
    relock: String,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "infermark tests")
        .env("GIT_AUTHOR_EMAIL", "tests@infermark.invalid")
        .env("GIT_COMMITTER_NAME", "infermark tests")
        .env("GIT_COMMITTER_EMAIL", "tests@infermark.invalid")
        .env("GIT_AUTHOR_DATE", "2000-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2000-01-01T00:00:00Z")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        support::stderr(&out)
    );
    support::stdout(&out)
}

/// Where the Nix builds of these tests keep their stand-in and cargo
/// target dir: a fixed place (the same files give the same Nix build next
/// time) inside this test target's scratch directory.
///
/// Never the product's `<target>/release` or `<target>/debug`: the flake's
/// build embeds the fixture's own commit (`INFERMARK_GIT_COMMIT`), which
/// exists in no repository, and a binary built there would replace the
/// user's `target/release/infermark` and name that commit in every result
/// made with it afterwards. The price is one release build of the
/// dependencies here, kept for the next run.
fn nix_scratch() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("nix")
}

/// The `CARGO_TARGET_DIR` of the stand-in's cargo builds.
fn nix_cargo_target() -> PathBuf {
    nix_scratch().join("cargo-target")
}

fn fixture() -> Fixture {
    let repo = support::repo();
    let dir = tempfile::tempdir().expect("temp dir");
    let flake = dir.path().join("repo");
    let listed = git(
        &repo,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    );
    for rel in listed.split('\0').filter(|r| !r.is_empty()) {
        let from = repo.join(rel);
        // A tracked file deleted in the working tree is not part of it.
        if rel.starts_with("target/") || !from.is_file() {
            continue;
        }
        let to = flake.join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {rel}: {e}"));
    }

    // The stand-in with host.json: the host tools its builders use, and
    // the cargo target dir its builds write (see `nix_scratch`).
    let target_dir = nix_cargo_target();
    let standin = nix_scratch().join("standin");
    let _ = fs::remove_dir_all(&standin);
    fs::create_dir_all(&standin).unwrap();
    for entry in fs::read_dir(repo.join("tests/nix/nixpkgs-standin")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), standin.join(entry.file_name())).unwrap();
    }
    let home = PathBuf::from(std::env::var("HOME").expect("HOME is set"));
    let env_or =
        |key: &str, default: PathBuf| std::env::var_os(key).map(PathBuf::from).unwrap_or(default);
    let (llama_server, _) = support::llama_engine();
    let host = serde_json::json!({
        "path": std::env::var("PATH").expect("PATH is set"),
        "cargoHome": env_or("CARGO_HOME", home.join(".cargo")),
        "rustupHome": env_or("RUSTUP_HOME", home.join(".rustup")),
        "targetDir": target_dir,
        "llamaServer": llama_server,
    });
    fs::write(
        standin.join("host.json"),
        serde_json::to_vec_pretty(&host).unwrap(),
    )
    .unwrap();
    let touched = Command::new("find")
        .arg(&standin)
        .args(["-exec", "touch", "-h", "-d", "@946684800", "{}", "+"])
        .status()
        .expect("find runs");
    assert!(touched.success());

    git(&flake, &["init", "-q"]);
    git(&flake, &["add", "-A"]);
    let mut lock = Command::new("nix");
    lock.args(["flake", "lock", "--override-input", "nixpkgs"])
        .arg(format!("path:{}", standin.display()))
        .current_dir(&flake)
        .env("NIX_CONFIG", NIX_CONFIG);
    let locked = run(lock, Duration::from_secs(120));
    let relock = support::stderr(&locked);
    assert!(locked.status.success(), "nix flake lock: {relock}");
    git(&flake, &["add", "-A"]);
    git(&flake, &["commit", "-q", "-m", "snapshot"]);
    let rev = git(&flake, &["rev-parse", "HEAD"]).trim().to_string();
    let cache = dir.path().join("cache");
    Fixture {
        _dir: dir,
        flake,
        cache,
        rev,
        relock,
    }
}

impl Fixture {
    /// `nix <args>` on the flake (nixpkgs locked to the stand-in).
    fn nix(&self, args: &[&str], limit: Duration) -> Output {
        let mut cmd = Command::new("nix");
        cmd.args(args)
            .current_dir(&self.flake)
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("INFERMARK_CACHE", &self.cache);
        run(cmd, limit)
    }

    fn nix_ok(&self, args: &[&str], limit: Duration) -> Output {
        let out = self.nix(args, limit);
        assert!(
            out.status.success(),
            "nix {args:?} failed:\n{}\n{}",
            support::stdout(&out),
            support::stderr(&out)
        );
        out
    }
}

/// Regression: the nix test's release build replaced the product's
/// `target/release/infermark` with a binary naming a commit that exists
/// nowhere. Needs no Nix: it checks where those builds go.
#[test]
fn nix_builds_never_write_the_products_target_dir() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let product = tmp.parent().expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    let ours = nix_cargo_target();
    assert!(ours.starts_with(tmp), "{}", ours.display());
    assert_ne!(ours, product);
    for output in ["release", "debug"] {
        let theirs = product.join(output);
        assert!(
            !ours.starts_with(&theirs) && !theirs.starts_with(&ours),
            "{} overlaps the product's {}",
            ours.display(),
            theirs.display()
        );
        assert_ne!(ours.join(output), theirs);
    }
}

/// One test: the steps share one Nix build of the harness.
#[test]
fn flake_wiring_against_the_standin_nixpkgs() {
    require_nix();
    let _heavy = support::heavy();
    let started = Instant::now();
    let fx = fixture();
    let minute = Duration::from_secs(60);

    // Every Nix file parses.
    let mut files = vec![fx.flake.join("flake.nix")];
    for dir in ["nix", "tests/nix/nixpkgs-standin"] {
        for entry in fs::read_dir(fx.flake.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "nix") {
                files.push(path);
            }
        }
    }
    for file in &files {
        let mut cmd = Command::new("nix-instantiate");
        cmd.arg("--parse").arg(file).env("NIX_CONFIG", NIX_CONFIG);
        let out = run(cmd, minute);
        assert!(
            out.status.success(),
            "{} does not parse: {}",
            file.display(),
            support::stderr(&out)
        );
    }

    // The committed lock (version 7) pins nixpkgs; Nix 2.8 reads it and
    // reports replacing that pin with the stand-in.
    assert!(
        fx.relock
            .contains(&format!("github:NixOS/nixpkgs/{NIXPKGS_REV}")),
        "nix did not read the nixpkgs pin from flake.lock: {}",
        fx.relock
    );
    let show = fx.nix_ok(&["flake", "show", "--json"], 2 * minute);
    eprintln!("nix: flake show done at {:?}", started.elapsed());
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).expect("flake show --json");
    for path in [
        "/packages/x86_64-linux/default",
        "/packages/x86_64-linux/nightly",
        "/packages/x86_64-linux/llama-server",
        "/packages/x86_64-linux/smollm2-gguf",
        "/packages/aarch64-linux/default",
        "/apps/x86_64-linux/default",
        "/apps/x86_64-linux/nightly",
        "/devShells/x86_64-linux/default",
        "/checks/x86_64-linux/tests",
        "/checks/x86_64-linux/clippy",
        "/checks/x86_64-linux/fmt",
    ] {
        assert!(
            shown.pointer(path).is_some(),
            "flake show lacks {path}: {shown}"
        );
    }

    // The package's name carries Cargo.toml's version.
    let name = fx.nix_ok(
        &["eval", "--raw", ".#packages.x86_64-linux.default.name"],
        minute,
    );
    assert_eq!(
        support::stdout(&name),
        format!("infermark-{}", env!("CARGO_PKG_VERSION"))
    );

    // Every output evaluates; apps point into the store; no build.
    fx.nix_ok(&["flake", "check", "--no-build"], 2 * minute);
    eprintln!(
        "nix: flake check --no-build done at {:?}",
        started.elapsed()
    );
    // The fmt and clippy checks build for real (cargo fmt --check, cargo
    // clippy -D warnings, on the filtered source). The unit-test check is
    // only evaluated: a release build of the test harness is minutes more.
    fx.nix_ok(
        &[
            "build",
            "--no-link",
            ".#checks.x86_64-linux.fmt",
            ".#checks.x86_64-linux.clippy",
        ],
        10 * minute,
    );

    // A real release build; the binary names the flake's revision.
    eprintln!("nix: fmt and clippy checks done at {:?}", started.elapsed());
    let version = fx.nix_ok(&["run", ".#default", "--", "--version"], 20 * minute);
    assert_eq!(
        support::stdout(&version).trim(),
        format!("infermark {} ({})", env!("CARGO_PKG_VERSION"), fx.rev),
        "the binary built by the flake does not embed the flake's revision"
    );

    eprintln!(
        "nix: nix run .#default -- --version done at {:?}",
        started.elapsed()
    );
    // The nightly wrapper places the engine and the model in infermark's
    // content-addressed cache, then runs `infermark nightly`.
    let nightly = fx.nix(&["run", ".#nightly", "--", "--help"], 10 * minute);
    let gguf = fx.cache.join("files").join(GGUF_SHA256).join(GGUF_NAME);
    assert!(
        gguf.is_file(),
        "the wrapper did not place {}",
        gguf.display()
    );
    assert_eq!(sha256_hex(&gguf), GGUF_SHA256);
    let servers: Vec<PathBuf> = fs::read_dir(fx.cache.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path().join("llama-server"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(servers.len(), 1, "one llama-server placed: {servers:?}");
    let server_dir_sha = servers[0].parent().unwrap().file_name().unwrap();
    assert_eq!(sha256_hex(&servers[0]), server_dir_sha.to_string_lossy());
    let text = format!("{}{}", support::stdout(&nightly), support::stderr(&nightly));
    assert!(
        nightly.status.success(),
        "nix run .#nightly -- --help: {text}"
    );
    // The wrapper reached `infermark nightly` itself, not just the binary.
    assert!(text.contains("--update-locks"), "{text}");

    eprintln!("nix: nix run .#nightly done at {:?}", started.elapsed());
    // What the wrapper placed is what infermark finds: the flake's harness
    // runs the CPU experiment with no llama-server on PATH and no model next
    // to the spec, both found through the cache by their pins.
    // One point of it (concurrency 1), from a directory with no model file.
    let scratch = fx.cache.parent().unwrap();
    let results = scratch.join("results");
    let spec = fs::read_to_string(fx.flake.join("experiments/cpu/llamacpp-smollm2.toml")).unwrap();
    assert!(spec.contains("concurrency = [1, 4]"), "{spec}");
    let spec_path = scratch.join("llamacpp-smollm2-c1.toml");
    fs::write(
        &spec_path,
        spec.replace("concurrency = [1, 4]", "concurrency = [1]"),
    )
    .unwrap();
    let lock_dir = fx.flake.join("lockfiles");
    let ran = fx.nix_ok(
        &[
            "run",
            ".#default",
            "--",
            "run",
            spec_path.to_str().unwrap(),
            "--lock-dir",
            lock_dir.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
        ],
        5 * minute,
    );
    let mut environments = Vec::new();
    for point in fs::read_dir(results.join("points")).unwrap() {
        for run in fs::read_dir(point.unwrap().path().join("runs")).unwrap() {
            environments.push(run.unwrap().path().join("environment.json"));
        }
    }
    assert_eq!(
        environments.len(),
        1,
        "one point run: {}",
        support::stderr(&ran)
    );
    for path in environments {
        let env: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).expect("environment.json");
        for key in ["executable", "model_file"] {
            let found = env["engine"][key]["path"].as_str().unwrap_or_default();
            assert!(
                found.starts_with(fx.cache.to_str().unwrap()),
                "engine.{key} {found} is not the one placed in the cache"
            );
        }
        assert_eq!(env["harness"]["commit"], fx.rev.as_str());
    }

    eprintln!(
        "nix: infermark run through the cache done at {:?}",
        started.elapsed()
    );
    // The dev shell: its tools come from the package set, in the store.
    let tools = [
        "cargo",
        "rustc",
        "cargo-clippy",
        "rustfmt",
        "podman",
        "skopeo",
        "cmake",
    ];
    let script = format!(
        "cargo --version && for t in {}; do command -v \"$t\"; done",
        tools.join(" ")
    );
    let shell = fx.nix_ok(&["develop", "-c", "bash", "-c", &script], 5 * minute);
    let lines: Vec<String> = support::stdout(&shell)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(lines[0].starts_with("cargo "), "{lines:?}");
    for (tool, line) in tools.iter().zip(&lines[1..]) {
        assert!(
            line.starts_with("/nix/store/") && line.ends_with(&format!("/bin/{tool}")),
            "{tool} in nix develop is {line}"
        );
    }

    eprintln!("nix flake checks took {:?}", started.elapsed());
}

/// The stand-in refuses what nixpkgs would refuse, so the flake passing
/// against it means something.
#[test]
fn standin_nixpkgs_refuses_what_nixpkgs_refuses() {
    require_nix();
    let standin = support::repo().join("tests/nix/nixpkgs-standin");
    let pkgs = format!(
        "(import {0}/pkgs.nix {{ lib = import {0}/lib.nix; system = \"x86_64-linux\"; \
         host = {{ path = \"/bin\"; cargoHome = \"/c\"; rustupHome = \"/r\"; targetDir = \"/t\"; }}; }})",
        standin.display()
    );
    let cases = [
        (
            "rustPlatform.buildRustPackage { pname = \"x\"; version = \"1\"; src = ./.; }",
            "cargoHash, cargoVendorDir, cargoDeps, or cargoLock must be set",
        ),
        (
            "rustPlatform.buildRustPackage { pname = \"x\"; version = \"1\"; src = ./.; cargoSha256 = \"\"; }",
            "cargoSha256",
        ),
        (
            "stdenv.mkDerivation { pname = \"x\"; version = \"1\"; colour = \"blue\"; }",
            "stdenv.mkDerivation does not take colour",
        ),
        (
            "fetchurl { url = \"https://example.invalid/x.tar.gz\"; }",
            "a hash (hash or sha256) is required",
        ),
        (
            "stdenv.mkDerivation { pname = \"x\"; version = \"1\"; meta.license = \"MIT\"; }",
            "meta.license must be one of lib.licenses",
        ),
        (
            "stdenv.mkDerivation { pname = \"x\"; version = \"1\"; FOO = \"a\"; env.FOO = \"b\"; }",
            "does not take FOO",
        ),
        (
            "writeShellApplication { name = \"x\"; text = \"\"; runtimeDeps = [ ]; }",
            "writeShellApplication does not take runtimeDeps",
        ),
    ];
    for (expr, want) in cases {
        let mut cmd = Command::new("nix-instantiate");
        cmd.args(["--eval", "--expr"])
            .arg(format!("(with {pkgs}; {expr}).drvPath"))
            .env("NIX_CONFIG", NIX_CONFIG);
        let out = run(cmd, Duration::from_secs(60));
        let err = support::stderr(&out);
        assert!(!out.status.success(), "the stand-in accepted {expr}");
        assert!(err.contains(want), "{expr}: expected {want:?} in {err}");
    }
}
