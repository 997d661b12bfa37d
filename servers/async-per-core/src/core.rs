//! One core: a thread, its single-threaded runtime, its listening socket, its connections.
//!
//! ```text
//!   core-N thread (pinned with --pin on)
//!     build a current_thread runtime: its reactor (epoll), its timers, its blocking pool
//!     block_on {
//!         accept loop on this core's own listening socket, a task per connection,
//!         all run by this thread alone, one at a time, until shutdown;
//!         then wait until this core's connections have finished (or the grace period)
//!     }
//!     shut the runtime down: the tasks left are dropped (abandoned)
//! ```
//!
//! Everything a core's tasks touch belongs to the core: no other thread runs them, steals
//! them or wakes them (but a blocking thread handing back an answer, through the runtime's
//! shared queue). That is the whole point: no lock, no cache line moving between CPUs, no
//! cross-CPU wake-up per request. And the whole price: when this thread is busy, every
//! connection of this core waits, however idle the other cores are.

use std::io;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use async_work_stealing::accept;
use async_work_stealing::connection::Shared;
use async_work_stealing::runtime::{self, Plan};
use server_core::ThreadGroup;
use tokio::sync::mpsc;

/// The longest a core's runtime waits for its blocking threads once its connections are
/// done (or given up): a computation told to stop ends within a chunk of work.
const THREADS_GRACE: Duration = Duration::from_millis(500);

/// What one core is given when it starts.
#[derive(Debug)]
pub struct Core {
    /// From 1.
    pub index: u32,
    /// Its own listening socket (bound with SO_REUSEPORT on the server's port).
    pub listener: std::net::TcpListener,
    /// What its connection tasks share: its own figures, the server's context.
    pub shared: Arc<Shared>,
    /// Its blocking threads (none with `--offload off`).
    pub blocking_threads: usize,
    /// The CPU to pin its thread to, if any.
    pub pin: Option<usize>,
    /// The core threads' group (this thread is one of them) and the blocking threads'.
    pub cores: ThreadGroup,
    /// One group for the blocking threads of every core: `/stats` counts them together,
    /// and each counts busy while it computes.
    pub blocking: ThreadGroup,
}

/// Why a core could not start: what failed, named after the core (`core-2's runtime`), and
/// the error. The main thread turns it into the server's start error.
pub type StartFailure = (String, io::Error);

/// Runs one core on the calling thread until shutdown has ended its connections or its
/// grace period. Reports on `ready` once its runtime is up and its socket watched (or why
/// it could not start).
pub fn run(core: Core, ready: SyncSender<Result<(), StartFailure>>) {
    let name = format!("core-{}", core.index);
    let Core {
        index: _,
        listener,
        shared,
        blocking_threads,
        pin,
        cores,
        blocking,
    } = core;
    let started = start(
        &name,
        listener,
        &shared,
        blocking_threads,
        pin,
        &cores,
        blocking,
    );
    // Each report never blocks: the channel has room for every core's one report. It fails
    // only when the main thread has stopped listening (another core failed first), and then
    // nobody needs it.
    let (runtime, listener) = match started {
        Ok(started) => {
            let _ = ready.send(Ok(()));
            started
        }
        Err(failure) => {
            let _ = ready.send(Err(failure));
            return;
        }
    };
    let ctx = Arc::clone(&shared.ctx);
    // This thread is the runtime's only worker: busy until it first parks.
    runtime::enter_as_worker(&cores);
    // The core's whole life as a server. `block_on` runs this future on this thread, and
    // whenever it waits, the runtime runs the core's other tasks (the connections) here too:
    // a single-threaded runtime has no other thread to run them on.
    let finished = runtime.block_on(async {
        // Every connection task of this core holds a clone of `done_tx`; `recv` returns
        // `None` once all are dropped. Nothing is ever sent (capacity 1 is the least).
        let (done_tx, mut done) = mpsc::channel::<()>(1);
        // Accepts and serves until shutdown begins; the connections' tasks run whenever
        // this one waits.
        accept::accept_loop(listener, Arc::clone(&shared), done_tx).await;
        let deadline = ctx.shutdown.deadline(ctx.args.shutdown_timeout);
        // Waits until every connection task of this core has dropped its sender, or the
        // deadline; meanwhile this thread runs those tasks.
        tokio::time::timeout_at(deadline.into(), done.recv())
            .await
            .is_ok()
    });
    if !finished {
        tracing::warn!(
            "{name}: {} connections still owe answers after the shutdown timeout; they are dropped",
            shared
                .stats
                .connections
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    runtime::leave_as_worker();
    // Drops the tasks left (abandoned) and stops the blocking threads.
    runtime.shutdown_timeout(THREADS_GRACE);
}

/// Pins the thread, builds the core's runtime and hands it the listening socket.
fn start(
    name: &str,
    listener: std::net::TcpListener,
    shared: &Shared,
    blocking_threads: usize,
    pin: Option<usize>,
    cores: &ThreadGroup,
    blocking: ThreadGroup,
) -> Result<(tokio::runtime::Runtime, tokio::net::TcpListener), StartFailure> {
    // What failed, named after the core: `core-2's runtime`.
    let fail = |what: &str| {
        let what = format!("{name}'s {what}");
        move |e: io::Error| (what, e)
    };
    // First, so that everything the core allocates from now on is allocated on its CPU's
    // memory node.
    if let Some(cpu) = pin {
        crate::pin::pin_to(cpu).map_err(fail(&format!("pinning to CPU {cpu}")))?;
    }
    let runtime = runtime::build(Plan {
        workers: None,
        blocking_threads: blocking_threads.max(1),
        blocking_name: format!("{name}-blocking"),
        workers_group: cores.clone(),
        blocking_group: blocking,
    })
    .map_err(fail("runtime"))?;
    // The core's figures read tokio's own (parks, busy time, tasks alive) from this handle.
    shared.stats.attach(runtime.handle().clone());
    // The core's blocking pool, full from the start (none with `--offload off`: the core's
    // own thread computes).
    if blocking_threads > 0 {
        runtime::prestart_blocking(runtime.handle(), blocking_threads);
    }
    // tokio watches the socket with its reactor and accepts only when it is ready, so the
    // socket must never block; registering it needs the runtime's context (`enter`).
    listener
        .set_nonblocking(true)
        .map_err(fail("listening socket"))?;
    let listener = {
        let _inside = runtime.enter();
        tokio::net::TcpListener::from_std(listener)
    }
    .map_err(fail("listening socket"))?;
    Ok((runtime, listener))
}
