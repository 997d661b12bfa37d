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
//! * at shutdown it closes its end of the socket, which tells the process to exit, waits
//!   for it (at most a second), and kills it if it has not.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::{Answer, Job, QueueReceiver, QueueSender};
use protocol::{Response, RouteConfig, Status};
use server_core::stats::ProcessSnapshot;
use server_core::{Context, ThreadGroup};

use crate::child::{self, Child};
use crate::ipc::{self, Reply};

/// What `/stats` shows of one handler process. Shared between its relay thread, which
/// updates it, and the `/stats` writer, which reads it; each field stands alone.
#[derive(Default)]
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
        self.figures.pid.store(child.pid as u32, Relaxed);
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

    /// Relays requests until the requests queue closes (at shutdown), then stops the
    /// process.
    pub fn run(
        mut self,
        from: &QueueReceiver<Job>,
        to: &QueueSender<Answer>,
        group: &ThreadGroup,
        ctx: &Context,
    ) {
        // Blocks until a request is queued; `None` once every receiver is gone and the
        // queue is drained.
        while let Some(job) = from.pop() {
            let _busy = group.busy();
            if self.child.as_ref().is_some_and(|c| has_exited(c.pid)) {
                self.replace("died while idle");
            }
            let response = self.exchange(&job, ctx);
            self.figures.busy.store(false, Relaxed);
            self.figures.handled.fetch_add(1, Relaxed);
            // Blocks while the responses queue is full, until a sender takes one.
            let _ = to.push(job.answer(response));
        }
        self.stop();
    }

    /// Sends `request` to the process and waits for its reply.
    fn exchange(&mut self, job: &Job, ctx: &Context) -> Response {
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
            if computes && !answer_or_client_gone(child.socket.as_raw_fd(), job.client_socket()) {
                // SAFETY: kill on our own child, which has not been reaped yet.
                unsafe { libc::kill(child.pid, libc::SIGKILL) };
                self.replace("was stopped: its client left before the answer");
                return Response::error(
                    Status::ServiceUnavailable,
                    "the client left; the computation was stopped",
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

/// Blocks until the handler process's socket has something to read (its answer, or its
/// end) and returns `true`, or until the client's connection reports that the client closed
/// it or failed, and returns `false`. Bytes the client sends meanwhile (a pipelined
/// request) do not wake it: only the peer's close (`POLLRDHUP`), a hang-up or an error do.
fn answer_or_client_gone(child: RawFd, client: RawFd) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: child,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: client,
            events: libc::POLLRDHUP,
            revents: 0,
        },
    ];
    loop {
        // Blocks until one of the two has something to report.
        // SAFETY: poll on two descriptors this thread keeps open throughout, through an
        // array that lives across the call, with its exact length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // Let the read find out what is wrong.
            return true;
        }
        if fds[0].revents != 0 {
            return true;
        }
        if fds[1].revents != 0 {
            return false;
        }
    }
}

/// Whether process `pid` (our child) has ended; reaps it if so.
fn has_exited(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on our own child, without blocking (WNOHANG), writing into `status`.
    let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    reaped == pid || reaped == -1
}

/// Waits for child `pid` to end, at most `patience`; kills it (SIGKILL) if it has not.
/// Returns how it ended, in words.
fn reap(pid: libc::pid_t, patience: Duration) -> String {
    let give_up = Instant::now() + patience;
    let mut pause = Duration::from_micros(100);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child, without blocking, writing into `status`.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if reaped == pid {
            return describe(status);
        }
        if reaped == -1 {
            return "already reaped".into();
        }
        if Instant::now() >= give_up {
            // SAFETY: signals our own child, which has not been reaped, so its pid is
            // still ours.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return "killed after the shutdown wait".into();
        }
        // A bounded back-off while the process exits: it was asked to, and usually has in
        // well under a millisecond.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// A wait status, in words.
fn describe(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else {
        format!("wait status {status}")
    }
}
