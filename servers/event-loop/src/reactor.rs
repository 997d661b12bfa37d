//! One event loop ("reactor"): a thread that watches many sockets with one `poll`.
//!
//! ```text
//!   loop {
//!       poll(timeout = until the nearest timer)        <- the only place the thread waits
//!       for each ready socket:
//!           listener  -> accept until WouldBlock, register each new connection
//!           connection -> read what is there, parse every complete request, answer
//!                         those that need no waiting, write all answers in one go
//!       for each timer that is due: a deadline (408, idle close) or a sleep's answer
//!       for each answer the helpers computed: write it
//!   }
//! ```
//!
//! Nothing in the loop may block: while one connection waits, every other connection of this
//! reactor waits with it. So sockets are non-blocking (a read or write that cannot proceed
//! returns `WouldBlock` instead of waiting), a `/sleep` becomes a timer, and a `/factor`
//! goes to the helper threads (unless `--offload off`, which is there to show what happens
//! otherwise: lab 12).
//!
//! Each connection is registered once, for readability and writability, edge-triggered: the
//! kernel reports a change (bytes arrived, room appeared in the send buffer) once, so the
//! loop must read until `WouldBlock` to see all of it. Linux reports writability again only
//! after a write found the send buffer full, so watching for it costs nothing while there is
//! nothing to write: in effect the loop waits for writability only while output is pending,
//! without a system call to change the registration per request.
//!
//! A connection's state is its `protocol::Connection` (what HTTP/1.1 needs) plus a little
//! here: whether its socket may have unread bytes (`readable`), and when its deadline entry
//! is scheduled in the timers.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use protocol::{route, Connection, Event, Response, Status, Ticket, Work};
use server_core::context::Registration;
use server_core::listener::accept_failure;
use server_core::queue::QueueSender;
use server_core::stats::ReactorSnapshot;
use server_core::{Context, ThreadGroup};
use slab::Slab;

use crate::offload::{self, Done, Reply, Task};
use crate::timers::{Timer, Timers};

/// The listening socket's token. Connections use their slab keys, which start at 0.
pub const LISTENER: Token = Token(usize::MAX - 1);
/// The waker's token: shutdown, or an answer from a helper.
pub const WAKER: Token = Token(usize::MAX);
/// Bytes read from a socket at once, into the reactor's one buffer.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per connection per turn: a client that pipelines without end cannot keep the loop
/// from its other connections.
const READS_PER_TURN: usize = 16;

/// A reactor's figures for `/stats`. Shared with the thread that writes `/stats`, so they
/// are atomics; each is read on its own and guards nothing, so relaxed is enough.
#[derive(Default)]
pub struct ReactorStats {
    pub connections: AtomicU64,
    pub accepted: AtomicU64,
    pub wakeups: AtomicU64,
    pub events: AtomicU64,
    pub timers: AtomicU64,
    pub offloaded: AtomicU64,
}

impl ReactorStats {
    pub fn snapshot(&self, name: &str) -> ReactorSnapshot {
        let wakeups = self.wakeups.load(Relaxed);
        let events = self.events.load(Relaxed);
        ReactorSnapshot {
            name: name.to_owned(),
            connections: self.connections.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            wakeups,
            events,
            events_per_wakeup: if wakeups == 0 {
                0.0
            } else {
                (events as f64 / wakeups as f64 * 100.0).round() / 100.0
            },
            timers: self.timers.load(Relaxed),
            offloaded: self.offloaded.load(Relaxed),
        }
    }
}

/// Where CPU work goes: the helpers' queue, or nowhere (computed on the loop).
pub enum Compute {
    Offload(QueueSender<Task>),
    Inline,
}

/// One accepted connection.
struct Conn {
    /// Declared before `stream`, so that the connection leaves the server's registry before
    /// its socket closes.
    _registration: Registration,
    stream: TcpStream,
    machine: Connection,
    peer: SocketAddr,
    /// Distinguishes this connection from a later one that reuses its slab slot, so that a
    /// timer or an answer meant for a closed connection is dropped.
    generation: u64,
    /// The kernel reported bytes (or the end) that have not been read to `WouldBlock` yet.
    readable: bool,
    /// The client has closed its sending side: once the queued bytes are read, a read
    /// returns the end of the stream.
    peer_closed: bool,
    /// When this connection's deadline entry in the timers is due, if it has one.
    scheduled: Option<Instant>,
    /// The sending side has been shut down.
    write_shut: bool,
    /// Told to the helpers computing for this connection when its client goes: shared with
    /// their tasks. Made at the first offloaded request, so an idle connection costs none.
    gone: Option<Arc<AtomicBool>>,
}

