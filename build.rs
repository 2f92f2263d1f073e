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
    // Rebuild when HEAD moves: a commit rewrites the branch's ref and the
    // HEAD reflog, a checkout rewrites HEAD, staging rewrites the index.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
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
        for path in watched {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
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
    let mut commit = git(&["rev-parse", "HEAD"])?;
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
