//! Container fixtures, reusable by any test that needs an image by digest
//! without the internet: a root filesystem made of local binaries and the
//! shared libraries they link, imported as an image, pushed to a
//! `docker-registry` on 127.0.0.1, and named by the digest the registry
//! reports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `true` when `program` is on PATH. Container tests skip (saying so) only
/// when their runtime is not installed at all.
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// Runs a command to completion, panicking with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A root filesystem under construction.
pub struct Rootfs {
    dir: tempfile::TempDir,
}

impl Default for Rootfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Rootfs {
    pub fn new() -> Self {
        Rootfs {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies `file` to `dest` (an absolute path inside the image).
    pub fn add_file(&self, file: &Path, dest: &str) {
        let target = self.at(dest);
        std::fs::copy(file, &target)
            .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", file.display(), target.display()));
    }

    /// Copies an executable to `dest` (stripped of debug information when
    /// `strip` exists, to keep the image small) with every shared library
    /// `ldd` lists, at the same paths as on this host.
    pub fn add_binary(&self, binary: &Path, dest: &str) {
        let target = self.at(dest);
        let stripped = installed("strip")
            && Command::new("strip")
                .arg("-o")
                .arg(&target)
                .arg(binary)
                .status()
                .is_ok_and(|s| s.success());
        if !stripped {
            self.add_file(binary, dest);
        }
        let ldd = run("ldd", &[binary.to_str().unwrap()]);
        for lib in ldd
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(PathBuf::from)
        {
            let target = self.at(lib.to_str().unwrap());
            if !target.exists() {
                // Follows symlinks: the image gets the library itself.
                std::fs::copy(&lib, &target).unwrap();
            }
        }
    }

    fn at(&self, dest: &str) -> PathBuf {
        let target = self.path().join(dest.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        target
    }
}

/// The Accept list a registry needs to answer for both OCI and Docker
/// manifests (without it, it answers 404).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A `docker-registry` serving plain HTTP on 127.0.0.1, storage in a
/// temporary directory; killed when dropped.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::support::free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts (apt-get install docker-registry)");
        let registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        let start = Instant::now();
        while registry.request("GET", "/v2/").0 != 200 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry on {} did not answer",
                registry.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// One HTTP/1.1 request; the status (0 if unreachable) and the headers.
    fn request(&self, method: &str, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(&self.addr) else {
            return (0, String::new());
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let sent = write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: {MANIFEST_ACCEPT}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut text = String::new();
        if sent.is_err() || s.read_to_string(&mut text).is_err() {
            return (0, String::new());
        }
        let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, head)
    }

    /// The digest the registry holds for `name:tag` (`sha256:<hex>`), from
    /// the `Docker-Content-Digest` header of a HEAD on the manifest.
    pub fn digest(&self, name: &str, tag: &str) -> String {
        let (status, head) = self.request("HEAD", &format!("/v2/{name}/manifests/{tag}"));
        assert_eq!(status, 200, "{head}");
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no Docker-Content-Digest in {head}"))
    }

    /// Imports `rootfs` as `name:tag` with `runtime` (`docker` or `podman`),
    /// applying Dockerfile-style `changes` (e.g. `ENV PATH=/usr/bin`),
    /// pushes it here, removes the local copy (so that a start must pull),
    /// and returns the image by digest: `127.0.0.1:<port>/<name>@sha256:<hex>`.
    pub fn push(
        &self,
        runtime: &str,
        rootfs: &Rootfs,
        name: &str,
        tag: &str,
        changes: &[&str],
    ) -> String {
        let tagged = format!("{}/{name}:{tag}", self.addr);
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs.path())
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar runs");
        let mut import = Command::new(runtime);
        import.arg("import");
        for c in changes {
            import.args(["--change", c]);
        }
        let out = import
            .args(["-", &tagged])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap_or_else(|e| panic!("{runtime} import: {e}"));
        assert!(tar.wait().unwrap().success(), "tar failed");
        assert!(
            out.status.success(),
            "{runtime} import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        match runtime {
            "podman" => run("podman", &["push", "--tls-verify=false", &tagged]),
            _ => run(runtime, &["push", &tagged]),
        };
        run(runtime, &["rmi", &tagged]);
        format!("{}/{name}@{}", self.addr, self.digest(name, tag))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes an image from a runtime's store, if present.
pub fn remove_image(runtime: &str, reference: &str) {
    let _ = Command::new(runtime)
        .args(["rmi", "-f", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Names of the containers (running or not) called exactly `name`.
pub fn containers_named(runtime: &str, name: &str) -> Vec<String> {
    run(
        runtime,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("name=^{name}$"),
            "--format",
            "{{.Names}}",
        ],
    )
    .lines()
    .map(str::to_string)
    .filter(|l| !l.is_empty())
    .collect()
}
