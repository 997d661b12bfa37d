//! A task per connection: the connection state machine, driven by `async` code.
//!
//! The event loop (`servers/event-loop`) keeps every connection's state in a struct and one
//! hand-written loop per thread goes round them all. Here each connection gets a *task*: an
//! `async fn` that reads like a thread's loop (read, handle, write, wait), but whose waits
//! are `.await`s. An `.await` that cannot go on returns the task to the runtime, which runs
//! another task on the same thread meanwhile and comes back when the socket is ready or the
//! timer is due. The state a thread would keep on its stack lives in the task (a future the
//! compiler builds from the `async fn`): a few hundred bytes, not a thread's stack.
//!
//! ```text
//!   loop {
//!       advance: answer the sleeps that are due; parse every request that has arrived
//!                (protocol::Connection, the same machine as every server's); answer
//!                it now, or note a wait (/sleep) or hand a computation (/factor) off;
//!                write what is ready, without waiting
//!       select! (the only place the task waits, and it never blocks its thread):
//!           the socket is readable   (if the machine wants input)  → read it
//!           the socket is writable   (if output is pending)        → go round, write
//!           a computation is done    (if one is running)           → answer it
//!           the connection's timer   (its nearest moment)          → go round
//!           shutdown began                                          → stop
//!   }
//! ```
//!
//! Nothing in a task may block its thread: the other tasks of that worker wait while it
//! does (work stealing lets another worker take them, but not all of them: see the docs of
//! the crate). So the socket is non-blocking (tokio's), `/sleep` is a moment in the
//! connection's timer, and `/factor` goes to a blocking thread with `spawn_blocking`
//! (`--offload on`). With `--offload off` the task computes where it runs, which is exactly
//! the mistake lab 23 measures.
//!
//! **One timer per connection.** A connection needs to wake at its next deadline (read
//! timeout, keep-alive timeout, linger) and when each of its sleeping requests is due. All
//! of these are kept in the task, and one tokio `Sleep` is set to the nearest. It is reset
//! only when a moment *earlier* than the one it is set to appears; a later deadline (each
//! answer moves the keep-alive deadline later) leaves it alone, and when it fires early the
//! task looks, finds nothing due, and sets it to the real moment. So a keep-alive
//! connection serving thousands of requests touches the runtime's timer wheel about once
//! per keep-alive timeout, not once per request (the same trick as the event loop's
//! timers).
//!
//! **Reading** uses one 64 KiB buffer per thread, not per connection: a task reads only
//! when the socket is ready, and copies what it read into its machine before it yields, so
//! a buffer is never held across an `.await`. An idle connection costs its task and its
//! machine, well under 2 KiB.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use protocol::{route, Connection, Event, Job, Response, Status, Ticket, Work};
use server_core::context::Registration;
use server_core::permits::Permits;
use server_core::{Context, ThreadGroup};
use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::runtime::RuntimeStats;

/// Bytes read from a socket at once, into the thread's one buffer.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// The thread's read buffer, shared by every task that runs on it (one at a time).
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Where `/factor`'s computation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Offload {
    /// On the runtime's blocking threads (`spawn_blocking`): the workers never compute.
    #[default]
    On,
    /// On the worker that runs the connection's task, blocking every task queued behind it.
    Off,
}

/// How `/sleep/{ms}` and `/echo/{ms}` wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sleep {
    /// As a moment in the connection's timer: the task waits, its thread runs others.
    #[default]
    Timer,
    /// By blocking the thread that runs the task (`std::thread::sleep`), as a synchronous
    /// database driver or file read would: the thread is held as by a computation, but
    /// without using a CPU (lab 24 uses it so that it measures scheduling, not free CPUs).
    Block,
}

/// Where the computations of one runtime go.
#[derive(Debug)]
pub enum Compute {
    /// To the runtime's blocking threads, at most `permits` at once (running or waiting for
    /// a thread); a request beyond that gets 503 at once. `blocking` is the blocking
    /// threads' group, which counts them busy while they compute.
    Offload {
        permits: Arc<Permits>,
        blocking: ThreadGroup,
    },
    /// On the worker itself.
    Inline,
}

