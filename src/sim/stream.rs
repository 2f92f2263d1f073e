//! The streaming response body: SSE chunks released on an absolute schedule.
//!
//! This is the sim's hot path. Each chunk is formatted by hand into the
//! stream's own buffer (`BytesMut`, whose allocation is reused once the
//! connection has written earlier chunks), stamped with CLOCK_MONOTONIC as
//! the last step before it is handed to hyper, and counted in plain fields
//! that are merged into the shared counters once, when the body is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::request::Api;
use super::{Counters, monotonic_ns};

/// The text of every generated token.
pub(super) const TOKEN: &[u8] = b" tok";

/// When each chunk is due. Chunk `k` (from 0) is due at
/// `first + k·itl`, plus `stall_for` once at least `stall_after_tokens`
/// tokens precede it: absolute deadlines, so a late timer never delays the
/// chunks after it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    pub first: Instant,
    pub itl: Duration,
    pub tokens_per_chunk: u32,
    /// `(after_tokens, for)` when this request stalls.
    pub stall: Option<(u32, Duration)>,
}

impl Schedule {
    pub fn deadline(&self, chunk: u32) -> Instant {
        let mut offset = self.itl.saturating_mul(chunk);
        if let Some((after, pause)) = self.stall {
            let tokens_before = u64::from(chunk) * u64::from(self.tokens_per_chunk);
            if tokens_before >= u64::from(after) {
                offset = offset.saturating_add(pause);
            }
        }
        far_future_saturating(self.first, offset)
    }

    /// Number of chunks that carry `tokens`.
    pub fn chunks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.tokens_per_chunk)
    }
}

/// `at + offset`, saturating at about thirty years from `at` rather than
/// panicking on an absurd request (e.g. `max_tokens` near u32::MAX).
pub(super) fn far_future_saturating(at: Instant, offset: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    at.checked_add(offset.min(FAR)).unwrap_or(at)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finish {
    Length,
    Stop,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Length => "length",
            Finish::Stop => "stop",
        }
    }
}

/// Everything one stream needs, fixed when the request arrives.
pub(super) struct StreamPlan {
    pub api: Api,
    /// `data: {"id":..,"object":..,"created":..,"model":..,` — the part of
    /// every event that never changes within one request.
    pub head: Bytes,
    pub schedule: Schedule,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    pub finish: Finish,
    pub include_usage: bool,
    pub continuous_usage: bool,
    /// Insert a malformed event once this many tokens have been sent.
    pub malformed_after: Option<u32>,
    /// Close the connection once this many tokens have been sent.
    pub disconnect_after: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Tokens,
    Malformed,
    Disconnect { yielded: bool },
    Usage,
    Done,
    Finished,
}

/// The error that makes hyper drop the connection mid-body (the injected
/// disconnect) or, returned from the service, close it with no response.
#[derive(Debug, thiserror::Error)]
#[error("injected disconnect")]
pub(super) struct InjectedDisconnect;

pub(super) struct SseBody {
    plan: StreamPlan,
    step: Step,
    tokens_sent: u32,
    chunks_sent: u32,
    sleep: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
    buf: BytesMut,
    counters: Arc<Counters>,
}

impl SseBody {
    pub fn new(plan: StreamPlan, counters: Arc<Counters>) -> SseBody {
        let first = plan.schedule.deadline(0);
        let mut body = SseBody {
            plan,
            step: Step::Tokens,
            tokens_sent: 0,
            chunks_sent: 0,
            sleep: Box::pin(tokio::time::sleep_until(first)),
            armed_for: Some(first),
            buf: BytesMut::with_capacity(4096),
            counters,
        };
        body.after_tokens();
        body
    }

