//! The async server on a work-stealing runtime: a task per connection, a few worker threads.
//!
//! The event loop (`servers/event-loop`) showed how a few threads can serve many
//! connections: nothing waits for one socket, a loop asks the kernel which sockets are
//! ready. It also showed the price: every connection's state in a struct, and a loop that
//! must be written by hand. `async` Rust pays that price once, in the compiler and a
//! runtime. Each connection is a *task*, an `async fn` that reads like a thread's loop, and
//! the runtime (tokio, under hyper and axum) runs many tasks on a few *worker threads*.
//! When a task waits (`.await` on a socket or a timer) it gives its thread back, and the
//! worker runs another task; the runtime's reactor (epoll, as in the event loop) wakes the
//! task when its socket is ready.
//!
//! ```text
//!                 ┌─────────── worker-1 ──────────┐      ┌─────────── worker-2 ──────────┐
//!                 │ LIFO slot [t7]  (runs next)    │      │ LIFO slot [ ]                  │
//!   clients ─▶    │ local queue [t3 t9 t4 ...]     │◀steal│ local queue [ ]   (empty: it   │
//!   listener      │   (256 tasks)                  │      │   steals half of worker-1's)   │
//!   (accept loop  │ runs one task at a time until  │      │                                │
//!    is a task)   │ it awaits, then the next       │      │                                │
//!                 └──────────────▲─────────────────┘      └──────────────▲─────────────────┘
//!                                └──── global queue (unbounded): tasks woken ───┘
//!                                      from outside (a blocking thread's answer)
//!                 blocking-1..B: /factor via spawn_blocking; a worker never computes
//! ```
//!
//! **Work stealing.** Each worker has its own queue of tasks that are ready to run (256 at
//! most; beyond that, half of them move to the global queue). A task woken by a worker goes
//! to that worker's queue: it probably shares that worker's cache. A worker whose queue is
//! empty does not wait: it first looks at the global queue, then *steals* half of another
//! worker's queue, and only then sleeps. So work spreads by itself over the workers, and no
//! worker idles while another has a queue of tasks, which is the point of this design and
//! what the per-core design (`servers/async-per-core`) gives up.
//!
//! **The LIFO slot.** A task that a worker wakes or spawns goes first into that worker's
//! *LIFO slot*, a place for one task that runs next, before the queue: a request and its
//! answer often pass between two tasks, and running the second at once, on the same core,
//! while its data is still in cache, is much faster. The slot cannot be stolen. If the
//! worker is then stuck in a long poll, the task in its slot waits for it, even while other
//! workers are idle: tokio's maintainers discuss exactly this (and `disable_lifo_slot` is
//! still unstable).
//!
//! **What blocks where.** A worker blocks only in `epoll_wait` (when it holds the reactor
//! and has nothing to run) or parked, when it has no task and nothing to steal. A task
//! never blocks its thread: its socket is non-blocking, `/sleep/{ms}` is a moment in the
//! connection's timer, `/factor/{n}` is handed to a *blocking thread* with `spawn_blocking`
//! and the task awaits the answer. With `--offload off` the task computes on its worker, and
//! for the length of the computation that worker runs nothing else: the tasks in its queue
//! are stolen by the others (as long as one is free), the one in its LIFO slot waits. Once
//! there are as many computations as workers, every task waits: lab 23 measures both. The
//! `main` thread waits for shutdown.
//!
//! **Queues and their capacity.** Each worker's local queue: 256 tasks, then it overflows
//! into the global queue, which is unbounded (a task is a few hundred bytes, and there is
//! one per connection). The blocking pool's queue is unbounded inside tokio; here at most
//! `--offload-queue` (1024) computations are queued or running at once, and a request beyond
//! that gets 503 at once, because a task that waited for room would hold its connection
//! and an unbounded queue would let clients grow the server's memory. Per connection, at
//! most 16 requests are read and not answered (`protocol::connection::MAX_OUTSTANDING`).
//!
//! **Timeouts** work as for every server: each connection's task keeps one timer set to its
//! next deadline or sleep (see `connection.rs`).
//!
//! **Shutdown**, as in tokio's mini-redis: a `Notify` wakes every task once (each reads the
//! server's shutdown flag for the truth); the accept loop stops, each connection finishes what it owes (an idle one closes at once) and
//! drops its clone of an `mpsc` sender; the main thread waits until the last one is dropped
//! or the grace period is over, then shuts the runtime down, which drops the tasks left.
//! Their requests stay counted in flight, so the final line says how many were abandoned.

pub mod accept;
pub mod connection;
pub mod runtime;

use std::sync::Arc;
use std::time::{Duration, Instant};

use server_core::permits::Permits;
use server_core::stats::{Capacity, Figures};
use server_core::{Acceptor, Architecture, Context, ServerError, ThreadGroup};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Notify};

