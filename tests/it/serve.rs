//! `infermark serve` over a real results tree (one sim experiment, two load
//! levels, measured by `nightly` on two nights): its queries, that it
//! serves the bytes `report` writes, its refusals, ETags and gzip, a flood
//! of connections, Chromium, the loopback rule and a graceful stop. Only
//! 127.0.0.1; every server is stopped by its test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::chromium::{console_lines, headless};
use crate::support::night::{FAST, Night, runs, sim_experiment};
use crate::support::{infermark, stderr};

const NIGHTS: [&str; 2] = ["2026-01-01", "2026-01-02"];

/// The measured tree, shared read-only.
fn tree() -> &'static Night {
    static TREE: OnceLock<Night> = OnceLock::new();
    TREE.get_or_init(|| {
        let n = Night::new();
        n.add("sim-a.toml", &sim_experiment("sim-a", FAST));
        for night in NIGHTS {
            let o = n.nightly(&n.results(), &["--night", night]);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        }
        n
    })
}

/// A running `infermark serve`, stopped with SIGTERM when dropped (so it
/// removes its private build directory).
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        // Never signal a pid already reaped (it may be another process now).
        if matches!(self.child.try_wait(), Ok(None)) {
            terminate(&self.child);
            let _ = self.child.wait();
        }
    }
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

fn serve_args(results: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_infermark"))
        .arg("serve")
        .arg("--results")
        .arg(results)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the infermark binary runs")
}

/// The address from the first stdout line, `serving DIR on http://ADDR/`.
fn bound_addr(child: &mut Child) -> SocketAddr {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap();
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("no address in {line:?}"))
}

fn serve(results: &Path) -> Served {
    let mut child = serve_args(results, &["--addr", "127.0.0.1:0"]);
    let addr = bound_addr(&mut child);
    Served { child, addr }
}

/// A response: status, lowercase header lines, body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Sends `head` (the request line and headers, without the blank line)
/// on a fresh connection and reads the response to its end.
fn raw(addr: SocketAddr, head: &str) -> Reply {
    exchange(TcpStream::connect(addr).unwrap(), addr, head)
}

/// [`raw`] on a connection already open.
fn exchange(mut s: TcpStream, addr: SocketAddr, head: &str) -> Reply {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{head}\r\nhost: {addr}\r\nconnection: close\r\n\r\n").unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Reply {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    raw(addr, &format!("GET {path} HTTP/1.1"))
}

