//! The connection layer under hyper: every accepted TCP connection is wrapped in a
//! [`GuardedStream`] that follows HTTP/1.1 framing (request line, headers, `Content-Length`
//! body) just enough to do three things hyper does not:
//!
//! - **Request targets as Go reads them.** `curl -g '.../query_range?query={app="api"}'` sends
//!   raw `"` (and `<`, `>`, spaces, UTF-8) in the request line. Loki (Go's net/http) accepts
//!   them; httparse refuses them with an empty 400. They are percent-encoded here before hyper
//!   parses the line, which the query-string decoder turns back into the same bytes. A target
//!   with a control character is answered 400 with a body saying which byte is wrong.
//! - **Bounded requests.** Headers larger than [`MAX_HEADER_BYTES`] are answered 431 with a
//!   message. A request whose line, headers and body are not all received within
//!   `server.http_server_read_timeout` (counted from its first byte, or from the connection's
//!   accept for the first request) is answered 408 and the connection closed: a slow-loris
//!   client holds one connection for that long at most.
//! - **Idle and stalled connections.** A connection with nothing in either direction for
//!   `server.http_server_idle_timeout` after its last response started is closed; a response
//!   write that makes no progress for `server.http_server_write_timeout` (a client that stopped
//!   reading) fails and closes the connection.
//!
//! A request with `Transfer-Encoding: chunked` or an `Upgrade` (live tail WebSockets) ends the
//! framing: the rest of that connection passes through untouched, with only the idle and write
//! timeouts. Loki's names; Go's defaults (read 30s, write 30s, idle 120s).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Largest request line plus headers accepted (Go's default is 1 MiB; hyper's own limit is
/// about 400 KiB and answers without a body, so ours is below it).
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// The three timeouts (zero: none).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
}

impl Timeouts {
    pub fn of(s: &crate::config::ServerConfig) -> Timeouts {
        Timeouts {
            read: s.http_server_read_timeout,
            write: s.http_server_write_timeout,
            idle: s.http_server_idle_timeout,
        }
    }
}

/// A TCP listener whose connections are [`GuardedStream`]s (with `TCP_NODELAY`).
pub struct GuardedListener {
    inner: TcpListener,
    timeouts: Timeouts,
}