use connection::{Compute, Shared};
pub use connection::{Offload, Sleep};
use runtime::{Plan, RuntimeStats};

/// The work-stealing server's own flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct AsyncWorkStealing {
    /// Worker threads that run the tasks and steal from each other [default: the number of
    /// CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub workers: Option<u32>,

    /// Where /factor is computed: on blocking threads with spawn_blocking (on), or on the
    /// worker that runs the connection's task (off).
    #[arg(long, value_enum, default_value_t = Offload::On)]
    pub offload: Offload,

    /// Blocking threads for CPU work [default: the number of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub blocking_threads: Option<u32>,

    /// Computations that may run or wait for a blocking thread at once; beyond that a
    /// request gets 503 at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub offload_queue: u32,

    /// How /sleep and /echo/{ms} wait: as a timer (the task waits, the thread goes on), or
    /// by blocking the thread that runs the task, as a synchronous driver would (block).
    #[arg(long, value_enum, default_value_t = Sleep::Timer)]
    pub sleep: Sleep,
}

impl Default for AsyncWorkStealing {
    /// The command line's defaults: see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

/// The CPUs this process may run on.
pub fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// What both async servers say about how many clients they serve at once: all of them,
/// each on a task of its own, and an idle one holds nothing but its task.
pub fn capacity() -> Capacity {
    Capacity {
        concurrent: None,
        per_client: true,
        worker: "task".into(),
        idle_holds_worker: false,
        idle_holds_readers: None,
        admitted: None,
        rejects_beyond: false,
    }
}

/// The longest the runtime's shutdown waits for its threads once the connections are done
/// (or given up): a computation told to stop ends within a chunk of work.
const THREADS_GRACE: Duration = Duration::from_millis(500);

impl Architecture for AsyncWorkStealing {
    const NAME: &'static str = "async-work-stealing";
    const ABOUT: &'static str = "servelab's async server on tokio's work-stealing runtime: a task per connection on a few worker threads that steal tasks from each other; waits are timers and computations go to blocking threads.";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        let settings = AsyncWorkStealing {
            workers: Some(self.workers.unwrap_or_else(cpus)),
            blocking_threads: Some(self.blocking_threads.unwrap_or_else(cpus)),
            ..self
        };
        ctx.set_arch_config(serde_json::to_value(&settings).unwrap_or_default());
        ctx.set_capacity(capacity());
        let threads = Threads {
            workers: ThreadGroup::new("worker"),
            blocking: ThreadGroup::new("blocking"),
        };
        // Blocks until every worker has started (see `runtime::build`).
        let (runtime, stats) = settings.start_runtime(&threads)?;
        // Where computations go: the blocking threads, at most `--offload-queue` at once.
        let permits = Permits::new(settings.offload_queue as usize);
        // With `--offload on`, blocks until every blocking thread is up.
        let compute = settings.compute(&runtime, &permits, &threads);
        let listener = watch(acceptor, &runtime)?;
        // Wakes every task once, when shutdown begins.
        let stopping = Arc::new(Notify::new());
        // Every connection task holds a clone of `done_tx`; `done` reports when all are
        // gone. Nothing is ever sent on it (capacity 1 is the least a channel may have).
        let (done_tx, done) = mpsc::channel::<()>(1);
        let shared = Arc::new(Shared {
            ctx: Arc::clone(&ctx),
            compute,
            sleep: settings.sleep,
            stats: Arc::clone(&stats),
            stopping: Arc::clone(&stopping),
        });
        // The accept loop, a task like the connections: it runs on whichever worker is free,
        // and each connection's task starts on the worker that accepted it.
        runtime.spawn(accept::accept_loop(listener, shared, done_tx));
        publish_figures(&ctx, &threads, settings.offload, permits, stats);
        // The runtime is up and the accept loop is spawned: in-process starters may go on.
        ctx.set_ready();
        ctx.shutdown.on_trigger({
            let stopping = Arc::clone(&stopping);
            // The flag is already set when hooks run: a task that looks later sees it, one
            // that waits is woken here.
            move || stopping.notify_waiters()
        });
        // Blocks until shutdown has begun and every connection has finished, or the grace
        // period is over.
        if !wait_for_connections(&runtime, stopping, done, &ctx) {
            tracing::warn!(
                "{} requests still unanswered after the shutdown timeout; their connections are dropped",
                ctx.stats.in_flight()
            );
        }
        // Drops the tasks left (abandoned), and stops the workers and the blocking threads;
        // waits for them at most THREADS_GRACE.
        runtime.shutdown_timeout(THREADS_GRACE);
        let deadline = Instant::now() + THREADS_GRACE;
        let still_running = threads.workers.join(deadline) + threads.blocking.join(deadline);
        if still_running > 0 {
            tracing::warn!("{still_running} runtime threads still busy after the shutdown");
        }
        Ok(())
    }
}

