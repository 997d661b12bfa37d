//! The pre-fork pool: the lecture's *producer–consumer* model.
//!
//! A fixed number of worker threads is started before the first client is accepted (the
//! name comes from servers like Apache's prefork MPM, which fork their worker processes in
//! advance). The main thread is the producer: it accepts connections and puts them into a
//! bounded queue. The workers are the consumers: each takes a connection from the queue,
//! serves all its requests until the client leaves, and takes the next.
//!
//! ```text
//!                                   connections queue            ┌─▶ worker-1 ─┐
//!   clients ─▶ [backlog] ─▶ main ─▶ [ c7 | c6 | c5 ] ─▶ pop ─────┼─▶ worker-2  ├─ serve a
//!                          accept   admits --workers + --queue   └─▶ worker-8 ─┘  connection
//!                                   more: block, or 503              to its end
//! ```
//!
//! At most `--workers` clients are served at once, and up to `--queue` more wait in the
//! queue: the pool *admits* `--workers` + `--queue` connections. Behind them more wait in the
//! kernel's backlog. Admission is a counting semaphore (`protocol::permits`) with that many
//! permits: the main thread takes one per connection, and a worker gives it back when its
//! client leaves. What happens when none is left is chosen with `--when-full`:
//!
//! * `block` (the default): the main thread waits for a permit *before* it accepts. It stops
//!   accepting meanwhile, so new clients pile up in the backlog, and once that is full their
//!   kernels retry the connection after about a second.
//! * `reject`: the main thread accepts, finds no permit, and answers the new client at once
//!   with `503 Service Unavailable` and `Retry-After: 1`, and closes. Clients learn
//!   immediately that the server is overloaded instead of waiting.
//!
//! Why a semaphore and not simply the queue's own capacity? A worker that is waiting in
//! `pop` needs some microseconds to wake up and take a connection. If a full queue decided,
//! a burst of clients would find it "full" while workers sat idle, still waking up, and
//! whether a client got a 503 would depend on the scheduler. Counting admitted connections
//! makes the answer depend only on how many clients are being served or waiting. The queue
//! itself has room for every admitted connection, so pushing never blocks.
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

