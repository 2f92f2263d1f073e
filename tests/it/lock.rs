//! `infermark lock`: the bearer-token flow and index manifests against a
//! local fixture registry, and model branches against a local fixture of the
//! Hugging Face revision API. Every server is on loopback; the binary runs
//! as a user runs it. (The real `docker-registry` tests are in the engine
//! tier, `tests/engine/lock_registry.rs`.)

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infermark::lock::Lockfiles;

use crate::support::locking::{experiment, images, lock, models, project, sha256};
use crate::support::{stderr, stdout};

// ---------------------------------------------------------------------------
// A scripted HTTP/1.1 server on 127.0.0.1 for the registry's token flow,
// index manifests and the hub API: one request per connection, every
// request recorded.

#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn new(status: u16) -> Self {
        Resp {
            status,
            headers: vec![],
            body: vec![],
        }
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }
}

type Handler = dyn Fn(&Req, &str) -> Resp + Send + Sync;

struct Fixture {
    addr: String,
    requests: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fixture {
    /// Serves `handler(request, "127.0.0.1:<port>")` until dropped.
    fn start(handler: impl Fn(&Req, &str) -> Resp + Send + Sync + 'static) -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (requests, stop, addr) = (requests.clone(), stop.clone(), addr.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, handler, addr) =
                        (requests.clone(), handler.clone(), addr.clone());
                    std::thread::spawn(move || serve(stream, &requests, &*handler, &addr));
                }
            })
        };
        Fixture {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Req>>, handler: &Handler, addr: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let req = Req {
        method,
        target,
        headers,
    };
    requests.lock().unwrap().push(req.clone());
    let resp = handler(&req, addr);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut w = stream;
    let _ = w.write_all(out.as_bytes());
    if req.method != "HEAD" {
        let _ = w.write_all(&resp.body);
    }
    let _ = w.flush();
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A registry that wants a bearer token from its realm, which wants basic
/// auth `me:pw-secret` and hands out `tok-granted`.
fn token_registry() -> (Fixture, String) {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#.to_vec();
    let digest = sha256(&manifest);
    let d = digest.clone();
    let fixture = Fixture::start(move |req, addr| {
        let path = req.target.split('?').next().unwrap_or("");
        match path {
            "/v2/team/b/manifests/1" => {
                if req.header("authorization") == Some("Bearer tok-granted") {
                    Resp::new(200)
                        .header("Content-Type", OCI_MANIFEST)
                        .header("Docker-Content-Digest", &d)
                        .body(manifest.clone())
                } else {
                    Resp::new(401).header(
                        "WWW-Authenticate",
                        &format!(
                            r#"Bearer realm="http://{addr}/token",service="fixture",scope="repository:team/b:pull""#
                        ),
                    )
                }
            }
            "/token" => {
                // "me:pw-secret" in base64.
                if req.header("authorization") == Some("Basic bWU6cHctc2VjcmV0") {
                    Resp::new(200)
                        .header("Content-Type", "application/json")
                        .body(r#"{"token":"tok-granted","expires_in":300}"#)
                } else {
                    Resp::new(401)
                }
            }
            _ => Resp::new(404),
        }
    });
    (fixture, digest)
}

#[test]
fn bearer_token_flow_with_basic_credentials() {
    let (reg, digest) = token_registry();
    let p = project();
    let image = format!("{}/team/b:1", reg.addr);
    experiment(&p.path().join("experiments"), "b", &image, None);
    let creds = [
        ("INFERMARK_REGISTRY_USER", "me"),
        ("INFERMARK_REGISTRY_PASSWORD", "pw-secret"),
    ];
    let out = lock(p.path(), &[], &creds);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(images(p.path())[0].digest, digest);

    let reqs = reg.requests();
    // HEAD without credentials → 401; token with basic auth, service and
    // scope from the challenge; HEAD again with the token.
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[0].method, "HEAD");
    assert!(reqs[0].header("authorization").is_none());
    let accept = reqs[0].header("accept").unwrap_or("");
    for t in [
        OCI_INDEX,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ] {
        assert!(accept.contains(t), "{accept}");
    }
    assert_eq!(reqs[1].method, "GET");
    assert!(reqs[1].target.starts_with("/token?"), "{}", reqs[1].target);
    assert!(
        reqs[1].target.contains("service=fixture"),
        "{}",
        reqs[1].target
    );
    assert!(
        reqs[1]
            .target
            .contains("scope=repository%3Ateam%2Fb%3Apull"),
        "{}",
        reqs[1].target
    );
    assert_eq!(reqs[2].header("authorization"), Some("Bearer tok-granted"));

    // Nothing secret is stored.
    for f in ["images.lock", "models.lock", "files.lock"] {
        let text = std::fs::read_to_string(p.path().join("lockfiles").join(f)).unwrap_or_default();
        assert!(
            !text.contains("tok-granted") && !text.contains("pw-secret"),
            "{text}"
        );
    }
}

#[test]
fn registry_token_from_the_environment_and_refusals_never_show_secrets() {
    let (reg, digest) = token_registry();
    let p = project();
    let image = format!("{}/team/b:1", reg.addr);
    experiment(&p.path().join("experiments"), "b", &image, None);

    // INFERMARK_REGISTRY_TOKEN goes straight to the registry: no token request.
    let out = lock(
        p.path(),
        &[],
        &[("INFERMARK_REGISTRY_TOKEN", "tok-granted")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(images(p.path())[0].digest, digest);
    assert!(
        reg.requests()
            .iter()
            .all(|r| !r.target.starts_with("/token"))
    );
    assert!(!stdout(&out).contains("tok-granted"));

    // A wrong password: the token service refuses; exit 1, the message says
    // so, and neither the password nor the token shows.
    let out = lock(
        p.path(),
        &["--update"],
        &[
            ("INFERMARK_REGISTRY_TOKEN", "tok-revoked-0xdeadbeef"),
            ("INFERMARK_REGISTRY_USER", "me"),
            ("INFERMARK_REGISTRY_PASSWORD", "wrong-pw-0xfeedface"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("refused access (HTTP 401)"), "{all}");
    assert!(all.contains(&format!("`{image}`")), "{all}");
    for secret in [
        "tok-revoked-0xdeadbeef",
        "wrong-pw-0xfeedface",
        "tok-granted",
    ] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
    // The lock still holds the earlier pin.
    assert_eq!(images(p.path())[0].digest, digest);
}

#[test]
fn index_manifest_records_per_platform_digests() {
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d('a'), "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": d('b'), "size": 1,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": OCI_MANIFEST, "digest": d('c'), "size": 1,
             "platform": {"os": "unknown", "architecture": "unknown"}}
        ]
    })
    .to_string()
    .into_bytes();
    let digest = sha256(&index);
    let announced = digest.clone();
    let reg = Fixture::start(move |req, _| match req.target.as_str() {
        "/v2/multi/manifests/1" => Resp::new(200)
            .header("Content-Type", OCI_INDEX)
            .header("Docker-Content-Digest", &announced)
            .body(index.clone()),
        // Announces one digest, serves bytes that hash to another.
        "/v2/multi/manifests/lying" => Resp::new(200)
            .header("Content-Type", OCI_INDEX)
            .header("Docker-Content-Digest", &d('f'))
            .body(index.clone()),
        _ => Resp::new(404),
    });
    let p = project();
    experiment(
        &p.path().join("experiments"),
        "multi",
        &format!("{}/multi:1", reg.addr),
        None,
    );
    let out = lock(p.path(), &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let e = &images(p.path())[0];
    assert_eq!(e.digest, digest, "the index digest is the pin");
    let want: BTreeMap<String, String> = [
        ("linux/amd64".to_string(), d('a')),
        ("linux/arm64/v8".to_string(), d('b')),
    ]
    .into();
    assert_eq!(e.platforms, want);
    let text = std::fs::read_to_string(p.path().join("lockfiles/images.lock")).unwrap();
    assert!(text.contains("linux/amd64"), "{text}");
    let methods: Vec<String> = reg.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["HEAD", "GET"]);

    experiment(
        &p.path().join("lying"),
        "lying",
        &format!("{}/multi:lying", reg.addr),
        None,
    );
    let out = lock(p.path(), &["lying", "--lock-dir", "lockfiles"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("hashes to {digest}")),
        "{}",
        stderr(&out)
    );
}

/// The hub's revision API for `o/m`: `main` resolves; with `token`, only
/// requests carrying it are answered (as for a gated repository).
fn hub(token: Option<&'static str>) -> (Fixture, String) {
    let commit = "0123456789abcdef0123456789abcdef01234567".to_string();
    let c = commit.clone();
    let f = Fixture::start(move |req, _| {
        if let Some(t) = token
            && req.header("authorization") != Some(&format!("Bearer {t}"))
        {
            return Resp::new(401)
                .header("Content-Type", "application/json")
                .body(r#"{"error":"Access to model o/m is restricted."}"#);
        }
        match req.target.as_str() {
            "/api/models/o/m/revision/main?blobs=true" => Resp::new(200)
                .header("Content-Type", "application/json")
                .body(
                    serde_json::json!({
                        "_id": "x", "id": "o/m", "modelId": "o/m", "sha": c,
                        "lastModified": "2026-01-01T00:00:00.000Z", "private": false,
                        "siblings": [
                            {"rfilename": ".gitattributes", "blobId": "a1", "size": 1519},
                            {"rfilename": "config.json", "blobId": "b2", "size": 700},
                            {"rfilename": "model.safetensors", "blobId": "c3", "size": 269060552,
                             "lfs": {"sha256": "5".repeat(64), "size": 269060552, "pointerSize": 135}}
                        ]
                    })
                    .to_string(),
                ),
            _ => Resp::new(404)
                .header("Content-Type", "application/json")
                .body(r#"{"error":"Invalid rev id: nope"}"#),
        }
    });
    (f, commit)
}

/// An experiment on `o/m@rev` with its image already pinned by digest.
fn hub_project(rev: &str) -> tempfile::TempDir {
    let p = project();
    experiment(
        &p.path().join("experiments"),
        "m",
        &format!("127.0.0.1:9/x@sha256:{}", "e".repeat(64)),
        Some(("o/m", rev)),
    );
    p
}

#[test]
fn hub_branch_to_commit_and_lfs_files_without_token() {
    let (hub, commit) = hub(None);
    let p = hub_project("main");
    let out = lock(p.path(), &[], &[("HF_ENDPOINT", &hub.url())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("o/m@main  (none) → {commit}")),
        "{}",
        stdout(&out)
    );
    let m = models(p.path());
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].repo.as_str(), m[0].revision.as_str()),
        ("o/m", "main")
    );
    assert_eq!(m[0].commit, commit);
    assert_eq!(m[0].files.len(), 1, "only LFS files carry a sha256");
    assert_eq!(m[0].files["model.safetensors"], "5".repeat(64));
    assert_eq!(
        m[0].resolved_from,
        format!("{}/api/models/o/m/revision/main?blobs=true", hub.url())
    );
    let reqs = hub.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].header("authorization").is_none());
    // The point now names the commit.
    let points = crate::support::infermark(
        p.path(),
        &["spec", "points", "--json", "experiments/m.toml"],
    );
    assert!(stdout(&points).contains(&commit), "{}", stdout(&points));

    // A revision the hub lacks: exit 2, naming it and the endpoint.
    let p = hub_project("nope");
    let out = lock(p.path(), &[], &[("HF_ENDPOINT", &hub.url())]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`o/m@nope`: model revision not found"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(&hub.url()), "{}", stderr(&out));
}

