//! The load generator's HTTP/1.1 client: one POST, one streamed response.
//!
//! Written here rather than taken from reqwest (which infermark keeps for the
//! registries and the hub) because it sits on the per-token path. Through
//! reqwest and hyper every network read is decoded by hyper's connection task
//! and handed over a channel, as a fresh body frame, to the task that owns the
//! request: two task wake-ups and a frame per event. `infermark calibrate`
//! measured that at about 10 µs of client CPU per event at 1000 paced
//! streams, which on two cores shared with the server is what made the timing
//! jitter. Here the task that owns the request reads its socket itself into a
//! buffer the connection keeps, decodes the framing in place and hands the
//! bytes on as borrowed slices: one wake-up and one read per arrival, nothing
//! allocated, nothing locked. Each read is timed by the kernel's receive
//! stamp of its data rather than by when the task got to run (see
//! [`recv_stamped`]), so the client's own scheduling stays out of the times.
//!
//! Scope is what a benchmark client needs of RFC 9112: `http://` over TCP,
//! one request at a time per connection (no pipelining), persistent
//! connections kept in a pool of a set size, a response framed by chunked
//! transfer coding, `Content-Length` or the connection's close, interim 1xx
//! responses skipped. Every malformed byte becomes an [`HttpError`], never a
//! panic.

use std::fmt;
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Bytes a connection reads at most at once; also the largest response head.
const READ_BUFFER: usize = 64 * 1024;

/// Where requests go: the connection target, the request head every request
/// shares, and the idle connections.
#[derive(Debug)]
pub(crate) struct Client {
    /// The host to connect to (an IPv6 literal without its brackets).
    host: String,
    port: u16,
    /// The request head up to and including `Content-Length: `.
    head: Box<[u8]>,
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
}

impl Client {
    /// A client for POSTs of JSON to `url` (scheme `http`), asking for an
    /// event stream, keeping at most `max_idle` idle connections.
    pub fn new(url: &reqwest::Url, max_idle: usize) -> Result<Client, UrlError> {
        let authority = url
            .host_str()
            .ok_or_else(|| UrlError::NoHost(url.clone()))?;
        // An IPv6 literal is bracketed in the URL and the Host header only.
        let host = authority.trim_start_matches('[').trim_end_matches(']');
        let port = url
            .port_or_known_default()
            .ok_or_else(|| UrlError::NoPort(url.clone()))?;
        let mut target = url.path().to_string();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {authority}:{port}\r\nUser-Agent: infermark/{}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: ",
            env!("CARGO_PKG_VERSION")
        );
        Ok(Client {
            host: host.to_string(),
            port,
            head: head.into_bytes().into_boxed_slice(),
            idle: Mutex::new(Vec::with_capacity(max_idle)),
            max_idle,
        })
    }

    /// An idle connection if there is one (`true`: reused), else a new one.
    pub async fn connection(&self) -> Result<(Conn, bool), HttpError> {
        let idle = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        match idle {
            Some(conn) => Ok((conn, true)),
            None => Ok((self.connect().await?, false)),
        }
    }

    /// A new connection, never one from the pool.
    pub async fn connect(&self) -> Result<Conn, HttpError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| HttpError::Connect(format!("{}:{}", self.host, self.port), e))?;
        // Requests and chunks are small and latency is what is measured.
        stream
            .set_nodelay(true)
            .map_err(|e| HttpError::Connect("setting TCP_NODELAY".into(), e))?;
        enable_receive_stamps(&stream)
            .map_err(|e| HttpError::Connect("setting SO_TIMESTAMPNS".into(), e))?;
        Ok(Conn::new(stream))
    }

    /// Keeps a connection whose response ended cleanly for the next request.
    pub fn put_back(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(conn);
        }
    }

    /// Writes one request with `body` on `conn`.
    pub async fn send(&self, conn: &mut Conn, body: &[u8]) -> Result<(), HttpError> {
        // Nothing of the response can arrive before its request goes: the
        // floor for its receive times (see `Conn::fill`).
        conn.arrived = Instant::now();
        conn.out.clear();
        conn.out.extend_from_slice(&self.head);
        // Writing into a Vec cannot fail.
        let _ = write!(conn.out, "{}\r\n\r\n", body.len());
        conn.out.extend_from_slice(body);
        conn.stream
            .write_all(&conn.out)
            .await
            .map_err(HttpError::Send)
    }
}

