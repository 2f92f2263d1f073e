//! `engine::start` with the built-in sim in Docker and Podman by digest
//! from a loopback `docker-registry`: the pin reported, a digest the
//! registry lacks refused, a container left by a killed harness removed.
//! Nothing is left running.

use infermark::engine::EngineError;
use infermark::spec::reference::ImageRef;
use infermark::spec::{PointSpec, Runtime};

use crate::support::containers::{self, Registry, Rootfs};
use crate::support::engines::{LIMIT, exe, get, options, sim, start};

/// An image holding the infermark binary (and the libraries it links) at
/// /usr/local/bin/infermark, pushed to `registry` with `runtime`.
fn sim_image(runtime: &str, registry: &Registry) -> String {
    let rootfs = Rootfs::new();
    rootfs.add_binary(&exe(), "/usr/local/bin/infermark");
    registry.push(
        runtime,
        &rootfs,
        "infermark-sim",
        "it",
        &["ENV PATH=/usr/local/bin:/usr/bin:/bin"],
    )
}

/// Fails unless container runtime `rt` and a registry are installed,
/// saying how to install them.
fn require_runtime(rt: &str) {
    let install = match rt {
        "docker" => "apt-get install docker.io, and start dockerd",
        _ => "apt-get install podman (.ci/setup installs it)",
    };
    crate::support::require(rt, install);
    crate::support::require(
        "docker-registry",
        "apt-get install docker-registry (.ci/setup installs it)",
    );
}

fn sim_in(runtime: Runtime, reference: &str) -> PointSpec {
    let mut p = sim(&[], 60);
    p.engine.runtime = runtime;
    p.engine.image = Some(ImageRef::parse(reference).unwrap());
    p
}

async fn sim_in_a_container_by_digest(runtime: Runtime) {
    let rt = runtime.as_str();
    require_runtime(rt);
    let registry = Registry::start();
    let reference = sim_image(rt, &registry);
    let pin = reference.split('@').nth(1).unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let name = format!("infermark-{}", opts.label);
    let p = sim_in(runtime, &reference);

    let e = start(&p, &opts).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = get(&format!("{}/v1/models", e.base_url())).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"it-sim\""), "{body}");
    let facts = e.facts();
    let image = facts.image.as_ref().unwrap();
    assert_eq!(image.digest, pin, "inspect reports the pinned digest");
    assert_eq!(image.reference, reference);
    assert!(image.container_id.as_ref().is_some_and(|c| c.len() >= 12));
    assert!(image.image_id.as_ref().is_some_and(|i| !i.is_empty()));
    assert!(
        image.runtime_version.to_lowercase().contains(rt),
        "{}",
        image.runtime_version
    );
    assert!(facts.executable.is_none());
    assert_eq!(facts.argv[0], rt);
    assert!(facts.argv.contains(&reference));
    assert_eq!(containers::containers_named(rt, &name), vec![name.clone()]);
    let log = std::fs::read_to_string(e.log_path()).unwrap();
    assert!(log.contains("listening on http://0.0.0.0:8000"), "{log}");
    tokio::time::timeout(LIMIT, e.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(
        containers::containers_named(rt, &name).is_empty(),
        "stop leaves no container"
    );

    // Dropped without stop: removed all the same (the image is local now).
    let opts = options(dir.path());
    let name = format!("infermark-{}", opts.label);
    let e = start(&p, &opts).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(containers::containers_named(rt, &name), vec![name.clone()]);
    drop(e);
    assert!(
        containers::containers_named(rt, &name).is_empty(),
        "drop leaves no container"
    );
    containers::remove_image(rt, &reference);
}

