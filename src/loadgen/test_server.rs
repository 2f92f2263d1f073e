//! A tiny scripted SSE server for the load generator's tests.
//!
//! Raw HTTP/1.1 over a tokio `TcpListener` on 127.0.0.1:0, so the tests see
//! exactly the bytes a streaming server puts on the wire (chunked transfer
//! encoding, keep-alive, abrupt closes). Each request's JSON body is its
//! script: what to stream, how many tokens, with which delays. The server
//! counts requests in flight so the tests can check the client's
//! concurrency from the other side of the socket.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::workload::PreparedRequest;

#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub paths: Mutex<Vec<String>>,
}

pub struct TestServer {
    pub base_url: String,
    pub stats: Arc<Stats>,
}

/// What the server does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// `tokens` text chunks `delay_ms` apart (each stamped with
    /// `infermark_sent_ns`), a usage chunk, `[DONE]`.
    Ok { tokens: u32, delay_ms: u64 },
    /// vLLM `continuous_usage_stats`: text chunks with running
    /// `completion_tokens` 1, 3, 4, then a usage chunk and `[DONE]`.
    RunningUsage,
    /// llama.cpp style: three text chunks, the last carrying the final usage.
    FinalUsageOnLastText,
    /// `500 Internal Server Error` with a JSON body.
    Http500,
    /// One good chunk, then one that is not JSON.
    Malformed,
    /// A good chunk, then an `error` object in the stream.
    ErrorEvent,
    /// Two good chunks, then a proper end of body without `[DONE]`.
    EndWithoutDone,
    /// Two good chunks, then the TCP connection drops mid-chunk.
    Abort,
    /// Sends nothing for a long time.
    Hang,
    /// A complete one-token response without `Connection: close`, then the
    /// connection closes (as cpp-httplib does after a few requests): the
    /// client finds out only when it next uses the connection.
    OkThenClose,
}

impl Script {
    /// A request whose body tells the test server to run this script.
    pub fn request(self) -> PreparedRequest {
        let body = match self {
            Script::Ok { tokens, delay_ms } => {
                format!(r#"{{"script":"ok","tokens":{tokens},"delay_ms":{delay_ms}}}"#)
            }
            other => format!(r#"{{"script":"{other:?}"}}"#),
        };
        let max_output_tokens = match self {
            Script::Ok { tokens, .. } => tokens,
            _ => 4,
        };
        PreparedRequest {
            body: body.into(),
            input_tokens: 7,
            max_output_tokens,
        }
    }

    fn from_body(body: &[u8]) -> Option<Script> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        Some(match v["script"].as_str()? {
            "ok" => Script::Ok {
                tokens: u32::try_from(v["tokens"].as_u64()?).ok()?,
                delay_ms: v["delay_ms"].as_u64()?,
            },
            "RunningUsage" => Script::RunningUsage,
            "FinalUsageOnLastText" => Script::FinalUsageOnLastText,
            "Http500" => Script::Http500,
            "Malformed" => Script::Malformed,
            "ErrorEvent" => Script::ErrorEvent,
            "EndWithoutDone" => Script::EndWithoutDone,
            "Abort" => Script::Abort,
            "Hang" => Script::Hang,
            "OkThenClose" => Script::OkThenClose,
            _ => return None,
        })
    }
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl TestServer {
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let shared = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_connection(socket, Arc::clone(&shared)));
            }
        });
        TestServer {
            base_url: format!("http://{addr}"),
            stats,
        }
    }
}

/// Serves requests on one connection until the client closes it.
async fn serve_connection(mut socket: TcpStream, stats: Arc<Stats>) {
    let _ = socket.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let Some((path, body)) = read_request(&mut socket, &mut buf).await else {
            return;
        };
        stats.paths.lock().unwrap().push(path);
        stats.requests.fetch_add(1, Ordering::SeqCst);
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let script = Script::from_body(&body).unwrap_or(Script::Http500);
        if !respond(&mut socket, script, &stats).await {
            return;
        }
    }
}

/// Reads one request: its path and body (by Content-Length).
async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut tmp = [0u8; 4096];
        let n = socket.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let mut tmp = [0u8; 4096];
        let n = socket.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = buf[header_end..header_end + length].to_vec();
    buf.drain(..header_end + length);
    Some((path, body))
}

