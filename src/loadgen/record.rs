//! The raw per-request record: one JSON line of `requests.jsonl`.
//!
//! Everything infermark publishes is derived from these records alone, so a
//! record holds only what was observed (times, counts, status, error) and
//! nothing computed from it. Times are integer nanoseconds from the run's
//! monotonic origin ([`Origin`]); the origin's wall-clock time is stored once.

use serde::{Deserialize, Serialize};

/// Format version of `requests.jsonl` records.
pub const RECORD_FORMAT: u32 = 1;

/// One request, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRecord {
    /// Position in dispatch order within the point, warmup requests first.
    pub index: u64,
    /// Client slot that carried the request (closed loop: the slot; open
    /// loop: the in-flight slot it occupied).
    pub slot: u32,
    /// Warmup requests are recorded but excluded from every metric.
    pub warmup: bool,
    /// Intended dispatch: the arrival schedule (open loop) or the instant
    /// the slot freed (closed loop).
    pub scheduled_ns: u64,
    /// The request was handed to the connection.
    pub sent_ns: u64,
    /// When the request was first handed to a kept-alive connection that
    /// the server had closed by then, so that it never reached the server
    /// and was sent again on a new connection at `sent_ns`: that first
    /// attempt. Its cost is part of the queue delay (`sent_ns −
    /// scheduled_ns`); absent for a request sent once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_sent_ns: Option<u64>,
    /// First chunk that carried generated text; `None` if none arrived.
    pub first_token_ns: Option<u64>,
    /// Last chunk received, or the moment the request failed.
    pub end_ns: u64,
    /// Every token-bearing chunk, in arrival order.
    pub chunks: Vec<Chunk>,
    /// Prompt length the workload generated, in tokens.
    pub input_tokens: u32,
    /// `max_tokens` sent with the request.
    pub max_output_tokens: u32,
    /// `usage.prompt_tokens` as the server reported it.
    pub usage_input_tokens: Option<u32>,
    /// `usage.completion_tokens` as the server reported it.
    pub usage_output_tokens: Option<u32>,
    /// HTTP status of the response, if one arrived.
    pub http_status: Option<u16>,
    /// Why the request failed; `None` for a successful request.
    pub error: Option<RequestError>,
}

/// One token-bearing chunk: `[t_ns, tokens]`, or `[t_ns, tokens, server_ns]`
/// when the server stamped its own monotonic send time (the `sim` server does,
/// for calibration; see DESIGN "Calibration").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ChunkWire", into = "ChunkWire")]
pub struct Chunk {
    /// Arrival time, ns from the run origin: the kernel's receive stamp of
    /// the read that completed the chunk (see `loadgen::http`).
    pub t_ns: u64,
    /// Tokens this chunk carried (from the server's running usage count when
    /// it sends one, else 1 per token-bearing chunk).
    pub tokens: u32,
    /// The server's CLOCK_MONOTONIC send time in ns, when it reports one.
    pub server_ns: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ChunkWire {
    Stamped(u64, u32, u64),
    Plain(u64, u32),
}

impl From<ChunkWire> for Chunk {
    fn from(w: ChunkWire) -> Self {
        match w {
            ChunkWire::Plain(t_ns, tokens) => Chunk {
                t_ns,
                tokens,
                server_ns: None,
            },
            ChunkWire::Stamped(t_ns, tokens, s) => Chunk {
                t_ns,
                tokens,
                server_ns: Some(s),
            },
        }
    }
}

impl From<Chunk> for ChunkWire {
    fn from(c: Chunk) -> Self {
        match c.server_ns {
            None => ChunkWire::Plain(c.t_ns, c.tokens),
            Some(s) => ChunkWire::Stamped(c.t_ns, c.tokens, s),
        }
    }
}

impl RequestRecord {
    /// Output tokens counted from the chunks (the cross-check of usage).
    pub fn chunk_output_tokens(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.tokens)).sum()
    }

    /// Output tokens: the server's usage when reported, else the chunk count.
    pub fn output_tokens(&self) -> u64 {
        self.usage_output_tokens
            .map(u64::from)
            .unwrap_or_else(|| self.chunk_output_tokens())
    }

    /// Input tokens: the server's usage when reported, else the generated length.
    pub fn input_tokens_used(&self) -> u64 {
        u64::from(self.usage_input_tokens.unwrap_or(self.input_tokens))
    }

    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// Why a request failed. A failure is data, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Could not connect or write the request.
    Connect,
    /// Non-2xx HTTP status.
    Http,
    /// The per-request timeout expired.
    Timeout,
    /// A chunk that is not valid SSE/JSON, or an `error` object in the stream.
    Stream,
    /// The connection ended before `[DONE]` (or before a complete body).
    Disconnected,
}

/// The run's time origin: every `*_ns` in the records counts from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// Wall-clock time of the origin, RFC 3339 UTC with nanoseconds.
    pub wall_clock: String,
    /// CLOCK_MONOTONIC of the origin in ns (to relate server stamps).
    pub monotonic_ns: u64,
}
