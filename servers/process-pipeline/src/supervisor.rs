//! The server's side of one handler process: a thread that relays requests to it and
//! replaces it when it dies.
//!
//! Each handler process has one relay thread in the server, `handler-N`. The relay takes
//! the next request from the requests queue, writes it to its process, blocks until the
//! reply comes back, and puts the response into the responses queue for the senders. So a
//! process works on one request at a time, and requests wait in the requests queue (the
//! front of the inter-process queue) until a process is free.
//!
//! Supervision is the relay's other job:
//!
//! * before each request it checks (`waitpid`, without waiting) that its process is alive,
//!   and starts a new one if it is not: a process that died while idle costs no request;
//! * if the process dies while it holds a request (the socket ends before the reply), the
//!   request is answered `500 Internal Server Error` ("the handler process died while
//!   handling this request"), the dead process is reaped, and a new one starts at once. No
//!   other client notices: the other processes, the receivers and the senders go on;
//! * while the process computes (`/factor`), the relay also watches the client's socket: if
//!   the client closes the connection, nobody waits for the answer, so the process is killed
//!   and replaced, and the request ends as a client that left;
//! * once shutdown has begun, it watches the client's socket whatever the process does (a
//!   `/sleep` too), and sends no request of a client that has already left to its process:
//!   nobody would read those answers, and shutdown would only wait longer for them;
//! * at shutdown it closes its end of the socket, which tells the process to exit, waits
//!   for it (at most a second), and kills it if it has not.
//!
//! A relay blocked waiting for its process learns that shutdown has begun from a
//! [`ShutdownSignal`]: a socket that becomes readable (it ends) at that moment, watched in
//! the same `poll` as the process's socket and the client's.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{Response, RouteConfig, Status};
use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use server_core::queue::{QueueReceiver, QueueSender};
use server_core::stages::{Answer, Job};
use server_core::stats::ProcessSnapshot;
use server_core::{Context, ThreadGroup};

use crate::child::{self, Child};
use crate::ipc::{self, Reply};

/// Tells the relays that shutdown has begun, in a form `poll` can wait for: the reading end
/// of a socket pair whose writing end the shutdown hook drops, so that it reads the end of
/// the stream (and stays readable) from that moment on. Shared by every relay, which only
/// ever polls it.
#[derive(Debug)]
pub struct ShutdownSignal {
    watched: UnixStream,
}

impl ShutdownSignal {
    /// A signal that `ctx`'s shutdown raises.
    pub fn new(ctx: &Context) -> std::io::Result<Arc<ShutdownSignal>> {
        let (watched, raised) = UnixStream::pair()?;
        // Dropping the other end when shutdown begins is what raises the signal.
        ctx.shutdown.on_trigger(move || drop(raised));
        Ok(Arc::new(ShutdownSignal { watched }))
    }
}

/// What `/stats` shows of one handler process. Shared between its relay thread, which
/// updates it, and the `/stats` writer, which reads it; each field stands alone.
#[derive(Debug, Default)]
pub struct ProcessFigures {
    pub index: usize,
    pid: AtomicU32,
    handled: AtomicU64,
    restarts: AtomicU64,
    /// Whether the process holds a request: set once the request is in its socket, so
    /// that whoever reads it (a test about to kill the process) knows the request is lost
    /// with the process rather than resent to its replacement.
    busy: AtomicBool,
}

impl ProcessFigures {
    pub fn new(index: usize) -> ProcessFigures {
        ProcessFigures {
            index,
            ..ProcessFigures::default()
        }
    }

    pub fn snapshot(&self) -> ProcessSnapshot {
        ProcessSnapshot {
            name: format!("handler-{}", self.index),
            pid: self.pid.load(Relaxed),
            handled: self.handled.load(Relaxed),
            restarts: self.restarts.load(Relaxed),
            busy: self.busy.load(Relaxed),
        }
    }
}

/// One handler process and its relay's state.
#[derive(Debug)]
pub struct Relay {
    figures: Arc<ProcessFigures>,
    routes: RouteConfig,
    child: Option<Child>,
    /// The response header's name for this process's answers.
    label: Arc<str>,
}

impl Relay {
    /// Starts handler process `figures.index`. Called on the relay thread: the process is
    /// killed if that thread ends.
    pub fn start(figures: Arc<ProcessFigures>, routes: RouteConfig) -> std::io::Result<Relay> {
        let label = Arc::from(format!("handler-process-{}", figures.index));
        let mut relay = Relay {
            figures,
            routes,
            child: None,
            label,
        };
        relay.launch()?;
        Ok(relay)
    }

    fn launch(&mut self) -> std::io::Result<()> {
        let child = child::spawn(self.figures.index, &self.routes)?;
        tracing::debug!(
            "handler-{} started as pid {}",
            self.figures.index,
            child.pid
        );
        self.figures
            .pid
            .store(child.pid.as_raw_pid().unsigned_abs(), Relaxed);
        self.child = Some(child);
        Ok(())
    }

