//! `infermark lock` against a real `docker-registry` on 127.0.0.1, images
//! pushed with podman: tag to digest, update, unknown tag, closed port, and
//! an index manifest's per-platform digests.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::support::containers::{Registry, Rootfs, remove_image, run};
use crate::support::locking::{experiment, images, lock, project};
use crate::support::{free_port, stderr, stdout};
/// A rootfs of one small file holding `content`.
fn one_file_rootfs(content: &str) -> Rootfs {
    let r = Rootfs::new();
    std::fs::write(r.path().join("content"), content).unwrap();
    r
}

#[test]
fn real_registry_tag_to_digest_update_unknown_tag_and_closed_port() {
    crate::support::require("podman", "apt-get install podman (.ci/setup installs it)");
    crate::support::require(
        "docker-registry",
        "apt-get install docker-registry (.ci/setup installs it)",
    );
    let registry = Registry::start();
    let tagged = format!("{}/x:1", registry.addr);
    let first = registry.push("podman", &one_file_rootfs("first\n"), "x", "1", &[]);
    let d1 = registry.digest("x", "1");
    assert!(first.ends_with(&d1), "{first} {d1}");

    let p = project();
    experiment(&p.path().join("experiments"), "x", &tagged, None);

    // Plain `lock` pins the tag to the digest the registry reports.
    let out = lock(p.path(), &[], &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("lockfiles/images.lock  {tagged}  (none) → {d1}")),
        "{}",
        stdout(&out)
    );
    let e = images(p.path());
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].reference, tagged);
    assert_eq!(e[0].digest, d1);
    assert!(e[0].platforms.is_empty());
    assert_eq!(
        e[0].resolved_from,
        format!("http://{}/v2/x/manifests/1", registry.addr)
    );
    let resolved_at = e[0].resolved_at.clone();
    assert!(
        humantime::parse_rfc3339(&resolved_at).is_ok(),
        "{resolved_at}"
    );
    // The experiment's points are now pinned by that digest.
    let points = crate::support::infermark(
        p.path(),
        &["spec", "points", "--json", "experiments/x.toml"],
    );
    assert!(points.status.success(), "{}", stderr(&points));
    assert!(
        stdout(&points).contains(&format!("{}/x@{d1}", registry.addr)),
        "{}",
        stdout(&points)
    );

    // The tag moves: plain `lock` keeps the old pin, `--update` takes the new.
    registry.push("podman", &one_file_rootfs("second\n"), "x", "1", &[]);
    let d2 = registry.digest("x", "1");
    assert_ne!(d1, d2, "re-pushing different content moves the tag");
    let out = lock(p.path(), &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 changed, 0 unchanged, 1 already locked"),
        "{}",
        stdout(&out)
    );
    assert_eq!(images(p.path())[0].digest, d1);
    assert_eq!(images(p.path())[0].resolved_at, resolved_at);

    let out = lock(p.path(), &["--update"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{tagged}  {d1} → {d2}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(images(p.path())[0].digest, d2);
    // Asked again, nothing moved.
    let out = lock(p.path(), &["--update"], &[]);
    assert!(
        stdout(&out).contains(&format!("unchanged  {tagged}")),
        "{}",
        stdout(&out)
    );

    // A tag the registry lacks: exit 2, naming the reference and registry;
    // the lock is left as it was.
    let before = std::fs::read(p.path().join("lockfiles/images.lock")).unwrap();
    let missing = format!("{}/x:no-such-tag", registry.addr);
    experiment(&p.path().join("other"), "missing", &missing, None);
    let out = lock(p.path(), &["other", "--lock-dir", "lockfiles"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("`{missing}`")), "{err}");
    assert!(err.contains("not found"), "{err}");
    assert!(err.contains(&format!("http://{}", registry.addr)), "{err}");
    assert_eq!(
        std::fs::read(p.path().join("lockfiles/images.lock")).unwrap(),
        before
    );

    // A registry nobody listens on: exit 1, naming host and cause, promptly.
    let port = free_port();
    experiment(
        &p.path().join("closed"),
        "closed",
        &format!("127.0.0.1:{port}/x:1"),
        None,
    );
    let start = std::time::Instant::now();
    let out = lock(p.path(), &["closed/closed.toml"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(15));
    remove_image("podman", &tagged);
}

/// A podman manifest list, removed from local storage when dropped.
struct ManifestList(String);

impl Drop for ManifestList {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["manifest", "rm", &self.0])
            .output();
    }
}

#[test]
fn real_registry_index_records_per_platform_digests() {
    crate::support::require("podman", "apt-get install podman (.ci/setup installs it)");
    crate::support::require(
        "docker-registry",
        "apt-get install docker-registry (.ci/setup installs it)",
    );
    let registry = Registry::start();
    registry.push("podman", &one_file_rootfs("amd\n"), "part", "amd64", &[]);
    registry.push("podman", &one_file_rootfs("arm\n"), "part", "arm64", &[]);
    let amd = registry.digest("part", "amd64");
    let arm = registry.digest("part", "arm64");
    assert_ne!(amd, arm);
    let list = ManifestList(format!("{}/multi:1", registry.addr));
    run("podman", &["manifest", "create", &list.0]);
    for (arch, variant, tag) in [("amd64", "", "amd64"), ("arm64", "v8", "arm64")] {
        let mut args = vec![
            "manifest",
            "add",
            "--tls-verify=false",
            "--os",
            "linux",
            "--arch",
            arch,
        ];
        if !variant.is_empty() {
            args.extend(["--variant", variant]);
        }
        let part = format!("docker://{}/part:{tag}", registry.addr);
        args.extend([list.0.as_str(), part.as_str()]);
        run("podman", &args);
    }
    let dest = format!("docker://{}", list.0);
    run(
        "podman",
        &[
            "manifest",
            "push",
            "--all",
            "--tls-verify=false",
            &list.0,
            &dest,
        ],
    );
    let index = registry.digest("multi", "1");

    let p = project();
    experiment(&p.path().join("experiments"), "multi", &list.0, None);
    let out = lock(p.path(), &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let e = &images(p.path())[0];
    assert_eq!(e.digest, index, "the index digest is the pin");
    let want: BTreeMap<String, String> = [
        ("linux/amd64".to_string(), amd),
        ("linux/arm64/v8".to_string(), arm),
    ]
    .into();
    assert_eq!(e.platforms, want);
}