/// The error for a part of the server that could not be started.
fn start_error(what: &str) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.to_owned();
    move |source| ServerError::Start { what, source }
}

/// The runtime's threads, counted in their groups: the workers that run tasks and the
/// blocking threads that compute. Shared with the thread that writes `/stats`.
struct Threads {
    /// The worker threads, busy from an unpark to the next park (see `runtime.rs`).
    workers: ThreadGroup,
    /// The blocking threads, busy while they compute.
    blocking: ThreadGroup,
}

impl AsyncWorkStealing {
    /// Builds the runtime (its workers and its blocking threads, counted in their groups)
    /// and its figures: tokio's own, and the server's counts per worker thread.
    fn start_runtime(
        &self,
        threads: &Threads,
    ) -> Result<(Runtime, Arc<RuntimeStats>), ServerError> {
        let workers = self.workers.unwrap_or(1);
        let runtime = runtime::build(Plan {
            workers: Some(workers as usize),
            blocking_threads: self.blocking_threads.unwrap_or(1) as usize,
            blocking_name: "blocking".into(),
            workers_group: threads.workers.clone(),
            blocking_group: threads.blocking.clone(),
        })
        .map_err(start_error("runtime"))?;
        let stats = RuntimeStats::new(
            "runtime",
            (1..=workers).map(|i| format!("worker-{i}")).collect(),
        );
        stats.attach(runtime.handle().clone());
        Ok((runtime, stats))
    }

    /// Where `/factor` is computed: on the blocking threads, started now, or (with
    /// `--offload off`) on the worker that runs the connection's task.
    fn compute(&self, runtime: &Runtime, permits: &Arc<Permits>, threads: &Threads) -> Compute {
        match self.offload {
            Offload::On => {
                // The pool, full from the start and kept (see `runtime.rs`). Blocks until
                // its threads are up.
                runtime::prestart_blocking(
                    runtime.handle(),
                    self.blocking_threads.unwrap_or(1) as usize,
                );
                Compute::Offload {
                    permits: Arc::clone(permits),
                    blocking: threads.blocking.clone(),
                }
            }
            Offload::Off => Compute::Inline,
        }
    }
}

/// The listening socket, now watched by the runtime's reactor: non-blocking, since tokio
/// accepts only when the reactor says a client is waiting, and registered from inside the
/// runtime's context (`enter`), which registering needs.
fn watch(acceptor: Acceptor, runtime: &Runtime) -> Result<TcpListener, ServerError> {
    let listener = acceptor.into_listener();
    listener
        .set_nonblocking(true)
        .map_err(start_error("listener"))?;
    let listener = {
        let _inside = runtime.enter();
        TcpListener::from_std(listener)
    }
    .map_err(start_error("listener"))?;
    Ok(listener)
}

/// Tells `/stats` how to read this server's figures: its two groups of threads, the bound
/// on computations (with `--offload on`) and the runtime's own figures.
fn publish_figures(
    ctx: &Context,
    threads: &Threads,
    offload: Offload,
    permits: Arc<Permits>,
    stats: Arc<RuntimeStats>,
) {
    let (worker_group, blocking_group) = (threads.workers.clone(), threads.blocking.clone());
    ctx.set_arch_figures(move || Figures {
        threads: vec![worker_group.snapshot(), blocking_group.snapshot()],
        limits: match offload {
            Offload::On => vec![permits.snapshot("offload")],
            Offload::Off => Vec::new(),
        },
        runtimes: vec![stats.snapshot()],
        ..Figures::default()
    });
}

/// The main thread waits on the runtime (it is none of its workers): first for shutdown
/// to begin, then for every connection to finish, or the grace period. Returns whether
/// every connection finished in time.
fn wait_for_connections(
    runtime: &Runtime,
    stopping: Arc<Notify>,
    mut done: mpsc::Receiver<()>,
    ctx: &Arc<Context>,
) -> bool {
    let grace = ctx.args.shutdown_timeout;
    runtime.block_on({
        let ctx = Arc::clone(ctx);
        async move {
            // Waits until shutdown begins (registered before the flag is read, so that
            // the wake-up cannot fall between the two).
            let stop = stopping.notified();
            tokio::pin!(stop);
            stop.as_mut().enable();
            if !ctx.shutdown.is_triggered() {
                stop.await;
            }
            tracing::info!(
                "shutting down: the accept loop stops and every connection finishes what it owes"
            );
            let deadline = ctx.shutdown.deadline(grace);
            // Waits until every connection task has dropped its sender (`recv` then
            // returns `None`), or the deadline.
            tokio::time::timeout_at(deadline.into(), done.recv())
                .await
                .is_ok()
        }
    })
}