/// What every connection task of one runtime shares. Read-only but for the counters.
#[derive(Debug)]
pub struct Shared {
    /// The server's context: its settings, routes and counters, and its shutdown.
    pub ctx: Arc<Context>,
    /// Where `/factor` is computed.
    pub compute: Compute,
    /// How waits are done.
    pub sleep: Sleep,
    /// The runtime's figures (each core's own, on the per-core server), which every task
    /// counts into and `/stats` reads.
    pub stats: Arc<RuntimeStats>,
    /// Woken once (`notify_waiters`), when shutdown begins; the tasks read
    /// `ctx.shutdown.is_triggered()` for the truth, and wait on this for the wake-up.
    pub stopping: Arc<Notify>,
}

/// A sleeping request (`/sleep/{ms}`, `/echo/{ms}`): its answer, due at `due`.
struct Sleeping {
    /// When the answer is due: the request's arrival plus its delay.
    due: Instant,
    /// Which request of the connection it answers: the machine puts answers in order.
    ticket: Ticket,
    /// The answer, decided when the request arrived and held until `due`.
    response: Response,
}

/// A computation on a blocking thread, and the request it answers.
struct Computing {
    /// Which request of the connection it answers.
    ticket: Ticket,
    /// Resolves with the answer when the blocking thread is done. Dropping it detaches the
    /// computation (it does not stop it: `Gone` does).
    handle: JoinHandle<Response>,
}

/// Tells the computations of a connection that their client has gone: set when the peer
/// closes its side, and when the task ends for any reason (including being dropped by the
/// runtime at the end of a shutdown), since nobody will read the answer then. Shared with
/// the blocking threads, which look at it between chunks of work. Relaxed is enough: it
/// guards no data, and a computation that sees it a chunk late only computes a chunk more.
struct Gone(Arc<AtomicBool>);

impl Drop for Gone {
    fn drop(&mut self) {
        // The task is ending, or being dropped: nobody will read the computations' answers.
        self.0.store(true, Relaxed);
    }
}

/// Counts the connection open on its runtime while it lives.
struct Open(Arc<RuntimeStats>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Relaxed);
    }
}

/// One connection's state, owned by its task. Only that task touches it.
struct Conn<'a> {
    shared: &'a Shared,
    /// Declared before `stream`, so that the connection leaves the server's registry before
    /// its socket closes.
    _registration: Registration,
    /// The socket, non-blocking and watched by the runtime's reactor.
    stream: TcpStream,
    /// The client's address, for the log.
    peer: SocketAddr,
    /// The HTTP/1.1 connection (`protocol::Connection`, sans-IO): the same machine as every
    /// servelab server's, fed with bytes and answers, asked for output and deadlines.
    machine: Connection,
    /// Sleeping requests, in the order they came (at most `protocol::connection::MAX_OUTSTANDING`).
    sleeping: Vec<Sleeping>,
    /// Computations running or waiting for a blocking thread (at most as many).
    computing: Vec<Computing>,
    /// Made at the first offloaded request, so that a connection without one costs nothing.
    gone: Option<Gone>,
    /// The sending side has been shut down.
    write_shut: bool,
    /// Shutdown has reached this connection.
    stopped: bool,
    /// Counts the connection open on its runtime until the task ends, however it ends.
    _open: Open,
}

/// Serves one accepted connection until it closes. `_done` is the server's shutdown
/// tracker: the server knows every connection has finished when every clone is dropped.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _done: mpsc::Sender<()>,
) {
    let mut conn = Conn::new(stream, peer, &shared);
    // Returns when the connection closes; `_done` is dropped then, which tells the server
    // this connection has finished.
    conn.run().await;
}

