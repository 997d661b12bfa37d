//! Thread-per-request: the lecture's remedy for heavy requests, "the separate thread executes
//! the handler with the request as an argument".
//!
//! Thread-per-connection gives a client a thread for as long as it stays connected, busy or
//! not. Here a thread lives only as long as one request: the main thread accepts and keeps
//! every connection that is between requests; when a connection becomes readable (its next
//! request is arriving), the main thread hands it to a brand-new thread, `req-N`, which reads
//! the request, handles it, writes the response, and gives the connection back before it
//! ends.
//!
//! ```text
//!                 ┌─────────────── the connection comes back after its response ◀──────────────┐
//!                 ▼                                                                            │
//!  clients ─▶ main: accept; poll every idle connection ──readable──▶ spawn req-N: read, handle, write
//!             (one thread, one poll)                                 (one thread per request)
//! ```
//!
//! This is how Java servlet containers serve HTTP (Tomcat's NIO connector, Jetty): a
//! selector watches idle keep-alive connections, and a thread is taken only while a request
//! is being served. So a thousand idle clients cost no thread, unlike thread-per-connection;
//! and a burst of heavy requests gets a thread each at once, unlike a fixed pool. The price
//! is a thread started (tens of microseconds) for every request, and the hand-over of the
//! connection to the thread and back.
//!
//! What the main thread waits for: `poll` (epoll) returns when the listener has a client to
//! accept, an idle connection becomes readable, a request thread gives a connection back
//! (through a channel and a `mio::Waker`), or the nearest idle deadline passes. It never
//! reads a request itself, so a slow client cannot stall it: whoever reads a request is the
//! request's own thread, which blocks while the request arrives, bounded by `--read-timeout`.
//! An idle connection whose keep-alive timeout passes is handed to a thread too, which
//! closes it exactly as the other servers do.
//!
//! `--max-threads` bounds the request threads. At the limit the main thread keeps the ready
//! connections in a queue (one entry per connection, so never more than the connections
//! parked) and hands each over as soon as a thread ends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use server_core::listener::accept_failure;
use server_core::permits::{Permit, Permits};
use server_core::stats::{Capacity, Figures};
use server_core::{
    work, Acceptor, Architecture, BlockingConn, Context, Next, ServerError, ThreadGroup,
};
use slab::Slab;

/// Thread-per-request's own flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct ThreadPerRequest {
    /// Most request threads alive at once. At the limit, connections whose next request has
    /// arrived wait until a thread ends.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_threads: u32,

    /// Stack size of each request thread, in bytes.
    #[arg(long, default_value_t = 256 * 1024, value_parser = clap::value_parser!(u64).range(64 * 1024..=1024 * 1024 * 1024), value_name = "BYTES")]
    pub stack_size: u64,
}

impl Default for ThreadPerRequest {
    /// The command line's defaults: see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

const LISTENER: Token = Token(usize::MAX);
/// How long to wait before accepting again after `accept` failed.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);
const WAKER: Token = Token(usize::MAX - 1);

/// What a request thread gives back to the main thread when it ends: the connection, if it
/// stays open for another request.
type Returned = Option<BlockingConn>;

/// A connection between requests, parked with the main thread.
struct Parked {
    conn: BlockingConn,
    /// Its next timeout, when it has one (the keep-alive timeout, usually).
    deadline: Option<Instant>,
    /// It is in the `ready` queue already.
    queued: bool,
}

impl Architecture for ThreadPerRequest {
    const NAME: &'static str = "thread-per-request";
    const ABOUT: &'static str = "servelab's thread-per-request server: the main thread accepts and watches idle connections; each request is served by a new thread of its own.";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        let start_error = |what: &str| {
            let what = what.to_owned();
            move |source| ServerError::Start { what, source }
        };
        let listener = acceptor.into_listener();
        listener
            .set_nonblocking(true)
            .map_err(start_error("listener"))?;
        let poll = Poll::new().map_err(start_error("poll"))?;
        poll.registry()
            .register(
                &mut SourceFd(&listener.as_raw_fd()),
                LISTENER,
                Interest::READABLE,
            )
            .map_err(start_error("poll"))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(start_error("waker"))?);
        // Shutdown wakes the main thread, which then stops accepting and lets go of the
        // parked connections.
        ctx.shutdown.on_trigger({
            let waker = Arc::clone(&waker);
            move || {
                let _ = waker.wake();
            }
        });
        // Request threads give connections back here. Unbounded, but it never holds more
        // than one entry per request thread alive (--max-threads).
        let (give_back, given_back) = crossbeam_channel::unbounded::<Returned>();
        let requests = ThreadGroup::new("request");
        // One permit per request thread alive. Shared by the main thread, which takes one
        // before it starts a thread, and the threads, each of which returns its own.
        let permits = Permits::new(self.max_threads as usize);
        ctx.set_arch_config(serde_json::to_value(&self).unwrap_or_default());
        ctx.set_capacity(Capacity {
            per_client: true,
            idle_holds_worker: false,
            ..Capacity::workers(u64::from(self.max_threads), "request thread")
        });
        ctx.set_arch_figures({
            let (requests, permits) = (requests.clone(), Arc::clone(&permits));
            move || Figures {
                threads: vec![requests.snapshot()],
                limits: vec![permits.snapshot("threads")],
                ..Figures::default()
            }
        });
        let mut main = Main {
            poll,
            listener,
            parked: Slab::new(),
            ready: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            scheduled: HashMap::new(),
            keys: HashMap::new(),
            ctx: Arc::clone(&ctx),
            requests: requests.clone(),
            permits: Arc::clone(&permits),
            give_back,
            waker,
            stack: usize::try_from(self.stack_size).ok(),
            accept_retry: None,
        };
        ctx.set_ready();
        main.run(&given_back);

        tracing::info!(
            "shutting down: no longer accepting; waiting for {} request threads",
            requests.alive()
        );
        let deadline = ctx.shutdown.deadline(ctx.args.shutdown_timeout);
        // The connections the last threads give back end here (the protocol closes them
        // at shutdown); the threads still running are waited for until the deadline.
        let still_running = requests.join(deadline);
        drop(given_back);
        if still_running > 0 {
            tracing::warn!("{still_running} request threads still busy after the shutdown timeout");
        }
        Ok(())
    }
}