fn built_site(results: &Path) -> tempfile::TempDir {
    let site = tempfile::tempdir().unwrap();
    let o = infermark(
        results.parent().unwrap(),
        &[
            "report",
            "--results",
            results.to_str().unwrap(),
            "--out",
            site.path().to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    site
}

fn run_ids(r: &Reply) -> Vec<String> {
    r.json()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn queries_filter_by_hardware_night_and_status_and_page_with_limit_offset_and_next() {
    let s = serve(&tree().results());
    let all = get(s.addr, "/api/v1/runs");
    assert_eq!(all.status, 200);
    assert_eq!(all.json()["total"], 4, "{}", all.json());
    assert_eq!(all.json()["next"], serde_json::Value::Null);

    let night = get(s.addr, &format!("/api/v1/runs?night={}", NIGHTS[1]));
    assert_eq!(night.json()["total"], 2);
    for r in night.json()["runs"].as_array().unwrap() {
        assert_eq!(r["night"], NIGHTS[1]);
    }
    assert_eq!(get(s.addr, "/api/v1/runs?hardware=cpu").json()["total"], 4);
    assert_eq!(
        get(s.addr, "/api/v1/runs?hardware=nvidia-h200-sxm").json()["total"],
        0
    );
    assert_eq!(
        get(s.addr, "/api/v1/runs?status=completed").json()["total"],
        4
    );
    assert_eq!(get(s.addr, "/api/v1/runs?status=failed").json()["total"], 0);

    // Three pages of at most 3, 3 then 1, following `next`.
    let first = get(s.addr, "/api/v1/runs?limit=3");
    assert_eq!(run_ids(&first).len(), 3);
    let next = first.json()["next"].as_str().unwrap().to_string();
    assert_eq!(next, "/api/v1/runs?limit=3&offset=3");
    let second = get(s.addr, &next);
    assert_eq!(run_ids(&second).len(), 1);
    assert_eq!(second.json()["next"], serde_json::Value::Null);
    let mut paged = run_ids(&first);
    paged.extend(run_ids(&second));
    assert_eq!(paged, run_ids(&all));
}

#[test]
fn a_bad_query_is_a_400_json_error_naming_the_parameter() {
    let s = serve(&tree().results());
    for (query, names) in [
        ("colour=red", "`colour`"),
        ("limit=100000", "`limit=100000`"),
        ("status=ok", "`status=ok`"),
    ] {
        let r = get(s.addr, &format!("/api/v1/runs?{query}"));
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let j = r.json();
        assert_eq!(j["status"], 400);
        assert!(j["error"].as_str().unwrap().contains(names), "{j}");
    }
}

#[test]
fn a_page_and_api_documents_served_are_the_bytes_report_writes() {
    let results = tree().results();
    let site = built_site(&results);
    let s = serve(&results);
    let index = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(site.path().join("api/v1/index.json")).unwrap(),
    )
    .unwrap();
    let point = index["points"][0]["href"].as_str().unwrap().to_string();
    for path in [
        "index.html",
        "api/v1/index.json",
        &point,
        "api/v1/openapi.json",
    ] {
        let r = get(s.addr, &format!("/{path}"));
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.body == std::fs::read(site.path().join(path)).unwrap(),
            "{path} differs from report's"
        );
    }
    assert_eq!(get(s.addr, "/").body, get(s.addr, "/index.html").body);
}

#[test]
fn traversal_encoded_traversal_and_a_symlink_in_the_tree_are_refused() {
    let copy = tempfile::tempdir().unwrap();
    let results = copy.path().join("results");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(tree().results())
        .arg(&results)
        .status()
        .unwrap();
    assert!(cp.success());
    let secret = copy.path().join("secret.txt");
    std::fs::write(&secret, "SECRET-BYTES").unwrap();
    let s = serve(&results);
    // Placed after the start: the rebuild refuses it, the file is not served.
    std::os::unix::fs::symlink(&secret, results.join("nights/secret.txt")).unwrap();
    let run = runs(&results, "runs")[0].clone();
    std::os::unix::fs::symlink(&secret, run.join("extra.log")).unwrap();
    let linked = format!(
        "/files/{}/extra.log",
        run.strip_prefix(&results).unwrap().display()
    );
    std::thread::sleep(infermark::serve::CHECK_EVERY * 2);
    for path in [
        "/../secret.txt",
        "/files/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/files/%2E%2E/%2e%2e/secret.txt",
        "/files%2f..%2f..%2fsecret.txt",
        "/files/nights/secret.txt",
        &linked,
        "//etc/passwd",
        "/a%00b",
    ] {
        let r = get(s.addr, path);
        assert!(matches!(r.status, 403 | 404), "{path}: {}", r.status);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("SECRET-BYTES"),
            "{path}"
        );
        assert_eq!(r.json()["status"], r.status, "{path}");
    }
    assert_eq!(get(s.addr, "/index.html").status, 200);
}

