//! The client side of HTTP/1.1: reading one response at a time, and a blocking connection.
//!
//! [`ResponseReader`] is sans-IO, like the servers' `protocol::Connection`: it is handed the
//! bytes a socket returned and says when a complete response has arrived. It never reads a
//! socket or a clock itself, so the same code serves both engines: the blocking
//! [`Connection`] of the thread-per-client engine (and of the end-to-end benchmarks), and
//! the event-driven engine, which reads many non-blocking sockets on one thread.
//!
//! Responses may be framed by `Content-Length`, chunked encoding, or the end of the
//! connection, so the simulator works against any server, not only servelab's. Bodies are
//! counted and dropped as they pass, never stored: what a reader keeps is at most one
//! incomplete response head (bounded by [`MAX_HEAD`]) and the bytes that arrived after the
//! response it completed.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::outcome::{Failure, Outcome};

/// The longest response head the reader accepts. A server that sends more without ending
/// its head is answering with something that is not HTTP.
pub const MAX_HEAD: usize = 64 * 1024;

/// What a complete response said that the simulator records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server thread that answered, when it says (servelab's `X-Servelab-Thread`
    /// header) and the reader was asked to look.
    pub server_thread: Option<String>,
    /// The server announced it closes the connection (or the body ended with it).
    pub close: bool,
}

/// Where the reader is within the current response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a complete head.
    Head,
    /// Counting `left` more body bytes.
    Length { left: usize },
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Counting a chunk's data and the CRLF after it.
    ChunkData { left: usize },
    /// After the last chunk: waiting for the empty line that ends the (empty) trailer.
    Trailer,
    /// The body lasts until the server closes the connection.
    UntilClose,
}

/// Reads one response at a time from the bytes given to it. See the module documentation.
#[derive(Debug)]
pub struct ResponseReader {
    /// Bytes kept between calls: an incomplete head or chunk-size line, or what arrived
    /// after the last complete response. Empty in the common case, where a read returns
    /// whole responses.
    pending: Vec<u8>,
    state: State,
    /// The response being read, once its head is complete.
    response: Option<Response>,
    /// The request was `HEAD`: the response has no body whatever its headers say.
    head_only: bool,
    /// Look for the `X-Servelab-Thread` header.
    want_thread: bool,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader::new()
    }
}

impl ResponseReader {
    pub fn new() -> ResponseReader {
        ResponseReader {
            pending: Vec::new(),
            state: State::Head,
            response: None,
            head_only: false,
            want_thread: false,
        }
    }

    /// Prepares for the response to the request just sent: `head_only` for a `HEAD`
    /// request, `want_thread` to record the server thread.
    pub fn expect(&mut self, head_only: bool, want_thread: bool) {
        self.state = State::Head;
        self.response = None;
        self.head_only = head_only;
        self.want_thread = want_thread;
    }