#[test]
fn hub_token_is_sent_and_never_shown() {
    let (hub, commit) = hub(Some("hf_fixture_token_1234"));
    let p = hub_project("main");
    // Without the token the gated repository is refused, with a hint.
    let out = lock(p.path(), &[], &[("HF_ENDPOINT", &hub.url())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("set HF_TOKEN"), "{}", stderr(&out));

    let out = lock(
        p.path(),
        &[],
        &[
            ("HF_ENDPOINT", &hub.url()),
            ("HF_TOKEN", "hf_fixture_token_1234"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(models(p.path())[0].commit, commit);
    assert_eq!(
        hub.requests().last().unwrap().header("authorization"),
        Some("Bearer hf_fixture_token_1234")
    );
    let text = std::fs::read_to_string(p.path().join("lockfiles/models.lock")).unwrap();
    assert!(!text.contains("hf_fixture_token_1234"));

    // A wrong token: refused, and the message does not show it.
    let out = lock(
        p.path(),
        &["--update"],
        &[
            ("HF_ENDPOINT", &hub.url()),
            ("HF_TOKEN", "hf_wrong_token_5678"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("refused access (HTTP 401)"), "{all}");
    assert!(!all.contains("hf_wrong_token_5678"), "{all}");
}

#[test]
fn plain_http_hub_off_loopback_is_refused() {
    let p = hub_project("main");
    let out = lock(
        p.path(),
        &[],
        &[
            ("HF_ENDPOINT", "http://hub.example.invalid"),
            ("HF_TOKEN", "hf_never_sent"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("plain HTTP is allowed only to loopback hosts"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("hf_never_sent"));
}

#[test]
fn lock_set_still_pins_by_hand() {
    let p = project();
    let out = crate::support::infermark(
        p.path(),
        &[
            "lock",
            "set",
            "vllm/vllm-openai:v0.10.2",
            &format!("sha256:{}", "a".repeat(64)),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let e = images(p.path());
    assert_eq!(e[0].reference, "docker.io/vllm/vllm-openai:v0.10.2");
    assert_eq!(e[0].resolved_from, "manual");
}

/// `.ci/setup` wrote this machine's image digest into the tracked
/// images.lock, so every CPU night's harness was built from a dirty tree.
/// `--local` pins in the ignored overlay, and `lock --update` leaves a
/// locally pinned reference alone (the closed port would fail if asked).
#[test]
fn lock_set_local_pins_in_the_overlay_and_lock_does_not_resolve_it() {
    let p = project();
    let image = "127.0.0.1:1/team/x:1";
    experiment(&p.path().join("experiments"), "a", image, None);
    let digest = format!("sha256:{}", "b".repeat(64));
    let out = crate::support::infermark(p.path(), &["lock", "set", "--local", image, &digest]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        crate::support::stdout(&out).contains("lockfiles/local/images.lock"),
        "{}",
        crate::support::stdout(&out)
    );
    assert!(images(p.path()).is_empty(), "the tracked lock is untouched");
    let pins = Lockfiles::load_checked(&p.path().join("lockfiles")).unwrap();
    let local = pins.local.expect("an overlay");
    assert_eq!(local.images.images[0].reference, image);
    assert_eq!(local.images.images[0].digest, digest);

    let out = lock(p.path(), &["--update"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        crate::support::stdout(&out).contains(&format!("pinned locally  {image}")),
        "{}",
        crate::support::stdout(&out)
    );
    assert!(images(p.path()).is_empty());
}