/// The main thread's state.
struct Main {
    poll: Poll,
    listener: std::net::TcpListener,
    /// Connections between requests, watched for their next request.
    parked: Slab<Parked>,
    /// Parked connections whose next request has arrived (or whose deadline passed), waiting
    /// for a request thread: for a moment, or while --max-threads are alive. Each parked
    /// connection is in it at most once.
    ready: VecDeque<usize>,
    /// Parked connections' deadlines, nearest first: (when, connection id). A connection
    /// has at most one live entry here (see `scheduled`); an entry for a connection that is
    /// not parked when it comes up is dropped, and one whose deadline moved later is pushed
    /// again for the new time.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// The time of each connection's live entry in `deadlines`, by connection id. A
    /// connection that comes back with a later deadline keeps its earlier entry, so the heap
    /// holds about one entry per connection, not one per request.
    scheduled: HashMap<u64, Instant>,
    /// Where each parked connection is in `parked`, by connection id.
    keys: HashMap<u64, usize>,
    ctx: Arc<Context>,
    requests: ThreadGroup,
    permits: Arc<Permits>,
    give_back: Sender<Returned>,
    waker: Arc<Waker>,
    stack: Option<usize>,
    /// When to try accepting again after `accept` failed (at the descriptor limit).
    accept_retry: Option<Instant>,
}

