//! One client connection: reading requests from it and writing responses to it.
//!
//! A [`Conn`] owns the socket, a read buffer and the bookkeeping that HTTP/1.1 needs between
//! requests. Every architecture uses it the same way, in a loop:
//!
//! ```text
//!   conn.next_request()  --Request-->  handler::respond()  --Response-->  conn.send()
//!          |                                                               |
//!          +--Reject(response): bad input, send it and close               +--> keep going?
//!          +--Closed: the client left, idled out, or the server stops
//! ```
//!
//! The architectures differ only in *which thread* runs each step. The sequential server
//! runs all of them on its one thread; the pipeline hands the `Conn` from a receiver to a
//! handler to a sender. Because a `Conn` is moved, never shared, at most one thread touches
//! a connection at a time and requests on it are answered strictly in order, which is what
//! HTTP/1.1 pipelining requires.
//!
//! Timeouts, all from the command line:
//! * the first request on a new connection must arrive within `--read-timeout` (else 408);
//! * between requests a connection may idle for `--keep-alive-timeout` (then it is closed
//!   without a word, as Apache and nginx do);
//! * once the first byte of a request is in, the whole request (head and body) must be in
//!   within `--read-timeout` (else 408). A client dribbling one byte a second cannot hold a
//!   thread for longer than that.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::request::{parse_head, Method, Version};
use crate::response::{Response, Status};

/// The read buffer starts this small and grows up to the header limit as needed.
const INITIAL_BUFFER: usize = 4096;
/// After an error response, how long the server keeps reading (and discarding) what the
/// client is still sending before it closes. Closing a socket with unread input makes the
/// kernel send a reset, which can destroy the error response before the client reads it.
const LINGER: Duration = Duration::from_millis(500);
/// The most a lingering close will read and discard.
const LINGER_BYTES: usize = 256 * 1024;

/// A complete request: head and body.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub version: Version,
    pub body: Vec<u8>,
}

/// What [`Conn::next_request`] found.
#[derive(Debug)]
pub enum Next {
    /// A complete request to handle. Answer it with [`Conn::send`].
    Request(Request),
    /// Input that cannot be served. Send this response with [`Conn::send`]; it closes the
    /// connection.
    Reject(Response),
    /// Nothing more will come on this connection; drop it.
    Closed(Closed),
}

/// Why a connection ended without a request.
#[derive(Debug)]
pub enum Closed {
    /// The client closed its side between requests.
    ByPeer,
    /// The client sent nothing for the keep-alive timeout.
    Idle,
    /// The server is shutting down and the connection was between requests.
    Shutdown,
    /// The socket failed (reset by the client, for example).
    Error(io::Error),
}

/// What the connection remembers about the request being handled, to shape its response.
#[derive(Debug)]
struct Pending {
    keep_alive: bool,
    http10: bool,
    head_only: bool,
    /// The request line, for the debug log only: `None` unless debug logging is on, so
    /// that serving a request does not cost an allocation for a line nobody reads.
    line: Option<String>,
    started: Instant,
}

/// One accepted client connection. See the module documentation.
pub struct Conn {
    stream: TcpStream,
    /// The registry id, unique within the server, shown in logs as `conn #id`.
    pub id: u64,
    /// The client's address. It belongs to this connection alone: no other thread can see
    /// or overwrite it (the lecture's servers had exactly that bug).
    pub peer: SocketAddr,
    ctx: Arc<Context>,
    /// Bytes read but not consumed yet live in `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Reused for every response so that sending does not allocate.
    out: Vec<u8>,
    pending: Option<Pending>,
    requests: u64,
    /// The read timeout currently set on the socket, to skip redundant system calls.
    timeout_set: Option<Duration>,
    /// The client has closed its sending side (a read returned 0).
    peer_closed: bool,
}