    /// Whether bytes of a response (or after one) are held, i.e. the server has said
    /// something the caller has not yet seen as a complete response.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the bytes a read returned. `Ok(Some(..))` when they complete the response
    /// (bytes after it are kept for the next one), `Ok(None)` when more are needed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Response>, Failure> {
        let done = if self.pending.is_empty() {
            let (used, done) = self.advance(data)?;
            self.pending.extend_from_slice(&data[used..]);
            done
        } else {
            self.pending.extend_from_slice(data);
            let pending = std::mem::take(&mut self.pending);
            let result = self.advance(&pending);
            self.pending = pending;
            let (used, done) = result?;
            self.pending.drain(..used);
            done
        };
        if done.is_none() && self.pending.len() > MAX_HEAD {
            // Only an unfinished head (or chunk-size line) is ever kept while waiting.
            return Err(Failure::new(
                Outcome::BadResponse,
                format!("a response head longer than {} KiB", MAX_HEAD / 1024),
            ));
        }
        Ok(done)
    }

    /// Parses what is already held, without new bytes: a response that arrived together
    /// with the previous one.
    pub fn poll(&mut self) -> Result<Option<Response>, Failure> {
        self.feed(&[])
    }

    /// The server closed the connection: completes a response delimited by the close, or
    /// says what was missing.
    pub fn closed(&mut self) -> Result<Response, Failure> {
        match (self.state, self.response.take()) {
            (State::UntilClose, Some(mut response)) => {
                response.close = true;
                self.state = State::Head;
                Ok(response)
            }
            (State::Head, _) => Err(Failure::new(
                Outcome::Reset,
                "the server closed the connection before a complete response",
            )),
            (State::Length { .. }, _) => Err(Failure::new(
                Outcome::Reset,
                "the server closed the connection in the middle of a body",
            )),
            _ => Err(Failure::new(Outcome::Reset, "closed in a chunked body")),
        }
    }

    /// Consumes as much of `input` as the current response needs. Returns how many bytes
    /// were used and the response, if it is now complete.
    fn advance(&mut self, input: &[u8]) -> Result<(usize, Option<Response>), Failure> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Head => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut parsed = httparse::Response::new(&mut headers);
                    let head_len = match parsed.parse(rest) {
                        Ok(httparse::Status::Complete(n)) => n,
                        Ok(httparse::Status::Partial) => return Ok((at, None)),
                        Err(e) => {
                            return Err(Failure::new(
                                Outcome::BadResponse,
                                format!("not an HTTP response: {e}"),
                            ))
                        }
                    };
                    at += head_len;
                    let status = parsed.code.unwrap_or(0);
                    if (100..200).contains(&status) {
                        // An interim response: the real one follows.
                        continue;
                    }
                    let headers = parsed.headers;
                    let close = closes(parsed.version, headers);
                    let server_thread = self
                        .want_thread
                        .then(|| {
                            headers
                                .iter()
                                .find(|h| h.name.eq_ignore_ascii_case("x-servelab-thread"))
                                .map(|h| String::from_utf8_lossy(h.value).into_owned())
                        })
                        .flatten();
                    let no_body = self.head_only || status == 204 || status == 304;
                    self.state = body_state(headers, no_body)?;
                    self.response = Some(Response {
                        status,
                        server_thread,
                        close: close || self.state == State::UntilClose,
                    });
                    if self.state == (State::Length { left: 0 }) {
                        return Ok((at, self.finish()));
                    }
                }
                State::Length { left } => {
                    let take = left.min(rest.len());
                    at += take;
                    if take < left {
                        self.state = State::Length { left: left - take };
                        return Ok((at, None));
                    }
                    return Ok((at, self.finish()));
                }
                State::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((line, 0))) => {
                        at += line;
                        self.state = State::Trailer;
                    }
                    Ok(httparse::Status::Complete((line, size))) => {
                        at += line;
                        // The chunk's data and the CRLF after it.
                        let left = usize::try_from(size)
                            .unwrap_or(usize::MAX)
                            .saturating_add(2);
                        self.state = State::ChunkData { left };
                    }
                    Ok(httparse::Status::Partial) => return Ok((at, None)),
                    Err(_) => {
                        return Err(Failure::new(
                            Outcome::BadResponse,
                            "a malformed chunked body",
                        ))
                    }
                },
                State::ChunkData { left } => {
                    let take = left.min(rest.len());
                    at += take;
                    if take < left {
                        self.state = State::ChunkData { left: left - take };
                        return Ok((at, None));
                    }
                    self.state = State::ChunkSize;
                }
                State::Trailer => {
                    // Trailer fields, each ended by CRLF, until an empty line.
                    let Some(line) = rest.windows(2).position(|w| w == b"\r\n") else {
                        return Ok((at, None));
                    };
                    at += line + 2;
                    if line == 0 {
                        return Ok((at, self.finish()));
                    }
                }
                State::UntilClose => return Ok((input.len(), None)),
            }
        }
    }

    /// The response is complete: hands it out and waits for the next head.
    fn finish(&mut self) -> Option<Response> {
        self.state = State::Head;
        self.response.take()
    }
}

/// The most header fields a response may have.
const MAX_HEADERS: usize = 100;

/// Whether the server closes the connection after this response: `Connection: close`, or
/// an HTTP/1.0 response that did not ask to keep it alive.
fn closes(version: Option<u8>, headers: &[httparse::Header]) -> bool {
    let says = |token: &[u8]| {
        headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && tokens(h.value).any(|t| t.eq_ignore_ascii_case(token))
        })
    };
    says(b"close") || (version == Some(0) && !says(b"keep-alive"))
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(|t| t.trim_ascii())
}