async fn a_digest_the_registry_lacks_fails_with_no_container(runtime: Runtime) {
    let rt = runtime.as_str();
    require_runtime(rt);
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let reference = format!("{}/infermark-sim@sha256:{}", registry.addr, "e".repeat(64));
    let err = start(&sim_in(runtime, &reference), &opts)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EngineError::Pull { .. }), "{err:?}");
    assert!(
        msg.starts_with(&format!("cannot pull `{reference}`: `{rt} pull"))
            && msg.contains("manifest unknown"),
        "{msg}"
    );
    let name = format!("infermark-{}", opts.label);
    assert!(containers::containers_named(rt, &name).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_in_docker_by_digest_reports_the_pin_and_leaves_no_container() {
    sim_in_a_container_by_digest(Runtime::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_in_podman_by_digest_reports_the_pin_and_leaves_no_container() {
    sim_in_a_container_by_digest(Runtime::Podman).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_refuses_a_digest_the_registry_lacks() {
    a_digest_the_registry_lacks_fails_with_no_container(Runtime::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_refuses_a_digest_the_registry_lacks() {
    a_digest_the_registry_lacks_fails_with_no_container(Runtime::Podman).await;
}

/// `<pid>:<start ticks>:<boot id>` of a process, as infermark labels the
/// containers it starts.
fn owner_label(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    format!("{pid}:{start}:{}", boot.trim())
}

/// Starts, detached, the container of an engine's command line `argv`
/// (infermark's own, so with every flag the runtime needs here) under
/// `name`, with `owner` as its owner label (none if `None`) and no port
/// published (several run at once).
fn detached_like(argv: &[String], name: &str, owner: Option<&str>) {
    let mut args: Vec<String> = Vec::new();
    let mut rest = argv[1..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "run" => args.extend(["run".to_string(), "-d".to_string()]),
            "--name" => {
                rest.next();
                args.extend(["--name".to_string(), name.to_string()]);
            }
            "--label" => {
                rest.next();
                if let Some(o) = owner {
                    args.extend(["--label".to_string(), format!("infermark.owner={o}")]);
                }
            }
            "-p" => {
                rest.next();
            }
            _ => args.push(a.clone()),
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    containers::run(&argv[0], &args);
}

/// A harness killed by SIGKILL cannot remove its container; the next start
/// on the host does, and only that one: a container of a harness still
/// running, and one infermark did not label, stay.
async fn a_container_left_by_a_killed_harness_is_removed_at_the_next_start(runtime: Runtime) {
    let rt = runtime.as_str();
    require_runtime(rt);
    let registry = Registry::start();
    let reference = sim_image(rt, &registry);
    let dir = tempfile::tempdir().unwrap();
    let p = sim_in(runtime, &reference);
    // The first start pulls the image; its container carries its owner.
    let e = start(&p, &options(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let argv = e.facts().argv.clone();
    assert!(
        argv.join(" ").contains(&format!(
            "--label infermark.owner={}",
            owner_label(std::process::id())
        )),
        "{argv:?}"
    );
    tokio::time::timeout(LIMIT, e.stop())
        .await
        .unwrap()
        .unwrap();

    let tag = std::process::id();
    let (stale, live, unlabelled) = (
        format!("infermark-stale-{tag}"),
        format!("infermark-live-{tag}"),
        format!("infermark-unlabelled-{tag}"),
    );
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let dead_owner = owner_label(std::process::id()).replacen(
        &format!("{}:", std::process::id()),
        &format!("{dead}:"),
        1,
    );
    detached_like(&argv, &stale, Some(&dead_owner));
    detached_like(&argv, &live, Some(&owner_label(std::process::id())));
    detached_like(&argv, &unlabelled, None);

    let opts = options(dir.path());
    let e = start(&p, &opts).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        containers::containers_named(rt, &stale).is_empty(),
        "the stale one is removed"
    );
    assert_eq!(containers::containers_named(rt, &live), vec![live.clone()]);
    assert_eq!(
        containers::containers_named(rt, &unlabelled),
        vec![unlabelled.clone()]
    );
    let log = std::fs::read_to_string(e.log_path()).unwrap();
    assert!(
        log.contains(&format!("infermark: removed container {stale}: the infermark that started it is no longer running")),
        "{log}"
    );
    tokio::time::timeout(LIMIT, e.stop())
        .await
        .unwrap()
        .unwrap();
    for name in [&live, &unlabelled] {
        containers::run(rt, &["rm", "-f", name]);
    }
    containers::remove_image(rt, &reference);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_removes_a_container_left_by_a_killed_harness() {
    a_container_left_by_a_killed_harness_is_removed_at_the_next_start(Runtime::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_removes_a_container_left_by_a_killed_harness() {
    a_container_left_by_a_killed_harness_is_removed_at_the_next_start(Runtime::Podman).await;
}