fn chunk(data: &str) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

fn text_event(text: &str, extra: &str) -> String {
    format!(
        "data: {{\"id\":\"cmpl-t\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"text\":\"{text}\",\"finish_reason\":null}}]{extra}}}\n\n"
    )
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
const END: &[u8] = b"0\r\n\r\n";

/// Writes the scripted response; `false` when the connection must close.
async fn respond(socket: &mut TcpStream, script: Script, stats: &Stats) -> bool {
    // The in-flight count drops before the last bytes go out, so a client
    // can never see a response end while the server still counts it.
    let done = || stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut out: Vec<u8> = Vec::new();
    match script {
        Script::Ok { tokens, delay_ms } => {
            if socket.write_all(SSE_HEAD).await.is_err() {
                done();
                return false;
            }
            for i in 0..tokens {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let stamp = format!(",\"infermark_sent_ns\":{}", monotonic_ns());
                let event = text_event(&format!(" t{i}"), &stamp);
                if socket.write_all(&chunk(&event)).await.is_err() {
                    done();
                    return false;
                }
            }
            let usage = format!(
                "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":{tokens},\"total_tokens\":{}}}}}\n\n",
                7 + tokens
            );
            out.extend(chunk(&usage));
            out.extend(chunk("data: [DONE]\n\n"));
            out.extend_from_slice(END);
        }
        Script::RunningUsage => {
            out.extend_from_slice(SSE_HEAD);
            for (text, total) in [("a", 1), ("bc", 3), ("d", 4)] {
                let usage =
                    format!(",\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":{total}}}");
                out.extend(chunk(&text_event(text, &usage)));
            }
            out.extend(chunk(
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4}}\n\n",
            ));
            out.extend(chunk("data: [DONE]\n\n"));
            out.extend_from_slice(END);
        }
        Script::FinalUsageOnLastText => {
            out.extend_from_slice(SSE_HEAD);
            out.extend(chunk(&text_event("x", "")));
            out.extend(chunk(&text_event("y", "")));
            out.extend(chunk(&text_event(
                "z",
                ",\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}",
            )));
            out.extend(chunk("data: [DONE]\n\n"));
            out.extend_from_slice(END);
        }
        Script::Http500 => {
            let body = r#"{"error":{"message":"boom: engine crashed","code":500}}"#;
            out.extend(
                format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
            );
        }
        Script::Malformed => {
            out.extend_from_slice(SSE_HEAD);
            out.extend(chunk(&text_event("ok", "")));
            out.extend(chunk("data: {\"choices\": [{\"text\": oops\n\n"));
            out.extend(chunk("data: [DONE]\n\n"));
            out.extend_from_slice(END);
        }
        Script::ErrorEvent => {
            out.extend_from_slice(SSE_HEAD);
            out.extend(chunk(&text_event("ok", "")));
            out.extend(chunk(
                "data: {\"error\":{\"object\":\"error\",\"message\":\"kv cache exhausted\",\"code\":500}}\n\n",
            ));
            out.extend(chunk("data: [DONE]\n\n"));
            out.extend_from_slice(END);
        }
        Script::EndWithoutDone => {
            out.extend_from_slice(SSE_HEAD);
            out.extend(chunk(&text_event("a", "")));
            out.extend(chunk(&text_event("b", "")));
            out.extend_from_slice(END);
        }
        Script::Abort => {
            out.extend_from_slice(SSE_HEAD);
            out.extend(chunk(&text_event("a", "")));
            out.extend(chunk(&text_event("b", "")));
            out.extend_from_slice(b"ff\r\ndata: {\"choi");
            done();
            let _ = socket.write_all(&out).await;
            let _ = socket.shutdown().await;
            return false;
        }
        Script::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Script::OkThenClose => {
            out.extend_from_slice(SSE_HEAD);
            out.extend(chunk(&text_event("a", "")));
            out.extend(chunk("data: [DONE]\n\n"));
            out.extend_from_slice(END);
            done();
            let _ = socket.write_all(&out).await;
            return false;
        }
    }
    done();
    socket.write_all(&out).await.is_ok()
}
