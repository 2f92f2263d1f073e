//! Embeds the git commit the binary is built from, so every result and
//! statement can name the exact harness source. Nix builds have no `.git`; the
//! flake passes its revision in `INFERMARK_GIT_COMMIT` instead.
//!
//! A tree with uncommitted changes to tracked files embeds
//! `<commit>-dirty.<16 hex>`: the first 16 hex digits of the git blob id of
//! the diff from HEAD (`git diff --binary --no-ext-diff --no-color HEAD |
//! git hash-object --stdin`), so two dirty builds of different sources never
//! share a name, and the same dirty source always gets the same one.

use std::io::Write;
use std::process::{Command, Stdio};

/// Hex digits of the diff's blob id kept in the name.
const DIFF_ID_LEN: usize = 16;

fn main() {
    println!("cargo:rerun-if-env-changed=INFERMARK_GIT_COMMIT");
    if let Some(commit) = std::env::var("INFERMARK_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
    {
        println!("cargo:rustc-env=INFERMARK_GIT_COMMIT={commit}");
        return;
    }
    let commit = git_commit().unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=INFERMARK_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: a commit rewrites the branch's ref and the
    // HEAD reflog, a checkout rewrites HEAD, staging rewrites the index.
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]) else {
        return;
    };
    let common = git(&["rev-parse", "--git-common-dir"]).unwrap_or_else(|| git_dir.clone());
    let mut watched = vec![
        format!("{git_dir}/HEAD"),
        format!("{git_dir}/index"),
        format!("{git_dir}/logs/HEAD"),
        format!("{common}/packed-refs"),
    ];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(format!("{common}/{head_ref}"));
    }
    // And when any tracked file changes: the dirty suffix names the diff,
    // so an edit to any of them (not only to src/) changes the embedded
    // name. Cargo compares a few hundred mtimes, and a rerun costs a
    // `git status` and a `git diff`; a changed file makes the crate
    // recompile anyway.
    if let Some(files) = git(&["ls-files", "-z"]) {
        watched.extend(files.split('\0').map(str::to_string));
    }
    for path in watched {
        // A path that does not exist would make Cargo rerun every build.
        if !path.is_empty() && std::path::Path::new(&path).is_file() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "HEAD"])?;
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    if !dirty {
        return Some(commit);
    }
    // Without the diff's id a dirty build still says it is dirty.
    Some(match diff_id() {
        Some(id) => format!("{commit}-dirty.{id}"),
        None => format!("{commit}-dirty"),
    })
}

/// The first [`DIFF_ID_LEN`] hex digits of the blob id of `git diff HEAD`
/// (tracked files, binary-safe).
fn diff_id() -> Option<String> {
    let diff = Command::new("git")
        .args(["diff", "--binary", "--no-ext-diff", "--no-color", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut hasher = Command::new("git")
        .args(["hash-object", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    // hash-object reads all its input before it writes: no deadlock.
    hasher.stdin.take()?.write_all(&diff.stdout).ok()?;
    let out = hasher.wait_with_output().ok()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && id.len() >= DIFF_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| id[..DIFF_ID_LEN].to_ascii_lowercase())
}
