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

use std::time::{Duration, Instant};

use super::http::{Body, Client, Conn, Decoder, HttpError};
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
    pub client: Client,
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
    let sent = Instant::now();
    let deadline = tokio::time::Instant::from_std(sent + target.timeout);
    let mut tally = Tally::new(target.clock, job, request, sent);
    let result = match tokio::time::timeout_at(deadline, tally.exchange(target, request)).await {
        Ok(result) => result,
        // The stream finished but the server kept the body open past the
        // sentinel: the request itself is complete.
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
    clock: Clock,
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
    fn new(clock: Clock, job: Job, request: &PreparedRequest, sent: Instant) -> Tally {
        let reserve = request.max_output_tokens.min(CHUNK_RESERVE_LIMIT) as usize;
        Tally {
            record: RequestRecord {
                index: job.index,
                slot: job.slot,
                warmup: job.warmup,
                scheduled_ns: job.scheduled_ns,
                sent_ns: clock.ns(sent),
                stale_sent_ns: None,
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
            clock,
            counted: 0,
            events: 0,
            done_ns: None,
            failed: None,
        }
    }

    /// Sends the request and reads its response to the end of the body.
    /// The connection goes back to the pool only after a complete response
    /// that leaves it reusable.
    async fn exchange(
        &mut self,
        target: &Target,
        request: &PreparedRequest,
    ) -> Result<(), RequestError> {
        let client = &target.client;
        let (mut conn, reused) = client.connection().await.map_err(connect_error)?;
        let head = match send_and_read_head(client, &mut conn, &request.body).await {
            Ok(head) => head,
            // HTTP keep-alive race: a server may close a connection it
            // considers used up or idle (cpp-httplib, inside llama.cpp,
            // closes after a few requests) just as the pool hands it out.
            // Such a request never reached the server, so it is sent once
            // more on a new connection, and sent from then: the lost attempt
            // shows as queue delay (sent − scheduled) rather than vanishing.
            Err(e) if reused && is_stale(&e) => {
                self.record.stale_sent_ns = Some(self.record.sent_ns);
                self.record.sent_ns = self.clock.ns(Instant::now());
                // Not from the pool: its other idle connections may be as
                // stale as this one.
                conn = client.connect().await.map_err(connect_error)?;
                send_and_read_head(client, &mut conn, &request.body)
                    .await
                    .map_err(response_error)?
            }
            Err(e) => return Err(response_error(e)),
        };
        self.record.http_status = Some(head.status);
        let mut body = head.body;
        if !(200..300).contains(&head.status) {
            let text = read_bounded(&mut conn, &mut body).await;
            return Err(RequestError {
                kind: ErrorKind::Http,
                message: format!("HTTP {}: {text}", head.status),
            });
        }
        let mut parser = Parser::new();
        let clock = self.clock;
        loop {
            let step = conn
                .read_body(&mut body, |bytes, arrived| {
                    let t_ns = clock.ns(arrived);
                    parser.feed(bytes, |event| self.on_event(event, t_ns));
                })
                .await;
            if let Some(error) = self.failed.take() {
                return Err(error);
            }
            match step {
                Ok(Body::More) => {}
                Ok(Body::End { reusable }) => {
                    if reusable && head.keep_alive {
                        client.put_back(conn);
                    }
                    break;
                }
                // The body broke after the sentinel: nothing was lost.
                Err(_) if self.done_ns.is_some() => return Ok(()),
                Err(e) => {
                    return Err(RequestError {
                        kind: ErrorKind::Disconnected,
                        message: format!("{e} after {} events", self.events),
                    });
                }
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

async fn send_and_read_head(
    client: &Client,
    conn: &mut Conn,
    body: &[u8],
) -> Result<super::http::Head, HttpError> {
    client.send(conn, body).await?;
    conn.read_head().await
}

/// A failure that shows the server had closed a kept-alive connection
/// before this request: the write failed or nothing came back.
fn is_stale(e: &HttpError) -> bool {
    matches!(
        e,
        HttpError::Send(_)
            | HttpError::Closed {
                received: false,
                ..
            }
    )
}

fn connect_error(e: HttpError) -> RequestError {
    RequestError {
        kind: ErrorKind::Connect,
        message: e.to_string(),
    }
}

/// A failure before the response head was complete.
fn response_error(e: HttpError) -> RequestError {
    let kind = match e {
        HttpError::Connect(..) | HttpError::Send(_) => ErrorKind::Connect,
        HttpError::Closed { .. } => ErrorKind::Disconnected,
        HttpError::Malformed(_) | HttpError::Framing(_) => ErrorKind::Stream,
    };
    RequestError {
        kind,
        message: e.to_string(),
    }
}

/// Reads at most [`ERROR_BODY_LIMIT`] bytes of an error response's body.
async fn read_bounded(conn: &mut Conn, body: &mut Decoder) -> String {
    let mut text = Vec::new();
    while text.len() < ERROR_BODY_LIMIT {
        let step = conn
            .read_body(body, |bytes, _| {
                let room = ERROR_BODY_LIMIT - text.len().min(ERROR_BODY_LIMIT);
                text.extend_from_slice(&bytes[..bytes.len().min(room)]);
            })
            .await;
        match step {
            Ok(Body::More) => {}
            Ok(Body::End { .. }) => break,
            Err(e) => {
                text.extend_from_slice(format!(" (body unreadable: {e})").as_bytes());
                break;
            }
        }
    }
    String::from_utf8_lossy(&text).trim().to_owned()
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