impl Conn {
    /// Wraps an accepted stream: registers it with the context, counts it and sets its
    /// socket options. Called by the acceptor.
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) -> io::Result<Conn> {
        // Responses go out in one write each; without this, Nagle's algorithm would hold
        // back the second of two pipelined responses until the first one is acknowledged.
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(ctx.args.read_timeout.max(Duration::from_millis(1))))?;
        let id = ctx.register(&stream)?;
        ctx.stats.accepted();
        Ok(Conn {
            stream,
            id,
            peer,
            ctx,
            buf: Vec::new(),
            start: 0,
            end: 0,
            out: Vec::new(),
            pending: None,
            requests: 0,
            timeout_set: None,
            peer_closed: false,
        })
    }

    /// The server context this connection belongs to.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Whether unread request bytes are already buffered (a pipelined request): the next
    /// call to [`Conn::next_request`] will then not need to wait for the network.
    pub fn has_buffered_input(&self) -> bool {
        self.end > self.start
    }

    /// Reads the next request. Blocks until a whole request has arrived, the client closes,
    /// or a timeout described in the module documentation expires.
    pub fn next_request(&mut self) -> Next {
        let limits = self.ctx.limits;
        // Set once the first byte of this request is in: the whole request must be in by then.
        let mut deadline = None;
        loop {
            if self.end > self.start {
                let deadline =
                    *deadline.get_or_insert_with(|| Instant::now() + self.ctx.args.read_timeout);
                match parse_head(&self.buf[self.start..self.end], &limits) {
                    Ok(Some(head)) => {
                        self.start += head.len;
                        return self.read_body(head, deadline);
                    }
                    Ok(None) => {}
                    Err(rejection) => {
                        return Next::Reject(
                            Response::error(rejection.status, &rejection.reason).closing(),
                        )
                    }
                }
            }

            // The head is not complete: wait for more bytes.
            let wait = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None if self.requests == 0 => self.ctx.args.read_timeout,
                None => self.ctx.args.keep_alive_timeout,
            };
            match self.fill(wait) {
                Ok(0) if self.end > self.start && !self.ctx.shutdown.is_triggered() => {
                    return Next::Reject(
                        Response::error(
                            Status::BadRequest,
                            "the connection ended in the middle of a request",
                        )
                        .closing(),
                    )
                }
                Ok(0) if self.ctx.shutdown.is_triggered() => return Next::Closed(Closed::Shutdown),
                Ok(0) => return Next::Closed(Closed::ByPeer),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    if deadline.is_none() && self.requests > 0 {
                        return Next::Closed(Closed::Idle);
                    }
                    return Next::Reject(
                        Response::error(
                            Status::RequestTimeout,
                            &format!(
                                "no complete request within {}",
                                humantime::format_duration(self.ctx.args.read_timeout)
                            ),
                        )
                        .closing(),
                    );
                }
                Err(e) => return Next::Closed(Closed::Error(e)),
            }
        }
    }

    /// Collects the body that follows `head` and turns both into a [`Request`].
    fn read_body(&mut self, head: crate::request::Head, deadline: Instant) -> Next {
        let mut body = Vec::new();
        if head.content_length > 0 {
            let buffered = (self.end - self.start).min(head.content_length);
            body.reserve_exact(head.content_length);
            body.extend_from_slice(&self.buf[self.start..self.start + buffered]);
            self.start += buffered;
            if body.len() < head.content_length {
                if head.expect_continue {
                    // The client waits for this go-ahead before it sends the body.
                    if let Err(e) = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n") {
                        return Next::Closed(Closed::Error(e));
                    }
                }
                let mut got = body.len();
                body.resize(head.content_length, 0);
                while got < body.len() {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    if let Err(e) = self.set_read_timeout(wait) {
                        return Next::Closed(Closed::Error(e));
                    }
                    // Blocks until more of the body arrives, the client closes, or the
                    // request's deadline passes.
                    match self.stream.read(&mut body[got..]) {
                        Ok(0) => {
                            self.peer_closed = true;
                            return Next::Reject(
                                Response::error(
                                    Status::BadRequest,
                                    "the connection ended before the whole body arrived",
                                )
                                .closing(),
                            );
                        }
                        Ok(n) => got += n,
                        Err(e) if is_timeout(&e) => {
                            return Next::Reject(
                                Response::error(
                                    Status::RequestTimeout,
                                    "the body did not arrive in time",
                                )
                                .closing(),
                            )
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Next::Closed(Closed::Error(e)),
                    }
                }
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        self.requests += 1;
        self.ctx.stats.request_started();
        self.pending = Some(Pending {
            keep_alive: head.keep_alive,
            http10: head.version == Version::Http10,
            head_only: head.method == Method::Head,
            line: tracing::enabled!(tracing::Level::DEBUG)
                .then(|| format!("{} {}", head.method.as_str(), head.path)),
            started: Instant::now(),
        });
        Next::Request(Request {
            method: head.method,
            path: head.path,
            version: head.version,
            body,
        })
    }

    /// Reads whatever the client has sent, waiting at most `wait`. Returns the number of
    /// bytes read, 0 meaning the client closed its side.
    fn fill(&mut self, wait: Duration) -> io::Result<usize> {
        if wait.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                // Move the unconsumed bytes to the front to make room.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // The head is over the limit once it is longer than max_header_bytes, and
                // parse_head reports that, so the buffer never needs to be larger than this.
                let cap = self.ctx.limits.max_header_bytes + 1;
                let size =
                    (self.buf.len() * 2).clamp(INITIAL_BUFFER.min(cap), cap.max(INITIAL_BUFFER));
                self.buf.resize(size, 0);
            }
            if self.end == self.buf.len() {
                // Unreachable while parse_head enforces the header limit; never read into
                // an empty slice, which would look like the client closing.
                return Err(io::Error::other("read buffer full"));
            }
        }
        self.set_read_timeout(wait)?;
        loop {
            // Blocks until the client sends something, closes, or `wait` passes.
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    if n == 0 {
                        self.peer_closed = true;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn set_read_timeout(&mut self, wait: Duration) -> io::Result<()> {
        let wait = wait.max(Duration::from_millis(1));
        if self.timeout_set != Some(wait) {
            self.stream.set_read_timeout(Some(wait))?;
            self.timeout_set = Some(wait);
        }
        Ok(())
    }

    /// Writes the response to the request last returned by [`Conn::next_request`] (or a
    /// rejection it returned). Blocks until the kernel has taken the whole response, or the
    /// write timeout passes if the client does not read.
    ///
    /// Returns `true` if the connection stays open for another request. When it returns
    /// `false` the connection has been closed for writing and should be dropped.
    pub fn send(&mut self, response: &Response) -> bool {
        let pending = self.pending.take();
        let (keep_alive, http10, head_only) = pending.as_ref().map_or((false, false, false), |p| {
            (p.keep_alive, p.http10, p.head_only)
        });
        // A client that has closed its side while its request was handled: the lecture's
        // "left before the server could handle it". The answer is still written, because a
        // client that only half-closed (shut down its sending side) is still reading.
        let left = pending.is_some() && self.peer_has_left();
        if left {
            self.peer_closed = true;
            self.ctx.stats.client_left();
            tracing::info!(
                "client {} left before the server could handle it (conn #{})",
                self.peer,
                self.id
            );
        }
        let close = response.close
            || left
            || !keep_alive
            || !self.ctx.args.keep_alive()
            || self.ctx.shutdown.is_triggered();
        response.encode(
            &mut self.out,
            &self.ctx.server_header,
            close,
            http10 && !close,
            !head_only,
        );
        let written = self.stream.write_all(&self.out);
        if !left {
            self.ctx.stats.responded(response.status);
        }
        if let Some(pending) = &pending {
            self.ctx.stats.request_finished();
            tracing::debug!(
                "conn #{} {} \"{}\" -> {} in {:?}{}",
                self.id,
                self.peer,
                pending.line.as_deref().unwrap_or("?"),
                response.status.code(),
                pending.started.elapsed(),
                response
                    .handled_by
                    .as_ref()
                    .map(|t| format!(" (handled by {t})"))
                    .unwrap_or_default(),
            );
        } else {
            tracing::debug!(
                "conn #{} {} rejected -> {}",
                self.id,
                self.peer,
                response.status.code()
            );
        }
        if let Err(e) = written {
            tracing::debug!(
                "conn #{} {}: could not send the response: {e}",
                self.id,
                self.peer
            );
            return false;
        }
        if close {
            self.close_gracefully(response.close);
        }
        !close
    }

    /// Whether the client has closed its sending side or reset the connection, judged
    /// without waiting: a peek at the socket that returns end-of-stream or a reset. Unread
    /// request bytes (a pipelined request) mean the client is still there.
    fn peer_has_left(&self) -> bool {
        if self.peer_closed {
            return true;
        }
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        // Never blocks (MSG_DONTWAIT), and leaves any byte in the socket for the next read
        // (MSG_PEEK).
        match socket2::SockRef::from(&self.stream)
            .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
        {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ),
        }
    }

    /// Turns the connection away without serving it, e.g. with a 503 when the server is
    /// too busy, and closes it. Never waits: it discards whatever request bytes have already
    /// arrived (so that closing does not become a reset that destroys the answer), writes
    /// `response` into the empty socket buffer, and shuts the connection down.
    pub fn refuse(mut self, response: &Response) {
        let mut scratch = [0u8; 4096];
        if self.stream.set_nonblocking(true).is_ok() {
            let mut discarded = 0;
            // Ends with WouldBlock as soon as nothing more is buffered.
            while let Ok(n @ 1..) = self.stream.read(&mut scratch) {
                discarded += n;
                if discarded >= LINGER_BYTES {
                    break;
                }
            }
            let _ = self.stream.set_nonblocking(false);
        }
        self.ctx.stats.rejected();
        response.encode(&mut self.out, &self.ctx.server_header, true, false, true);
        let sent = self.stream.write_all(&self.out);
        self.ctx.stats.responded(response.status);
        tracing::debug!(
            "conn #{} {} refused -> {} ({sent:?})",
            self.id,
            self.peer,
            response.status.code()
        );
        let _ = self.stream.shutdown(Direction::Write);
    }

    /// Sends the last bytes and closes the sending side. After an error (`drain`), the
    /// client may still be sending, so its input is read and discarded for a short while
    /// first; see [`LINGER`].
    fn close_gracefully(&mut self, drain: bool) {
        let _ = self.stream.shutdown(Direction::Write);
        if !drain || self.peer_closed {
            return;
        }
        let until = Instant::now() + LINGER;
        let mut scratch = [0u8; 4096];
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            let wait = until.saturating_duration_since(Instant::now());
            if self.set_read_timeout(wait).is_err() || wait.is_zero() {
                break;
            }
            // Blocks until the client sends more, closes, or the linger time is up.
            match self.stream.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    }
}

/// Serves every request of one connection, in order, on the calling thread, until the
/// connection closes. `threads` is the caller's group: the thread counts as busy while it
/// handles a request, and as idle while it waits for the client.
///
/// This is the whole job of the sequential server's thread, of each thread-per-connection
/// thread and of each pool worker. (The pipeline splits the same steps across threads.)
pub fn serve_connection(mut conn: Conn, threads: &crate::ThreadGroup) {
    loop {
        // Blocks until the client's next request is complete, or it leaves, or times out.
        let keep_going = match conn.next_request() {
            Next::Request(request) => {
                let _busy = threads.busy();
                let response = crate::handler::respond(&request, &conn.ctx);
                // Blocks until the kernel has taken the response.
                conn.send(&response)
            }
            // Bad input: the error response closes the connection.
            Next::Reject(response) => conn.send(&response),
            Next::Closed(why) => {
                tracing::debug!("conn #{} {} closed: {why:?}", conn.id, conn.peer);
                false
            }
        };
        if !keep_going {
            return;
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.pending.take().is_some() {
            // A request was read but never answered (its thread gave up on it).
            self.ctx.stats.request_finished();
        }
        self.ctx.unregister(self.id);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