    /// Reaps the dead process and starts its replacement.
    fn replace(&mut self, why: &str) {
        if let Some(child) = self.child.take() {
            let status = reap(child.pid, Duration::from_secs(1));
            tracing::warn!(
                "handler-{} (pid {}) {why} ({status}); starting a new one",
                self.figures.index,
                child.pid
            );
        }
        self.figures.pid.store(0, Relaxed);
        self.figures.restarts.fetch_add(1, Relaxed);
        if let Err(e) = self.launch() {
            tracing::error!("could not start handler-{}: {e}", self.figures.index);
        }
    }

    /// Reaps a process killed at shutdown because its client left, without a replacement:
    /// the server is stopping, and the next request, if one comes, starts a new one (see
    /// `run`). Nothing went wrong, so it says so only in the debug log.
    fn retire(&mut self) {
        if let Some(child) = self.child.take() {
            let status = reap(child.pid, Duration::from_secs(1));
            tracing::debug!(
                "handler-{} (pid {}) stopped at shutdown: its client left ({status})",
                self.figures.index,
                child.pid
            );
        }
        self.figures.pid.store(0, Relaxed);
    }

    /// Relays requests until the requests queue closes (at shutdown), then stops the
    /// process.
    pub fn run(
        mut self,
        from: &QueueReceiver<Job>,
        to: &QueueSender<Answer>,
        group: &ThreadGroup,
        ctx: &Context,
        shutdown: &ShutdownSignal,
    ) {
        // Blocks until a request is queued; `None` once every receiver is gone and the
        // queue is drained.
        while let Some(job) = from.pop() {
            let _busy = group.busy();
            if job.is_abandoned(ctx) {
                // Shutdown, and the client has left: not worth a trip to the process.
                // Blocks while the responses queue is full, until a sender takes one.
                let _ = to.push(job.abandon());
                continue;
            }
            if self.child.as_ref().is_some_and(|c| has_exited(c.pid)) {
                self.replace("died while idle");
            }
            if self.child.is_none() {
                // Stopped at shutdown (its client had left), or it could not be started:
                // this request needs a process.
                if let Err(e) = self.launch() {
                    tracing::error!("could not start handler-{}: {e}", self.figures.index);
                }
            }
            let response = self.exchange(&job, ctx, shutdown);
            self.figures.busy.store(false, Relaxed);
            self.figures.handled.fetch_add(1, Relaxed);
            // Blocks while the responses queue is full, until a sender takes one.
            let _ = to.push(job.answer(response));
        }
        self.stop();
    }

    /// Sends `request` to the process and waits for its reply.
    fn exchange(&mut self, job: &Job, ctx: &Context, shutdown: &ShutdownSignal) -> Response {
        let request = job.request();
        // Only a computation is worth watching the client for: anything else is answered
        // at once, also to a client that has already half-closed its side.
        let computes = matches!(
            protocol::route(request, &self.routes),
            protocol::Work::Compute(_)
        );
        // A request that cannot even be written never reached a process (it had died, and
        // its socket is broken): it goes once more, to the process that replaces it.
        for attempt in 0..2 {
            let Some(child) = self.child.as_mut() else {
                break;
            };
            // Blocks until the kernel has taken the request (the process reads it at once).
            if let Err(e) = ipc::write_request(&mut child.socket, request) {
                self.replace(&format!("could not take a request: {e}"));
                continue;
            }
            self.figures.busy.store(true, Relaxed);
            let waits = Waits {
                process: child.socket.as_fd(),
                client: job.client_socket(),
                shutdown: shutdown.watched.as_fd(),
                client_read_shut: &|| job.client_read_shut_by_server(),
            };
            // Blocks until the process answers (or dies), or the client leaves while it is
            // watched: throughout a computation, and once shutdown has begun.
            if waits.wait(computes, ctx) == Waited::ClientGone {
                // Our own child, not reaped yet, so the pid is still ours. It may have
                // ended by itself meanwhile; then the kill fails and `replace` reaps it.
                let _ = rustix::process::kill_process(child.pid, Signal::KILL);
                if ctx.shutdown.is_triggered() {
                    // Stopping anyway: a new process only if a request still needs one.
                    self.retire();
                } else {
                    self.replace("was stopped: its client left before the answer");
                }
                return Response::error(
                    Status::ServiceUnavailable,
                    "the client left; its request was stopped",
                );
            }
            // Blocks until the process answers, or dies (the socket then ends).
            return match ipc::read_reply(&mut child.socket) {
                Ok(Some(Reply::Response(mut response))) => {
                    response.handled_by = Some(Arc::clone(&self.label));
                    response
                }
                Ok(Some(Reply::ServerAnswers)) => ctx.stats_response(),
                Ok(None) | Err(_) => {
                    self.replace(if attempt == 0 {
                        "died while handling a request"
                    } else {
                        "died while handling a request it was given again"
                    });
                    Response::error(
                        Status::InternalError,
                        "the handler process died while handling this request",
                    )
                }
            };
        }
        Response::error(
            Status::ServiceUnavailable,
            "no handler process is running; see the server log",
        )
    }

