//! Embeds the git commit the binary is built from, so every result and
//! statement can name the exact harness source. Nix builds have no `.git`; the
//! flake passes its revision in `INFERMARK_GIT_COMMIT` instead.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=INFERMARK_GIT_COMMIT");
    let commit = std::env::var("INFERMARK_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=INFERMARK_GIT_COMMIT={commit}");
    for path in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        commit.push_str("-dirty");
    }
    Some(commit)
}