#[test]
fn a_matching_etag_gets_304_and_gzip_bodies_decode_to_the_same_bytes() {
    let s = serve(&tree().results());
    let plain = get(s.addr, "/api/v1/index.json");
    let etag = plain.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    let again = raw(
        s.addr,
        &format!("GET /api/v1/index.json HTTP/1.1\r\nif-none-match: {etag}"),
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let other = raw(
        s.addr,
        "GET /api/v1/index.json HTTP/1.1\r\nif-none-match: \"something-else\"",
    );
    assert_eq!(other.status, 200);

    let gz = raw(
        s.addr,
        "GET /api/v1/index.json HTTP/1.1\r\naccept-encoding: gzip, deflate",
    );
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert!(decoded == plain.body);
    assert_ne!(gz.header("etag").unwrap(), etag);
}

#[test]
fn other_methods_bodies_and_oversize_heads_are_refused_with_their_status() {
    let s = serve(&tree().results());
    let post = raw(s.addr, "POST /index.html HTTP/1.1\r\ncontent-length: 0");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(post.json()["status"], 405);
    let body = raw(s.addr, "GET /index.html HTTP/1.1\r\ncontent-length: 5");
    assert_eq!(body.status, 413);
    let huge = format!(
        "GET /index.html HTTP/1.1\r\nx-pad: {}",
        "a".repeat(64 * 1024)
    );
    assert_eq!(raw(s.addr, &huge).status, 431);
    assert_eq!(get(s.addr, "/no-such-page.html").status, 404);
    let head = raw(s.addr, "HEAD /index.html HTTP/1.1");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[test]
fn a_thousand_concurrent_connections_are_answered_or_refused_with_503_and_it_answers_after() {
    let s = serve(&tree().results());
    let addr = s.addr;
    // All 1,000 connect first, then each sends its GET.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(1000));
    let handles: Vec<_> = (0..1000)
        .map(|_| {
            let barrier = std::sync::Arc::clone(&barrier);
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                barrier.wait();
                exchange(s, addr, "GET /api/v1/index.json HTTP/1.1").status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(ok + busy, 1000, "{statuses:?}");
    assert!(ok > 0);
    assert_eq!(get(addr, "/api/v1/index.json").status, 200);
}

#[test]
fn a_connection_beyond_the_bound_gets_a_503_json_error_and_held_ones_are_still_answered() {
    let s = serve(&tree().results());
    // Idle connections hold every slot (until their head's timeout); the
    // kernel's queue is first in, first out, so the next one accepted is
    // beyond the bound.
    let mut held: Vec<TcpStream> = (0..infermark::serve::http::MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    let refused = get(s.addr, "/api/v1/index.json");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["status"], 503);
    let one = held.pop().unwrap();
    let answered = exchange(one, s.addr, "GET /api/v1/index.json HTTP/1.1");
    assert_eq!(answered.status, 200);
}

#[test]
fn chromium_loads_the_home_page_from_serve_without_a_console_message() {
    let s = serve(&tree().results());
    // The detector itself: a page with an uncaught error is caught.
    let broken = headless(
        &["--dump-dom"],
        "data:text/html,<script>undefinedFunction();</script>",
    );
    let caught = console_lines(&stderr(&broken));
    assert!(
        caught.iter().any(|l| l.contains("undefinedFunction")),
        "the console check misses errors: {caught:?}"
    );
    let home = headless(&["--dump-dom"], &format!("http://{}/", s.addr));
    assert!(home.status.success(), "{}", stderr(&home));
    assert!(String::from_utf8_lossy(&home.stdout).contains("<table"));
    let messages = console_lines(&stderr(&home));
    assert!(messages.is_empty(), "{messages:#?}");
}

#[test]
fn a_non_loopback_address_needs_public_and_prints_a_warning() {
    let results = tree().results();
    let refused = serve_args(&results, &["--addr", "0.0.0.0:0"])
        .wait_with_output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("--public"),
        "{}",
        stderr(&refused)
    );

    let mut child = serve_args(&results, &["--addr", "0.0.0.0:0", "--public"]);
    let addr = bound_addr(&mut child);
    let mut served = Served { child, addr };
    let mut err = served.child.stderr.take().unwrap();
    terminate(&served.child);
    let mut text = String::new();
    err.read_to_string(&mut text).unwrap();
    assert!(text.contains("warning: serving on 0.0.0.0:"), "{text}");
}

#[test]
fn sigterm_stops_the_server_gracefully_with_exit_0() {
    let mut s = serve(&tree().results());
    assert_eq!(get(s.addr, "/").status, 200);
    terminate(&s.child);
    assert_eq!(s.child.wait().unwrap().code(), Some(0));
}

#[test]
#[ignore = "benchmark, prints figures: nice -n 19 cargo test --release --test it serve::point_json_requests_per_second -- --ignored --nocapture"]
fn point_json_requests_per_second() {
    let s = serve(&tree().results());
    let index = get(s.addr, "/api/v1/index.json").json();
    let point = format!("/{}", index["points"][0]["href"].as_str().unwrap());
    let clients = 4;
    let per_client = 5000;
    let start = std::time::Instant::now();
    let addr = s.addr;
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let point = point.clone();
            std::thread::spawn(move || keep_alive(addr, &point, per_client))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = clients * per_client;
    println!(
        "{n} GET {point} over {clients} keep-alive connections in {secs:.2} s: {:.0} requests/s",
        n as f64 / secs
    );
}

/// `n` GETs of `path` on one keep-alive connection, each answered 200.
fn keep_alive(addr: SocketAddr, path: &str, n: usize) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    for _ in 0..n {
        write!(w, "GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let mut len = 0;
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
    }
}