impl Main {
    fn run(&mut self, given_back: &Receiver<Returned>) {
        let mut events = Events::with_capacity(256);
        while !self.ctx.shutdown.is_triggered() {
            let nearest = self.deadlines.peek().map(|Reverse((at, _))| *at);
            let wake_at = match (nearest, self.accept_retry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
            // Sleeps until a client connects, a parked connection is readable, a thread
            // gives a connection back (the waker), the nearest deadline passes, or it is
            // time to try a failed accept again.
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("poll failed: {e}");
                break;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(key) => self.wake(key),
                }
            }
            // Never blocks: the channel is only emptied here.
            while let Ok(returned) = given_back.try_recv() {
                if let Some(conn) = returned {
                    self.park(conn);
                }
            }
            if self.accept_retry.is_some_and(|at| at <= Instant::now()) {
                self.accept_retry = None;
                self.accept();
            }
            self.expire();
            self.dispatch_ready();
        }
        // Shutdown: every parked connection goes to a thread, which answers a request that
        // had already arrived and closes the rest, as the other servers do.
        let keys: Vec<usize> = self.parked.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.make_ready(key);
        }
        self.dispatch_ready();
    }

    /// Accepts every client waiting in the backlog.
    fn accept(&mut self) {
        loop {
            // Never blocks: the listener is non-blocking.
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    // Accepted sockets are blocking: the request threads read them so.
                    match BlockingConn::new(stream, peer, Arc::clone(&self.ctx)) {
                        Ok(conn) => {
                            tracing::debug!("conn #{} accepted from {peer}", conn.id);
                            self.park(conn);
                        }
                        Err(e) => tracing::debug!("could not set up a connection from {peer}: {e}"),
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // Shutdown shut the listener down under us (EINVAL): nothing to report.
                Err(_) if self.ctx.shutdown.is_triggered() => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionAborted | ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    // Usually "too many open files". The listener is edge-triggered, so
                    // the clients already waiting raise no new event: try again in 50 ms
                    // (rather than spin), as connections close and free descriptors
                    // meanwhile. One line a second is enough.
                    self.ctx.repeats.warn(accept_failure(&e), || {
                        format!("accept failed: {e}; retrying in 50 ms")
                    });
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    /// Keeps `conn` until its next request arrives, or hands it on at once if bytes of the
    /// next request are already read.
    fn park(&mut self, conn: BlockingConn) {
        let deadline = conn.next_deadline();
        let buffered = conn.has_unread_input();
        let (fd, id) = (conn.as_raw_fd(), conn.id);
        let entry = self.parked.vacant_entry();
        let key = entry.key();
        entry.insert(Parked {
            conn,
            deadline,
            queued: false,
        });
        self.keys.insert(id, key);
        if buffered {
            self.make_ready(key);
            return;
        }
        // Edge-triggered: if the request has already arrived, registering reports it at once.
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(key), Interest::READABLE)
        {
            tracing::warn!("could not watch a connection: {e}");
            self.keys.remove(&id);
            self.parked.remove(key);
            return;
        }
        if let Some(at) = deadline {
            self.schedule(at, id);
        }
    }

    /// Makes sure connection `id` is looked at by `at`.
    fn schedule(&mut self, at: Instant, id: u64) {
        match self.scheduled.get(&id) {
            // An earlier entry fires first and pushes itself again for the rest.
            Some(&earlier) if earlier <= at => {}
            _ => {
                self.scheduled.insert(id, at);
                self.deadlines.push(Reverse((at, id)));
            }
        }
    }

    /// A parked connection became readable: its next request is arriving (or it closed).
    fn wake(&mut self, key: usize) {
        self.make_ready(key);
    }

    /// Queues parked connection `key` for a request thread (once).
    fn make_ready(&mut self, key: usize) {
        if let Some(parked) = self.parked.get_mut(key) {
            if !parked.queued {
                parked.queued = true;
                self.ready.push_back(key);
            }
        }
    }

    /// Parked connections whose deadline has passed go to a thread, which times them out.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((at, id))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self.scheduled.get(&id) != Some(&at) {
                continue;
            }
            self.scheduled.remove(&id);
            // Not parked (a thread has it, or it is gone): when it comes back, parking it
            // schedules it again.
            let Some(&key) = self.keys.get(&id) else {
                continue;
            };
            match self.parked.get(key).and_then(|p| p.deadline) {
                Some(due) if due <= now => self.make_ready(key),
                Some(later) => self.schedule(later, id),
                None => {}
            }
        }
    }

    /// Starts a request thread for each ready connection, while --max-threads allows.
    fn dispatch_ready(&mut self) {
        while let Some(&key) = self.ready.front() {
            // Never blocks: at the limit, the connection waits in `ready` until a thread
            // ends and gives its permit back (its connection's return wakes this thread).
            let Some(permit) = self.permits.try_acquire() else {
                return;
            };
            self.ready.pop_front();
            let Some(parked) = self.parked.try_remove(key) else {
                continue;
            };
            // Its deadline entry, if any, stays in the heap, and is dropped or scheduled
            // again when it comes up.
            self.keys.remove(&parked.conn.id);
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&parked.conn.as_raw_fd()));
            self.spawn(parked.conn, permit);
        }
    }

    /// Serves one request of `conn` on a new thread, which gives the connection back.
    fn spawn(&self, mut conn: BlockingConn, permit: Permit) {
        let name = format!("req-{}", self.requests.snapshot().started + 1);
        let (give_back, waker, ctx) = (
            self.give_back.clone(),
            Arc::clone(&self.waker),
            Arc::clone(&self.ctx),
        );
        let group = self.requests.clone();
        let started = self.requests.spawn(name, self.stack, move || {
            let returned = {
                let _busy = group.busy();
                serve_one(&mut conn, &ctx).then_some(conn)
            };
            // The permit goes back before the connection, so that the main thread, woken
            // by the connection, finds a free permit for it.
            drop(permit);
            // The main thread outlives every request thread until shutdown; after it, the
            // connection is simply dropped (closed).
            let _ = give_back.send(returned);
            let _ = waker.wake();
        });
        if let Err(e) = started {
            // The connection (moved into the failed closure) has been dropped: the client
            // sees a close and may retry.
            self.ctx.stats.rejected();
            self.ctx.repeats.warn(("spawn", e.kind()), || {
                format!("could not start a request thread: {e}")
            });
        }
    }
}

/// A request thread's work: reads the connection's next request (it has arrived, or is
/// arriving), answers it, and says whether the connection stays open for another.
fn serve_one(conn: &mut BlockingConn, ctx: &Context) -> bool {
    // Blocks until the request is complete (it is usually all there already), the client
    // leaves, or the connection's deadline passes.
    match conn.next_request() {
        Next::Request(request, exchange) => {
            // Sleeps or computes on this thread, as the route needs: the request is this
            // thread's argument, and its only work (a computation stops if its client
            // leaves).
            let response = work::answer_while(&request, ctx, &|| !conn.peer_has_left());
            // Blocks until the kernel has taken the response.
            conn.send(exchange, &response)
        }
        Next::Reject(response, exchange) => {
            conn.send(exchange, &response);
            false
        }
        Next::Closed(why) => {
            tracing::debug!("conn #{} {} closed: {why:?}", conn.id, conn.peer);
            false
        }
    }
}
