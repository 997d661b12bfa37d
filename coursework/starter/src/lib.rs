//! The coursework starter: a server that works, serves one client at a time, and leaves the
//! design to you.
//!
//! It is servelab's sequential server (`servers/single`) with the places where a design
//! decides marked `// STUDENT:`. Everything around those places is done for you and shared
//! with every other servelab server:
//!
//! * the protocol (`protocol`): parsing, keep-alive, pipelining, every bad-input status of
//!   `docs/protocol.md`, the routes (`/`, `/echo`, `/sleep/{ms}`, `/stats`, ...);
//! * the running machinery (`server-core`): the listening socket and `accept`, one
//!   connection driven to its end by [`serve_connection`], `/stats`, SIGTERM and a
//!   graceful shutdown, the command line.
//!
//! What is left is the one question this course is about: **which thread serves which
//! connection, and what happens to the others meanwhile?** As it stands the answer is the
//! simplest one:
//!
//! ```text
//!                 kernel backlog                 the one thread
//!   clients ──▶ [ c5 | c4 | c3 | c2 ] ──accept──▶ serve c1 to the end, then accept c2
//! ```
//!
//! which the grader calls `--expect sequential`: it passes series A (the protocol) and
//! fails series C (a slow request holds up everyone behind it). Change the marked places
//! into a pool, a thread per connection, or an event loop, say which with `--expect`, and
//! grade it again (see this crate's README.md).

use std::sync::Arc;

use server_core::stats::{Capacity, Figures};
use server_core::{serve_connection, Acceptor, Architecture, Context, ServerError, ThreadGroup};

/// The starter server. It has no flags of its own yet.
///
/// STUDENT: a design with a size (workers, queue length) gets its flags here, written with
/// clap's derive attributes, e.g.
/// `#[arg(long, default_value_t = 4)] pub workers: u32,`
/// (see `servers/prefork-pool/src/lib.rs`). They then appear in `--help` by themselves.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Starter {}

impl Default for Starter {
    /// The defaults of the flags above, as the command line gives them.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

impl Architecture for Starter {
    // STUDENT: your server's name: the `Server` header, `/stats` and the registry use it.
    const NAME: &'static str = "starter";
    const ABOUT: &'static str =
        "servelab's coursework starter: one thread accepts a connection and serves it to the end.";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        // The threads that serve connections, counted for /stats. Here there is only one,
        // the thread that runs `serve`, so it joins the group itself.
        //
        // STUDENT: a pool or a thread per connection starts its threads in a group like this
        // one (`ThreadGroup::spawn`), so that /stats counts them and shutdown can join them.
        let threads = ThreadGroup::new("main");
        let _me = threads.enter();

        // What the design promises: how many requests it works on at once. The simulator's
        // predictions and `/stats` read it.
        //
        // STUDENT: say what your design does, e.g. `Capacity::workers(4, "thread")` for a
        // pool of four (see `server_core::stats::Capacity`).
        ctx.set_capacity(Capacity::workers(1, "thread"));
        ctx.set_arch_figures({
            let threads = threads.clone();
            move || Figures {
                threads: vec![threads.snapshot()],
                ..Figures::default()
            }
        });

        // Blocks in accept until the next client has connected; `None` once SIGTERM (or
        // Ctrl+C) has begun the shutdown.
        while let Some(conn) = acceptor.accept() {
            // STUDENT: this is the design. Here the accepting thread serves the connection
            // itself, every request of it, until the client leaves or idles out (the
            // keep-alive timeout), and only then accepts the next client. Hand the
            // connection to another thread instead (a new one, or a pool's through a
            // bounded queue that answers 503 when full: `conn.refuse(...)`), and this loop
            // is free to accept again at once.
            serve_connection(conn, &threads);
        }

        // STUDENT: a design with threads of its own waits for them here, within the
        // shutdown timeout: `threads.join(ctx.shutdown.deadline(ctx.args.shutdown_timeout))`.
        // Returning early would abandon their requests, and the grader's E.sigterm counts
        // that against you.
        tracing::info!(
            "shutting down: no longer accepting; the connection in progress was finished"
        );
        Ok(())
    }
}
