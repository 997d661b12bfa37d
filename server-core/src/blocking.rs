//! The blocking driver: one client connection served by whichever thread holds it.
//!
//! A [`BlockingConn`] owns the socket and a `protocol::Connection`, the state machine that
//! knows HTTP/1.1. The driver is a thin loop over it: read from the socket and hand the
//! bytes over, ask what to do next, and write what the machine wants written. Every
//! architecture but the event loop uses it the same way:
//!
//! ```text
//!   conn.next_request()  --Request-->  work::answer()  --Response-->  conn.send()
//!          |                                                            |
//!          +--Reject(response): bad input, send it and close            +--> keep going?
//!          +--Closed: the client left, idled out, or the server stops
//! ```
//!
//! The architectures differ only in *which thread* runs each step. The sequential server
//! runs all of them on its one thread; the pipeline hands the `BlockingConn` from a receiver
//! to a handler to a sender. Because a `BlockingConn` is moved, never shared, at most one
//! thread touches a connection at a time, and its requests are answered in order.
//!
//! Each blocking read waits at most until the machine's next deadline (read timeout,
//! keep-alive timeout, linger), so the timeouts of `--read-timeout` and
//! `--keep-alive-timeout` hold without a timer thread. Writes wait at most `--read-timeout`
//! for a client that does not read.
//!
//! The life of one connection, as the driver sees it:
//!
//! 1. **Accepted.** [`BlockingConn::new`] sets the socket's options, registers the
//!    connection with the server (so that shutdown can find it), and counts it.
//! 2. **Between requests** (idle). `next_request` blocks in `read` until bytes come, with
//!    the keep-alive timeout (or, on a new connection, the read timeout) as its limit. This
//!    is the one wait that shutdown interrupts: the registry shuts the reading side down,
//!    and the read returns as if the client had closed.
//! 3. **A request arriving.** Still in `next_request`, each read waits until the request's
//!    next deadline: the read timeout, and the pace that `--header-timeout` and
//!    `--min-rate` set against slow clients. A request that has begun is let finish even at
//!    shutdown, and answered with `Connection: close`.
//! 4. **Handled.** The request goes to whichever thread does the work, with the
//!    connection or without it, as the architecture wants. Its [`Exchange`] counts it as in
//!    flight until it is answered.
//! 5. **Answered.** `send` writes the response (blocking until the kernel has taken it),
//!    and says whether the connection goes back to step 2 or has ended.
//!
//! What the driver does *not* decide is HTTP: how a request is framed, when a connection
//! may be kept alive, what a timeout answers. The machine decides all that, the same way for
//! every architecture, which is why a behaviour case passes or fails on all of them alike.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{Closed, Connection, Event, Request, Response, Ticket};

use crate::context::{Context, Registration};
use crate::threads::ThreadGroup;

/// The most a connection reads from its socket at once. A buffer on the stack of the
/// reading thread, so it costs nothing while the thread is not reading; 8 KiB holds a
/// typical request head, and longer input simply takes more reads.
const READ_CHUNK: usize = 8 * 1024;

/// What [`BlockingConn::next_request`] found. Whoever gets a request or a rejection owes
/// it an answer through [`BlockingConn::send`]: the [`Exchange`] inside says so to the
/// compiler (`#[must_use]`) and to `/stats` (it counts the request in flight).
#[derive(Debug)]
pub enum Next {
    /// A complete request to handle. Answer it with [`BlockingConn::send`].
    Request(Request, Exchange),
    /// Input that cannot be served. Send this response with [`BlockingConn::send`]; it
    /// closes the connection.
    Reject(Response, Exchange),
    /// Nothing more will come on this connection; drop it.
    Closed(Ended),
}

/// Why a connection ended without a request. Only the debug log shows it: for the server,
/// every kind of end means the same thing (drop the connection).
#[derive(Debug)]
pub enum Ended {
    /// As the protocol says: the client left, idled out, or the server stopped.
    Closed(Closed),
    /// The socket failed (reset by the client, for example).
    Failed(io::Error),
}

