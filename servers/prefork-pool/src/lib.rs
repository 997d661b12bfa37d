//! The pre-fork pool: the lecture's *producer–consumer* model.
//!
//! A fixed number of worker threads is started before the first client is accepted (the
//! name comes from servers like Apache's prefork MPM, which fork their worker processes in
//! advance). The main thread is the producer: it accepts connections and puts them into a
//! bounded queue. The workers are the consumers: each takes a connection from the queue,
//! serves all its requests until the client leaves, and takes the next.
//!
//! ```text
//!                                  connections queue            ┌─▶ worker-1 ─┐
//!   clients ─▶ [backlog] ─▶ main ─▶ [ c7 | c6 | c5 ] ─▶ pop ────┼─▶ worker-2  ├─ serve a
//!                          accept   capacity --queue            └─▶ worker-8 ─┘  connection
//!                                   full: block or 503              to its end
//! ```
//!
//! At most `--workers` clients are served at once; up to `--queue` more wait in the queue,
//! and behind them more wait in the kernel's backlog. What happens when the queue is full is
//! chosen with `--when-full`:
//!
//! * `block` (the default): the main thread waits until a worker takes a connection. It
//!   stops accepting meanwhile, so new clients pile up in the backlog, and once that is full
//!   their kernels retry the connection after about a second.
//! * `reject`: the main thread answers the new client at once with `503 Service
//!   Unavailable` and `Retry-After: 1`, and closes. Clients learn immediately that the
//!   server is overloaded instead of waiting.
//!
//! Compared with thread-per-connection, the pool pays for its threads once, at start, and
//! can never be pushed past its size. The price: a client that holds its connection open
//! and idle occupies a whole worker, so `--workers` idle clients starve everyone else until
//! the keep-alive timeout closes them (the lecture's "PREFORK_THREADS = 4" question).
//!
//! `--queue-impl` picks the queue: `crossbeam` (crossbeam-channel) or `condvar`, a
//! `Mutex<VecDeque>` with condition variables built the way the lecture builds its queue.
//! See `protocol::queue` for both.

use std::sync::Arc;
use std::time::Instant;

use protocol::queue::{self, QueueKind, TryPushError};
use protocol::{
    serve_connection, Acceptor, Architecture, Conn, Context, Response, ServerError, Status,
    ThreadGroup,
};

/// What the main thread does when the connections queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// Wait for room; new clients wait in the kernel's backlog meanwhile.
    #[default]
    Block,
    /// Answer 503 with Retry-After and close.
    Reject,
}

/// The pre-fork pool's own flags.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct PreforkPool {
    /// Worker threads, started before the first accept (the lecture's PREFORK_THREADS).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub workers: u32,

    /// Capacity of the queue of accepted connections waiting for a worker.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub queue: u32,

    /// The queue's implementation: crossbeam-channel, or the lecture's mutex and condition
    /// variable.
    #[arg(long, value_enum, default_value_t = QueueKind::Crossbeam)]
    pub queue_impl: QueueKind,

    /// When the queue is full: block (stop accepting; clients wait in the backlog) or
    /// reject (answer 503 at once).
    #[arg(long, value_enum, default_value_t = WhenFull::Block)]
    pub when_full: WhenFull,
}

impl Default for PreforkPool {
    fn default() -> Self {
        PreforkPool {
            workers: 8,
            queue: 64,
            queue_impl: QueueKind::Crossbeam,
            when_full: WhenFull::Block,
        }
    }
}

impl Architecture for PreforkPool {
    const NAME: &'static str = "prefork-pool";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        // The queue between the main thread (producer) and the workers (consumers). Each
        // worker holds a clone of the receiving half; the main thread holds the only
        // sending half, so dropping it tells the workers that no more connections will come.
        let (connections, waiting) =
            queue::bounded::<Conn>("connections", self.queue as usize, self.queue_impl);
        let workers = ThreadGroup::new("worker");
        ctx.set_arch_config(serde_json::to_value(&self).unwrap_or_default());
        ctx.set_arch_figures({
            let workers = workers.clone();
            let queue = connections.stats();
            move || {
                serde_json::json!({
                    "threads": [workers.stats_json()],
                    "queues": [queue.to_json()],
                })
            }
        });

        // Pre-fork: all workers exist before the first client is accepted.
        for i in 1..=self.workers {
            let waiting = waiting.clone();
            let group = workers.clone();
            workers
                .spawn(format!("worker-{i}"), None, move || {
                    // Blocks until a connection is queued; `None` once the main thread has
                    // dropped its sender and the queue is drained.
                    while let Some(conn) = waiting.pop() {
                        serve_connection(conn, &group);
                    }
                })
                .map_err(|source| ServerError::Start {
                    what: format!("worker {i}"),
                    source,
                })?;
        }
        drop(waiting);

        // Blocks until the next client connects; `None` once shutdown begins.
        while let Some(conn) = acceptor.accept() {
            match self.when_full {
                // Blocks while the queue is full, until a worker takes a connection.
                WhenFull::Block => {
                    if let Err(conn) = connections.push(conn) {
                        conn.refuse(&busy(&self));
                    }
                }
                // Never blocks: a full queue means a 503 for this client.
                WhenFull::Reject => match connections.try_push(conn) {
                    Ok(()) => {}
                    Err(TryPushError::Full(conn) | TryPushError::Closed(conn)) => {
                        conn.refuse(&busy(&self))
                    }
                },
            }
        }

        tracing::info!(
            "shutting down: no longer accepting; {} connections queued, {} workers busy",
            connections.stats().depth(),
            workers.busy_count()
        );
        // Closing the queue: workers finish what is queued, then their `pop` returns None.
        drop(connections);
        let still_running = workers.join(Instant::now() + ctx.args.shutdown_timeout);
        if still_running > 0 {
            tracing::warn!("{still_running} workers still busy after the shutdown timeout");
        }
        Ok(())
    }
}

/// The answer for a client that finds the pool and its queue full.
fn busy(pool: &PreforkPool) -> Response {
    let mut response = Response::error(
        Status::ServiceUnavailable,
        &format!(
            "all {} workers are busy and the queue of {} connections is full; retry later",
            pool.workers, pool.queue
        ),
    )
    .closing();
    response.retry_after = Some(1);
    response
}
