//! The HTTP side of `serve`: connections, limits, and how a file or a
//! query answer becomes a response.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections are served at once (one
//! more is answered 503 and closed, so a flood degrades into refusals, not
//! into memory); a request's head must arrive within
//! [`HEADER_READ_TIMEOUT`] and fit in [`MAX_HEAD_BYTES`] (hyper answers 431
//! beyond it); no request carries a body (413); only GET and HEAD (405).
//! Every response has a strong ETag (a hash of the bytes of the selected
//! representation) and `If-None-Match` answers 304; bodies are gzipped
//! (with `flate2`) when the client accepts it. Errors are JSON:
//! `{"error": "...", "status": N}`.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{Site, paths, query};
use crate::store::bounded::{self, BoundedError};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections the kernel queues before they are accepted (std's default,
/// 128, resets a burst of clients).
pub const LISTEN_BACKLOG: u32 = 2048;
/// Time for a request's head to arrive.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (hyper's smallest buffer is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The largest file served (a run's records are the largest files).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Time connections in flight get to finish after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Bodies smaller than this are not worth compressing.
const GZIP_FROM: usize = 256;

type Body = Full<Bytes>;

pub(super) async fn run(
    site: Arc<Site>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        let site = Arc::clone(&site);
                        let stop = stop_rx.clone();
                        connections.spawn(async move {
                            serve_connection(site, tcp, stop).await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        connections.spawn(refuse_busy(tcp));
                    }
                },
                Err(e) => {
                    eprintln!("warning: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}

/// A connection beyond the bound: a 503, then a lingering close. The
/// request is read and dropped (a bounded amount, for a bounded time):
/// closing with it unread would make the kernel answer with a reset, and
/// the client could lose the 503 to it.
async fn refuse_busy(mut tcp: TcpStream) {
    let body = error_json(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many connections; retry",
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(&body).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = MAX_HEAD_BYTES;
        while left > 0 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}

async fn serve_connection(site: Arc<Site>, tcp: TcpStream, mut stop: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let service = service_fn(move |req| {
        let site = Arc::clone(&site);
        async move { Ok::<_, Infallible>(handle(&site, &req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

async fn handle(site: &Arc<Site>, req: &Request<Incoming>) -> Response<Body> {
    if site.due() {
        let s = Arc::clone(site);
        tokio::task::spawn_blocking(move || s.refresh());
    }
    let r = respond(site, req).await;
    if req.method() == Method::HEAD {
        let (parts, _) = r.into_parts();
        return Response::from_parts(parts, Body::default());
    }
    r
}

async fn respond(site: &Arc<Site>, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if has_body(req.headers()) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "requests carry no body here");
    }
    let path = match paths::site_path(req.uri().path()) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::FORBIDDEN, &e.to_string()),
    };
    if path == query::RUNS_PATH {
        let q = match query::parse(req.uri().query()) {
            Ok(q) => q,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e),
        };
        let body = crate::site::api::to_bytes(&query::answer(&site.snapshot().rows, &q));
        return content(req.headers(), "application/json", body);
    }
    let file = site.dir().join(&path);
    let read = tokio::task::spawn_blocking(move || bounded::read(&file, MAX_FILE_BYTES)).await;
    match read {
        Ok(Ok(bytes)) => content(req.headers(), content_type(&path), bytes),
        Ok(Err(e)) if e.is_not_found() => error(StatusCode::NOT_FOUND, "no such page or document"),
        Ok(Err(BoundedError::NotAFile { .. })) => {
            error(StatusCode::NOT_FOUND, "no such page or document")
        }
        Ok(Err(BoundedError::Symlink { .. })) => error(StatusCode::FORBIDDEN, "a symlink"),
        Ok(Err(BoundedError::TooLarge { .. })) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the file is too large to serve",
        ),
        Ok(Err(e)) => {
            eprintln!("warning: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "failed to read the file")
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the read failed"),
    }
}

fn has_body(h: &HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, e)| e) {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "csv" => "text/csv; charset=utf-8",
        "jsonl" => "application/x-ndjson",
        "log" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether `accept-encoding` accepts gzip (a `q=0` refuses it).
fn accepts_gzip(h: &HeaderMap) -> bool {
    let Some(v) = h.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    v.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

/// Whether `if-none-match` names `etag` (or is `*`).
fn matches(h: &HeaderMap, etag: &str) -> bool {
    h.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t == etag))
    })
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).ok()?;
    e.finish().ok()
}

/// A 200 (or 304) with `body`, gzipped when accepted and worth it.
fn content(h: &HeaderMap, ctype: &'static str, body: Vec<u8>) -> Response<Body> {
    let hash = crate::site::sha256_hex(&body);
    let (body, etag, gz) = match (accepts_gzip(h) && body.len() >= GZIP_FROM)
        .then(|| gzip(&body))
        .flatten()
    {
        Some(z) => (z, format!("\"{}-gz\"", &hash[..40]), true),
        None => (body, format!("\"{}\"", &hash[..40]), false),
    };
    let not_modified = matches(h, &etag);
    let mut r = Response::new(if not_modified {
        Body::default()
    } else {
        Body::from(body)
    });
    if not_modified {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
    }
    let hs = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        hs.insert(header::ETAG, v);
    }
    hs.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    hs.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    hs.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if gz {
        hs.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

fn error_json(status: StatusCode, message: &str) -> Vec<u8> {
    serde_json::json!({"error": message, "status": status.as_u16()})
        .to_string()
        .into_bytes()
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(error_json(status, message)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
