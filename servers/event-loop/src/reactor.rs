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
use std::sync::{Arc, OnceLock};
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

use crate::timers::{Timer, Timers};
use server_core::offload::{self, WakeUp};

/// A computation for the helpers (see `server_core::offload`), its answer addressed to a
/// connection of this reactor by its slab key and generation.
pub type Task = offload::Task<(usize, u64)>;
type Reply = offload::Reply<(usize, u64)>;
type Done = offload::Done<(usize, u64)>;

/// The listening socket's token. Connections use their slab keys, which start at 0.
///
/// A token is how `poll` says *which* source is ready: each registration carries one, and
/// each event returns it. The two fixed ones sit at the top of the range, where a slab key
/// (the index of a connection in `conns`) can never reach.
pub const LISTENER: Token = Token(usize::MAX - 1);
/// The waker's token: shutdown, or an answer from a helper.
pub const WAKER: Token = Token(usize::MAX);
/// Bytes read from a socket at once, into the reactor's one buffer.
///
/// One buffer per reactor, not per connection: a connection's bytes are handed to its
/// `protocol::Connection` at once, which keeps only what it has not parsed yet, so an idle
/// connection costs no buffer here at all.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per connection per turn: a client that pipelines without end cannot keep the loop
/// from its other connections.
///
/// Fairness in an event loop is the loop's own job: the kernel reports a ready socket, and
/// nothing stops the loop from serving that one socket forever. Sixteen reads of 64 KiB is
/// plenty for any honest client; the rest waits for the next turn (see `unfinished`).
const READS_PER_TURN: usize = 16;

/// A reactor's figures for `/stats`. Shared with the thread that writes `/stats`, so they
/// are atomics; each is read on its own and guards nothing, so relaxed is enough.
#[derive(Default)]
pub struct ReactorStats {
    /// Connections this reactor holds now.
    pub connections: AtomicU64,
    /// Connections it has accepted since it started.
    pub accepted: AtomicU64,
    /// Times `poll` returned: how often the thread woke up.
    pub wakeups: AtomicU64,
    /// Events handled. Events per wake-up is what an event loop is for: many sockets served
    /// for one system call that waits.
    pub events: AtomicU64,
    /// Timers pending now (deadlines and sleeping requests).
    pub timers: AtomicU64,
    /// Computations handed to the helpers.
    pub offloaded: AtomicU64,
    /// The CPU the reactor's thread was pinned to (`--pin on`), set once by that thread
    /// when pinning succeeded; never set otherwise.
    pub cpu: OnceLock<usize>,
}

