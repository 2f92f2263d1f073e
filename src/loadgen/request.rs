//! One streamed request, start to finish, into one [`RequestRecord`].
//!
//! This is the per-chunk hot path. Per network read it takes one clock
//! reading, feeds the bytes to the SSE parser, scans each event's JSON for
//! the record's few facts and pushes a [`Chunk`] into a vector sized up
//! front from `max_tokens`. Failures become the record's error, never a
//! panic or a log line.
//!
//! A chunk's time is the moment the network read that completed its event
//! returned: events that arrive together share one reading, which is also
//! the earliest moment the client could have known of them.

use std::error::Error as _;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::record::{Chunk, ErrorKind, RequestError, RequestRecord};
use super::scan::scan;
use super::sse::{Event, Parser};
use crate::workload::PreparedRequest;

/// How much of a non-2xx body is kept in the error message.
const ERROR_BODY_LIMIT: usize = 4096;

/// How much of a bad chunk is quoted in the error message.
const BAD_CHUNK_QUOTE: usize = 200;

/// Chunk vectors are sized from `max_tokens` up to this many entries, so a
/// request with an absurd limit cannot reserve absurd memory up front.
const CHUNK_RESERVE_LIMIT: u32 = 1 << 16;

/// Converts instants into nanoseconds from the run's origin.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub origin: Instant,
}

impl Clock {
    pub fn ns(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.origin);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Where and how requests go; shared by every request of a run.
#[derive(Debug)]
pub(crate) struct Target {
    pub client: reqwest::Client,
    pub url: reqwest::Url,
    pub timeout: Duration,
    pub clock: Clock,
}

/// One request's identity within the run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Job {
    pub index: u64,
    pub slot: u32,
    pub warmup: bool,
    pub scheduled_ns: u64,
}

/// Sends `request` and follows its stream to the end, the timeout or the
/// first error.
pub(crate) async fn execute(target: &Target, job: Job, request: &PreparedRequest) -> RequestRecord {
    let record = attempt(target, job, request).await;
    // HTTP keep-alive race: a server may close a connection it considers
    // used up or idle (cpp-httplib, inside llama.cpp, closes after a few
    // requests) just as the pool hands it out for the next request. Such a
    // request never reached the server, so it is sent once more at once on
    // another connection; its `scheduled_ns` is kept, so the lost attempt
    // shows as queue delay rather than vanishing.
    if is_stale_connection(&record) {
        return attempt(target, job, request).await;
    }
    record
}

fn is_stale_connection(r: &RequestRecord) -> bool {
    r.http_status.is_none()
        && r.chunks.is_empty()
        && r.error.as_ref().is_some_and(|e| {
            e.kind == ErrorKind::Connect
                && e.message
                    .contains("connection closed before message completed")
        })
}

async fn attempt(target: &Target, job: Job, request: &PreparedRequest) -> RequestRecord {
    let builder = target
        .client
        .post(target.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "text/event-stream")
        .body(request.body.clone());
    let sent = Instant::now();
    let reserve = request.max_output_tokens.min(CHUNK_RESERVE_LIMIT) as usize;
    let mut tally = Tally {
        record: RequestRecord {
            index: job.index,
            slot: job.slot,
            warmup: job.warmup,
            scheduled_ns: job.scheduled_ns,
            sent_ns: target.clock.ns(sent),
            first_token_ns: None,
            end_ns: 0,
            chunks: Vec::with_capacity(reserve),
            input_tokens: request.input_tokens,
            max_output_tokens: request.max_output_tokens,
            usage_input_tokens: None,
            usage_output_tokens: None,
            http_status: None,
            error: None,
        },
        counted: 0,
        events: 0,
        done_ns: None,
        failed: None,
    };
    let deadline = tokio::time::Instant::from_std(sent + target.timeout);
    let result =
        match tokio::time::timeout_at(deadline, tally.exchange(builder, target.clock)).await {
            Ok(result) => result,
            // The stream finished but the server kept the connection open past
            // the sentinel: the request itself is complete.
            Err(_) if tally.done_ns.is_some() => Ok(()),
            Err(_) => Err(RequestError {
                kind: ErrorKind::Timeout,
                message: format!(
                    "no complete response within {}",
                    humantime::format_duration(target.timeout)
                ),
            }),
        };
    let mut record = tally.record;
    match result {
        Ok(()) => {
            record.end_ns = tally
                .done_ns
                .unwrap_or_else(|| target.clock.ns(Instant::now()));
        }
        Err(error) => {
            record.end_ns = target.clock.ns(Instant::now());
            record.error = Some(error);
        }
    }
    record
}