/// Everything one reactor owns. Only its own thread touches it, except the figures.
pub struct Reactor {
    pub name: String,
    poll: Poll,
    /// The listening socket, until shutdown begins (then dropped: no more accepts here).
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    timers: Timers,
    ctx: Arc<Context>,
    compute: Compute,
    /// Answers from the helpers, and the sending half the helpers are given.
    inbox: Receiver<Done>,
    inbox_sender: Sender<Done>,
    waker: Arc<Waker>,
    /// Set (once) by the shutdown hook, which then wakes the reactor. Relaxed loads are
    /// enough: the flag guards no data, and the waker's wake-up is what makes the reactor
    /// look at it promptly.
    stopping: Arc<AtomicBool>,
    stopped: bool,
    stats: Arc<ReactorStats>,
    generation: u64,
    buffer: Vec<u8>,
    /// The time, read once per wake-up: deadlines are milliseconds, and reading the clock
    /// for every step of every request would cost more than the precision is worth.
    now: Instant,
    /// Connections that stopped after their turn's reads with bytes still unread. The kernel
    /// will not report those bytes again (edge-triggered), so the loop comes back to these
    /// itself, after serving everyone else once.
    unfinished: Vec<(usize, u64)>,
}

impl Reactor {
    /// A reactor watching `listener`.
    pub fn new(
        name: String,
        listener: std::net::TcpListener,
        ctx: Arc<Context>,
        compute: Compute,
        stopping: Arc<AtomicBool>,
    ) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let (inbox_sender, inbox) = crossbeam_channel::unbounded();
        Ok(Reactor {
            name,
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            timers: Timers::default(),
            ctx,
            compute,
            inbox,
            inbox_sender,
            waker,
            stopping,
            stopped: false,
            stats: Arc::new(ReactorStats::default()),
            generation: 0,
            buffer: vec![0; READ_CHUNK],
            now: Instant::now(),
            unfinished: Vec::new(),
        })
    }

    /// The waker that interrupts this reactor's `poll`.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    pub fn stats(&self) -> Arc<ReactorStats> {
        Arc::clone(&self.stats)
    }

    /// Runs the loop until shutdown has closed every connection or the grace period is over.
    /// Returns how many requests were still unanswered when it gave up.
    pub fn run(mut self, group: &ThreadGroup) -> u64 {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if self.stopped {
                let grace_over = now >= self.ctx.shutdown.deadline(self.ctx.args.shutdown_timeout);
                if self.conns.is_empty() || grace_over {
                    return self.abandon_all();
                }
            }
            // Waits until a socket is ready, the nearest timer is due, or the waker is
            // woken. This is the only place the reactor waits.
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::warn!("{}: poll failed: {e}", self.name);
                    return self.abandon_all();
                }
            }
            let _busy = group.busy();
            self.now = Instant::now();
            self.stats.wakeups.fetch_add(1, Relaxed);
            if self.stopping.load(Relaxed) && !self.stopped {
                self.stop();
            }
            for event in events.iter() {
                self.stats.events.fetch_add(1, Relaxed);
                match event.token() {
                    LISTENER => self.accept(),
                    // Answers are collected below, after every event.
                    WAKER => {}
                    Token(key) => {
                        if let Some(conn) = self.conns.get_mut(key) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                conn.readable = true;
                            }
                            if event.is_read_closed() || event.is_error() {
                                conn.peer_closed = true;
                                if let Some(gone) = &conn.gone {
                                    gone.store(true, Relaxed);
                                }
                            }
                            if !self.drop_if_departed(key) {
                                self.advance(key);
                            }
                        }
                    }
                }
            }
            self.resume_unfinished();
            self.collect_answers();
            self.fire_timers();
            self.stats.timers.store(self.timers.len() as u64, Relaxed);
        }
    }

    /// How long `poll` may wait: until the nearest timer (none: as long as it takes). While
    /// stopping, at most until the grace period ends.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.unfinished.is_empty() {
            // Connections have bytes waiting: only look for new events, do not wait.
            return Some(Duration::ZERO);
        }
        let mut until = self.timers.next();
        if self.stopped {
            let grace = self.ctx.shutdown.deadline(self.ctx.args.shutdown_timeout);
            until = Some(until.map_or(grace, |t| t.min(grace)));
        }
        until.map(|t| t.saturating_duration_since(now))
    }

    /// Accepts every waiting connection (the listener is edge-triggered: until WouldBlock).
    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            // Never blocks: the socket is non-blocking.
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // Another reactor took it, or the client gave up before we got to it.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                // Shutdown shut the listening socket down under us (accept then fails with
                // EINVAL): nothing more to accept.
                Err(e) if self.stopping.load(Relaxed) || e.kind() == ErrorKind::InvalidInput => {
                    return
                }
                Err(e) => {
                    // Usually "too many open files": try again in 50 ms rather than spin,
                    // as connections close and free descriptors meanwhile. One line a
                    // second is enough, for all the reactors together.
                    let name = &self.name;
                    self.ctx.repeats.warn(accept_failure(&e), || {
                        format!("{name}: accept failed: {e}; retrying in 50 ms")
                    });
                    self.timers
                        .push(self.now + Duration::from_millis(50), Timer::Accept);
                    return;
                }
            };
            if let Err(e) = self.add(stream, peer) {
                tracing::debug!(
                    "{}: could not set up a connection from {peer}: {e}",
                    self.name
                );
            }
        }
    }

    /// Registers a freshly accepted connection.
    fn add(&mut self, mut stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
        // Each response goes out in one write; Nagle's algorithm would delay the second of
        // two pipelined responses until the first is acknowledged.
        stream.set_nodelay(true)?;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.generation += 1;
        let now = self.now;
        let registration = self.ctx.register_self_stopping();
        let mut machine = Connection::new(Arc::clone(&self.ctx.connection), now);
        if self.stopped {
            machine.stop();
        }
        entry.insert(Conn {
            _registration: registration,
            stream,
            machine,
            peer,
            generation: self.generation,
            // The request may already be there: read it without waiting for the event.
            readable: true,
            peer_closed: false,
            scheduled: None,
            write_shut: false,
            gone: None,
        });
        self.ctx.stats.accepted();
        self.stats.accepted.fetch_add(1, Relaxed);
        self.stats
            .connections
            .store(self.conns.len() as u64, Relaxed);
        self.advance(key);
        Ok(())
    }

    /// Drives connection `key` as far as it can go without waiting: reads what is there,
    /// handles every complete request, writes what is ready, and schedules its deadline.
    fn advance(&mut self, key: usize) {
        let now = self.now;
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            // Read once (up to 64 KiB): it usually holds every request the client sent.
            if conn.readable && conn.machine.wants_input() {
                // Never blocks: the socket is non-blocking.
                match conn.stream.read(&mut self.buffer) {
                    Ok(n) => {
                        conn.machine.receive(&self.buffer[..n], now);
                        // A read that did not fill the buffer took everything there was:
                        // whatever arrives later raises a new edge. Reading again only to
                        // hear `WouldBlock` would cost a system call per request. Not so
                        // once the client has closed its side: that edge came already, and
                        // the next read returns the end of the stream.
                        if n < self.buffer.len() && !conn.peer_closed {
                            conn.readable = false;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => conn.readable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return self.close(key),
                }
            }
            // Every complete request in what arrived, in order.
            loop {
                let Some(conn) = self.conns.get_mut(key) else {
                    return;
                };
                match conn.machine.poll(now) {
                    Event::Request(request, ticket) => {
                        self.ctx.stats.request_started();
                        let work = route(&request, &self.ctx.routes);
                        self.start_work(key, ticket, work, now);
                    }
                    Event::Reject(response, ticket) => {
                        let conn = &mut self.conns[key];
                        self.ctx.stats.responded(response.status);
                        conn.machine.respond(ticket, &response, now);
                    }
                    Event::Wait => break,
                    Event::Closed(why) => {
                        tracing::debug!("{}: {} closed: {why:?}", self.name, self.conns[key].peer);
                        return self.close(key);
                    }
                }
            }
            // Everything ready, in one write.
            if self.flush(key).is_err() {
                return self.close(key);
            }
            let Some(conn) = self.conns.get(key) else {
                return;
            };
            if !(conn.readable && conn.machine.wants_input()) {
                self.schedule(key);
                return;
            }
        }
        // Its turn is over but bytes are still waiting: come back after the others.
        self.unfinished.push((key, self.conns[key].generation));
        self.schedule(key);
    }

    /// Gives the connections that ran out of turn another one.
    fn resume_unfinished(&mut self) {
        for (key, generation) in std::mem::take(&mut self.unfinished) {
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.generation == generation)
            {
                self.advance(key);
            }
        }
    }

    /// Starts the work a request needs: answers it now, sets a timer, or hands it to a
    /// helper. Never waits (but see `--offload off`).
    fn start_work(&mut self, key: usize, ticket: Ticket, work: Work, now: Instant) {
        match work {
            Work::Respond(response) => self.respond(key, ticket, &response, now),
            Work::Stats => {
                let response = self.ctx.stats_response();
                self.respond(key, ticket, &response, now);
            }
            // The connection waits; the loop does not.
            Work::Sleep { delay, then } => self.timers.push(
                now + delay,
                Timer::Wake {
                    key,
                    generation: self.conns[key].generation,
                    ticket,
                    response: then,
                },
            ),
            Work::Compute(job) => match &self.compute {
                Compute::Offload(tasks) => {
                    let back = Reply {
                        inbox: self.inbox_sender.clone(),
                        waker: Arc::clone(&self.waker),
                        key,
                        generation: self.conns[key].generation,
                        ticket,
                    };
                    let gone = self.conns[key]
                        .gone
                        .get_or_insert_with(|| Arc::new(AtomicBool::new(false)))
                        .clone();
                    match offload::submit(tasks, Task { job, back, gone }) {
                        Ok(()) => {
                            self.stats.offloaded.fetch_add(1, Relaxed);
                        }
                        Err(back) => {
                            let mut busy = Response::error(
                                Status::ServiceUnavailable,
                                "every helper thread is busy and their queue is full; retry later",
                            );
                            busy.retry_after = Some(1);
                            self.respond(key, back.ticket, &busy, now);
                        }
                    }
                }
                // Blocks the whole loop for as long as the computation takes: every other
                // connection of this reactor waits meanwhile.
                // (Nothing can tell it the client left: the loop is not looking.)
                Compute::Inline => {
                    let response = job.run_caught(&|| true);
                    self.now = Instant::now();
                    self.respond(key, ticket, &response, self.now);
                }
            },
        }
    }

    /// Gives a request's answer to its connection, and counts it.
    fn respond(&mut self, key: usize, ticket: Ticket, response: &Response, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if self.stopping.load(Relaxed) {
            // Shutdown has begun, even if this reactor has not handled it yet: the answer
            // must say the connection closes.
            conn.machine.stop();
        }
        if conn.machine.peer_closed() {
            // The client closed its side while its request was handled: the lecture's
            // "left before the server could handle it". The answer is still written, for a
            // client that only half-closed, but it is not counted as served.
            self.ctx.stats.client_left();
            tracing::info!(
                "client {} left before the server could handle it ({})",
                conn.peer,
                self.name
            );
        } else {
            self.ctx.stats.responded(response.status);
        }
        self.ctx.stats.request_finished();
        conn.machine.respond(ticket, response, now);
    }

    /// Writes what the connection has to send until it is all written or the socket's
    /// buffer is full (then the rest goes when the socket reports room).
    fn flush(&mut self, key: usize) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        while !conn.machine.output().is_empty() {
            // Never blocks: the socket is non-blocking.
            match conn.stream.write(conn.machine.output()) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => conn.machine.wrote(n, self.now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if conn.machine.should_close_write() && !conn.write_shut {
            conn.write_shut = true;
            let _ = conn.stream.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// Makes sure the connection's deadline has a timer entry at or before it.
    fn schedule(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(deadline) = conn.machine.next_deadline() else {
            return;
        };
        // An entry at or before the deadline is enough: it will look again when it fires.
        if conn.scheduled.is_some_and(|at| at <= deadline) {
            return;
        }
        conn.scheduled = Some(deadline);
        self.timers.push(
            deadline,
            Timer::Deadline {
                key,
                generation: conn.generation,
            },
        );
    }

    /// Fires every timer that is due.
    fn fire_timers(&mut self) {
        let now = self.now;
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Deadline { key, generation } => {
                    let Some(conn) = self.conns.get_mut(key) else {
                        continue;
                    };
                    if conn.generation != generation || conn.scheduled != Some(at) {
                        // Stale: the connection is gone, or has a nearer entry.
                        continue;
                    }
                    conn.scheduled = None;
                    // The machine applies whatever deadline has passed (or none yet).
                    self.advance(key);
                }
                Timer::Wake {
                    key,
                    generation,
                    ticket,
                    response,
                } => {
                    if self
                        .conns
                        .get(key)
                        .is_some_and(|c| c.generation == generation)
                    {
                        self.respond(key, ticket, &response, now);
                        self.advance(key);
                    }
                }
                Timer::Accept => self.accept(),
            }
        }
    }

    /// Writes the answers the helpers computed.
    fn collect_answers(&mut self) {
        let now = self.now;
        // Never blocks: `try_iter` takes only what is there.
        let answers: Vec<Done> = self.inbox.try_iter().collect();
        for done in answers {
            if self
                .conns
                .get(done.key)
                .is_some_and(|c| c.generation == done.generation)
            {
                self.respond(done.key, done.ticket, &done.response, now);
                self.advance(done.key);
            } else {
                // The connection closed meanwhile: its request was counted finished then.
            }
        }
    }

    /// Shutdown: stop accepting, and let every connection finish what it owes. Idle ones
    /// close at once; a request that has arrived is answered with `Connection: close`.
    fn stop(&mut self) {
        self.stopped = true;
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if self.drop_if_departed(key) {
                continue;
            }
            if let Some(conn) = self.conns.get_mut(key) {
                // Take any request bytes already queued before deciding it is idle.
                conn.readable = true;
                conn.machine.stop();
            }
            self.advance(key);
        }
        tracing::info!(
            "{}: shutting down; {} connections still owe answers",
            self.name,
            self.conns.len()
        );
    }

    /// Once shutdown has begun, closes connection `key` if its client has left (closed its
    /// side) while answers are still owed to it: a `/sleep` waiting for its timer, a
    /// computation on a helper. Nobody would read those answers, and the reactor would only
    /// wait longer to stop; each is counted as a client that left, as a blocking server
    /// counts it. Before shutdown nothing changes: the answers are still given. Returns
    /// whether it closed the connection.
    fn drop_if_departed(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get(key) else {
            return false;
        };
        let owed = conn.machine.owed();
        if !(self.stopped && conn.peer_closed && owed > 0) {
            return false;
        }
        for _ in 0..owed {
            self.ctx.stats.client_left();
        }
        self.close(key);
        true
    }

    /// Closes connection `key`. Requests it still owed are counted finished (abandoned).
    fn close(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            if let Some(gone) = &conn.gone {
                gone.store(true, Relaxed);
            }
            for _ in 0..conn.machine.owed() {
                self.ctx.stats.request_finished();
            }
            let _ = self.poll.registry().deregister(&mut conn.stream);
            // Dropping `conn` unregisters it from the server, then closes the socket.
        }
        self.stats
            .connections
            .store(self.conns.len() as u64, Relaxed);
    }

    /// Gives up on every connection left (the grace period is over). Returns how many
    /// requests were abandoned.
    fn abandon_all(&mut self) -> u64 {
        let owed: usize = self.conns.iter().map(|(_, c)| c.machine.owed()).sum();
        if owed > 0 {
            tracing::warn!(
                "{}: {owed} requests still unanswered after the shutdown timeout",
                self.name
            );
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key);
        }
        owed as u64
    }
}