impl GuardedListener {
    pub fn new(inner: TcpListener, timeouts: Timeouts) -> GuardedListener {
        GuardedListener { inner, timeouts }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, addr)) => {
                    // No Nagle delay: small responses and tail frames go out at once.
                    let _ = tcp.set_nodelay(true);
                    return (GuardedStream::new(tcp, self.timeouts), addr);
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a little
                    // instead of spinning (as axum's own listener does).
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Where the reader is in the client's byte stream.
#[derive(Debug)]
enum Frame {
    /// Before or inside a request line (held until complete, to rewrite its target).
    Line,
    /// Inside the header block (held until complete, to find the body's length).
    Headers,
    /// Inside a body of known length: bytes left.
    Body(u64),
    /// Framing unknown (chunked body, upgraded connection): bytes pass through.
    PassThrough,
}

pub struct GuardedStream {
    inner: TcpStream,
    timeouts: Timeouts,
    frame: Frame,
    /// Bytes of the current request line or header block not yet handed to hyper.
    held: Vec<u8>,
    /// Bytes ready for hyper, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// The current request must be fully read by then.
    read_deadline: Option<Instant>,
    last_activity: Instant,
    /// A response was written since the last request was read (the idle clock runs).
    responded: bool,
    /// A response of our own (400, 408, 431), written before the connection is closed.
    reject: Option<(Vec<u8>, usize)>,
    closed: bool,
    read_timer: Pin<Box<Sleep>>,
    write_started: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
}

impl GuardedStream {
    pub fn new(inner: TcpStream, timeouts: Timeouts) -> GuardedStream {
        let now = Instant::now();
        GuardedStream {
            inner,
            timeouts,
            frame: Frame::Line,
            held: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            read_deadline: (!timeouts.read.is_zero()).then(|| now + timeouts.read),
            last_activity: now,
            responded: false,
            reject: None,
            closed: false,
            read_timer: Box::pin(tokio::time::sleep_until(now)),
            write_started: None,
            write_timer: Box::pin(tokio::time::sleep_until(now)),
        }
    }

    /// When the connection must next be looked at: the request's read deadline, or the end of
    /// its idle time.
    fn next_deadline(&self) -> Option<Instant> {
        let idle = (!self.timeouts.idle.is_zero()
            && self.responded
            && self.held.is_empty()
            && matches!(self.frame, Frame::Line | Frame::PassThrough))
        .then(|| self.last_activity + self.timeouts.idle);
        match (self.read_deadline, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn reject_with(&mut self, status: &str, msg: &str) {
        let body = format!("{msg}\n");
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tracing::info!(
            status,
            message = msg,
            "request refused by the connection layer"
        );
        self.reject = Some((resp.into_bytes(), 0));
    }

    /// Takes bytes from the client through the framing.
    fn feed(&mut self, input: &[u8]) {
        let mut owned: Vec<u8>;
        let mut data: &[u8] = input;
        while !data.is_empty() && self.reject.is_none() {
            match self.frame {
                Frame::PassThrough => {
                    self.out.extend_from_slice(data);
                    return;
                }
                Frame::Body(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    self.out.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if n as u64 == left {
                        self.request_read();
                    } else {
                        self.frame = Frame::Body(left - n as u64);
                    }
                }
                Frame::Line => {
                    if self.held.is_empty() {
                        // Empty lines before a request are allowed (RFC 9112 2.2).
                        let skip = data
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        self.out.extend_from_slice(&data[..skip]);
                        data = &data[skip..];
                        if data.is_empty() {
                            return;
                        }
                        self.request_started();
                    }
                    match memchr::memchr(b'\n', data) {
                        Some(i) => {
                            self.held.extend_from_slice(&data[..=i]);
                            data = &data[i + 1..];
                            let line = std::mem::take(&mut self.held);
                            match rewrite_request_line(&line) {
                                Ok(l) => {
                                    self.held = l;
                                    self.frame = Frame::Headers;
                                }
                                Err(msg) => self.reject_with("400 Bad Request", &msg),
                            }
                        }
                        None => {
                            self.held.extend_from_slice(data);
                            data = &[];
                            if self.held.len() > MAX_HEADER_BYTES {
                                self.reject_with(
                                    "414 URI Too Long",
                                    &format!("request line longer than {MAX_HEADER_BYTES} bytes"),
                                );
                            }
                        }
                    }
                }
                Frame::Headers => {
                    // The block ends with an empty line; look for it from a little before the
                    // new bytes, in case its CRLF was split between reads.
                    let from = self.held.len().saturating_sub(3);
                    self.held.extend_from_slice(data);
                    data = &[];
                    match find_blank_line(&self.held[from..]).map(|e| from + e) {
                        Some(end) if end > MAX_HEADER_BYTES => self.reject_with(
                            "431 Request Header Fields Too Large",
                            &format!(
                                "request headers larger than {} KiB: send fewer or smaller headers",
                                MAX_HEADER_BYTES >> 10
                            ),
                        ),
                        Some(end) => {
                            // Bytes after the block: the body, or pipelined requests.
                            owned = self.held.split_off(end);
                            let block = std::mem::take(&mut self.held);
                            self.out.extend_from_slice(&block);
                            match body_framing(&block) {
                                Framing::Length(0) => self.request_read(),
                                Framing::Length(n) => self.frame = Frame::Body(n),
                                Framing::Unknown => {
                                    self.read_deadline = None;
                                    self.frame = Frame::PassThrough;
                                }
                            }
                            data = &owned;
                        }
                        None if self.held.len() > MAX_HEADER_BYTES => self.reject_with(
                            "431 Request Header Fields Too Large",
                            &format!(
                                "request headers larger than {} KiB: send fewer or smaller headers",
                                MAX_HEADER_BYTES >> 10
                            ),
                        ),
                        None => {}
                    }
                }
            }
        }
    }

    fn request_started(&mut self) {
        if self.read_deadline.is_none() && !self.timeouts.read.is_zero() {
            self.read_deadline = Some(Instant::now() + self.timeouts.read);
        }
    }

    fn request_read(&mut self) {
        self.frame = Frame::Line;
        self.read_deadline = None;
        self.responded = false;
    }

    /// Hands held bytes to hyper as they are (end of input: hyper reports what is missing).
    fn release_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.out.extend_from_slice(&held);
    }
}

enum Framing {
    Length(u64),
    Unknown,
}

/// The body's length from a header block; `Unknown` for chunked bodies, upgrades and anything
/// unclear (the connection then passes through).
fn body_framing(block: &[u8]) -> Framing {
    let mut len = 0u64;
    for line in block.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = std::str::from_utf8(&line[colon + 1..]).unwrap_or("").trim();
        if name.eq_ignore_ascii_case(b"transfer-encoding") || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Framing::Unknown;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            match value.parse::<u64>() {
                Ok(n) => len = n,
                Err(_) => return Framing::Unknown,
            }
        }
    }
    Framing::Length(len)
}

