//! The sequential server: one thread does everything.
//!
//! This is the lecture's starting point (its Figure 4.4): a loop that accepts one client,
//! serves that client until it leaves, and only then accepts the next.
//!
//! ```text
//!                 kernel backlog                 the one thread
//!   clients ──▶ [ c5 | c4 | c3 | c2 ] ──accept──▶ serve c1: read, handle, write, read, ...
//!                 (waiting their turn)            until c1 closes or idles out
//! ```
//!
//! While the thread serves one client, everybody else waits: clients that connect meanwhile
//! sit in the kernel's backlog (`--backlog`), and once it is full their connection attempts
//! are dropped and retried by their kernels. A client that holds its connection open and
//! idle keeps the whole server from everyone else until the keep-alive timeout closes it.
//!
//! It is the simplest correct server and the baseline for the others: with one client at a
//! time it has no hand-off costs at all, and with many clients its latency grows by one
//! service time per client ahead in the queue.

use std::sync::Arc;

use server_core::stats::{Capacity, Figures};
use server_core::{serve_connection, Acceptor, Architecture, Context, ServerError, ThreadGroup};

/// The sequential server. It has no options of its own.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Single {}

impl Default for Single {
    /// The command line's defaults (none): see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

impl Architecture for Single {
    const NAME: &'static str = "single";
    const ABOUT: &'static str = "servelab's sequential server: one thread accepts a connection and serves it to the end, then accepts the next.";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        // The group counts this one thread, so /stats can show whether it is busy.
        let threads = ThreadGroup::new("main");
        let _me = threads.enter();
        ctx.set_capacity(Capacity::workers(1, "thread"));
        ctx.set_arch_figures({
            let threads = threads.clone();
            move || Figures {
                threads: vec![threads.snapshot()],
                ..Figures::default()
            }
        });

        // Blocks in accept until the next client is there; `None` once shutdown begins.
        while let Some(conn) = acceptor.accept() {
            // Serves all of this client's requests; nobody else is served meanwhile.
            serve_connection(conn, &threads);
        }
        tracing::info!(
            "shutting down: no longer accepting; the connection in progress was finished"
        );
        Ok(())
    }
}