impl ReactorStats {
    /// The figures as `/stats` shows them, under the reactor's name. Each is read on its
    /// own, so two of them may be a few events apart.
    pub fn snapshot(&self, name: &str) -> ReactorSnapshot {
        let wakeups = self.wakeups.load(Relaxed);
        let events = self.events.load(Relaxed);
        ReactorSnapshot {
            name: name.to_owned(),
            connections: self.connections.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            cpu: self.cpu.get().map(|&cpu| cpu as u64),
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
    /// `--offload on`: into the helpers' bounded queue, with `try_push` only. The queue
    /// holds `--offload-queue` computations; when it is full, the request gets 503 at once,
    /// because waiting for room would stop the loop.
    Offload(QueueSender<Task>),
    /// `--offload off`: on the loop itself, which stops every other connection of the
    /// reactor meanwhile (lab 12 shows it).
    Inline,
}

/// One accepted connection.
struct Conn {
    /// The connection's place in the server's registry: it counts as open in `/stats` while
    /// this lives. The registry never touches the socket (the reactor stops its own
    /// connections at shutdown), so dropping the two in either order is fine.
    _registration: Registration,
    /// The socket, non-blocking: a read or write that cannot proceed says `WouldBlock`.
    stream: TcpStream,
    /// What HTTP/1.1 needs to know about the connection: the bytes not parsed yet, the
    /// requests owed an answer and in which order, the answers not written yet, the
    /// deadlines. The same machine every other architecture drives.
    machine: Connection,
    /// The client's address, for the log.
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
    /// `reactor-N`: the thread's name too, and the prefix of the reactor's log lines.
    pub name: String,
    /// The reactor's own epoll instance: every socket of the reactor is registered here,
    /// and waiting on it is the only blocking call the reactor makes.
    poll: Poll,
    /// The listening socket, until shutdown begins (then dropped: no more accepts here).
    listener: Option<TcpListener>,
    /// The connections, by slab key (their token). A slab reuses the keys of closed
    /// connections, so a key stays small and a lookup is an index; `generation` tells a
    /// reused key from the connection that had it before.
    conns: Slab<Conn>,
    /// Deadlines and sleeping requests, nearest first (see `timers.rs`).
    timers: Timers,
    /// The server's shared state: settings, counters, the shutdown flag.
    ctx: Arc<Context>,
    compute: Compute,
    /// Answers from the helpers, and the sending half the helpers are given. Unbounded, but
    /// it never holds more answers than computations were accepted into the offload queue
    /// and are still in flight; only this reactor takes from it, never waiting.
    inbox: Receiver<Done>,
    inbox_sender: Sender<Done>,
    /// Interrupts `poll` from another thread: the helpers after an answer, the shutdown
    /// hook. Shared with them, hence the `Arc`.
    waker: Arc<Waker>,
    /// What a helper calls once its answer is in `inbox`: wakes this reactor's `poll`
    /// through `waker`.
    wake_up: WakeUp,
    /// Set (once) by the shutdown hook, which then wakes the reactor. Relaxed loads are
    /// enough: the flag guards no data, and the waker's wake-up is what makes the reactor
    /// look at it promptly.
    stopping: Arc<AtomicBool>,
    /// This reactor has handled shutdown: it accepts no more, and ends once its
    /// connections are gone (or the grace period is over).
    stopped: bool,
    /// The figures for `/stats`, shared with the thread that writes `/stats`.
    stats: Arc<ReactorStats>,
    /// The last generation given to a connection (see `Conn::generation`).
    generation: u64,
    /// The one read buffer (see `READ_CHUNK`).
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
    /// A reactor watching `listener`. Creates its `poll` and its waker, makes the listening
    /// socket non-blocking (an accept must never wait) and registers it, readable only.
    /// The answers of the helpers come back through `inbox`, an unbounded channel: it never
    /// holds more than the computations in flight, which the offload queue bounds.
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
        let wake_up: WakeUp = {
            let waker = Arc::clone(&waker);
            // Fails only if the poll is gone (the reactor has ended): nobody to wake then.
            Arc::new(move || {
                let _ = waker.wake();
            })
        };
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
            wake_up,
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

    /// Pins the calling thread, the reactor's own, to `cpu` (`--pin on`), first thing, so
    /// that its poll, slab and buffer are allocated on that CPU's memory node, and records
    /// the CPU for `/stats`. A reactor that cannot be pinned (the CPU was taken out of the
    /// process's set meanwhile) says so once and runs wherever the kernel places it:
    /// pinning is a placement hint, not something serving depends on.
    pub fn pin_to(&self, cpu: usize) {
        match crate::pin::pin_to(cpu) {
            Ok(()) => {
                let _ = self.stats.cpu.set(cpu);
            }
            Err(e) => tracing::warn!(
                "{}: could not pin to CPU {cpu} ({e}); the kernel places it instead",
                self.name
            ),
        }
    }

    /// The reactor's figures, for the `/stats` writer.
    pub fn stats(&self) -> Arc<ReactorStats> {
        Arc::clone(&self.stats)
    }

    /// Runs the loop until shutdown has closed every connection or the grace period is over.
    /// Returns how many requests were still unanswered when it gave up.
    ///
    /// Each turn of the loop has the same steps, in this order:
    ///
    /// 1. when stopping, end if nothing is left (or the grace period is over);
    /// 2. wait in `poll`, at most until the nearest timer;
    /// 3. handle shutdown if it began meanwhile;
    /// 4. handle each event: the listener (accept), or a connection (read, parse, answer);
    /// 5. give the connections that ran out of turn their next turn;
    /// 6. write the answers the helpers computed;
    /// 7. fire the timers that are due.
    pub fn run(mut self, group: &ThreadGroup) -> u64 {
        // Up to 1024 events per wake-up; more wait for the next `poll`, which returns at
        // once then.
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            // Step 1. A stopping reactor ends when its last connection has gone: every
            // answer owed was written (or its client left). Past the grace period it gives
            // up on the rest; the deadline is counted from the moment shutdown began, for
            // every reactor alike.
            if self.stopped {
                let grace_over = now >= self.ctx.shutdown.deadline(self.ctx.args.shutdown_timeout);
                if self.conns.is_empty() || grace_over {
                    return self.abandon_all();
                }
            }
            // Step 2. Waits until a socket is ready, the nearest timer is due, or the waker
            // is woken. This is the only place the reactor waits.
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                // A signal interrupting the wait is no failure: the turn simply goes on
                // with no events. Anything else means the reactor cannot wait any more,
                // and a reactor that cannot wait cannot serve: it gives up its connections.
                if e.kind() != ErrorKind::Interrupted {
                    tracing::warn!("{}: poll failed: {e}", self.name);
                    return self.abandon_all();
                }
            }
            // The thread is busy from here until it waits again: `/stats` shows a reactor's
            // busy share the way it shows a worker's.
            let _busy = group.busy();
            self.now = Instant::now();
            self.stats.wakeups.fetch_add(1, Relaxed);
            // Step 3: the shutdown hook raised the flag and woke us.
            if self.stopping.load(Relaxed) && !self.stopped {
                self.stop();
            }
            // Step 4.
            for event in events.iter() {
                self.stats.events.fetch_add(1, Relaxed);
                match event.token() {
                    LISTENER => self.accept(),
                    // Answers are collected below, after every event.
                    WAKER => {}
                    Token(key) => {
                        // An event for a key that is free again (the connection closed
                        // earlier in this turn) is simply stale.
                        if let Some(conn) = self.conns.get_mut(key) {
                            // Edge-triggered: this event is the only news of these bytes,
                            // so remember that the socket has some until a read says not.
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                conn.readable = true;
                            }
                            // The client closed its side (or the socket failed): a helper
                            // computing for it may stop, and at shutdown what it is owed is
                            // not worth waiting for.
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
            // Steps 5 to 7. Answers and timers come after the events, so that one turn's
            // reads are all parsed before the answers they may be waiting behind are written.
            self.resume_unfinished();
            self.collect_answers();
            self.fire_timers();
            self.stats.timers.store(self.timers.len() as u64, Relaxed);
        }
    }

    /// How long `poll` may wait: until the nearest timer (none: as long as it takes). While
    /// stopping, at most until the grace period ends.
    ///
    /// This is how timeouts work without a thread per connection: every deadline of every
    /// connection (read timeout, keep-alive, linger) and every sleeping request is a timer,
    /// and the reactor never sleeps past the nearest one.
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
    ///
    /// With `--accept shared` every reactor is woken for each newcomer; the one that accepts
    /// first gets it, the others find `WouldBlock` and go back to waiting. A reactor that is
    /// busy elsewhere simply accepts later, which spreads the load by itself.
    fn accept(&mut self) {
        // Until `WouldBlock`: the edge came once for all the clients waiting in the
        // backlog, so stopping earlier would leave the rest there until the next newcomer.
        loop {
            // No listener any more: shutdown has begun for this reactor.
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
            // A connection that cannot be set up (registering it failed) is dropped, which
            // closes it: the client sees a close, and may retry.
            if let Err(e) = self.add(stream, peer) {
                tracing::debug!(
                    "{}: could not set up a connection from {peer}: {e}",
                    self.name
                );
            }
        }
    }

    /// Registers a freshly accepted connection: with this reactor's `poll` (readable and
    /// writable, edge-triggered: see the module documentation), with the server (counted as
    /// open; the reactor stops it itself at shutdown), and in `conns` under a new
    /// generation. Then it is driven once, since its first request may already be there.
    fn add(&mut self, mut stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
        // Each response goes out in one write; Nagle's algorithm would delay the second of
        // two pipelined responses until the first is acknowledged.
        stream.set_nodelay(true)?;
        // The key the connection will have is known before it is inserted, so the socket is
        // registered under it first: if that fails, nothing has to be undone.
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
        // The same state machine every other architecture drives, with the same settings.
        let mut machine = Connection::new(Arc::clone(&self.ctx.connection), now);
        if self.stopped {
            // Accepted during shutdown (another reactor's listener was still open): it may
            // finish a request that has arrived, but is not kept alive.
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
        // Counted twice: in the server's totals, and in this reactor's own figures, which
        // show how evenly the reactors share the newcomers.
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
    ///
    /// It is called for every reason a connection may move: an event on its socket, an
    /// answer from a helper, a timer, shutdown. Whatever the reason, it does everything that
    /// can be done now, so no caller needs to know what exactly changed. The connection may
    /// be closed on the way: every step looks it up again by key.
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
                    // A request: decide what it needs (never waiting) and start that.
                    Event::Request(request, ticket) => {
                        self.ctx.stats.request_started();
                        let work = route(&request, &self.ctx.routes);
                        self.start_work(key, ticket, work, now);
                    }
                    // Bad input: its error response needs no work, only writing.
                    Event::Reject(response, ticket) => {
                        let conn = &mut self.conns[key];
                        self.ctx.stats.responded(response.status);
                        conn.machine.respond(ticket, &response, now);
                    }
                    // Nothing more to parse until more bytes (or time) arrive.
                    Event::Wait => break,
                    // The machine is done with the connection: nothing more to read or send.
                    Event::Closed(why) => {
                        tracing::debug!("{}: {} closed: {why:?}", self.name, self.conns[key].peer);
                        return self.close(key);
                    }
                }
            }
            // Everything ready, in one write: all the answers of a pipelined batch go out
            // together, one system call for the lot. A write that fails (the client reset
            // the connection) ends it.
            if self.flush(key).is_err() {
                return self.close(key);
            }
            let Some(conn) = self.conns.get(key) else {
                return;
            };
            // Nothing left to read (or nothing wanted): its deadline is the next thing that
            // can happen to it without an event.
            if !(conn.readable && conn.machine.wants_input()) {
                self.schedule(key);
                return;
            }
        }
        // Its turn is over but bytes are still waiting: come back after the others. No event
        // will say so (the edge has been reported), so the reactor must remember it itself,
        // and `poll_timeout` does not wait while anything is in this list.
        self.unfinished.push((key, self.conns[key].generation));
        self.schedule(key);
    }

    /// Gives the connections that ran out of turn another one. The list is taken whole, so a
    /// connection that runs out of turn again goes into a new list, for the next turn of the
    /// loop: every other connection gets its turn in between. An entry for a connection
    /// closed meanwhile (its key maybe reused) is recognised by its generation and skipped.
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
            // The connection waits; the loop does not. The answer is ready now and waits in
            // the timer; when it fires, it is given to the connection like any other (if
            // the connection is still there: the generation says).
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
                    // Where the answer goes: this reactor's inbox, with a wake-up, tagged
                    // with the connection's key and generation so that an answer for a
                    // connection that has closed meanwhile is recognised and dropped.
                    let back = Reply {
                        inbox: self.inbox_sender.clone(),
                        wake: Arc::clone(&self.wake_up),
                        to: (key, self.conns[key].generation),
                        ticket,
                    };
                    // The flag the helper looks at between chunks of work, set when the
                    // client leaves (see `Conn::gone`).
                    let gone = self.conns[key]
                        .gone
                        .get_or_insert_with(|| Arc::new(AtomicBool::new(false)))
                        .clone();
                    // Never blocks: a full queue is an answer now (503), not a wait.
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

    /// Gives a request's answer to its connection, and counts it. The answer goes into the
    /// machine's output in the order of the requests (the ticket says where), so a
    /// pipelined request answered early by a helper waits for the ones before it; it is
    /// written by the next `flush` of the connection (`advance` does one).
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
    ///
    /// A client that reads slowly therefore costs the reactor nothing while it does not
    /// read: the answer waits in the machine's output, and the writable event brings the
    /// connection back here. (The machine gives up on a client that reads nothing for the
    /// read timeout: see `protocol::connection`.)
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
        // Everything owed is out and the connection ends: a FIN tells the client so, while
        // its last bytes are still read (lingering after an error).
        if conn.machine.should_close_write() && !conn.write_shut {
            conn.write_shut = true;
            let _ = conn.stream.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// Makes sure the connection's deadline has a timer entry at or before it.
    ///
    /// A deadline moves with every byte (the pace against slow clients) and every request
    /// (keep-alive), and pushing an entry each time would fill the heap with stale ones. So
    /// a connection keeps one entry, at or before its deadline; when that entry fires, the
    /// machine applies whatever is due, and `advance` schedules the next one.
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

    /// Fires every timer that is due: a connection's deadline (its machine applies it: 408,
    /// an idle close, the end of a linger), a sleeping request's answer, or another try at
    /// accepting after `accept` failed. A timer for a connection that has closed meanwhile,
    /// or whose slab key now belongs to a newer connection, is recognised by its generation
    /// and dropped.
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
                // The retry after a failed accept: the clients still in the backlog raise
                // no new event, so only this timer brings the reactor back to them.
                Timer::Accept => self.accept(),
            }
        }
    }

    /// Writes the answers the helpers computed. A helper sends its answer to the inbox and
    /// then wakes the reactor, so an answer is here by the time the wake-up is handled; one
    /// that arrives later brings its own wake-up.
    fn collect_answers(&mut self) {
        let now = self.now;
        // Never blocks: `try_iter` takes only what is there.
        let answers: Vec<Done> = self.inbox.try_iter().collect();
        for done in answers {
            let (key, generation) = done.to;
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.generation == generation)
            {
                self.respond(key, done.ticket, &done.response, now);
                self.advance(key);
            } else {
                // The connection closed meanwhile: its request was counted finished then.
            }
        }
    }

    /// Shutdown: stop accepting, and let every connection finish what it owes. Idle ones
    /// close at once; a request that has arrived is answered with `Connection: close`.
    /// The loop then goes on until the last connection is gone or the grace period is over
    /// (see `run`): a reactor has no other thread to wait for its connections.
    fn stop(&mut self) {
        self.stopped = true;
        // Dropping the listener here closes this reactor's copy of it; with `--accept
        // shared` the shutdown hook has already shut the socket down for every reactor.
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

    /// Closes connection `key`. Requests it still owed are counted finished: their client
    /// left, so nobody waits for them.
    fn close(&mut self, key: usize) {
        self.remove(key, true);
    }

    /// Removes connection `key`; `finished`: whether the requests it still owed count as
    /// finished (its client left) or stay in flight (abandoned at the shutdown timeout, for
    /// the server's last line and exit status to count). A helper still computing for it
    /// is told to stop (`gone`); its answer, if it comes, finds the key empty or reused, and
    /// is dropped. Closing is immediate: the socket is deregistered and closed, and the slab
    /// key is free for the next connection.
    fn remove(&mut self, key: usize, finished: bool) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            if let Some(gone) = &conn.gone {
                gone.store(true, Relaxed);
            }
            if finished {
                for _ in 0..conn.machine.owed() {
                    self.ctx.stats.request_finished();
                }
            }
            let _ = self.poll.registry().deregister(&mut conn.stream);
            // Dropping `conn` unregisters it from the server, then closes the socket.
        }
        self.stats
            .connections
            .store(self.conns.len() as u64, Relaxed);
    }

    /// Gives up on every connection left (the grace period is over). Returns how many
    /// requests were abandoned. Their clients see the connection close without an answer:
    /// the one promise shutdown cannot keep past its timeout, and the log says how many.
    /// The abandoned requests stay counted in flight, so the server's last line counts them
    /// and it exits 1, whether this reactor gives up before or after `main` stops waiting.
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
            self.remove(key, false);
        }
        owed as u64
    }
}