/// A URL the client cannot send to.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("`{0}` has no host")]
    NoHost(reqwest::Url),
    #[error("`{0}` has no port")]
    NoPort(reqwest::Url),
}

/// One TCP connection with its buffers.
pub(crate) struct Conn {
    stream: TcpStream,
    /// Read buffer; `buf[pos..len]` are bytes read but not yet consumed.
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// When the data of the read that brought `buf[pos..len]` arrived; at a
    /// send, the send.
    arrived: Instant,
    /// Request bytes being written, kept for the next request.
    out: Vec<u8>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.stream.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

/// What the response head says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
    pub body: Decoder,
}

/// Whether the body has more to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    More,
    /// The body ended as its framing says; `reusable` if no stray bytes
    /// followed it.
    End {
        reusable: bool,
    },
}

/// Why a request or its response failed. Each cause is part of the message
/// rather than a `source()`: a request's error is stored as its text in
/// `requests.jsonl`.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// The TCP connection to the first field (`host:port`, or the socket
    /// option being set) could not be opened.
    Connect(String, io::Error),
    /// Writing the request failed.
    Send(io::Error),
    /// The connection closed or failed; `received` is false if not one byte
    /// of a response had arrived (a kept-alive connection the server had
    /// already closed, when the request was its first use since).
    Closed { received: bool, message: String },
    /// Bytes that are not HTTP/1.1.
    Malformed(String),
    /// A body whose chunked framing is broken.
    Framing(FramingError),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Connect(target, e) => write!(f, "failed to connect to {target}: {e}"),
            HttpError::Send(e) => write!(f, "failed to send the request: {e}"),
            HttpError::Closed { message, .. } => f.write_str(message),
            HttpError::Malformed(m) => write!(f, "malformed HTTP response: {m}"),
            HttpError::Framing(e) => write!(f, "malformed HTTP response: {e}"),
        }
    }
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            arrived: Instant::now(),
            out: Vec::new(),
        }
    }

    /// One read from the socket into the free end of the buffer; `Ok(0)` at
    /// the peer's close.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
        } else if self.len == self.buf.len() {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        let (n, arrived) = loop {
            self.stream.readable().await?;
            let (stream, free) = (&self.stream, &mut self.buf[self.len..]);
            let room = free.len();
            let mut drained = None;
            match stream.try_io(Interest::READABLE, || {
                let (n, arrived) = recv_stamped(stream.as_raw_fd(), free)?;
                if n > 0 && n < room {
                    // A read short of the room drained the socket, so the
                    // readiness is cleared now, as a WouldBlock clears it,
                    // rather than by one more read only to be told so. Data
                    // that arrives from here on raises readiness anew
                    // (tokio clears only the readiness this read saw).
                    drained = Some((n, arrived));
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok((n, arrived))
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match drained {
                    Some(read) => break read,
                    None => continue,
                },
                result => break result?,
            }
        };
        // A stamp is carried over from the realtime clock by its age, which
        // a slewed or stepped realtime clock gets wrong in proportion; it is
        // never let go before the previous read, nor before the request.
        self.arrived = arrived.max(self.arrived);
        self.len += n;
        Ok(n)
    }

    /// Reads the response head, skipping interim (1xx) responses.
    pub async fn read_head(&mut self) -> Result<Head, HttpError> {
        let mut received = self.len > self.pos;
        loop {
            let unread = &self.buf[self.pos..self.len];
            if let Some(end) = head_end(unread) {
                let head = parse_head(&unread[..end])?;
                self.pos += end;
                match head {
                    Some(head) => return Ok(head),
                    None => continue, // 1xx: the real head follows
                }
            }
            if self.len - self.pos == self.buf.len() {
                return Err(HttpError::Malformed(format!(
                    "response head longer than {} KiB",
                    READ_BUFFER / 1024
                )));
            }
            match self.fill().await {
                Ok(0) => {
                    return Err(HttpError::Closed {
                        received,
                        message: "connection closed before the response head".into(),
                    });
                }
                Ok(_) => received = true,
                Err(e) => {
                    return Err(HttpError::Closed {
                        received,
                        message: format!("reading the response head: {e}"),
                    });
                }
            }
        }
    }

    /// Decodes what is buffered, or else reads once and decodes that, giving
    /// each piece of body data to `on_data` with the instant it arrived.
    pub async fn read_body(
        &mut self,
        body: &mut Decoder,
        mut on_data: impl FnMut(&[u8], Instant),
    ) -> Result<Body, HttpError> {
        if self.pos == self.len && !body.is_done() {
            match self.fill().await {
                Ok(0) => {
                    return match body {
                        Decoder::Close => Ok(Body::End { reusable: false }),
                        _ => Err(HttpError::Closed {
                            received: true,
                            message: "connection closed before the end of the body".into(),
                        }),
                    };
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(HttpError::Closed {
                        received: true,
                        message: format!("reading the body: {e}"),
                    });
                }
            }
        }
        let arrived = self.arrived;
        let unread = &self.buf[self.pos..self.len];
        let used = body
            .decode(unread, |data| on_data(data, arrived))
            .map_err(HttpError::Framing)?;
        self.pos += used;
        Ok(if body.is_done() {
            Body::End {
                reusable: self.pos == self.len,
            }
        } else {
            Body::More
        })
    }
}

/// One `recvmsg` into `buf`, and when its data arrived: the kernel's
/// receive timestamp of the last segment read (`SO_TIMESTAMPNS`, set at
/// connect), carried over to the monotonic clock by its age, or the time the
/// read returned where the kernel gave none.
///
/// The segment's stamp is taken as it enters this host's network stack (on
/// loopback, in the sender's write), so a client busy elsewhere, or
/// descheduled, when a token arrives still times it when it arrived. It is
/// an upper bound for every byte of the read, and never later than the
/// read's return: where a stall let several events pile up in one read,
/// they all get the last one's arrival, which is what a read-time stamp
/// would have given them at best.
fn recv_stamped(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Instant)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one cmsg carrying a timespec (CMSG_SPACE(16) = 32 on 64-bit
    // targets), u64-aligned as cmsghdr requires.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid (no name, no buffers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all live and
    // writable for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    let now = Instant::now();
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the CMSG_* walk stays within `msg_controllen` bytes of
    // `control`, which the kernel filled; the payload is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                stamp = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<libc::timespec>(),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let arrived = stamp
        .and_then(|stamp| age(stamp, realtime_now()?))
        .and_then(|age| now.checked_sub(age))
        .unwrap_or(now);
    Ok((n as usize, arrived))
}

/// How long before `now` a realtime `stamp` was taken; `None` if it is in
/// the future or implausibly old (a clock step), so the caller falls back
/// to the read time.
fn age(stamp: libc::timespec, now: libc::timespec) -> Option<Duration> {
    let ns = |t: libc::timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    let age = ns(now) - ns(stamp);
    (0..=MAX_STAMP_AGE_NS)
        .contains(&age)
        .then(|| Duration::from_nanos(age as u64))
}

/// Receive stamps older than this at their read are not believed.
const MAX_STAMP_AGE_NS: i128 = 60 * 1_000_000_000;

fn realtime_now() -> Option<libc::timespec> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    (unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } == 0).then_some(ts)
}