    /// `true` once `deadline` has passed; otherwise the timer is armed and
    /// will wake the task.
    fn reached(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        // The clock read is cheap (vDSO) and spares the timer wheel entirely
        // when streaming flat out or running late.
        if Instant::now() >= deadline {
            return true;
        }
        if self.armed_for != Some(deadline) {
            self.sleep.as_mut().reset(deadline);
            self.armed_for = Some(deadline);
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }

    /// Pick the next step once tokens have been sent (or at the start).
    fn after_tokens(&mut self) {
        let sent = self.tokens_sent;
        if let Some(n) = self.plan.malformed_after
            && sent >= n.min(self.plan.output_tokens)
        {
            self.plan.malformed_after = None;
            self.step = Step::Malformed;
        } else if let Some(n) = self.plan.disconnect_after
            && sent >= n.min(self.plan.output_tokens)
        {
            self.plan.disconnect_after = None;
            self.step = Step::Disconnect { yielded: false };
        } else if sent >= self.plan.output_tokens {
            self.step = Step::Usage;
        } else {
            self.step = Step::Tokens;
        }
    }

    fn token_chunk(&mut self, n: u32) -> Bytes {
        let first = self.tokens_sent == 0;
        let cumulative = self.tokens_sent + n;
        let last = cumulative >= self.plan.output_tokens;
        let buf = &mut self.buf;
        buf.reserve(self.plan.head.len() + 256 + n as usize * TOKEN.len());
        buf.put_slice(&self.plan.head);
        match self.plan.api {
            Api::Completions => buf.put_slice(br#""choices":[{"index":0,"text":""#),
            Api::Chat => {
                buf.put_slice(br#""choices":[{"index":0,"delta":{"#);
                if first {
                    buf.put_slice(br#""role":"assistant","#);
                }
                buf.put_slice(br#""content":""#);
            }
        }
        for _ in 0..n {
            buf.put_slice(TOKEN);
        }
        match self.plan.api {
            Api::Completions => buf.put_slice(br#"","logprobs":null,"finish_reason":"#),
            Api::Chat => buf.put_slice(br#""},"logprobs":null,"finish_reason":"#),
        }
        if last {
            buf.put_u8(b'"');
            buf.put_slice(self.plan.finish.as_str().as_bytes());
            buf.put_u8(b'"');
        } else {
            buf.put_slice(b"null");
        }
        buf.put_slice(b"}]");
        if self.plan.continuous_usage {
            buf.put_u8(b',');
            put_usage(buf, self.plan.prompt_tokens, cumulative);
        }
        buf.put_slice(br#","infermark_sent_ns":"#);
        put_u64(buf, monotonic_ns());
        buf.put_slice(b"}\n\n");
        buf.split().freeze()
    }

    fn usage_chunk(&mut self) -> Bytes {
        let buf = &mut self.buf;
        buf.reserve(self.plan.head.len() + 128);
        buf.put_slice(&self.plan.head);
        buf.put_slice(br#""choices":[],"#);
        put_usage(buf, self.plan.prompt_tokens, self.tokens_sent);
        buf.put_slice(b"}\n\n");
        buf.split().freeze()
    }
}

/// `"usage":{"prompt_tokens":P,"completion_tokens":C,"total_tokens":P+C}`
fn put_usage(buf: &mut BytesMut, prompt: u32, completion: u32) {
    buf.put_slice(br#""usage":{"prompt_tokens":"#);
    put_u64(buf, u64::from(prompt));
    buf.put_slice(br#","completion_tokens":"#);
    put_u64(buf, u64::from(completion));
    buf.put_slice(br#","total_tokens":"#);
    put_u64(buf, u64::from(prompt) + u64::from(completion));
    buf.put_u8(b'}');
}

/// Decimal digits of `v`, without going through `fmt`.
pub(super) fn put_u64(buf: &mut BytesMut, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = InjectedDisconnect;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, InjectedDisconnect>>> {
        let this = self.get_mut();
        loop {
            match this.step {
                Step::Tokens => {
                    let deadline = this.plan.schedule.deadline(this.chunks_sent);
                    if !this.reached(deadline, cx) {
                        return Poll::Pending;
                    }
                    let remaining = this.plan.output_tokens - this.tokens_sent;
                    let n = remaining.min(this.plan.schedule.tokens_per_chunk);
                    let chunk = this.token_chunk(n);
                    this.tokens_sent += n;
                    this.chunks_sent += 1;
                    this.after_tokens();
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                Step::Malformed => {
                    let mut bad = BytesMut::with_capacity(this.plan.head.len() + 24);
                    bad.put_slice(&this.plan.head);
                    bad.put_slice(br#""choices":[{"index":"#);
                    bad.put_slice(b"\n\n");
                    this.after_tokens();
                    return Poll::Ready(Some(Ok(Frame::data(bad.freeze()))));
                }
                Step::Disconnect { yielded } => {
                    // Disconnect when the next chunk would have been due, and
                    // only after one Pending, so hyper has flushed what was
                    // already sent (even when streaming flat out).
                    let deadline = this.plan.schedule.deadline(this.chunks_sent);
                    if !this.reached(deadline, cx) {
                        this.step = Step::Disconnect { yielded: true };
                        return Poll::Pending;
                    }
                    if !yielded {
                        this.step = Step::Disconnect { yielded: true };
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    return Poll::Ready(Some(Err(InjectedDisconnect)));
                }
                Step::Usage => {
                    this.step = Step::Done;
                    if this.plan.include_usage {
                        return Poll::Ready(Some(Ok(Frame::data(this.usage_chunk()))));
                    }
                }
                Step::Done => {
                    this.step = Step::Finished;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                        b"data: [DONE]\n\n",
                    )))));
                }
                Step::Finished => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.step == Step::Finished
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        self.counters
            .chunks
            .fetch_add(u64::from(self.chunks_sent), Ordering::Relaxed);
        self.counters
            .tokens
            .fetch_add(u64::from(self.tokens_sent), Ordering::Relaxed);
    }
}

/// Every response body the sim sends: one type, so the service has one
/// response type.
pub(super) enum SimBody {
    Full(Option<Bytes>),
    Stream(Box<SseBody>),
}

impl SimBody {
    pub fn full(bytes: impl Into<Bytes>) -> SimBody {
        SimBody::Full(Some(bytes.into()))
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = InjectedDisconnect;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, InjectedDisconnect>>> {
        match self.get_mut() {
            SimBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Stream(s) => Pin::new(s.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(bytes) => bytes.is_none(),
            SimBody::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            SimBody::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_u64_writes_decimal() {
        for v in [0u64, 7, 10, 1_234_567_890, u64::MAX] {
            let mut buf = BytesMut::new();
            put_u64(&mut buf, v);
            assert_eq!(&buf[..], v.to_string().as_bytes());
        }
    }

    #[test]
    fn schedule_is_absolute_and_stall_shifts_later_chunks() {
        let first = Instant::now();
        let ms = Duration::from_millis;
        let s = Schedule {
            first,
            itl: ms(10),
            tokens_per_chunk: 2,
            stall: Some((4, ms(100))),
        };
        assert_eq!(s.deadline(0), first);
        assert_eq!(s.deadline(1), first + ms(10));
        // Chunk 2 is preceded by 4 tokens: it and every later chunk stall.
        assert_eq!(s.deadline(2), first + ms(120));
        assert_eq!(s.deadline(5), first + ms(150));
        assert_eq!(s.chunks_for(5), 3);
        assert_eq!(s.chunks_for(6), 3);
    }
}