/// How the body after a head with `headers` is delimited.
fn body_state(headers: &[httparse::Header], no_body: bool) -> Result<State, Failure> {
    if no_body {
        return Ok(State::Length { left: 0 });
    }
    let mut state = State::UntilClose;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // The body is chunked when chunked is the last coding applied.
            if tokens(header.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
            {
                return Ok(State::ChunkSize);
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    Failure::new(Outcome::BadResponse, "an unreadable Content-Length")
                })?;
            state = State::Length { left: n };
        }
    }
    Ok(state)
}

/// One complete response, with the moment its first byte arrived.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub first_byte: Instant,
    pub server_thread: Option<String>,
    /// The connection cannot carry another request.
    pub close: bool,
}

/// A blocking client connection: the thread-per-client engine's, and the end-to-end
/// benchmarks'.
pub struct Connection {
    stream: TcpStream,
    reader: ResponseReader,
    buf: Box<[u8]>,
    /// The read timeout last set, to skip redundant system calls.
    timeout_set: Option<Duration>,
}

impl Connection {
    /// Connects, waiting at most until `deadline`.
    pub fn open(addr: SocketAddr, deadline: Instant) -> Result<Connection, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                Outcome::ConnectTimeout,
                "no time left to connect",
            ));
        }
        // Blocks until the handshake completes, the server refuses, or time runs out (when
        // the server's backlog is full, the kernel drops our SYN and retries after ~1 s).
        let stream =
            TcpStream::connect_timeout(&addr, left).map_err(|e| Failure::from_connect(&e, addr))?;
        let io = |e: io::Error| Failure::from_io(&e, "setting up the socket");
        stream.set_nodelay(true).map_err(io)?;
        stream.set_write_timeout(Some(left)).map_err(io)?;
        Ok(Connection {
            stream,
            reader: ResponseReader::new(),
            buf: vec![0; 16 * 1024].into_boxed_slice(),
            timeout_set: None,
        })
    }

    /// Sends `request` and reads one complete response by `deadline`. With `exact` the
    /// read timeout is set afresh before every read; load runs skip that system call while
    /// the timeout already set ends before the deadline (see `fill`).
    pub fn exchange(
        &mut self,
        request: &[u8],
        deadline: Instant,
        exact: bool,
        head_only: bool,
        want_thread: bool,
    ) -> Result<Reply, Failure> {
        // Blocks until the kernel has taken the request (bounded by the write timeout).
        self.stream
            .write_all(request)
            .map_err(|e| Failure::from_io(&e, "sending the request"))?;
        self.reader.expect(head_only, want_thread);
        let mut first_byte = None;
        let mut done = if self.reader.has_pending() {
            first_byte = Some(Instant::now());
            self.reader.poll()?
        } else {
            None
        };
        while done.is_none() {
            let n = self.fill(deadline, exact)?;
            first_byte.get_or_insert_with(Instant::now);
            done = if n == 0 {
                Some(self.reader.closed()?)
            } else {
                self.reader.feed(&self.buf[..n])?
            };
        }
        let response = done.ok_or_else(|| Failure::new(Outcome::Reset, "no response"))?;
        Ok(Reply {
            status: response.status,
            first_byte: first_byte.unwrap_or_else(Instant::now),
            server_thread: response.server_thread,
            close: response.close,
        })
    }

    /// Reads more bytes into the buffer, waiting at most until `deadline`.
    ///
    /// The read timeout is a socket option, and setting it is a system call. With `exact`
    /// it is set to what is left before every read. Without, the one already set is kept
    /// while it does not reach past the deadline, and a read that times out before the
    /// deadline simply waits again for the rest: the deadline holds either way.
    fn fill(&mut self, deadline: Instant, exact: bool) -> Result<usize, Failure> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::no_answer());
            }
            let timeout = match self.timeout_set {
                Some(set) if !exact && set <= left => set,
                _ => left,
            };
            if self.timeout_set != Some(timeout) {
                self.stream
                    .set_read_timeout(Some(timeout))
                    .map_err(|e| Failure::from_io(&e, "setting the read timeout"))?;
                self.timeout_set = Some(timeout);
            }
            // Blocks until the server sends something, closes, or the timeout passes.
            match self.stream.read(&mut self.buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Timed out: the loop checks the deadline, and waits again if it is not yet
                // reached.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(Failure::from_io(&e, "reading the response")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(reader: &mut ResponseReader, pieces: &[&[u8]]) -> Vec<Response> {
        let mut out = Vec::new();
        for piece in pieces {
            if let Some(r) = reader.feed(piece).expect("valid") {
                out.push(r);
            }
            while let Some(r) = reader.poll().expect("valid") {
                out.push(r);
            }
        }
        out
    }

    #[test]
    fn a_response_split_anywhere_is_read_once() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Servelab-Thread: w-1\r\n\r\nhello";
        for cut in 0..bytes.len() {
            let mut reader = ResponseReader::new();
            reader.expect(false, true);
            let got = read_all(&mut reader, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert_eq!(got[0].status, 200);
            assert_eq!(got[0].server_thread.as_deref(), Some("w-1"));
            assert!(!got[0].close);
            assert!(!reader.has_pending());
        }
    }

    #[test]
    fn chunked_bodies_and_interim_responses() {
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        for cut in 0..bytes.len() {
            let mut reader = ResponseReader::new();
            reader.expect(false, false);
            let got = read_all(&mut reader, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert_eq!(got[0].status, 200);
        }
    }

    #[test]
    fn two_responses_in_one_read_are_both_found() {
        let one = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let mut both = one.to_vec();
        both.extend_from_slice(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let mut reader = ResponseReader::new();
        let first = reader.feed(&both).expect("valid").expect("complete");
        assert_eq!(first.status, 200);
        assert!(reader.has_pending());
        let second = reader.poll().expect("valid").expect("complete");
        assert_eq!(second.status, 503);
        assert!(second.close);
    }

    #[test]
    fn a_body_until_close_ends_with_the_connection() {
        let mut reader = ResponseReader::new();
        assert_eq!(
            reader
                .feed(b"HTTP/1.0 200 OK\r\n\r\nsome body")
                .expect("valid"),
            None
        );
        assert_eq!(reader.feed(b" more").expect("valid"), None);
        let response = reader.closed().expect("complete at the close");
        assert!(response.close);
        // A close in the middle of a head or a counted body is a reset.
        let mut reader = ResponseReader::new();
        reader
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .expect("valid");
        assert_eq!(reader.closed().expect_err("short").outcome, Outcome::Reset);
    }

    #[test]
    fn http_1_0_closes_unless_it_keeps_alive() {
        let mut reader = ResponseReader::new();
        let r = reader
            .feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(r.close);
        let r = reader
            .feed(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(!r.close);
        let r = reader
            .feed(b"HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 0\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(r.close);
    }

    #[test]
    fn chunked_with_trailers_and_other_codings() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Check: 1\r\nX-More: 2\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        for cut in 0..bytes.len() {
            let mut reader = ResponseReader::new();
            let got = read_all(&mut reader, &[&bytes[..cut], &bytes[cut..]]);
            let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
            assert_eq!(statuses, [200, 204], "cut at {cut}");
        }
    }

    #[test]
    fn head_responses_have_no_body() {
        let mut reader = ResponseReader::new();
        reader.expect(true, false);
        let r = reader
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            .expect("valid")
            .expect("complete without a body");
        assert_eq!(r.status, 200);
    }

    #[test]
    fn garbage_and_endless_heads_are_bad_responses() {
        let mut reader = ResponseReader::new();
        let e = reader
            .feed(b"SSH-2.0-OpenSSH\r\n\r\n")
            .expect_err("not HTTP");
        assert_eq!(e.outcome, Outcome::BadResponse);
        let mut reader = ResponseReader::new();
        reader.feed(b"HTTP/1.1 200 OK\r\n").expect("partial");
        let line = [b'a'; 1024];
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = reader.feed(&line) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("the reader refuses an endless head");
        assert_eq!(e.outcome, Outcome::BadResponse);
        assert!(reader.pending.len() <= MAX_HEAD + line.len());
    }
}