    /// Shutdown: tells the process to exit by closing the socket, waits for it at most a
    /// second, then kills it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.socket.flush();
            drop(child.socket);
            let status = reap(child.pid, Duration::from_secs(1));
            tracing::debug!("handler-{} stopped ({status})", self.figures.index);
        }
        self.figures.pid.store(0, Relaxed);
    }
}

/// The sockets a relay watches while its process works on a request.
struct Waits<'a> {
    /// The process's socket: readable once the answer (or the end) is there.
    process: BorrowedFd<'a>,
    /// The client's connection: only its close (`POLLRDHUP`), a hang-up or an error count.
    /// Bytes the client sends meanwhile (a pipelined request) do not.
    client: BorrowedFd<'a>,
    /// Readable once shutdown has begun (see [`ShutdownSignal`]).
    shutdown: BorrowedFd<'a>,
    /// Whether shutdown shut the client's reading side (`Job::client_read_shut_by_server`).
    client_read_shut: &'a dyn Fn() -> bool,
}

/// How a relay's wait for its process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    /// The process's socket has something to read: its answer, or its end.
    Answer,
    /// The client closed its connection (or it failed) while it was watched.
    ClientGone,
}

impl Waits<'_> {
    /// Blocks until the process's socket has something to read, or until the client's
    /// connection reports that the client closed it. The client is watched throughout if
    /// `watch_client` (a computation), and otherwise from the moment shutdown begins: then
    /// the wait is woken to start watching it.
    fn wait(&self, watch_client: bool, ctx: &Context) -> Waited {
        loop {
            let stopping = ctx.shutdown.is_triggered();
            let watch_client = watch_client || stopping;
            let mut fds = [
                PollFd::new(&self.process, PollFlags::IN),
                // A descriptor that is not wanted is polled for no event at all.
                PollFd::new(
                    &self.client,
                    if watch_client {
                        PollFlags::RDHUP
                    } else {
                        PollFlags::empty()
                    },
                ),
                PollFd::new(
                    &self.shutdown,
                    if stopping {
                        PollFlags::empty()
                    } else {
                        PollFlags::IN
                    },
                ),
            ];
            // Blocks until one of the three has something to report. An error (it can
            // only be EINTR or a lack of memory) looks again, or lets the read find out.
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return Waited::Answer,
            }
            if !fds[0].revents().is_empty() {
                return Waited::Answer;
            }
            // A hang-up or an error is reported even when no event was asked for: only a
            // watched client counts. A close that shutdown caused by shutting the reading
            // side says nothing about the client: from then on it cannot be watched, and
            // the answer is waited for.
            if watch_client && !fds[1].revents().is_empty() {
                if !(self.client_read_shut)() {
                    return Waited::ClientGone;
                }
                return self.wait_for_answer();
            }
            // Otherwise shutdown began: look again, now watching the client.
        }
    }

    /// Blocks until the process's socket has something to read (its answer, or its end),
    /// watching nothing else.
    fn wait_for_answer(&self) -> Waited {
        let mut fds = [PollFd::new(&self.process, PollFlags::IN)];
        // An error (EINTR, or a lack of memory) lets the read that follows find out.
        while let Err(rustix::io::Errno::INTR) = rustix::event::poll(&mut fds, None) {}
        Waited::Answer
    }
}

/// Whether process `pid` (our child) has ended; reaps it if so.
fn has_exited(pid: Pid) -> bool {
    // Never blocks (WNOHANG). An error means it is not our child any more: reaped already.
    !matches!(
        rustix::process::waitpid(Some(pid), WaitOptions::NOHANG),
        Ok(None)
    )
}

/// Waits for child `pid` to end, at most `patience`; kills it (SIGKILL) if it has not.
/// Returns how it ended, in words.
fn reap(pid: Pid, patience: Duration) -> String {
    let give_up = Instant::now() + patience;
    let mut pause = Duration::from_micros(100);
    loop {
        // Never blocks (WNOHANG): `None` while the process is still running.
        match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => return describe(status),
            Ok(None) => {}
            Err(_) => return "already reaped".into(),
        }
        if Instant::now() >= give_up {
            // Our own child, not reaped yet, so the pid is still ours.
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            // Blocks until the killed process has ended (at once: SIGKILL cannot be caught).
            let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
            return "killed after the shutdown wait".into();
        }
        // A bounded back-off while the process exits: it was asked to, and usually has in
        // well under a millisecond.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// A wait status, in words.
fn describe(status: WaitStatus) -> String {
    if let Some(signal) = status.terminating_signal() {
        format!("killed by signal {signal}")
    } else if let Some(code) = status.exit_status() {
        format!("exited with status {code}")
    } else {
        format!("wait status {}", status.as_raw())
    }
}