/// The record being filled while the stream arrives.
struct Tally {
    record: RequestRecord,
    /// Output tokens attributed to chunks so far.
    counted: u64,
    /// Data events seen (for the message when a stream ends early).
    events: u64,
    /// Arrival of the read that carried `[DONE]`.
    done_ns: Option<u64>,
    /// The first error the stream itself reported or caused.
    failed: Option<RequestError>,
}

impl Tally {
    async fn exchange(
        &mut self,
        builder: reqwest::RequestBuilder,
        clock: Clock,
    ) -> Result<(), RequestError> {
        let mut response = builder.send().await.map_err(|e| RequestError {
            kind: if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Connect
            },
            message: error_chain(&e),
        })?;
        let status = response.status();
        self.record.http_status = Some(status.as_u16());
        if !status.is_success() {
            return Err(RequestError {
                kind: ErrorKind::Http,
                message: format!("HTTP {status}: {}", read_bounded(&mut response).await),
            });
        }
        let mut parser = Parser::new();
        loop {
            let bytes = match response.chunk().await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(e) => {
                    if self.done_ns.is_some() {
                        // The body broke after the sentinel: nothing was lost.
                        return Ok(());
                    }
                    return Err(RequestError {
                        kind: if e.is_timeout() {
                            ErrorKind::Timeout
                        } else {
                            ErrorKind::Disconnected
                        },
                        message: error_chain(&e),
                    });
                }
            };
            let t_ns = clock.ns(Instant::now());
            parser.feed(&bytes, |event| self.on_event(event, t_ns));
            if let Some(error) = self.failed.take() {
                return Err(error);
            }
        }
        if self.done_ns.is_none() {
            return Err(RequestError {
                kind: ErrorKind::Disconnected,
                message: format!(
                    "stream ended before `data: [DONE]` after {} events",
                    self.events
                ),
            });
        }
        Ok(())
    }

    fn on_event(&mut self, event: Event<'_>, t_ns: u64) {
        if self.failed.is_some() || self.done_ns.is_some() {
            return;
        }
        let data = match event {
            Event::Done => {
                self.done_ns = Some(t_ns);
                return;
            }
            Event::Data(data) => data,
        };
        self.events += 1;
        let facts = match scan(data) {
            Ok(facts) => facts,
            Err(e) => {
                self.failed = Some(RequestError {
                    kind: ErrorKind::Stream,
                    message: format!("{e}; data: {}", quote(data)),
                });
                return;
            }
        };
        if let Some(message) = facts.error {
            self.failed = Some(RequestError {
                kind: ErrorKind::Stream,
                message: format!("server error in stream: {message}"),
            });
            return;
        }
        if facts.prompt_tokens.is_some() {
            self.record.usage_input_tokens = facts.prompt_tokens;
        }
        if facts.completion_tokens.is_some() {
            self.record.usage_output_tokens = facts.completion_tokens;
        }
        if !facts.has_text {
            return;
        }
        // With a running usage count (vLLM `continuous_usage_stats`, or the
        // final count that llama.cpp puts on its last text chunk) the chunk
        // carries what the count grew by since the tokens already attributed;
        // otherwise one token per text chunk. A text chunk carries at least
        // one token even if the server's count lags behind.
        let tokens = match facts.completion_tokens {
            Some(total) => u64::from(total).saturating_sub(self.counted).max(1),
            None => 1,
        };
        self.counted += tokens;
        self.record.first_token_ns.get_or_insert(t_ns);
        self.record.chunks.push(Chunk {
            t_ns,
            tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
            server_ns: facts.server_ns,
        });
    }
}

/// Reads at most [`ERROR_BODY_LIMIT`] bytes of an error response's body.
async fn read_bounded(response: &mut reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                body.extend_from_slice(&bytes[..bytes.len().min(ERROR_BODY_LIMIT - body.len())])
            }
            Ok(None) => break,
            Err(e) => {
                body.extend_from_slice(
                    format!(" (body unreadable: {})", error_chain(&e)).as_bytes(),
                );
                break;
            }
        }
    }
    String::from_utf8_lossy(&body).trim().to_owned()
}

/// The start of a chunk, for an error message.
fn quote(data: &[u8]) -> String {
    let end = data.len().min(BAD_CHUNK_QUOTE);
    let mut s = String::from_utf8_lossy(&data[..end]).into_owned();
    if end < data.len() {
        s.push('…');
    }
    s
}

/// An error and all its causes, `: `-separated (reqwest's own message
/// leaves out the cause, which is the useful part: "connection refused").
fn error_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