/// Asks the kernel to stamp every segment `stream` receives (see
/// [`recv_stamped`]).
fn enable_receive_stamps(stream: &TcpStream) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Length of the head at the start of `s` (through its blank line), if all
/// of it is there. A bare LF ends a line as well (RFC 9112 section 2.2).
fn head_end(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = s[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let next = nl + 1;
        match s.get(next..) {
            Some([b'\n', ..]) => return Some(next + 1),
            Some([b'\r', b'\n', ..]) => return Some(next + 2),
            _ => i = next,
        }
    }
    None
}

/// Parses a complete head; `None` for an interim (1xx) response.
fn parse_head(raw: &[u8]) -> Result<Option<Head>, HttpError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| HttpError::Malformed("response head is not UTF-8".into()))?;
    let mut lines = text.lines();
    let status_line = lines.next().unwrap_or("");
    let quote = || status_line.chars().take(80).collect::<String>();
    let (version, rest) = status_line
        .split_once(' ')
        .ok_or_else(|| HttpError::Malformed(format!("status line `{}`", quote())))?;
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => {
            return Err(HttpError::Malformed(format!(
                "status line `{}`: not HTTP/1.x",
                quote()
            )));
        }
    };
    let code = rest.get(..3).unwrap_or(rest);
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|s| (100..=999).contains(s) && code.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| HttpError::Malformed(format!("status line `{}`", quote())))?;
    if (100..200).contains(&status) && status != 101 {
        return Ok(None);
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = http10;
    for line in lines.map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| HttpError::Malformed(format!("header line `{line}`")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| HttpError::Malformed(format!("Content-Length `{value}`")))?;
            if length.is_some_and(|m| m != n) {
                return Err(HttpError::Malformed("conflicting Content-Length".into()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked is the last coding if present at all (RFC 9112 6.1).
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(HttpError::Malformed(format!(
                    "Transfer-Encoding `{value}` without chunked"
                )));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    // RFC 9112 section 6.3: no body for 204 and 304; chunked wins over a
    // Content-Length; neither means the body runs to the connection's close.
    let body = if status == 204 || status == 304 {
        Decoder::Length(0)
    } else if chunked {
        Decoder::chunked()
    } else if let Some(n) = length {
        Decoder::Length(n)
    } else {
        close = true;
        Decoder::Close
    };
    Ok(Some(Head {
        status,
        keep_alive: !close,
        body,
    }))
}

/// Incremental decoder of a response body's framing; feed it bytes in
/// arrival order, split anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// This many bytes of body remain.
    Length(u64),
    /// Chunked transfer coding (RFC 9112 section 7.1).
    Chunked(Chunked),
    /// The body runs to the connection's close.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunked {
    /// In a chunk-size line: the size so far and how many hex digits.
    Size {
        size: u64,
        digits: u8,
    },
    /// In a chunk extension or the space before it: skipped to the LF.
    Extension {
        size: u64,
    },
    /// After the size line's CR.
    SizeLf {
        size: u64,
    },
    /// In chunk data.
    Data {
        left: u64,
    },
    /// After chunk data: its CRLF.
    DataCr,
    DataLf,
    /// In the trailer section; `empty` while the current line has no bytes.
    Trailer {
        empty: bool,
    },
    Done,
}

impl Decoder {
    fn chunked() -> Decoder {
        Decoder::Chunked(Chunked::Size { size: 0, digits: 0 })
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Decoder::Length(0) | Decoder::Chunked(Chunked::Done))
    }

    /// Consumes the framing in `input`, calling `on_data` for each run of
    /// body bytes; returns how many bytes were used (fewer than given only
    /// once the body is complete).
    pub fn decode(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<usize, FramingError> {
        match self {
            Decoder::Close => {
                if !input.is_empty() {
                    on_data(input);
                }
                Ok(input.len())
            }
            Decoder::Length(left) => {
                let n = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                if n > 0 {
                    on_data(&input[..n]);
                }
                *left -= n as u64;
                Ok(n)
            }
            Decoder::Chunked(state) => decode_chunked(state, input, on_data),
        }
    }
}

/// Why a chunked body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FramingError {
    #[error("chunk size over 15 hex digits")]
    SizeTooLong,
    #[error("chunk size expected, found byte {0:#04x}")]
    SizeExpected(u8),
    #[error("byte {0:#04x} in a chunk size")]
    ByteInSize(u8),
    #[error("chunk size line: CR without LF")]
    CrWithoutLf,
    #[error("chunk data longer than its size")]
    DataTooLong,
}

/// The state after a chunk-size line: data, or the trailer after the last
/// (zero-size) chunk.
fn after_size(size: u64) -> Chunked {
    if size == 0 {
        Chunked::Trailer { empty: true }
    } else {
        Chunked::Data { left: size }
    }
}

fn decode_chunked(
    state: &mut Chunked,
    input: &[u8],
    mut on_data: impl FnMut(&[u8]),
) -> Result<usize, FramingError> {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        *state = match *state {
            Chunked::Data { left } => {
                let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                on_data(&input[i..i + n]);
                i += n;
                let left = left - n as u64;
                *state = if left == 0 {
                    Chunked::DataCr
                } else {
                    Chunked::Data { left }
                };
                continue;
            }
            Chunked::Size { size, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits >= 15 {
                        return Err(FramingError::SizeTooLong);
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    Chunked::Size {
                        size: size * 16 + u64::from(d),
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => {
                    return Err(FramingError::SizeExpected(b));
                }
                b';' | b' ' | b'\t' => Chunked::Extension { size },
                b'\r' => Chunked::SizeLf { size },
                b'\n' => after_size(size),
                _ => return Err(FramingError::ByteInSize(b)),
            },
            Chunked::Extension { size } => match b {
                b'\n' => after_size(size),
                _ => Chunked::Extension { size },
            },
            Chunked::SizeLf { size } => match b {
                b'\n' => after_size(size),
                _ => return Err(FramingError::CrWithoutLf),
            },
            Chunked::DataCr => match b {
                b'\r' => Chunked::DataLf,
                b'\n' => Chunked::Size { size: 0, digits: 0 },
                _ => return Err(FramingError::DataTooLong),
            },
            Chunked::DataLf => match b {
                b'\n' => Chunked::Size { size: 0, digits: 0 },
                _ => return Err(FramingError::DataTooLong),
            },
            Chunked::Trailer { empty } => match b {
                b'\n' if empty => {
                    *state = Chunked::Done;
                    return Ok(i + 1);
                }
                b'\n' => Chunked::Trailer { empty: true },
                b'\r' => Chunked::Trailer { empty },
                _ => Chunked::Trailer { empty: false },
            },
            Chunked::Done => return Ok(i),
        };
        i += 1;
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// Decodes `wire` split into pieces at `cuts`, returning the body and
    /// the bytes left over after its end.
    fn decode_split(
        mut d: Decoder,
        wire: &[u8],
        cuts: &[usize],
    ) -> Result<(Vec<u8>, usize), FramingError> {
        let mut body = Vec::new();
        let mut left = 0;
        let mut at = 0;
        for &end in cuts.iter().chain(std::iter::once(&wire.len())) {
            let piece = &wire[at..end];
            let used = d.decode(piece, |b| body.extend_from_slice(b))?;
            left += piece.len() - used;
            at = end;
        }
        assert!(d.is_done(), "body not complete: {d:?}");
        Ok((body, left))
    }

    const CHUNKED: &[u8] = b"7\r\ndata: a\r\n18;ext=\"x\"\r\ndata: {\"k\":1}\n\ndata: [DO\r\n3\r\nNE]\r\n0\r\nx-trailer: t\r\n\r\n";

    #[test]
    fn chunked_body_is_the_same_at_every_split_point() {
        let (whole, left) = decode_split(Decoder::chunked(), CHUNKED, &[]).unwrap();
        assert_eq!(whole, b"data: adata: {\"k\":1}\n\ndata: [DONE]");
        assert_eq!(left, 0);
        for i in 0..=CHUNKED.len() {
            for j in i..=CHUNKED.len() {
                let got = decode_split(Decoder::chunked(), CHUNKED, &[i, j]).unwrap();
                assert_eq!(got, (whole.clone(), 0), "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn bytes_after_the_last_chunk_are_left_unused() {
        let mut wire = b"2\r\nab\r\n0\r\n\r\n".to_vec();
        wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let (body, left) = decode_split(Decoder::chunked(), &wire, &[5]).unwrap();
        assert_eq!(body, b"ab");
        assert_eq!(left, 17);
    }

    #[test]
    fn lf_only_line_ends_are_accepted_in_chunked_framing() {
        let (body, _) = decode_split(Decoder::chunked(), b"3\nabc\n0\n\n", &[]).unwrap();
        assert_eq!(body, b"abc");
    }

    #[test]
    fn bad_chunked_framing_is_an_error() {
        for (wire, want) in [
            (&b"zz\r\n"[..], "chunk size expected"),
            (b"3\r\nabcd\r\n", "longer than its size"),
            (b"3\rx", "CR without LF"),
            (b"1234567890abcdef0\r\n", "over 15 hex digits"),
            (b"3x\r\n", "in a chunk size"),
        ] {
            let mut d = Decoder::chunked();
            let e = d.decode(wire, |_| {}).unwrap_err().to_string();
            assert!(
                e.contains(want),
                "{e} for {:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn content_length_bodies_stop_at_their_length() {
        let (body, left) = decode_split(Decoder::Length(5), b"hello, world", &[2]).unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(left, 7);
    }

    fn head(raw: &str) -> Result<Option<Head>, HttpError> {
        let end = head_end(raw.as_bytes()).expect("complete head");
        assert_eq!(end, raw.len(), "the head ends at its blank line");
        parse_head(&raw.as_bytes()[..end])
    }

    #[test]
    fn heads_give_status_framing_and_persistence() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.keep_alive, h.body),
            (200, true, Decoder::chunked())
        );
        // Chunked wins over a Content-Length (RFC 9112 6.3).
        let h = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.body, Decoder::chunked());
        let h = head(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (h.status, h.keep_alive, h.body),
            (500, false, Decoder::Length(12))
        );
        // Neither: the body runs to the close, which ends persistence.
        let h = head("HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.keep_alive, h.body), (false, Decoder::Close));
        // HTTP/1.0 persists only when asked; bare LF line ends are read.
        let h = head("HTTP/1.0 200 OK\nContent-Length: 0\nConnection: keep-alive\n\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.keep_alive, h.body), (true, Decoder::Length(0)));
        let h = head("HTTP/1.1 204 No Content\r\n\r\n").unwrap().unwrap();
        assert!(h.body.is_done());
        assert_eq!(head("HTTP/1.1 100 Continue\r\n\r\n").unwrap(), None);
    }

    #[test]
    fn malformed_heads_are_errors_naming_the_problem() {
        for (raw, want) in [
            ("SPDY/3 200 OK\r\n\r\n", "not HTTP/1.x"),
            ("HTTP/1.1 2x0 OK\r\n\r\n", "status line"),
            ("HTTP/1.1\r\n\r\n", "status line"),
            (
                "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                "header line `no colon here`",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "Content-Length `-1`",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "conflicting Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "without chunked",
            ),
        ] {
            let e = head(raw).unwrap_err().to_string();
            assert!(e.starts_with("malformed HTTP response: "), "{e}");
            assert!(e.contains(want), "{e} for {raw:?}");
        }
    }

    #[test]
    fn a_head_is_found_only_when_complete() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
    }

    /// A server that answers each connection's requests with the given
    /// byte strings in turn, then closes; returns its base URL.
    async fn serve(responses: Vec<&'static [u8]>) -> reqwest::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = reqwest::Url::parse(&format!(
            "http://{}/v1/completions",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            for r in responses {
                let mut got = Vec::new();
                // Read one request: head, then Content-Length bytes.
                loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    assert!(n > 0, "client closed early");
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = head_end(&got) {
                        let text = String::from_utf8_lossy(&got[..end]).to_lowercase();
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .unwrap()
                            .trim()
                            .parse()
                            .unwrap();
                        if got.len() >= end + len {
                            assert!(
                                text.starts_with("post /v1/completions http/1.1\r\n"),
                                "{text}"
                            );
                            assert_eq!(&got[end..], b"{\"p\":1}");
                            break;
                        }
                    }
                }
                socket.write_all(r).await.unwrap();
            }
        });
        url
    }

    /// Sends the request `serve` expects and reads the response head.
    async fn post(client: &Client, conn: &mut Conn) -> Head {
        client.send(conn, b"{\"p\":1}").await.unwrap();
        conn.read_head().await.unwrap()
    }

    async fn body_of(conn: &mut Conn, mut d: Decoder) -> Result<(Vec<u8>, bool), HttpError> {
        let mut body = Vec::new();
        loop {
            match conn
                .read_body(&mut d, |b, _| body.extend_from_slice(b))
                .await?
            {
                Body::More => {}
                Body::End { reusable } => return Ok((body, reusable)),
            }
        }
    }

    #[tokio::test]
    async fn a_kept_alive_connection_carries_the_next_request() {
        let url = serve(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
        ])
        .await;
        let client = Client::new(&url, 1).unwrap();
        let (mut conn, reused) = client.connection().await.unwrap();
        assert!(!reused);
        let h = post(&client, &mut conn).await;
        assert_eq!(h.status, 200);
        assert_eq!(
            body_of(&mut conn, h.body).await.unwrap(),
            (b"hello".to_vec(), true)
        );
        client.put_back(conn);
        let (mut conn, reused) = client.connection().await.unwrap();
        assert!(reused, "the pooled connection is handed out again");
        let h = post(&client, &mut conn).await;
        assert_eq!(h.status, 404);
        assert_eq!(
            body_of(&mut conn, h.body).await.unwrap(),
            (b"nope".to_vec(), true)
        );
        // The server has closed: the next use of this connection fails
        // before any response byte, which is what marks it stale.
        client.send(&mut conn, b"{\"p\":1}").await.ok();
        match conn.read_head().await {
            Err(HttpError::Closed {
                received: false, ..
            }) => {}
            other => panic!("expected a close before the head, got {other:?}"),
        }
    }

    // Multi-threaded so that the server task runs on a worker while the
    // test's own thread is blocked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn data_that_arrives_while_the_client_is_busy_is_timed_at_its_arrival() {
        let url = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"]).await;
        let client = Client::new(&url, 1).unwrap();
        let mut conn = client.connect().await.unwrap();
        let sent = Instant::now();
        client.send(&mut conn, b"{\"p\":1}").await.unwrap();
        // Busy elsewhere: nothing reads the socket while the answer arrives.
        std::thread::sleep(Duration::from_millis(300));
        let woke = Instant::now();
        let mut h = conn.read_head().await.unwrap();
        let mut arrived = None;
        let end = conn
            .read_body(&mut h.body, |data, at| {
                assert_eq!(data, b"hello");
                arrived = Some(at);
            })
            .await
            .unwrap();
        assert!(matches!(end, Body::End { .. }), "{end:?}");
        let arrived = arrived.unwrap();
        assert!(arrived >= sent);
        // Timed by the kernel's receive stamp, not by the late read: on a
        // read-time stamp this would be zero.
        let late = woke.duration_since(arrived);
        assert!(
            late >= Duration::from_millis(200),
            "{late:?} before the read"
        );
    }

    // A read short of its room clears readiness without a further read (see
    // `Conn::fill`); were a wake-up lost that way, this body would hang.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_body_written_in_many_small_paced_pieces_is_read_to_its_end() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = reqwest::Url::parse(&format!(
            "http://{}/v1/completions",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        const PIECES: usize = 300;
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut socket, _) = listener.accept().unwrap();
            socket.set_nodelay(true).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"{\"p\":1}") {
                let n = socket.read(&mut buf).unwrap();
                assert!(n > 0, "client closed early");
                got.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
            for i in 0..PIECES {
                // Gaps from none to a fifth of a millisecond, so pieces land
                // both while the client reads and after it has drained.
                std::thread::sleep(Duration::from_micros((i % 3) as u64 * 100));
                socket.write_all(b"1\r\nx\r\n").unwrap();
            }
            socket.write_all(b"0\r\n\r\n").unwrap();
        });
        let client = Client::new(&url, 1).unwrap();
        let mut conn = client.connect().await.unwrap();
        let h = post(&client, &mut conn).await;
        let (body, _) = tokio::time::timeout(Duration::from_secs(20), body_of(&mut conn, h.body))
            .await
            .expect("the body stalled: a readiness event was lost")
            .unwrap();
        assert_eq!(body, vec![b'x'; PIECES]);
    }

    #[test]
    fn receive_stamps_from_the_future_or_long_ago_are_not_believed() {
        let t = |tv_sec, tv_nsec| libc::timespec { tv_sec, tv_nsec };
        assert_eq!(
            age(t(100, 250), t(101, 0)),
            Some(Duration::from_nanos(999_999_750))
        );
        assert_eq!(age(t(100, 0), t(100, 0)), Some(Duration::ZERO));
        assert_eq!(age(t(101, 0), t(100, 0)), None);
        assert_eq!(age(t(0, 0), t(61, 0)), None);
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_and_close_framing_ends_at_close() {
        let url = serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        ])
        .await;
        let client = Client::new(&url, 1).unwrap();
        let (mut conn, _) = client.connection().await.unwrap();
        let h = post(&client, &mut conn).await;
        let e = body_of(&mut conn, h.body).await.unwrap_err();
        assert!(
            matches!(e, HttpError::Closed { received: true, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("before the end of the body"), "{e}");

        let url = serve(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil close"]).await;
        let client = Client::new(&url, 1).unwrap();
        let (mut conn, _) = client.connection().await.unwrap();
        let h = post(&client, &mut conn).await;
        assert!(!h.keep_alive);
        assert_eq!(
            body_of(&mut conn, h.body).await.unwrap(),
            (b"until close".to_vec(), false)
        );
    }

    #[tokio::test]
    async fn connection_refused_names_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = reqwest::Url::parse(&format!("http://{addr}/v1/completions")).unwrap();
        let e = Client::new(&url, 1)
            .unwrap()
            .connection()
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("failed to connect to {addr}: ")),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[test]
    fn the_request_head_names_host_port_and_target() {
        let url = reqwest::Url::parse("http://[::1]:8080/v1/chat/completions?x=1").unwrap();
        let c = Client::new(&url, 1).unwrap();
        assert_eq!(c.host, "::1");
        let head = String::from_utf8(c.head.to_vec()).unwrap();
        assert!(
            head.starts_with("POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: [::1]:8080\r\n"),
            "{head}"
        );
        assert!(head.ends_with("\r\nContent-Length: "), "{head}");
        let url = reqwest::Url::parse("http://localhost/v1/completions").unwrap();
        assert_eq!(Client::new(&url, 1).unwrap().port, 80);
    }
}
