//! Running a server: the [`Architecture`] trait, and starting one in-process.
//!
//! An architecture is anything that can take an [`Acceptor`] and serve its connections
//! until shutdown. The four server crates each implement this trait and nothing else, so
//! the tests, the simulator's `compare` and the benchmarks can start any of them the same
//! way, on an ephemeral port inside their own process, with [`RunningServer::start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::ServerArgs;
use crate::context::Context;
use crate::listener::{bind, Acceptor, ServerError};

/// A threading model for serving connections.
pub trait Architecture: Send + 'static {
    /// Short name: `single`, `thread-per-conn`, `prefork-pool`, `pipeline`.
    const NAME: &'static str;

    /// Serves connections from `acceptor` until `ctx.shutdown` is triggered, then lets the
    /// requests in progress finish (for at most `--shutdown-timeout`) and returns. Runs on
    /// the calling thread, which becomes the server's main thread.
    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError>;
}

/// A server running on a thread of this process.
pub struct RunningServer {
    addr: SocketAddr,
    ctx: Arc<Context>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl RunningServer {
    /// Binds `args.addr` (use port 0 for an ephemeral port), starts serving on a new
    /// thread named `main`, and returns once the architecture's threads are up.
    pub fn start<A: Architecture>(arch: A, args: ServerArgs) -> Result<RunningServer, ServerError> {
        let listener = bind(args.addr, args.backlog)?;
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
                    // Also "ready" if it stopped before accepting (it failed to start).
                    ctx.set_ready();
                    result
                }
            })
            .map_err(|source| ServerError::Start {
                what: "server thread".into(),
                source,
            })?;
        // Return only once the server's threads are up and /stats is complete.
        ctx.wait_ready();
        Ok(RunningServer {
            addr,
            ctx,
            thread: Some(thread),
        })
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