use protocol::{Response, Status};
use server_core::permits::{Permit, Permits};
use server_core::queue::{self, QueueKind, QueueReceiver, QueueSender};
use server_core::stats::{Capacity, Figures};
use server_core::{
    serve_connection, Acceptor, Architecture, BlockingConn, Context, ServerError, ThreadGroup,
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
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct PreforkPool {
    /// Worker threads, started before the first accept (the lecture's PREFORK_THREADS).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=65_536), value_name = "N")]
    pub workers: u32,

    /// How many accepted connections may wait for a worker (beyond the --workers being
    /// served).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub queue: u32,

    /// The queue's implementation: crossbeam-channel, or the lecture's mutex and condition
    /// variable.
    #[arg(long, value_enum, default_value_t = QueueKind::Crossbeam)]
    pub queue_impl: QueueKind,

    /// When every worker is busy and the queue is full: block (stop accepting; clients
    /// wait in the backlog) or reject (answer 503 at once).
    #[arg(long, value_enum, default_value_t = WhenFull::Block)]
    pub when_full: WhenFull,
}

impl Default for PreforkPool {
    /// The command line's defaults: see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

/// A connection on its way to a worker, with the permit that counts it as admitted.
/// Dropping it (when the worker is done, or at shutdown) returns the permit.
#[derive(Debug)]
struct Admitted {
    conn: BlockingConn,
    _permit: Permit,
}

impl Architecture for PreforkPool {
    const NAME: &'static str = "prefork-pool";
    const ABOUT: &'static str = "servelab's pre-fork pool (producer-consumer): a fixed pool of worker threads fed by a bounded queue of connections.";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        // Admission: one permit per connection being served or waiting for a worker.
        // Shared with every worker, which gives a permit back when its client leaves.
        let admitted = self.workers as usize + self.queue as usize;
        let permits = Permits::new(admitted);
        // At shutdown, a main thread waiting for a permit must wake up too.
        ctx.shutdown.on_trigger({
            let permits = Arc::clone(&permits);
            move || permits.close()
        });
        // The queue between the main thread (producer) and the workers (consumers). It has
        // room for every admitted connection, so the main thread never blocks on it. Each
        // worker holds a clone of the receiving half; the main thread holds the only sending
        // half, so dropping it tells the workers that no more connections will come.
        let (connections, waiting) =
            queue::bounded::<Admitted>("connections", admitted, self.queue_impl);
        let workers = ThreadGroup::new("worker");
        self.publish(&workers, &connections, &permits, &ctx);
        // Pre-fork: all workers exist before the first client is accepted.
        self.start_workers(&waiting, &workers)?;
        drop(waiting);

        self.accept_loop(&acceptor, &permits, &connections);

        tracing::info!(
            "shutting down: no longer accepting; {} connections queued, {} workers busy",
            connections.stats().depth(),
            workers.busy_count()
        );
        // Closing the queue: workers finish what is queued, then their `pop` returns None.
        drop(connections);
        // Blocks until every worker has ended, or the shutdown deadline passes.
        let still_running = workers.join(ctx.shutdown.deadline(ctx.args.shutdown_timeout));
        if still_running > 0 {
            tracing::warn!("{still_running} workers still busy after the shutdown timeout");
        }
        Ok(())
    }
}

impl PreforkPool {
    /// Tells `/stats` the pool's settings and capacity, and installs the function that
    /// reports its workers, its queue and its admission.
    fn publish(
        &self,
        workers: &ThreadGroup,
        connections: &QueueSender<Admitted>,
        permits: &Arc<Permits>,
        ctx: &Context,
    ) {
        ctx.set_arch_config(serde_json::to_value(self).unwrap_or_default());
        ctx.set_capacity(Capacity {
            admitted: Some(permits.total() as u64),
            rejects_beyond: self.when_full == WhenFull::Reject,
            ..Capacity::workers(u64::from(self.workers), "worker")
        });
        let workers = workers.clone();
        let queue = connections.stats();
        let permits = Arc::clone(permits);
        ctx.set_arch_figures(move || Figures {
            threads: vec![workers.snapshot()],
            queues: vec![queue.snapshot()],
            limits: vec![permits.snapshot("admission")],
            ..Figures::default()
        });
    }

    /// Starts `--workers` worker threads, each serving one queued connection after another
    /// until the queue closes.
    fn start_workers(
        &self,
        waiting: &QueueReceiver<Admitted>,
        workers: &ThreadGroup,
    ) -> Result<(), ServerError> {
        for i in 1..=self.workers {
            let waiting = waiting.clone();
            let group = workers.clone();
            workers
                .spawn(format!("worker-{i}"), None, move || {
                    // Blocks until a connection is queued; `None` once the main thread has
                    // dropped its sender and the queue is drained.
                    while let Some(Admitted { conn, _permit }) = waiting.pop() {
                        serve_connection(conn, &group);
                        // `_permit` drops here: one more connection may be admitted.
                    }
                })
                .map_err(|source| ServerError::Start {
                    what: format!("worker {i}"),
                    source,
                })?;
        }
        Ok(())
    }

    /// The main thread's loop, until shutdown: admits each client (or, with `--when-full
    /// reject`, answers it 503 when the pool and its queue are full) and queues it for the
    /// workers.
    fn accept_loop(
        &self,
        acceptor: &Acceptor,
        permits: &Arc<Permits>,
        connections: &QueueSender<Admitted>,
    ) {
        loop {
            let permit = match self.when_full {
                // Blocks while every permit is taken, until a worker's client leaves;
                // `None` once shutdown begins.
                WhenFull::Block => match permits.acquire() {
                    Some(permit) => Some(permit),
                    None => break,
                },
                // Decided after the accept below.
                WhenFull::Reject => None,
            };
            // Blocks until the next client connects; `None` once shutdown begins.
            let Some(conn) = acceptor.accept() else { break };
            // Never blocks: a full pool means a 503 for this client.
            let Some(permit) = permit.or_else(|| permits.try_acquire()) else {
                conn.refuse(&busy(self));
                continue;
            };
            // Never blocks: the queue has room for every admitted connection.
            if let Err(Admitted { conn, .. }) = connections.push(Admitted {
                conn,
                _permit: permit,
            }) {
                conn.refuse(&busy(self));
            }
        }
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
