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

    /// Serves connections from `acceptor` until `ctx.shutdown` is triggered, then lets the
    /// requests in progress finish (for at most `--shutdown-timeout`, counted from the
    /// moment shutdown began: see [`crate::shutdown::Shutdown::deadline`]) and returns. Runs
    /// on the calling thread, which becomes the server's main thread. If it gives up waiting,
    /// it says in its log which threads it left running.
    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError>;
}

/// A server running on a thread of this process.
pub struct RunningServer {
    addr: SocketAddr,
    ctx: Arc<Context>,
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
        let listener = bind_with(args.addr, args.backlog, arch.reuse_port())?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: args.addr,
            source,
        })?;
        let ctx = Context::new(A::NAME, args);
        let acceptor = Acceptor::new(listener, Arc::clone(&ctx))?;
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

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Begins a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.ctx.shutdown.trigger();
    }

    /// Shuts the server down and waits until it has stopped.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.stop_and_join()
    }

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