/// The claim to answer one request, with what its log line needs. While it exists, the
/// request counts as in flight in `/stats`: it is counted finished when it is answered, or
/// when it is dropped unanswered (at shutdown, say).
#[derive(Debug)]
#[must_use = "a request that is read must be answered with BlockingConn::send"]
pub struct Exchange {
    /// The machine's receipt for the request: it says where the answer goes among the
    /// client's pipelined requests.
    ticket: Ticket,
    /// When the request was complete, for the debug log's time taken.
    started: Instant,
    /// The request line, for the debug log only: `None` unless debug logging is on, so that
    /// serving a request does not cost an allocation for a line nobody reads.
    line: Option<String>,
    /// Counts the request in flight; absent for a rejection, which is no request.
    in_flight: Option<InFlight>,
}

/// One request in flight, counted in `/stats` from the moment it was read until this is
/// dropped. A guard rather than a call to make at the end: a request dropped unanswered
/// (its thread panicked, shutdown gave up on it) is counted finished all the same, so the
/// figure of requests in flight never drifts.
struct InFlight(Arc<Context>);

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("in flight")
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stats.request_finished();
    }
}

/// One accepted client connection. See the module documentation.
pub struct BlockingConn {
    /// The connection's place in the server's registry, where shutdown finds it.
    registration: Registration,
    /// The socket. Shared with the registry, which shuts its reading side down at shutdown
    /// to wake a thread blocked reading it; the socket closes when both have let go (the
    /// registry's share goes when `registration` drops).
    stream: Arc<TcpStream>,
    machine: Connection,
    /// The registry id, unique within the server, shown in logs as `conn #id`.
    pub id: u64,
    /// The client's address. It belongs to this connection alone: no other thread can see
    /// or overwrite it (the lecture's servers had exactly that bug).
    pub peer: SocketAddr,
    ctx: Arc<Context>,
    /// The read timeout currently set on the socket, to skip redundant system calls.
    timeout_set: Option<Duration>,
    /// The sending side has been shut down.
    write_shut: bool,
}

impl std::os::fd::AsRawFd for BlockingConn {
    /// The socket's descriptor, for an architecture that waits for it to become readable
    /// with `poll` (it never reads or writes through it).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.stream.as_raw_fd()
    }
}

impl std::os::fd::AsFd for BlockingConn {
    /// The socket, borrowed for as long as the connection lives: see [`BlockingConn::socket`].
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl std::fmt::Debug for BlockingConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn #{} {}", self.id, self.peer)
    }
}

impl BlockingConn {
    /// Wraps an accepted stream (in blocking mode): registers it with the context, counts it
    /// and sets its socket options. The acceptor calls it; so does an architecture that
    /// accepts by itself (thread-per-request, whose main thread watches idle connections).
    pub fn new(stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) -> io::Result<BlockingConn> {
        // Responses go out in one write each; without this, Nagle's algorithm would hold
        // back the second of two pipelined responses until the first one is acknowledged.
        stream.set_nodelay(true)?;
        // A client that reads nothing cannot hold a thread in `write` for longer than the
        // read timeout: the same bound as for sending a request.
        stream.set_write_timeout(Some(ctx.args.read_timeout.max(Duration::from_millis(1))))?;
        let stream = Arc::new(stream);
        // Registered (so shutdown can wake it) and counted only once it is set up: a
        // connection that failed above was never the server's.
        let registration = ctx.register(&stream);
        ctx.stats.accepted();
        Ok(BlockingConn {
            id: registration.id(),
            registration,
            machine: Connection::new(Arc::clone(&ctx.connection), Instant::now()),
            stream,
            peer,
            ctx,
            timeout_set: None,
            write_shut: false,
        })
    }