/// The end (exclusive) of the first empty line in `b`, CRLF or bare LF.
fn find_blank_line(b: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(b, b"\r\n\r\n").map(|i| i + 4);
    let lf = memchr::memmem::find(b, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The request line with its target's bytes that Go accepts and httparse refuses
/// percent-encoded: `"`, `<`, `>`, spaces inside the target, and bytes above 0x7e. A control
/// byte in the target is an error naming it.
fn rewrite_request_line(line: &[u8]) -> Result<Vec<u8>, String> {
    let text_end = line.len() - usize::from(line.ends_with(b"\r\n")) - 1;
    let body = &line[..text_end];
    let (Some(first), Some(last)) = (
        body.iter().position(|b| *b == b' '),
        body.iter().rposition(|b| *b == b' '),
    ) else {
        return Ok(line.to_vec());
    };
    if first == last || !body[last + 1..].starts_with(b"HTTP/") {
        return Ok(line.to_vec());
    }
    let target = &body[first + 1..last];
    let needs = |b: u8| matches!(b, b'"' | b'<' | b'>' | b' ') || b > 0x7e;
    if let Some(i) = target.iter().position(|b| *b < 0x20 || *b == 0x7f) {
        return Err(format!(
            "invalid request target: control byte 0x{:02x} at position {}; percent-encode it (curl: --data-urlencode with -G)",
            target[i],
            i + 1
        ));
    }
    if !target.iter().any(|b| needs(*b)) {
        return Ok(line.to_vec());
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    out.extend_from_slice(&body[..=first]);
    for &b in target {
        if needs(b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&line[last..]);
    Ok(out)
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some((resp, written)) = &mut this.reject {
                while *written < resp.len() {
                    match Pin::new(&mut this.inner).poll_write(cx, &resp[*written..]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                        Poll::Ready(Ok(n)) => *written += n,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                let _ = Pin::new(&mut this.inner).poll_flush(cx);
                // End of input for hyper: the connection is done.
                return Poll::Ready(Ok(()));
            }
            if this.out_pos < this.out.len() {
                let n = (this.out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            let now = Instant::now();
            if this.read_deadline.is_some_and(|d| now >= d) {
                this.read_deadline = None;
                let secs = this.timeouts.read.as_secs_f64();
                this.reject_with(
                    "408 Request Timeout",
                    &format!(
                        "request not received within {secs}s (server.http_server_read_timeout)"
                    ),
                );
                continue;
            }
            if let Some(d) = this.next_deadline().filter(|d| now >= *d) {
                let _ = d;
                // Idle: closed without a word, as Go closes idle keep-alive connections.
                this.closed = true;
                continue;
            }
            let mut tmp = [0u8; 16 << 10];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        this.release_held();
                        this.closed = true;
                        continue;
                    }
                    this.last_activity = Instant::now();
                    let data = rb.filled().to_vec();
                    this.feed(&data);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if let Some(d) = this.next_deadline() {
                        this.read_timer.as_mut().reset(d);
                        if this.read_timer.as_mut().poll(cx).is_ready() {
                            continue;
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.write_started = None;
                this.last_activity = Instant::now();
                if matches!(r, Ok(n) if n > 0) {
                    this.responded = true;
                    // hyper may already be waiting to read: start the idle clock on this task.
                    if let Some(d) = this.next_deadline() {
                        this.read_timer.as_mut().reset(d);
                        let _ = this.read_timer.as_mut().poll(cx);
                    }
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.timeouts.write.is_zero() {
                    return Poll::Pending;
                }
                let started = *this.write_started.get_or_insert_with(Instant::now);
                let deadline = started + this.timeouts.write;
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "response not taken by the client within server.http_server_write_timeout",
                    )));
                }
                this.write_timer.as_mut().reset(deadline);
                if this.write_timer.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn line(input: &str, want: &str) {
        let got = rewrite_request_line(input.as_bytes()).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want, "{input:?}");
    }

    #[test]
    fn request_targets_are_encoded_where_httparse_is_stricter_than_go() {
        line("GET /x?q=1 HTTP/1.1\r\n", "GET /x?q=1 HTTP/1.1\r\n");
        line(
            "GET /q?query={app=\"api\"} HTTP/1.1\r\n",
            "GET /q?query={app=%22api%22} HTTP/1.1\r\n",
        );
        line("GET /q?a=<b> HTTP/1.1\n", "GET /q?a=%3Cb%3E HTTP/1.1\n");
        line("GET /q?a=x y HTTP/1.1\r\n", "GET /q?a=x%20y HTTP/1.1\r\n");
        line("GET /q?a=é HTTP/1.1\r\n", "GET /q?a=%C3%A9 HTTP/1.1\r\n");
        // Not a request line hyper would take anyway: left for hyper to refuse.
        line("garbage\r\n", "garbage\r\n");
        let err = rewrite_request_line(b"GET /q?a=\x7f HTTP/1.1\r\n").unwrap_err();
        assert!(err.contains("0x7f"), "{err}");
    }

    #[test]
    fn body_length_comes_from_the_headers() {
        let f = |h: &str| match body_framing(h.as_bytes()) {
            Framing::Length(n) => Some(n),
            Framing::Unknown => None,
        };
        assert_eq!(f("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"), Some(12));
        assert_eq!(f("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some(0));
        assert_eq!(
            f("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            None
        );
        assert_eq!(f("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), None);
        assert_eq!(f("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), None);
    }
}
