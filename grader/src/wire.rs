//! The grader's client: one blocking connection whose every read and write has a timeout.
//!
//! The checks need more than a load generator's client: the exact bytes of a status line,
//! whole answers with headers and body, answers that arrive only when the client closes
//! its side, and whether the server has closed a connection. [`Client`] parses answers
//! with `loadgen`'s sans-IO [`ResponseReader`] (any framing: a length, chunks, or the end
//! of the connection) and keeps the first bytes it received as they were.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use loadgen::http::{Response, ResponseReader};

/// How many of the first bytes received are kept as they came.
const RAW_KEPT: usize = 64 * 1024;

/// Why an answer did not come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    /// Nothing complete within the time allowed.
    Timeout,
    /// The server closed the connection before a complete answer.
    Closed,
    /// The connection failed (reset, refused); the sentence says how.
    Io(String),
    /// What came back is not HTTP.
    Bad(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Timeout => f.write_str("no answer came in time"),
            WireError::Closed => f.write_str("the server closed the connection without an answer"),
            WireError::Io(why) => write!(f, "the connection failed: {why}"),
            WireError::Bad(why) => write!(f, "the answer is not HTTP: {why}"),
        }
    }
}

/// One connection to the server.
#[derive(Debug)]
pub(crate) struct Client {
    stream: TcpStream,
    reader: ResponseReader,
    raw: Vec<u8>,
    buf: Box<[u8]>,
    /// The longest a read may wait for one answer.
    timeout: Duration,
}

impl Client {
    /// Connects within `timeout`, which then bounds every write and each answer's wait.
    pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> Result<Client, WireError> {
        // Blocks until the handshake completes, is refused, or `timeout` passes (a full
        // backlog drops the handshake and the kernel retries it).
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        Ok(Client {
            stream,
            reader: ResponseReader::new(),
            raw: Vec::new(),
            buf: vec![0; 16 * 1024].into_boxed_slice(),
            timeout,
        })
    }

    /// The socket, for options and half-closes.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The first bytes received, as they came.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Sends `bytes` as they are.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        // Blocks until the kernel took every byte (bounded by the write timeout).
        self.stream.write_all(bytes).map_err(io)
    }

    /// Shuts the sending side: the server reads the end of the stream.
    pub(crate) fn half_close(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads the next whole answer within the connection's timeout.
    pub(crate) fn read(&mut self, head_only: bool) -> Result<Response, WireError> {
        self.read_within(head_only, self.timeout)
    }

    /// Reads the next whole answer (a 1xx interim answer counts as one) within `within`.
    pub(crate) fn read_within(
        &mut self,
        head_only: bool,
        within: Duration,
    ) -> Result<Response, WireError> {
        self.reader.expect_whole(head_only);
        if let Some(response) = self.reader.poll().map_err(bad)? {
            return Ok(response);
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WireError::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).map_err(io)?;
            // Blocks until the server sends something, closes, or the time left passes.
            let n = match self.stream.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) => return Err(io(e)),
            };
            if n == 0 {
                return match self.reader.closed() {
                    Ok(response) => Ok(response),
                    Err(_) => Err(WireError::Closed),
                };
            }
            let room = RAW_KEPT.saturating_sub(self.raw.len()).min(n);
            self.raw.extend_from_slice(&self.buf[..room]);
            if let Some(response) = self.reader.feed(&self.buf[..n]).map_err(bad)? {
                return Ok(response);
            }
        }
    }

    /// Waits for the server to close the connection after an answer that said
    /// `Connection: close`, discarding anything it still sends (at most 64 KiB). Returns
    /// whether it closed within the connection's timeout. A server finishes its
    /// bookkeeping for a connection (servelab's count an answer once it is written) before
    /// it closes it, so this is the moment its `/stats` includes every answer sent here.
    pub(crate) fn wait_closed(&mut self) -> bool {
        let mut discarded = 0usize;
        loop {
            // Blocks until the server sends more, closes, or the read timeout passes.
            match self.stream.read(&mut self.buf) {
                Ok(0) => return true,
                Ok(n) if discarded + n <= 64 * 1024 => discarded += n,
                Ok(_) => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return e.kind() == ErrorKind::ConnectionReset,
            }
        }
    }

    /// Whether anything of the next answer has arrived, looking without waiting: bytes
    /// waiting on the socket, or the server's close or reset (which end the answer too).
    /// For a connection whose earlier answers were read whole, with nothing left over.
    pub(crate) fn answer_begun(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut one = [0u8; 1];
        // Does not block: the socket is non-blocking for this one look.
        let begun = match self.stream.peek(&mut one) {
            Ok(_) => true,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        };
        let _ = self.stream.set_nonblocking(false);
        begun
    }

    /// Whether the server has closed the connection (or reset it), looking without
    /// waiting: bytes waiting or nothing yet both mean it is still open.
    pub(crate) fn closed_by_server(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut one = [0u8; 1];
        // Does not block: the socket is non-blocking for this one look.
        let closed = match self.stream.peek(&mut one) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        };
        let _ = self.stream.set_nonblocking(false);
        closed
    }
}

fn io(e: std::io::Error) -> WireError {
    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        WireError::Timeout
    } else {
        WireError::Io(e.to_string())
    }
}

fn bad(f: loadgen::outcome::Failure) -> WireError {
    WireError::Bad(f.message)
}

/// A request with the headers every check sends: `Host`, and a body with its length.
pub(crate) fn request(method: &str, path: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: grader\r\n").into_bytes();
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One request on a fresh connection that asks the server to close after it; the answer
/// within `timeout`.
pub(crate) fn one_shot(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Response, WireError> {
    let mut client = Client::connect(addr, timeout)?;
    client.send(&request(method, path, body, true))?;
    client.read(method == "HEAD")
}

/// The server's `requests.served` from `/stats`, or why it could not be read.
pub(crate) fn served_count(addr: SocketAddr, timeout: Duration) -> Result<u64, String> {
    let response = one_shot(addr, "GET", "/stats", b"", timeout).map_err(|e| e.to_string())?;
    if response.status != 200 {
        return Err(format!("GET /stats answered {}", response.status));
    }
    let json: serde_json::Value = serde_json::from_slice(&response.body)
        .map_err(|e| format!("GET /stats did not answer JSON ({e})"))?;
    json.pointer("/requests/served")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| "GET /stats has no requests.served".to_owned())
}