impl<'a> Conn<'a> {
    /// Takes in an accepted connection: registers it with the server and counts it, in the
    /// server's totals, on the worker that accepted it, and open on its runtime.
    fn new(stream: TcpStream, peer: SocketAddr, shared: &'a Shared) -> Conn<'a> {
        let ctx = &shared.ctx;
        // Its task, not the registry, stops it at shutdown (it watches `stopping`).
        let registration = ctx.register_self_stopping();
        ctx.stats.accepted();
        shared.stats.mine().accepted.fetch_add(1, Relaxed);
        shared.stats.connections.fetch_add(1, Relaxed);
        Conn {
            shared,
            _registration: registration,
            stream,
            peer,
            machine: Connection::new(Arc::clone(&ctx.connection), Instant::now()),
            sleeping: Vec::new(),
            computing: Vec::new(),
            gone: None,
            write_shut: false,
            stopped: false,
            _open: Open(Arc::clone(&shared.stats)),
        }
    }

    /// The task's loop (see the module documentation). Returns when the connection closes.
    ///
    /// Each turn does everything that can be done without waiting ([`Conn::proceed`]), sets
    /// the timer, and then waits in one `select!` for whichever comes first; each arm's work
    /// is a method of its own. Only the loop's own futures (the shutdown wake-up, the timer)
    /// live across its turns, so that an idle connection's task stays small.
    async fn run(&mut self) {
        // Resolves once, when shutdown begins. Made once and kept (pinned) for the
        // connection's life, so that it joins the list of waiters once rather than at every
        // turn of the loop; `enable` puts it there now, so a wake-up before its first poll is
        // not lost (and one before that is caught by the flag, checked below).
        let shared = self.shared;
        let stop = shared.stopping.notified();
        tokio::pin!(stop);
        stop.as_mut().enable();
        // The connection's one timer (see the module documentation), and the moment it is
        // set to (`None`: not set).
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut scheduled: Option<Instant> = None;

        loop {
            if !self.proceed() {
                break;
            }
            self.set_timer(timer.as_mut(), &mut scheduled);
            let (wants_read, interest) = self.interest();
            let stopped = self.stopped;

            tokio::select! {
                // Waits until the socket has bytes (or its end) for us, or room again in its
                // send buffer (then the next turn writes).
                ready = self.stream.ready(interest.unwrap_or(Interest::READABLE)), if interest.is_some() => {
                    if !self.on_ready(ready, wants_read) {
                        break;
                    }
                }
                // Waits until one of the connection's computations is done.
                (index, result) = next_computed(&mut self.computing), if !self.computing.is_empty() => {
                    self.on_computed(index, result);
                }
                // Waits until the connection's nearest moment: a deadline or a sleep's end.
                () = &mut timer, if scheduled.is_some() => {
                    scheduled = None;
                }
                // Waits until shutdown begins.
                () = &mut stop, if !stopped => {
                    self.stop();
                }
                // Nothing left to wait for: the machine has nothing more to do.
                else => break,
            }
        }
        self.close();
    }

    /// The start of each turn: notices shutdown, ends the task if its client has left
    /// owing answers, and does everything that can be done now (`advance`). Returns `false`
    /// when the connection is over.
    fn proceed(&mut self) -> bool {
        // Shutdown may have begun while this task was busy, before its `stop` future was
        // polled: the flag is the truth, the future only the wake-up.
        if self.shared.ctx.shutdown.is_triggered() && !self.stopped {
            self.stop();
        }
        if self.abandon_if_departed() {
            tracing::debug!("{} left; its answers are dropped at shutdown", self.peer);
            return false;
        }
        if let Err(why) = self.advance() {
            tracing::debug!("{} closed: {why}", self.peer);
            return false;
        }
        true
    }

    /// Sets the connection's timer to its nearest moment, if that is earlier than the
    /// moment it is set to (`scheduled`). The timer is moved only when something is due
    /// *earlier* than it is set for (see the module documentation); a later moment waits
    /// until the timer fires.
    fn set_timer(&self, timer: Pin<&mut tokio::time::Sleep>, scheduled: &mut Option<Instant>) {
        let next = self.next_moment();
        if let Some(at) = next {
            if scheduled.is_none_or(|s| at < s) {
                timer.reset(at.into());
                *scheduled = Some(at);
            }
        }
    }

    /// What to wait for on the socket: to read if the machine wants input (not when the
    /// client has said all it will, or is owed too many answers), to write if output is
    /// pending; `None` for neither. One `ready` future for both, not one each: it is part
    /// of every idle connection's task, and its size is what an idle connection costs.
    /// Also returns whether the machine wants input.
    fn interest(&self) -> (bool, Option<Interest>) {
        let wants_read = self.machine.wants_input();
        let wants_write = !self.machine.output().is_empty();
        let interest = match (wants_read, wants_write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        };
        (wants_read, interest)
    }

    /// The socket is ready: reads if it has bytes (or its end) and the machine wanted
    /// them; room to write needs nothing here, since the next turn writes. Returns `false`
    /// when the connection is over (the read or the wait failed).
    fn on_ready(&mut self, ready: io::Result<Ready>, wants_read: bool) -> bool {
        match ready {
            Ok(ready) if wants_read && (ready.is_readable() || ready.is_read_closed()) => {
                self.read().is_ok()
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// A computation is done: its answer (or a 500 if it panicked or was cancelled) goes to
    /// the request it answers.
    fn on_computed(&mut self, index: usize, result: Result<Response, tokio::task::JoinError>) {
        let Computing { ticket, .. } = self.computing.swap_remove(index);
        let response = result.unwrap_or_else(|_| {
            Response::error(
                Status::InternalError,
                "the computation failed; see the server log",
            )
            .closing()
        });
        self.respond(ticket, &response, Instant::now());
    }

    /// Does everything that can be done now without waiting: answers the sleeps that are
    /// due, handles every request that has arrived, writes what is ready. An error means
    /// the connection is over (closed by the protocol, or the socket failed).
    fn advance(&mut self) -> Result<(), String> {
        let now = Instant::now();
        // The sleeps that are due, in the order they came.
        let mut i = 0;
        while i < self.sleeping.len() {
            if self.sleeping[i].due <= now {
                let Sleeping {
                    ticket, response, ..
                } = self.sleeping.remove(i);
                self.respond(ticket, &response, now);
            } else {
                i += 1;
            }
        }
        // Every complete request in what has arrived, in order.
        loop {
            match self.machine.poll(now) {
                Event::Request(request, ticket) => {
                    let ctx = &self.shared.ctx;
                    ctx.stats.request_started();
                    // Counted on the worker that read it, which is where it is served.
                    self.shared.stats.mine().requests.fetch_add(1, Relaxed);
                    let work = route(&request, &ctx.routes);
                    self.start_work(ticket, work, now);
                }
                Event::Reject(response, ticket) => {
                    self.shared.ctx.stats.responded(response.status);
                    self.machine.respond(ticket, &response, now);
                }
                Event::Wait => break,
                Event::Closed(why) => return Err(format!("{why:?}")),
            }
        }
        // Everything ready, in as few writes as the socket takes. What was written may move
        // the machine on (the last answer out: it closes), so it is asked again until a
        // write changes nothing.
        match self.flush() {
            Ok(0) => Ok(()),
            Ok(_) => self.advance(),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Starts the work a request needs: answers it now, notes a sleep, or hands a
    /// computation to a blocking thread. Never waits (but see `--offload off`).
    fn start_work(&mut self, ticket: Ticket, work: Work, now: Instant) {
        match work {
            Work::Respond(response) => self.respond(ticket, &response, now),
            Work::Stats => {
                let response = self.shared.ctx.stats_response();
                self.respond(ticket, &response, now);
            }
            // The connection waits; the worker does not: the timer wakes the task.
            Work::Sleep { delay, then } if self.shared.sleep == Sleep::Timer => {
                self.sleeping.push(Sleeping {
                    due: now + delay,
                    ticket,
                    response: then,
                });
            }
            // `--sleep block`: blocks this thread for the whole delay, and every task queued
            // on it waits meanwhile.
            Work::Sleep { delay, then } => {
                std::thread::sleep(delay);
                self.respond(ticket, &then, Instant::now());
            }
            Work::Compute(job) => match &self.shared.compute {
                Compute::Offload { permits, blocking } => {
                    self.offload(ticket, job, permits, blocking, now);
                }
                // Blocks this worker thread for as long as the computation takes: every task
                // queued on it waits meanwhile (and, on one core, every connection of it).
                // Nothing can tell it the client left: the task is not looking.
                Compute::Inline => {
                    let response = job.run_caught(&|| true);
                    self.respond(ticket, &response, Instant::now());
                }
            },
        }
    }

    /// Hands `job` to a blocking thread, or answers 503 at once when `permits` are all
    /// taken: the task must not wait for room, and an unbounded queue of computations would
    /// let clients grow the server's memory.
    fn offload(
        &mut self,
        ticket: Ticket,
        job: Job,
        permits: &Arc<Permits>,
        blocking: &ThreadGroup,
        now: Instant,
    ) {
        // Never blocks: takes a permit only if one is free.
        let Some(permit) = permits.try_acquire() else {
            let mut busy = Response::error(
                Status::ServiceUnavailable,
                "every blocking thread is busy and their queue is full; retry later",
            );
            busy.retry_after = Some(1);
            return self.respond(ticket, &busy, now);
        };
        // The connection's flag, made at its first computation and shared with each of
        // them, so that all stop when the client goes.
        let gone = Arc::clone(
            &self
                .gone
                .get_or_insert_with(|| Gone(Arc::new(AtomicBool::new(false))))
                .0,
        );
        let blocking = blocking.clone();
        // Queues the job for the runtime's blocking threads (an unbounded queue inside
        // tokio, which the permits bound); the handle resolves when it is done.
        let handle = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _busy = blocking.busy();
            // Runs as long as the computation takes (at most --max-cpu), on this blocking
            // thread, or until the client is gone (looked at between chunks of work).
            job.run_caught(&|| !gone.load(Relaxed))
        });
        self.shared.stats.mine().offloaded.fetch_add(1, Relaxed);
        self.computing.push(Computing { ticket, handle });
    }

    /// Gives a request's answer to the machine, and counts it.
    fn respond(&mut self, ticket: Ticket, response: &Response, now: Instant) {
        let ctx = &self.shared.ctx;
        if ctx.shutdown.is_triggered() {
            // Shutdown has begun, even if this task has not seen it yet: the answer must say
            // the connection closes.
            self.machine.stop();
        }
        if self.machine.peer_closed() {
            // The client closed its side while its request was handled: the lecture's "left
            // before the server could handle it". The answer is still written, for a client
            // that only half-closed, but it is not counted as served.
            ctx.stats.client_left();
            tracing::info!(
                "client {} left before the server could handle it",
                self.peer
            );
        } else {
            ctx.stats.responded(response.status);
        }
        ctx.stats.request_finished();
        self.machine.respond(ticket, response, now);
    }

    /// Reads once from the socket into the thread's buffer and hands the bytes to the
    /// machine. Never blocks: the socket is non-blocking, and a read that finds nothing
    /// (`WouldBlock`) clears tokio's readiness, so the next `readable()` waits for more.
    fn read(&mut self) -> io::Result<()> {
        let now = Instant::now();
        // The thread's buffer, borrowed for this read only: no other task runs on this
        // thread before this one yields, and it yields only after the copy.
        BUFFER.with_borrow_mut(|buffer| match self.stream.try_read(buffer) {
            Ok(n) => {
                self.machine.receive(&buffer[..n], now);
                if n == 0 {
                    // The client has closed its side: nobody may wait for a computation.
                    if let Some(gone) = &self.gone {
                        gone.0.store(true, Relaxed);
                    }
                }
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(()),
            Err(e) => Err(e),
        })
    }

    /// Writes what the machine has to send until it is all written or the socket's buffer
    /// is full (then the rest goes when `writable()` says there is room). Never blocks.
    /// Returns how many bytes it wrote.
    fn flush(&mut self) -> io::Result<usize> {
        let mut written = 0;
        while !self.machine.output().is_empty() {
            match self.stream.try_write(self.machine.output()) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    self.machine.wrote(n, Instant::now());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.machine.should_close_write() && !self.write_shut {
            self.write_shut = true;
            // The client sees the end of the answers. Never blocks: it only queues the end
            // of the stream after the bytes already in the send buffer.
            let _ = socket2::SockRef::from(&self.stream).shutdown(Shutdown::Write);
        }
        Ok(written)
    }

    /// The connection's nearest moment: its machine's next deadline or a sleep's end.
    fn next_moment(&self) -> Option<Instant> {
        let sleeps = self.sleeping.iter().map(|s| s.due).min();
        match (self.machine.next_deadline(), sleeps) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Shutdown has begun: takes a request that has already arrived (so that it is answered
    /// rather than reset by closing on unread input), then tells the machine, which closes
    /// an idle connection and answers a started request with `Connection: close`.
    fn stop(&mut self) {
        self.stopped = true;
        if self.machine.wants_input() {
            let _ = self.read();
        }
        self.machine.stop();
    }

    /// Once shutdown has begun, whether the client has left (closed its side) while answers
    /// are still owed to it: a `/sleep` waiting for its timer, a computation on a blocking
    /// thread. Nobody would read those answers, and the server would only wait longer to
    /// stop, so the task ends; each is counted as a client that left, as the blocking
    /// servers count it. Before shutdown nothing changes: the answers are still given.
    fn abandon_if_departed(&self) -> bool {
        let owed = self.machine.owed();
        if !(self.stopped && self.machine.peer_closed() && owed > 0) {
            return false;
        }
        for _ in 0..owed {
            self.shared.ctx.stats.client_left();
        }
        true
    }

    /// The connection is over. Requests it still owed are counted finished (abandoned by
    /// the client, or unanswerable); its computations are told to stop (by `Gone`).
    fn close(&mut self) {
        for _ in 0..self.machine.owed() {
            self.shared.ctx.stats.request_finished();
        }
        // Dropping the handles detaches the computations; `gone` stops them.
        if let Some(gone) = &self.gone {
            gone.0.store(true, Relaxed);
        }
        self.computing.clear();
        self.sleeping.clear();
    }
}

/// Resolves when any computation in `computing` is done: its index and its result.
fn next_computed(
    computing: &mut [Computing],
) -> impl Future<Output = (usize, Result<Response, tokio::task::JoinError>)> + '_ {
    // Polls each handle in turn, and the first that is done ends the wait. Each handle still
    // running keeps the task's waker, so whichever computation ends first wakes the task.
    poll_fn(move |cx| {
        for (index, c) in computing.iter_mut().enumerate() {
            if let Poll::Ready(result) = Pin::new(&mut c.handle).poll(cx) {
                return Poll::Ready((index, result));
            }
        }
        Poll::Pending
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection costs beyond its socket is its task: the future of `serve`
    /// (the connection's state machine, its timer, its wait for shutdown) and tokio's task
    /// header. The issue's target is 2 KiB per idle connection in all (scripts/compare-peers.sh
    /// measures the process); the future alone must leave room for the rest.
    #[test]
    fn a_connection_task_is_well_under_two_kib() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a listener");
            let addr = listener.local_addr().expect("its address");
            let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (stream, peer) = listener.accept().await.expect("accept");
            let ctx = Context::new("test", server_core::ServerArgs::default());
            let stopping = Arc::new(Notify::new());
            let shared = Arc::new(Shared {
                ctx,
                compute: Compute::Inline,
                sleep: Sleep::Timer,
                stats: RuntimeStats::new("runtime", vec!["worker-1".into()]),
                stopping,
            });
            let (done, _) = mpsc::channel(1);
            let task = serve(stream, peer, shared, done);
            let size = std::mem::size_of_val(&task);
            // 992 bytes when this was written, with tokio 1.54: the connection machine (272),
            // the timer (112), and what the `select!` waits on (the socket, the shutdown).
            assert!(size <= 1024, "a connection's task is {size} bytes");
        });
    }
}
