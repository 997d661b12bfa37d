//! Running a server: the [`Architecture`] trait, and starting one in-process.
//!
//! An architecture is anything that can take an [`Acceptor`] and serve its connections
//! until shutdown. Each server crate implements this trait and nothing else, so the tests,
//! the simulator, the labs and the benchmarks can start any of them the same way, on an
//! ephemeral port inside their own process, with [`RunningServer::start`] (or by name,
//! through the `architectures` registry).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::ServerArgs;
use crate::context::{Context, Readiness};
use crate::listener::{bind_with, Acceptor, ServerError};

/// A threading model for serving connections.
pub trait Architecture: Send + 'static {
    /// Short name: `single`, `thread-per-conn`, `prefork-pool`, `pipeline`, ...
    const NAME: &'static str;

    /// One line saying what it is, for `--help` and listings.
    const ABOUT: &'static str;

    /// Whether the listening socket must be bound with `SO_REUSEPORT` (see
    /// [`crate::listener::bind_with`]). Only an architecture that binds more listeners on
    /// the same address needs it.
    fn reuse_port(&self) -> bool {
        false
    }

    /// Whether this machine can run the architecture at all. Most can anywhere; one that
    /// needs a kernel facility (io_uring) says here, in one sentence, why it cannot, so that
    /// its binary refuses to start with that sentence and the tools that start every
    /// architecture (`simulator compare`, the benchmarks) skip it instead of failing.
    fn available() -> Result<(), Unavailable> {
        Ok(())
    }

    /// Serves connections from `acceptor` until `ctx.shutdown` is triggered, then lets the
    /// requests in progress finish (for at most `--shutdown-timeout`, counted from the
    /// moment shutdown began: see [`crate::shutdown::Shutdown::deadline`]) and returns. Runs
    /// on the calling thread, which becomes the server's main thread. If it gives up waiting,
    /// it says in its log which threads it left running.
    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError>;
}

/// Why an architecture cannot run on this machine: one sentence naming the cause, such as
/// "io_uring is unavailable: a seccomp filter forbids it (...)".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// A server running on a thread of this process.
///
/// Tests, the simulator's `compare`, the labs and the benchmarks start servers this way:
/// no process to spawn, a port the kernel picks (so tests run in parallel without
/// clashing), and the server's context at hand to read its figures directly. Dropping it
/// stops the server, so a test that fails half-way leaves no server behind.
pub struct RunningServer {
    /// Where it listens: the address the kernel gave an ephemeral port.
    addr: SocketAddr,
    /// The server's shared state, for a caller that wants its figures or its flag.
    ctx: Arc<Context>,
    /// The server's main thread, which runs the architecture's `serve`; `None` once
    /// joined.
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("arch", &self.ctx.arch)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Binds `args.addr` (use port 0 for an ephemeral port), starts serving on a new
    /// thread named `main`, and returns once the architecture's threads are up. Returns the
    /// architecture's error if it stopped before it was ready (it failed to start).
    pub fn start<A: Architecture>(arch: A, args: ServerArgs) -> Result<RunningServer, ServerError> {
        // A design this machine cannot run (io_uring under a seccomp filter) is refused
        // before anything is bound.
        A::available()?;
        // Bound here, on the caller's thread, so that the address (with the port the
        // kernel chose) is known before the server runs, and a failure to bind is the
        // caller's error at once.
        let listener = bind_with(args.addr, args.backlog, arch.reuse_port())?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: args.addr,
            source,
        })?;
        let ctx = Context::new(A::NAME, args);
        let acceptor = Acceptor::new(listener, Arc::clone(&ctx))?;
        // The architecture's `serve` runs on a thread called `main`, as it does in its
        // binary, so that logs and `X-Servelab-Thread` read the same in both.
        let thread = std::thread::Builder::new()
            .name("main".into())
            .spawn({
                let ctx = Arc::clone(&ctx);
                move || {
                    let result = arch.serve(acceptor, Arc::clone(&ctx));
                    // If it never became ready, it failed to start.
                    ctx.set_stopped();
                    result
                }
            })
            .map_err(|source| ServerError::Start {
                what: "server thread".into(),
                source,
            })?;
        // Blocks until the server's threads are up (and /stats is complete), or it stopped.
        let mut server = RunningServer {
            addr,
            ctx,
            thread: Some(thread),
        };
        // A server that stopped before it was ready failed to start: its own error is the
        // one to return, or, if it returned none, a sentence that says so.
        if server.ctx.wait_ready() == Readiness::Failed {
            return match server.stop_and_join() {
                Err(e) => Err(e),
                Ok(()) => Err(ServerError::Start {
                    what: format!("{} server (it stopped before accepting)", A::NAME),
                    source: std::io::Error::other("stopped"),
                }),
            };
        }
        Ok(server)
    }

    /// The address the server listens on: `127.0.0.1` and the port the kernel chose, for
    /// the clients of a test.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's shared state: its counters, `/stats` as a value, its shutdown flag.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Begins a graceful shutdown without waiting for it: what a test uses to look at the
    /// server while it is stopping (it refuses newcomers, it finishes what it holds).
    pub fn begin_shutdown(&self) {
        self.ctx.shutdown.trigger();
    }

    /// Shuts the server down and waits until it has stopped.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.stop_and_join()
    }

    /// Begins shutdown (again, if it has begun: that does nothing) and joins the main
    /// thread. Used by `stop`, by `Drop`, and by `start` for a server that failed.
    fn stop_and_join(&mut self) -> Result<(), ServerError> {
        self.ctx.shutdown.trigger();
        // Blocks until the architecture's `serve` returns, which is bounded by its
        // shutdown timeout.
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ServerError::Start {
                what: "server (its main thread panicked)".into(),
                source: std::io::Error::other("panic"),
            }),
            None => Ok(()),
        }
    }
}

/// A server that goes out of scope stops: gracefully, within its shutdown timeout.
impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An architecture that cannot start its threads.
    struct Broken;

    impl Architecture for Broken {
        const NAME: &'static str = "broken";
        const ABOUT: &'static str = "fails before it accepts";

        fn serve(self, _: Acceptor, _: Arc<Context>) -> Result<(), ServerError> {
            Err(ServerError::Start {
                what: "worker 1".into(),
                source: std::io::Error::other("no threads today"),
            })
        }
    }

    /// An architecture this machine cannot run.
    struct Forbidden;

    impl Architecture for Forbidden {
        const NAME: &'static str = "forbidden";
        const ABOUT: &'static str = "cannot run here";

        fn available() -> Result<(), Unavailable> {
            Err(Unavailable("the kernel says no".into()))
        }

        fn serve(self, _: Acceptor, _: Arc<Context>) -> Result<(), ServerError> {
            panic!("an unavailable architecture is never served");
        }
    }

    #[test]
    fn an_unavailable_architecture_is_refused_with_its_sentence() {
        let error = RunningServer::start(Forbidden, ServerArgs::default()).expect_err("refused");
        assert!(matches!(error, ServerError::Unavailable(_)));
        assert_eq!(error.to_string(), "the kernel says no");
    }

    #[test]
    fn a_server_that_fails_to_start_is_an_error() {
        let result = RunningServer::start(Broken, ServerArgs::default());
        let error = result.expect_err("starting a broken server is an error");
        assert_eq!(
            error.to_string(),
            "could not start the worker 1: no threads today"
        );
    }
}