    /// The socket, borrowed, for a thread that waits for it with `poll` beside something
    /// else (it never reads or writes through it).
    pub fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.stream.as_fd()
    }

    /// Whether shutdown shut this connection's reading side: from then on the socket reads
    /// (and polls) as if the client had closed, whether or not it is there.
    pub fn read_shut_by_server(&self) -> bool {
        self.registration.read_shut_by_server()
    }

    /// The server context this connection belongs to: a handler that has the connection
    /// but not the context (a pool's worker) reaches the settings and counters through it.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// When the connection's next timeout falls due (read, keep-alive, linger), if it has
    /// one. A thread that waits for the connection to become readable without reading it
    /// (thread-per-request's main thread) must hand it back to [`BlockingConn::next_request`]
    /// by then, which applies the timeout as every other driver does.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.machine.next_deadline()
    }

    /// Whether bytes already read wait to be parsed (a request pipelined behind the last):
    /// [`BlockingConn::next_request`] has work without waiting for the socket. A thread
    /// that watches sockets for readability must not wait for this one then: the bytes are
    /// already out of the socket, and no readiness event will ever announce them.
    pub fn has_unread_input(&self) -> bool {
        self.machine.has_unread_input()
    }

    /// Reads the next request. Blocks until a whole request has arrived, the client closes,
    /// or a deadline of the connection passes (see the module documentation).
    pub fn next_request(&mut self) -> Next {
        // Each turn asks the machine what to do, and does the one thing it asks: hand out a
        // request (or a rejection), end, or wait for bytes. Waiting is the only blocking
        // step, and it is bounded by the machine's next deadline.
        loop {
            let now = Instant::now();
            // Shutdown: an idle connection ends (after taking what is already queued), a
            // request that has begun is let finish, and nothing is kept alive after it.
            if self.ctx.shutdown.is_triggered() {
                if self.machine.is_idle() {
                    // Bytes of a request may already be queued in the socket: take them
                    // first, so that a request that has arrived is answered rather than
                    // reset by closing on unread input.
                    if let Err(e) = self.take_what_is_queued() {
                        return Next::Closed(Ended::Failed(e));
                    }
                }
                self.machine.stop();
            }
            match self.machine.poll(now) {
                Event::Request(request, ticket) => {
                    // No longer idle: from here on shutdown lets this request finish.
                    self.registration.set_idle(false);
                    self.ctx.stats.request_started();
                    // The debug log's request line, made only if it will be written.
                    let line = tracing::enabled!(tracing::Level::DEBUG)
                        .then(|| format!("{} {}", request.method.as_str(), request.path));
                    let exchange = Exchange {
                        ticket,
                        started: now,
                        line,
                        in_flight: Some(InFlight(Arc::clone(&self.ctx))),
                    };
                    return Next::Request(request, exchange);
                }
                Event::Reject(response, ticket) => {
                    let exchange = Exchange {
                        ticket,
                        started: now,
                        line: None,
                        in_flight: None,
                    };
                    return Next::Reject(response, exchange);
                }
                Event::Closed(why) => return Next::Closed(Ended::Closed(why)),
                Event::Wait => {
                    // A `100 Continue` may be waiting to go out before the body can come.
                    if let Err(e) = self.flush() {
                        return Next::Closed(Ended::Failed(e));
                    }
                    if !self.machine.wants_input() {
                        // Nothing to read and nothing owed: the machine is done.
                        return Next::Closed(Ended::Closed(Closed::Finished));
                    }
                    // Shutdown wakes a connection only while it is between requests.
                    self.registration.set_idle(self.machine.is_idle());
                    if let Err(e) = self.fill() {
                        return Next::Closed(Ended::Failed(e));
                    }
                }
            }
        }
    }

    /// Writes the response to a request (or a rejection) that [`BlockingConn::next_request`]
    /// returned. Blocks until the kernel has taken the whole response, or the write timeout
    /// passes if the client does not read.
    ///
    /// Returns `true` if the connection stays open for another request. When it returns
    /// `false` the connection has been closed (lingering after an error) and should be
    /// dropped.
    pub fn send(&mut self, exchange: Exchange, response: &Response) -> bool {
        let now = Instant::now();
        // A client that closed its side while its request was handled: the lecture's
        // "left before the server could handle it". The answer is still written, because a
        // client that only half-closed is still reading, but it does not count as served.
        let left = exchange.in_flight.is_some() && self.peer_has_left();
        if left {
            self.machine.receive(&[], now);
            self.ctx.stats.client_left();
            tracing::info!(
                "client {} left before the server could handle it (conn #{})",
                self.peer,
                self.id
            );
        }
        // Shutdown began while the request was handled: the answer says the connection
        // closes (`Connection: close`), and nothing is read after it.
        if self.ctx.shutdown.is_triggered() {
            self.machine.stop();
        }
        let Exchange {
            ticket,
            started,
            line,
            in_flight,
        } = exchange;
        // The machine encodes the answer (status line, headers, body) into its output, in
        // the order of the requests; then it is written, blocking until the kernel has it.
        self.machine.respond(ticket, response, now);
        let written = self.flush();
        if !left && written.is_ok() {
            self.ctx.stats.responded(response.status);
        }
        // The request is finished whether or not the client got the answer.
        drop(in_flight);
        // The exchange's log line (debug level): who, what, which status, how long, and
        // which thread or process handled it.
        match &line {
            Some(line) => tracing::debug!(
                "conn #{} {} \"{line}\" -> {} in {:?}{}",
                self.id,
                self.peer,
                response.status.code(),
                started.elapsed(),
                response
                    .handled_by
                    .as_ref()
                    .map(|t| format!(" (handled by {t})"))
                    .unwrap_or_default(),
            ),
            None => tracing::debug!(
                "conn #{} {} -> {}",
                self.id,
                self.peer,
                response.status.code()
            ),
        }
        if let Err(e) = written {
            tracing::debug!(
                "conn #{} {}: could not send the response: {e}",
                self.id,
                self.peer
            );
            return false;
        }
        if self.machine.should_close_write() || !self.machine.wants_input() {
            self.finish();
            return false;
        }
        true
    }

    /// Turns the connection away without serving it, e.g. with a 503 when the server is
    /// too busy, and closes it. Used by the pre-fork pool's `--when-full reject`: its main
    /// thread must never wait on one client while others queue behind it. Never waits: it discards whatever request bytes have already
    /// arrived (so that closing does not become a reset that destroys the answer), writes
    /// `response` into the empty socket buffer, and shuts the connection down.
    pub fn refuse(self, response: &Response) {
        let mut scratch = [0u8; 4096];
        if self.stream.set_nonblocking(true).is_ok() {
            let mut discarded = 0;
            // Ends with WouldBlock as soon as nothing more is buffered.
            while let Ok(n @ 1..) = (&*self.stream).read(&mut scratch) {
                discarded += n;
                if discarded >= protocol::connection::LINGER_BYTES {
                    break;
                }
            }
            let _ = self.stream.set_nonblocking(false);
        }
        self.ctx.stats.rejected();
        let mut out = Vec::new();
        response.encode(
            &mut out,
            &self.ctx.connection.server_header,
            true,
            false,
            true,
        );
        let sent = (&*self.stream).write_all(&out);
        if sent.is_ok() {
            self.ctx.stats.responded(response.status);
        }
        tracing::debug!(
            "conn #{} {} refused -> {} ({sent:?})",
            self.id,
            self.peer,
            response.status.code()
        );
        let _ = self.stream.shutdown(Direction::Write);
    }

    /// Drives the machine to its end: writes what is left, shuts the sending side, and
    /// lingers after an error (reading and discarding for a short while). Every wait in it
    /// is bounded: a write by the write timeout, a read by the machine's linger deadline,
    /// so a connection that ends cannot hold its thread indefinitely.
    fn finish(&mut self) {
        loop {
            match self.machine.poll(Instant::now()) {
                Event::Closed(_) => return,
                // A request or rejection cannot come once the connection is finishing;
                // if one did, dropping its claim is all there is to do.
                Event::Request(..) | Event::Reject(..) => return,
                // Lingering: whatever the client still sends is read and thrown away
                // (bounded by the linger time and size), so that closing does not turn
                // into a reset that would destroy the error answer before it is read.
                Event::Wait => {
                    if self.flush().is_err() || !self.machine.wants_input() {
                        return;
                    }
                    if self.fill().is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Writes everything the machine has to send. Blocks until the kernel has taken it all,
    /// or the write timeout passes. Shuts the sending side when the machine says so.
    fn flush(&mut self) -> io::Result<()> {
        while !self.machine.output().is_empty() {
            // Blocks until the kernel takes some bytes, or the write timeout passes.
            match (&*self.stream).write(self.machine.output()) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.machine.wrote(n, Instant::now()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // The last answer is out and the connection ends: a FIN tells the client so, while
        // the reading side stays open for the linger.
        if self.machine.should_close_write() && !self.write_shut {
            self.write_shut = true;
            let _ = self.stream.shutdown(Direction::Write);
        }
        Ok(())
    }

    /// Reads what the client has sent, waiting at most until the machine's next deadline,
    /// and hands it to the machine. A timeout is not an error: the next poll applies it.
    fn fill(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let wait = self
            .machine
            .next_deadline()
            .map_or(self.ctx.args.read_timeout, |d| {
                d.saturating_duration_since(now)
            });
        // A deadline that has passed already: nothing to wait for, the machine applies it.
        if wait.is_zero() {
            return Ok(());
        }
        self.set_read_timeout(wait)?;
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            // Blocks until the client sends something, closes, or `wait` passes.
            match (&*self.stream).read(&mut chunk) {
                Ok(n) => {
                    self.machine.receive(&chunk[..n], Instant::now());
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Hands the machine whatever the client has already sent, without waiting. The
    /// request it may complete is then answered (with `Connection: close`) rather than lost
    /// when the idle connection is closed. Used only
    /// at shutdown, so the two extra system calls to switch modes do not matter.
    fn take_what_is_queued(&mut self) -> io::Result<()> {
        self.stream.set_nonblocking(true)?;
        let mut chunk = [0u8; READ_CHUNK];
        let mut taken = 0;
        let result = loop {
            // Bounded: a client streaming bytes at shutdown cannot keep this thread here.
            if taken >= protocol::connection::OUTPUT_HIGH_WATER {
                break Ok(());
            }
            // Never blocks: returns what is queued, 0 at the end, or WouldBlock.
            match (&*self.stream).read(&mut chunk) {
                Ok(n) => {
                    self.machine.receive(&chunk[..n], Instant::now());
                    if n == 0 {
                        break Ok(());
                    }
                    taken += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.stream.set_nonblocking(false)?;
        result
    }

    /// Sets the socket's read timeout to `wait` (at least a millisecond: zero would mean
    /// "wait forever" to the kernel). Remembers the value, because most reads of a
    /// connection wait for the same deadline, and a system call per read would be waste.
    fn set_read_timeout(&mut self, wait: Duration) -> io::Result<()> {
        let wait = wait.max(Duration::from_millis(1));
        if self.timeout_set != Some(wait) {
            self.stream.set_read_timeout(Some(wait))?;
            self.timeout_set = Some(wait);
        }
        Ok(())
    }

    /// Whether the client has closed its sending side or reset the connection, judged
    /// without waiting: a peek at the socket that returns end-of-stream or a reset. Unread
    /// request bytes (a pipelined request) mean the client is still there.
    pub fn peer_has_left(&self) -> bool {
        // Shutdown shut the reading side: from then on the socket reads as closed whether
        // or not the client is there, so nothing can tell. It is taken to be there: its
        // answer is given (as it would have been before shutdown), never dropped unread.
        if self.read_shut_by_server() {
            return false;
        }
        // The machine may already know: a read returned the end of the stream.
        if self.machine.peer_closed() {
            return true;
        }
        // Otherwise ask the socket. A computation calls this between chunks of work, so
        // it must be cheap: one system call that never waits and changes nothing.
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        // Never blocks (MSG_DONTWAIT), and leaves any byte in the socket for the next read
        // (MSG_PEEK).
        match socket2::SockRef::from(&*self.stream)
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
}

/// Serves every request of one connection, in order, on the calling thread, until the
/// connection closes. `threads` is the caller's group: the thread counts as busy while it
/// handles a request, and as idle while it waits for the client.
///
/// This is the whole job of the sequential server's thread, of each thread-per-connection
/// thread and of each pool worker. (The pipeline splits the same steps across threads.)
///
/// The thread is held for the connection's whole life, idle time included: that is the
/// cost these three designs pay, and what `/stats` shows as threads alive but not busy. A
/// computation looks at the socket between chunks of work and stops if the client has
/// gone; at shutdown a sleep does too (see [`crate::work::answer_while`]).
pub fn serve_connection(mut conn: BlockingConn, threads: &ThreadGroup) {
    loop {
        // Blocks until the client's next request is complete, or it leaves, or times out.
        let keep_going = match conn.next_request() {
            Next::Request(request, exchange) => {
                let _busy = threads.busy();
                // Computes while the client is still there (looked at between chunks).
                let response =
                    crate::work::answer_while(&request, &conn.ctx, &|| !conn.peer_has_left());
                // Blocks until the kernel has taken the response.
                conn.send(exchange, &response)
            }
            // Bad input: the error response closes the connection.
            Next::Reject(response, exchange) => conn.send(exchange, &response),
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
