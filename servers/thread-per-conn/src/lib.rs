//! Thread-per-connection: the lecture's *delegation* (manager–workers) model, also called
//! *thread-per-socket*.
//!
//! The main thread only accepts. Each accepted connection is delegated to a brand-new
//! thread, `conn-<id>`, which serves all of that client's requests and exits when the
//! client leaves.
//!
//! ```text
//!                                       ┌─▶ conn-1: read, handle, write, ... until c1 leaves
//!   clients ──▶ [backlog] ──▶ main ─────┼─▶ conn-2: ...
//!                      accept, then     └─▶ conn-3: ...
//!                      spawn a thread        (at most --max-threads alive at once)
//! ```
//!
//! Every client is served at once, however slow the others are, so this model shines when
//! clients hold connections open or requests block on I/O. Its costs: a thread creation per
//! connection (tens of microseconds), a stack per live connection, and a scheduler juggling
//! as many threads as there are clients. Left unbounded, a flood of connections would create
//! threads until memory or the process's thread limit runs out. So `--max-threads` bounds
//! them: when that many connection threads are alive, the main thread stops accepting until
//! one exits, and new clients wait in the kernel's backlog, exactly as they would in front
//! of a busy sequential server.
//!
//! `--stack-size` is small by default (256 KiB instead of Rust's 2 MiB). A stack is virtual
//! memory: only the pages a thread touches are really used, but a small reservation lets
//! thousands of threads fit in the address space and keeps `ulimit -v` happy.

use std::sync::Arc;

use server_core::permits::Permits;
use server_core::stats::{Capacity, Figures};
use server_core::{serve_connection, Acceptor, Architecture, Context, ServerError, ThreadGroup};

/// The thread-per-connection server's own flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct ThreadPerConn {
    /// Most connection threads alive at once. When reached, accepting pauses and new
    /// clients wait in the kernel's backlog.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_threads: u32,

    /// Stack size of each connection thread, in bytes.
    #[arg(long, default_value_t = 256 * 1024, value_parser = clap::value_parser!(u64).range(64 * 1024..=1024 * 1024 * 1024), value_name = "BYTES")]
    pub stack_size: u64,
}

impl Default for ThreadPerConn {
    /// The command line's defaults: see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

impl Architecture for ThreadPerConn {
    const NAME: &'static str = "thread-per-conn";
    const ABOUT: &'static str = "servelab's thread-per-connection server (delegation): the main thread accepts and starts a new thread for every connection.";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        let threads = ThreadGroup::new("conn");
        // One permit per connection thread. Shared with every connection thread, each of
        // which gives its permit back when it exits.
        let permits = Permits::new(self.max_threads as usize);
        ctx.set_arch_config(serde_json::to_value(&self).unwrap_or_default());
        ctx.set_capacity(Capacity {
            per_client: true,
            ..Capacity::workers(u64::from(self.max_threads), "thread")
        });
        ctx.set_arch_figures({
            let threads = threads.clone();
            let permits = Arc::clone(&permits);
            move || Figures {
                threads: vec![threads.snapshot()],
                limits: vec![permits.snapshot("threads")],
                ..Figures::default()
            }
        });
        // At shutdown, a main thread waiting for a free permit must wake up too.
        ctx.shutdown.on_trigger({
            let permits = Arc::clone(&permits);
            move || permits.close()
        });

        let stack = usize::try_from(self.stack_size).ok();
        loop {
            // Blocks while --max-threads connection threads are alive, until one exits.
            let Some(permit) = permits.acquire() else {
                break;
            };
            // Blocks until the next client connects; `None` once shutdown begins.
            let Some(conn) = acceptor.accept() else { break };
            let name = format!("conn-{}", conn.id);
            let group = threads.clone();
            // The new thread owns the connection and the permit; nothing else refers to
            // them, so the main thread can move straight on to the next accept.
            let started = threads.spawn(name, stack, move || {
                let _permit = permit;
                serve_connection(conn, &group);
            });
            if let Err(e) = started {
                // The connection (moved into the failed closure) has been dropped: the
                // client sees a close and may retry.
                ctx.stats.rejected();
                ctx.repeats.warn(("spawn", e.kind()), || {
                    format!("could not start a connection thread: {e}")
                });
            }
        }

        tracing::info!(
            "shutting down: no longer accepting; waiting for {} connection threads",
            threads.alive()
        );
        let still_running = threads.join(ctx.shutdown.deadline(ctx.args.shutdown_timeout));
        if still_running > 0 {
            tracing::warn!(
                "{still_running} connection threads still busy after the shutdown timeout"
            );
        }
        Ok(())
    }
}
